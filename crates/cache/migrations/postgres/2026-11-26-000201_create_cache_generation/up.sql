-- The high-water mark of the cache's generation, kept by the database because Redis can lose
-- it (a restart from an older snapshot, a failover to a replica that missed writes). Every
-- data change increments it in its own transaction, with its outbox row; Redis' generation is
-- never below it once an instance has checked the server (see src/lib.rs).
CREATE TABLE cache_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO cache_generation (id, generation) VALUES (1, 0);
