-- SQLite runs triggers once per row, and a bulk insert (`seed`, the CSV import) does the insert
-- triggers' work once for the whole batch instead (src/models/student.rs). It used to drop the
-- counting triggers and create them again inside its transaction; but a schema change under
-- live writers made other connections' statements fail to prepare now and then ("no such
-- table: students": the nemesis met it, and a loop of `seed --count 1` beside sqlite3-shell
-- writes did about once a minute). Now the running system never changes its schema: every
-- per-row INSERT trigger is skipped while this flag is set, and the batch sets it inside its
-- own write transaction, where no other connection can see it, and clears it before committing.
CREATE TABLE students_bulk_insert (active INTEGER NOT NULL CHECK (active IN (0, 1)));
INSERT INTO students_bulk_insert (active) VALUES (0);

DROP TRIGGER student_age_counts_insert;
CREATE TRIGGER student_age_counts_insert AFTER INSERT ON students
WHEN (SELECT active FROM students_bulk_insert) = 0
BEGIN
    UPDATE student_age_counts SET students = students + 1 WHERE age = NEW.age;
END;

DROP TRIGGER student_id_blocks_insert;
CREATE TRIGGER student_id_blocks_insert AFTER INSERT ON students
WHEN (SELECT active FROM students_bulk_insert) = 0
BEGIN
    INSERT INTO student_id_blocks (block, students) VALUES (NEW.id / 1024, 1)
    ON CONFLICT (block) DO UPDATE SET students = students + 1;
END;

DROP TRIGGER cache_generation_mark_insert;
CREATE TRIGGER cache_generation_mark_insert AFTER INSERT ON students
WHEN (SELECT active FROM students_bulk_insert) = 0
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    UPDATE student_stats SET student_count = student_count + 1, version = version + 1 WHERE id = 1;
END;

-- The names' trigram index had its own flag for the same reason; one flag now serves all.
DROP TRIGGER students_name_trigram_insert;
CREATE TRIGGER students_name_trigram_insert AFTER INSERT ON students
WHEN (SELECT active FROM students_bulk_insert) = 0
BEGIN
    INSERT INTO students_name_trigram (rowid, name) VALUES (new.id, new.name);
END;
DROP TABLE students_name_trigram_deferred;
