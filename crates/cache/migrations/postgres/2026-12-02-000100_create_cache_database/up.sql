-- Until 2026-12-04 this table was created by the application's migration
-- 2026-12-02-000101, which databases made before then have run: hence IF NOT EXISTS, and
-- the identity they hold is kept.
-- Which database this is, chosen once: a cached value records it, so a value computed from
-- another database (staging and production sharing one Redis and prefix, a command pointed at
-- the wrong Redis) is never served. A restored dump keeps it; give such a copy a new one with
-- `UPDATE cache_database SET identity = md5(random()::text || clock_timestamp()::text)`.
CREATE TABLE IF NOT EXISTS cache_database (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    identity TEXT NOT NULL
);
INSERT INTO cache_database (id, identity)
VALUES (1, md5(random()::text || clock_timestamp()::text))
ON CONFLICT (id) DO NOTHING;
