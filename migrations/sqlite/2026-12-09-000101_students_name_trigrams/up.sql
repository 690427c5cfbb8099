-- The names' trigrams, for the staff search: `lower(name) LIKE '%ann%'` reads every name (a
-- quarter of a second at a million students, for nothing when none matches), where FTS5's
-- trigram index finds the rows holding any three characters at once. An external-content
-- table: the names stay in `students` only, and these triggers keep the index in step with
-- every writer, the sqlite3 shell included (`Student::insert_batch`, which drops the other
-- row triggers around a bulk insert, leaves these).
CREATE VIRTUAL TABLE students_name_trigram USING fts5(
    name, content = 'students', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO students_name_trigram (students_name_trigram) VALUES ('rebuild');

CREATE TRIGGER students_name_trigram_insert AFTER INSERT ON students BEGIN
    INSERT INTO students_name_trigram (rowid, name) VALUES (new.id, new.name);
END;
CREATE TRIGGER students_name_trigram_delete AFTER DELETE ON students BEGIN
    INSERT INTO students_name_trigram (students_name_trigram, rowid, name)
        VALUES ('delete', old.id, old.name);
END;
CREATE TRIGGER students_name_trigram_update AFTER UPDATE OF name ON students BEGIN
    INSERT INTO students_name_trigram (students_name_trigram, rowid, name)
        VALUES ('delete', old.id, old.name);
    INSERT INTO students_name_trigram (rowid, name) VALUES (new.id, new.name);
END;
