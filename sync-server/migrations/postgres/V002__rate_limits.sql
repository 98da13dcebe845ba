-- SQLite's migration 13: rate limits every instance shares.
CREATE TABLE rate_limits (
    kind       text COLLATE "C" NOT NULL,
    key        bytea NOT NULL,
    full_at_us bigint NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX rate_limits_by_time ON rate_limits (full_at_us);
