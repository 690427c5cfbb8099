DROP INDEX students_name_letters;
