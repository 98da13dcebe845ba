
    -- Rate limits every instance shares (issue 18): one GCRA bucket per kind of key and key,
    -- kept as the instant (µs since the epoch) it is full again.
    CREATE TABLE rate_limits (
        kind       TEXT NOT NULL,
        key        BLOB NOT NULL,
        full_at_us INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX rate_limits_by_time ON rate_limits (full_at_us);
    
