-- The names' trigrams, for the staff search: `lower(name) LIKE '%ann%'` reads every name (over
-- half a second at a million students), where a pg_trgm index on lower(name) finds the rows
-- holding any three characters at once. pg_trgm ships with PostgreSQL (contrib) and is a
-- trusted extension, so the database's owner may create it; where it cannot be had, the
-- search still works, reading every name, and the migration says so rather than failing.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is not available (%): the staff search will read every name', SQLERRM;
END
$$;

-- The operator class is named in the extension's own schema, wherever that is.
DO $$
DECLARE
    trgm_schema name;
BEGIN
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX students_name_trigram ON students USING gin (lower(name) %I.gin_trgm_ops)',
            trgm_schema
        );
    END IF;
END
$$;
