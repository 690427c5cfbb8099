-- Set by a writer that could not reach Redis: the row is every instance's to apply at once,
-- and the writer answers once one of them has (see src/outbox.rs).
ALTER TABLE cache_invalidations ADD COLUMN handed_over BOOLEAN NOT NULL DEFAULT FALSE;
