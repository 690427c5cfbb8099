-- How many students have each age, kept by triggers in the writing statement's own transaction:
-- every writer (this app, psql, a script) keeps it exact, and a cache miss reads at most 151
-- rows instead of stepping through one index entry per student. The age CHECK on students
-- means every age a row can have already has its row here.
CREATE TABLE student_age_counts (
    age INTEGER PRIMARY KEY CHECK (age BETWEEN 0 AND 150),
    students BIGINT NOT NULL CHECK (students >= 0)
);
INSERT INTO student_age_counts (age, students)
SELECT ages.age, COUNT(students.age)
FROM generate_series(0, 150) AS ages (age) LEFT JOIN students ON students.age = ages.age
GROUP BY ages.age;

-- Once per statement, not per row: a bulk insert of a million rows does at most 151 updates.
-- The updates go in age order, so two statements that touch the same ages take their row locks
-- in the same order and cannot deadlock each other.
CREATE FUNCTION student_age_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change record;
BEGIN
    -- Only the transition tables this operation has exist, hence the text chosen per operation.
    FOR change IN EXECUTE
        'SELECT age, SUM(delta) AS delta FROM (' ||
        CASE TG_OP
            WHEN 'INSERT' THEN 'SELECT age, 1 AS delta FROM new_rows'
            WHEN 'DELETE' THEN 'SELECT age, -1 AS delta FROM old_rows'
            ELSE 'SELECT age, 1 AS delta FROM new_rows UNION ALL SELECT age, -1 FROM old_rows'
        END ||
        ') AS changes GROUP BY age HAVING SUM(delta) <> 0 ORDER BY age'
    LOOP
        UPDATE student_age_counts SET students = students + change.delta WHERE age = change.age;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER student_age_counts_insert AFTER INSERT ON students
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION student_age_counts_apply();
CREATE TRIGGER student_age_counts_delete AFTER DELETE ON students
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION student_age_counts_apply();
CREATE TRIGGER student_age_counts_update AFTER UPDATE ON students
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION student_age_counts_apply();

-- TRUNCATE fires no row or DELETE triggers.
CREATE FUNCTION student_age_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE student_age_counts SET students = 0 WHERE students <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER student_age_counts_truncate AFTER TRUNCATE ON students
    FOR EACH STATEMENT EXECUTE FUNCTION student_age_counts_truncate();

-- The index covered the GROUP BY that the counts replace; kept, it would only slow every write.
DROP INDEX students_age;
