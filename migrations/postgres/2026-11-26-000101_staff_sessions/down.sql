DROP TABLE staff_sessions;
ALTER TABLE staff_users DROP COLUMN is_active;
