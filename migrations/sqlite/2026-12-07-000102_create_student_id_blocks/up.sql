-- How many students there are in each block of 1,024 ids, kept by triggers in the writing
-- statement's own transaction, as student_age_counts is: every writer keeps it exact. A deep page
-- of the list (page N starts at the ((N - 1) * 50)-th id) is then found by summing a thousand
-- block counts at a million students and skipping fewer than 1,024 index entries, instead of
-- stepping through the ids of every earlier page. It replaces the in-process index of page
-- starts that the first deep view after any insert or delete rebuilt from every id;
-- student_stats.version, which told that index it was stale, is no longer read.
CREATE TABLE student_id_blocks (
    block INTEGER PRIMARY KEY NOT NULL,
    students BIGINT NOT NULL CHECK (students >= 0)
);
INSERT INTO student_id_blocks (block, students)
SELECT id / 1024, COUNT(*) FROM students GROUP BY id / 1024;

CREATE TRIGGER student_id_blocks_insert AFTER INSERT ON students
BEGIN
    INSERT INTO student_id_blocks (block, students) VALUES (NEW.id / 1024, 1)
    ON CONFLICT (block) DO UPDATE SET students = students + 1;
END;
CREATE TRIGGER student_id_blocks_delete AFTER DELETE ON students
BEGIN
    UPDATE student_id_blocks SET students = students - 1 WHERE block = OLD.id / 1024;
END;
CREATE TRIGGER student_id_blocks_update AFTER UPDATE OF id ON students
WHEN OLD.id / 1024 <> NEW.id / 1024
BEGIN
    UPDATE student_id_blocks SET students = students - 1 WHERE block = OLD.id / 1024;
    INSERT INTO student_id_blocks (block, students) VALUES (NEW.id / 1024, 1)
    ON CONFLICT (block) DO UPDATE SET students = students + 1;
END;
