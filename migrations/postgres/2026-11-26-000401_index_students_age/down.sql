DROP INDEX students_age;
