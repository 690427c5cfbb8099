-- The outbox of cache invalidations: a row is written in the same transaction as the data
-- change it follows, and deleted once Redis confirmed the invalidation.
CREATE TABLE cache_invalidations (
    id SERIAL PRIMARY KEY,
    cache_key TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
