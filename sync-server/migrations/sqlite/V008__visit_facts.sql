
    -- Kept in team and time order, so a report reads its rows in one range of the table.
    CREATE TABLE report_visits (
        team_id    BLOB NOT NULL,
        started_ms INTEGER NOT NULL,
        visit_id   BLOB NOT NULL UNIQUE,
        citizen_id BLOB,
        anonymous  INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        themes     TEXT NOT NULL,   -- JSON list
        referrals  TEXT NOT NULL,   -- JSON list
        author     BLOB,
        wellbeing  INTEGER,
        PRIMARY KEY (team_id, started_ms, visit_id)
    ) WITHOUT ROWID;
    ALTER TABLE server_state ADD COLUMN report_seq INTEGER NOT NULL DEFAULT 0;
    