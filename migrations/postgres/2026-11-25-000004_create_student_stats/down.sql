DROP TABLE student_stats;
