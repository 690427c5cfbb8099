-- A superuser also manages staff users (/admin/staff). Nobody is one until `create-staff
-- --superuser` or `staff promote` says so.
ALTER TABLE staff_users ADD COLUMN is_superuser BOOLEAN NOT NULL DEFAULT 0;
