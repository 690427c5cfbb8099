-- The names' characters and pairs of adjacent characters, for the staff search, as one GIN
-- index that serves every length of needle: a name that holds the needle holds each of the
-- needle's pairs (or its one character), so the search asks for the rows holding them all
-- (`@>`) and `lower(name) LIKE` still decides. It replaces two indexes: pg_trgm's, which
-- cannot serve a needle shorter than three characters, and the set of characters, with which
-- a pair of common letters ("oe", "yk") still read a quarter of the table or all of it.
--
-- The keys are a column, not an index expression: no expression PostgreSQL has makes the
-- pairs cheaply (`generate_series` costs 15 µs a row, two `regexp_replace` as much), and a
-- 100,000-row import has 3 s in all (BENCHMARKS.md, "One index of pairs"). So a bulk insert
-- sends keys it made from the names as `lower()` here lowered them (it asks), and a trigger
-- fills the column for every other writer (the forms, `psql`, COPY) and whenever a name
-- changes, from the same function; a test holds the application's keys to it.
--
-- A key is a pair's two code points, each cut to 16 bits, in one integer (the one character
-- of a name, or the last, has 0 as its second): two pairs that share a key only make a
-- candidate the LIKE turns away.
CREATE FUNCTION students_name_grams(lowered text) RETURNS integer[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT key ORDER BY key), '{}')
    FROM generate_series(1, char_length(lowered)) AS i,
        LATERAL (VALUES
            ((ascii(substr(lowered, i, 1)) & 65535) << 16),
            (CASE WHEN i < char_length(lowered) THEN
                ((ascii(substr(lowered, i, 1)) & 65535) << 16)
                | (ascii(substr(lowered, i + 1, 1)) & 65535)
            END)
        ) AS keys(key)
    WHERE key IS NOT NULL
$$;

ALTER TABLE students ADD COLUMN name_grams integer[];
UPDATE students SET name_grams = students_name_grams(lower(name));
ALTER TABLE students ALTER COLUMN name_grams SET NOT NULL;

CREATE FUNCTION students_name_grams_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name_grams := students_name_grams(lower(NEW.name));
    RETURN NEW;
END
$$;
-- A row inserted without keys gets them; the bulk insert's own are kept (one function call a
-- row would cost 1.5 s per 100,000).
CREATE TRIGGER students_name_grams_insert BEFORE INSERT ON students
    FOR EACH ROW WHEN (NEW.name_grams IS NULL) EXECUTE FUNCTION students_name_grams_fill();
-- A new name, or keys written by hand, are made again from the name.
CREATE TRIGGER students_name_grams_update BEFORE UPDATE OF name, name_grams ON students
    FOR EACH ROW
    WHEN (NEW.name IS DISTINCT FROM OLD.name OR NEW.name_grams IS DISTINCT FROM OLD.name_grams)
    EXECUTE FUNCTION students_name_grams_fill();

CREATE INDEX students_name_grams ON students USING gin (name_grams);
DROP INDEX students_name_letters;
-- pg_trgm's index, where the database allowed it; the extension itself stays, as something
-- else may use it.
DROP INDEX IF EXISTS students_name_trigram;
