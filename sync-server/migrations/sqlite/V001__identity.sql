
    CREATE TABLE teams (
        id         BLOB PRIMARY KEY,
        name       TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE workers (
        id      BLOB PRIMARY KEY,
        team_id BLOB NOT NULL REFERENCES teams (id),
        name    TEXT NOT NULL,
        role    TEXT NOT NULL,
        active  INTEGER NOT NULL DEFAULT 1
    ) WITHOUT ROWID;
    CREATE TABLE enrolment_codes (
        code_hash  BLOB PRIMARY KEY,       -- SHA-256 of the code; the code itself is never stored
        worker_id  BLOB NOT NULL REFERENCES workers (id),
        expires_ms INTEGER NOT NULL,
        used_ms    INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        id          BLOB PRIMARY KEY,
        worker_id   BLOB NOT NULL REFERENCES workers (id),
        token_hash  BLOB NOT NULL UNIQUE,  -- SHA-256 of the 256-bit bearer token
        active      INTEGER NOT NULL DEFAULT 1,
        enrolled_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Idempotence: a (device, seq) pair is applied at most once.
    CREATE TABLE applied (
        device_id  BLOB NOT NULL,
        device_seq INTEGER NOT NULL,
        PRIMARY KEY (device_id, device_seq)
    ) WITHOUT ROWID;
    -- Which team a record belongs to (set by its first writer).
    CREATE TABLE records (
        entity    TEXT NOT NULL,
        record_id BLOB NOT NULL,
        team_id   BLOB NOT NULL,
        PRIMARY KEY (entity, record_id)
    ) WITHOUT ROWID;
    -- The merged state of every field: the register's value and stamp, or a set's state.
    CREATE TABLE fields (
        entity    TEXT NOT NULL,
        record_id BLOB NOT NULL,
        field     TEXT NOT NULL,
        value     TEXT NOT NULL,           -- JSON
        hlc       INTEGER NOT NULL,
        device    BLOB NOT NULL,
        set_state TEXT,                    -- JSON OrSet for add-wins set fields
        PRIMARY KEY (entity, record_id, field)
    ) WITHOUT ROWID;
    -- The change log devices pull from, in commit order. One row is one whole mutation.
    CREATE TABLE changes (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        team_id   BLOB NOT NULL,
        device_id BLOB NOT NULL,
        echo      INTEGER NOT NULL DEFAULT 0, -- 1: the server altered it; send it to its author too
        mutation  TEXT NOT NULL            -- JSON Mutation, as applied
    );
    CREATE INDEX changes_by_team ON changes (team_id, seq);
    CREATE TABLE server_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        hlc_last   INTEGER NOT NULL,
        server_seq INTEGER NOT NULL        -- device_seq of mutations the server writes itself
    );
    INSERT INTO server_state (id, hlc_last, server_seq) VALUES (1, 0, 0);
    