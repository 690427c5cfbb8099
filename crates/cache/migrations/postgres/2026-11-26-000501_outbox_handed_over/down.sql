ALTER TABLE cache_invalidations DROP COLUMN handed_over;
