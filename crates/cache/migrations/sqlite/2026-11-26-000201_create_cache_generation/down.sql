DROP TABLE cache_generation;
