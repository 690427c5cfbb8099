-- A search of one or two characters has no trigram, so the names' trigram index cannot serve
-- it, and `lower(name) LIKE '%zq%'` read every name (120 ms at a million students) even when
-- none matched. This index holds each name's characters and pairs of adjacent characters, each
-- spelled in hex (so that FTS5's plain `ascii` tokenizer reads any character, space and
-- punctuation included, as part of a token), without positions (`detail = none`): the search
-- looks a needle of one or two characters up as one token, in each of its ASCII case variants,
-- and the LIKE still decides.
--
-- Case is kept rather than folded with lower(): lower() is SQLite's ASCII-only one here but
-- ICU's in a build that has it, and a row indexed by one and deleted by the other (the sqlite3
-- shell is a writer too) would leave the index wrong; hex() and substr() mean the same in
-- every build. Contentless (`content = ''`): the text exists only as these tokens.
CREATE TABLE students_name_positions (n INTEGER PRIMARY KEY NOT NULL);
INSERT INTO students_name_positions (n)
WITH RECURSIVE positions (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM positions WHERE n < 100)
SELECT n FROM positions;

CREATE VIRTUAL TABLE students_name_grams USING fts5(
    grams, content = '', detail = none, tokenize = 'ascii'
);

-- A name's tokens (the check on students.name bounds it to 100 characters): at each position
-- the character, and the character with the next (only the character at the last position).
CREATE VIEW students_name_grams_source (id, grams) AS
SELECT s.id, (
    SELECT group_concat(hex(substr(s.name, p.n, 1)) || ' ' || hex(substr(s.name, p.n, 2)), ' ')
    FROM students_name_positions AS p WHERE p.n <= length(s.name)
) FROM students AS s;

INSERT INTO students_name_grams (rowid, grams) SELECT id, grams FROM students_name_grams_source;

-- A contentless table forgets a row by being told its tokens again: the delete spells the same
-- expression as the view, on the old name.
CREATE TRIGGER students_name_grams_insert AFTER INSERT ON students
WHEN (SELECT active FROM students_bulk_insert) = 0
BEGIN
    INSERT INTO students_name_grams (rowid, grams)
        SELECT id, grams FROM students_name_grams_source WHERE id = new.id;
END;
CREATE TRIGGER students_name_grams_delete AFTER DELETE ON students BEGIN
    INSERT INTO students_name_grams (students_name_grams, rowid, grams) VALUES ('delete', old.id, (
        SELECT group_concat(hex(substr(old.name, p.n, 1)) || ' ' || hex(substr(old.name, p.n, 2)), ' ')
        FROM students_name_positions AS p WHERE p.n <= length(old.name)
    ));
END;
CREATE TRIGGER students_name_grams_update AFTER UPDATE OF id, name ON students BEGIN
    INSERT INTO students_name_grams (students_name_grams, rowid, grams) VALUES ('delete', old.id, (
        SELECT group_concat(hex(substr(old.name, p.n, 1)) || ' ' || hex(substr(old.name, p.n, 2)), ' ')
        FROM students_name_positions AS p WHERE p.n <= length(old.name)
    ));
    INSERT INTO students_name_grams (rowid, grams)
        SELECT id, grams FROM students_name_grams_source WHERE id = new.id;
END;
