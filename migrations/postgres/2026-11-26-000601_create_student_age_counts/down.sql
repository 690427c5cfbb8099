CREATE INDEX students_age ON students (age);
DROP TRIGGER student_age_counts_truncate ON students;
DROP TRIGGER student_age_counts_update ON students;
DROP TRIGGER student_age_counts_delete ON students;
DROP TRIGGER student_age_counts_insert ON students;
DROP FUNCTION student_age_counts_truncate();
DROP FUNCTION student_age_counts_apply();
DROP TABLE student_age_counts;
