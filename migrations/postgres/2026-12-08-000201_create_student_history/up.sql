-- Every change made to a student through the application (the staff area, the import, the
-- command line): when, by whom, and the name and age before and after ("added" has no before,
-- "deleted" no after). No foreign key: a deleted student's history stays.
CREATE TABLE student_history (
    id SERIAL PRIMARY KEY,
    student_id INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('added', 'changed', 'deleted')),
    name_before TEXT,
    name_after TEXT,
    age_before INTEGER,
    age_after INTEGER
);
CREATE INDEX student_history_by_student ON student_history (student_id, id);
