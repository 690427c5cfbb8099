CREATE TABLE students_name_trigram_deferred (deferred INTEGER NOT NULL);
INSERT INTO students_name_trigram_deferred (deferred) VALUES (0);
DROP TRIGGER students_name_trigram_insert;
CREATE TRIGGER students_name_trigram_insert AFTER INSERT ON students
WHEN (SELECT deferred FROM students_name_trigram_deferred) = 0
BEGIN
    INSERT INTO students_name_trigram (rowid, name) VALUES (new.id, new.name);
END;

DROP TRIGGER cache_generation_mark_insert;
CREATE TRIGGER cache_generation_mark_insert AFTER INSERT ON students
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    UPDATE student_stats SET student_count = student_count + 1, version = version + 1 WHERE id = 1;
END;

DROP TRIGGER student_id_blocks_insert;
CREATE TRIGGER student_id_blocks_insert AFTER INSERT ON students
BEGIN
    INSERT INTO student_id_blocks (block, students) VALUES (NEW.id / 1024, 1)
    ON CONFLICT (block) DO UPDATE SET students = students + 1;
END;

DROP TRIGGER student_age_counts_insert;
CREATE TRIGGER student_age_counts_insert AFTER INSERT ON students
BEGIN
    UPDATE student_age_counts SET students = students + 1 WHERE age = NEW.age;
END;

DROP TABLE students_bulk_insert;
