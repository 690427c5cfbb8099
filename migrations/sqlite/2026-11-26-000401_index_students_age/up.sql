-- Covers the average page's aggregate (SELECT age, COUNT(*) ... GROUP BY age): an index-only
-- scan of the ages, already in order, instead of reading every row of the table.
CREATE INDEX students_age ON students (age);
