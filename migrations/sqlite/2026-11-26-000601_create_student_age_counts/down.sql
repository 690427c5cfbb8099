CREATE INDEX students_age ON students (age);
DROP TRIGGER student_age_counts_update;
DROP TRIGGER student_age_counts_delete;
DROP TRIGGER student_age_counts_insert;
DROP TABLE student_age_counts;
