DROP INDEX students_created_at_id;
DROP INDEX students_age_id;
