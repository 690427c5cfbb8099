DROP TRIGGER student_id_blocks_truncate ON students;
DROP TRIGGER student_id_blocks_update ON students;
DROP TRIGGER student_id_blocks_delete ON students;
DROP TRIGGER student_id_blocks_insert ON students;
DROP FUNCTION student_id_blocks_truncate();
DROP FUNCTION student_id_blocks_apply();
DROP TABLE student_id_blocks;
