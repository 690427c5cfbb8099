DROP INDEX students_name_lower_id;
CREATE INDEX students_name_id ON students (name, id);
