ALTER TABLE staff_users DROP COLUMN is_superuser;
