-- A deactivated user keeps the row (and the history) but cannot sign in.
ALTER TABLE staff_users ADD COLUMN is_active BOOLEAN NOT NULL DEFAULT 1;

-- Staff sessions on the server: the cookie holds only session_key. staff_id names the
-- signed-in user, so that deleting the user (CASCADE), deactivating them or changing their
-- password can end their sessions on every instance at once.
CREATE TABLE staff_sessions (
    session_key TEXT PRIMARY KEY NOT NULL,
    staff_id INTEGER REFERENCES staff_users (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX staff_sessions_staff_id ON staff_sessions (staff_id);
CREATE INDEX staff_sessions_expires_at ON staff_sessions (expires_at);
