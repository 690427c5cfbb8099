-- The database decides what is current, whoever writes to it (this app, the sqlite3 shell, a
-- script): every change to `students` raises the cache's generation mark and keeps the student
-- count in the writing statement's own transaction, so no writer can forget either. Each
-- instance compares the mark with the generation in Redis every 250 ms and invalidates when
-- they differ (see crates/cache/src/outbox.rs).
--
-- SQLite has no statement-level triggers: these run once per row. The bulk insert
-- (src/models/student.rs) drops them inside its transaction and does their work once.
CREATE TRIGGER cache_generation_mark_insert AFTER INSERT ON students
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    UPDATE student_stats SET student_count = student_count + 1, version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cache_generation_mark_delete AFTER DELETE ON students
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    UPDATE student_stats SET student_count = student_count - 1, version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER cache_generation_mark_update AFTER UPDATE ON students
BEGIN
    UPDATE cache_generation SET generation = generation + 1 WHERE id = 1;
    UPDATE student_stats SET version = version + 1 WHERE id = 1 AND OLD.id <> NEW.id;
END;

-- The count was kept by the application until now, so writes from elsewhere made it drift;
-- from here on the triggers keep it exact.
UPDATE student_stats SET student_count = (SELECT COUNT(*) FROM students), version = version + 1
WHERE id = 1;
