DROP TRIGGER student_stats_truncate ON students;
DROP TRIGGER student_stats_update_id ON students;
DROP FUNCTION student_stats_reshape();
DROP TRIGGER student_stats_delete ON students;
DROP TRIGGER student_stats_insert ON students;
DROP FUNCTION student_stats_apply();
DROP TRIGGER cache_generation_mark ON students;
DROP FUNCTION cache_generation_mark();
