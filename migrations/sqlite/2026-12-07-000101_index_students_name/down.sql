DROP INDEX students_name_id;
