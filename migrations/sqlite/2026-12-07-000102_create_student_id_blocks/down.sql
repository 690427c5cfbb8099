DROP TRIGGER student_id_blocks_update;
DROP TRIGGER student_id_blocks_delete;
DROP TRIGGER student_id_blocks_insert;
DROP TABLE student_id_blocks;
