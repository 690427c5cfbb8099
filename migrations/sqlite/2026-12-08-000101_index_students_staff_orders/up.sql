-- The staff list and its export sorted by age or by when students were added, and its age
-- range: a page is the index's next rows, not a sort of the table. SQLite's index ends with
-- the rowid (the id), so the id that breaks ties is in it already.
CREATE INDEX students_age_id ON students (age);
CREATE INDEX students_created_at ON students (created_at);
