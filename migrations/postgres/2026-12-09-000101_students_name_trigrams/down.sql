-- The extension stays: other tables may use it.
DROP INDEX IF EXISTS students_name_trigram;
