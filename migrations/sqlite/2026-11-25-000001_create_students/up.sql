CREATE TABLE students (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    -- SQLite's length() counts characters, as the form validation does.
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    age INTEGER NOT NULL CHECK (age BETWEEN 0 AND 150),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
