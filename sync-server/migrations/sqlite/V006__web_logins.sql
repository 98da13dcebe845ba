
    CREATE TABLE web_logins (
        worker_id        BLOB PRIMARY KEY REFERENCES workers (id),
        login            TEXT NOT NULL UNIQUE,  -- the name typed at sign-in
        password_hash    TEXT,                  -- Argon2id, PHC string; NULL until set up
        setup_hash       BLOB UNIQUE,           -- SHA-256 of the one-time set-up code
        setup_expires_ms INTEGER,
        failures         INTEGER NOT NULL DEFAULT 0, -- failed sign-ins since the last success
        locked_until_ms  INTEGER                -- no sign-in before this (back-off, lock-out)
    ) WITHOUT ROWID;
    CREATE TABLE web_sessions (
        token_hash  BLOB PRIMARY KEY,           -- SHA-256 of the session cookie's value
        worker_id   BLOB NOT NULL REFERENCES workers (id),
        csrf        TEXT NOT NULL,              -- sent back in X-CSRF-Token on every change
        created_ms  INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_by_worker ON web_sessions (worker_id);
    ALTER TABLE audit ADD COLUMN detail TEXT;  -- a report view: which report and filter (JSON)
    