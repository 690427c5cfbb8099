DROP TABLE cache_write_log;
