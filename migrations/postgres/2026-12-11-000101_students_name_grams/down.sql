DROP INDEX students_name_grams;
DROP TRIGGER students_name_grams_update ON students;
DROP TRIGGER students_name_grams_insert ON students;
DROP FUNCTION students_name_grams_fill();
ALTER TABLE students DROP COLUMN name_grams;
DROP FUNCTION students_name_grams(text);
CREATE INDEX students_name_letters ON students USING gin (string_to_array(lower(name), NULL));
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
