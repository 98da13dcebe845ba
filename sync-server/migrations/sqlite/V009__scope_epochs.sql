
    ALTER TABLE workers ADD COLUMN scope_epoch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE scope_epochs (
        worker_id BLOB NOT NULL REFERENCES workers (id),
        epoch     INTEGER NOT NULL,
        role      TEXT NOT NULL,
        team_id   BLOB NOT NULL,
        sites     TEXT NOT NULL,   -- JSON list of a caretaker's site ids
        teams     TEXT NOT NULL,   -- JSON list of the teams a supervisor supervised
        ended_ms  INTEGER NOT NULL,
        PRIMARY KEY (worker_id, epoch)
    ) WITHOUT ROWID;
    ALTER TABLE devices ADD COLUMN scope_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN grace_epoch INTEGER;      -- the old epoch, once learned
    ALTER TABLE devices ADD COLUMN grace_until_seq INTEGER;  -- its edits up to this device_seq
    ALTER TABLE devices ADD COLUMN grace_until_ms INTEGER;   -- pushed before this server time
    