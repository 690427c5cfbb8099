DROP TABLE cache_database;
