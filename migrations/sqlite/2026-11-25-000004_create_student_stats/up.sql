-- The student count, kept by every insert and delete in its own transaction, so that the list
-- does not count the whole table on every view; and a version that changes whenever ids come
-- or go, which tells the list when its index of page boundaries is out of date.
CREATE TABLE student_stats (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    student_count BIGINT NOT NULL,
    version BIGINT NOT NULL
);
INSERT INTO student_stats (id, student_count, version) SELECT 1, COUNT(*), 0 FROM students;
