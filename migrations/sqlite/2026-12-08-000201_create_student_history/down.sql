DROP TABLE student_history;
