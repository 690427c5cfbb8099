-- The staff list and its export sorted by age or by when students were added, and its age
-- range: the id that breaks ties is in the index, so a page is the index's next rows, with no
-- sort of the hundred thousand students who may share an age.
CREATE INDEX students_age_id ON students (age, id);
CREATE INDEX students_created_at_id ON students (created_at, id);
