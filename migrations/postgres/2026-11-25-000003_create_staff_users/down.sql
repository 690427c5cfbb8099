DROP TABLE login_failures;
DROP TABLE staff_users;
