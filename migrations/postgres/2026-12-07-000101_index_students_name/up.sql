-- The public list sorted by name (?sort=name, -name): the first page is the index's first
-- rows, not a sort of the whole table. The id breaks ties, as the query does.
CREATE INDEX students_name_id ON students (name, id);
