-- The database decides what is current, whoever writes to it (this app, psql, another
-- service, a migration): every statement that changes `students` raises the cache's generation
-- mark and keeps the student count in its own transaction, so no writer can forget either.
-- Each instance compares the mark with the generation in Redis every 250 ms and invalidates
-- when they differ (see crates/cache/src/outbox.rs).
--
-- Once per statement, not per row. The mark's one row is locked from the end of the first
-- statement that changes `students` to the commit, which is what orders the marks as the
-- changes commit (crates/cache/src/generation.rs); the application's transactions change `students`
-- in one statement each.
CREATE FUNCTION cache_generation_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER cache_generation_mark AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON students
    FOR EACH STATEMENT EXECUTE FUNCTION cache_generation_mark();

CREATE FUNCTION student_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT COUNT(*) INTO delta FROM new_rows;
    ELSE
        SELECT -COUNT(*) INTO delta FROM old_rows;
    END IF;
    IF delta <> 0 THEN
        UPDATE student_stats
        SET student_count = student_count + delta, version = version + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER student_stats_insert AFTER INSERT ON students
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION student_stats_apply();
CREATE TRIGGER student_stats_delete AFTER DELETE ON students
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION student_stats_apply();

-- The ids can change only through an UPDATE of id or a TRUNCATE.
CREATE FUNCTION student_stats_reshape() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE student_stats SET student_count = 0, version = version + 1 WHERE id = 1;
    ELSE
        UPDATE student_stats SET version = version + 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER student_stats_update_id AFTER UPDATE OF id ON students
    FOR EACH STATEMENT EXECUTE FUNCTION student_stats_reshape();
CREATE TRIGGER student_stats_truncate AFTER TRUNCATE ON students
    FOR EACH STATEMENT EXECUTE FUNCTION student_stats_reshape();

-- The count was kept by the application until now, so writes from elsewhere made it drift;
-- from here on the triggers keep it exact.
UPDATE student_stats SET student_count = (SELECT COUNT(*) FROM students), version = version + 1
WHERE id = 1;
