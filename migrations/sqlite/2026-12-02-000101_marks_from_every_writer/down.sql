DROP TABLE cache_database;
DROP TRIGGER cache_generation_mark_update;
DROP TRIGGER cache_generation_mark_delete;
DROP TRIGGER cache_generation_mark_insert;
