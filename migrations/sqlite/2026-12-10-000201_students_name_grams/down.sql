DROP TRIGGER students_name_grams_update;
DROP TRIGGER students_name_grams_delete;
DROP TRIGGER students_name_grams_insert;
DROP VIEW students_name_grams_source;
DROP TABLE students_name_grams;
DROP TABLE students_name_positions;
