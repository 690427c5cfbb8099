DROP INDEX students_created_at;
DROP INDEX students_age_id;
