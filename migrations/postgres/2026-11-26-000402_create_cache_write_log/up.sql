-- The writes that invalidated the cached average, for the staff cache page: written in each
-- write's own transaction, trimmed to the latest hundred.
CREATE TABLE cache_write_log (
    id SERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL
);
