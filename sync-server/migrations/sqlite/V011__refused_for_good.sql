
    CREATE TABLE refused (
        device_id  BLOB NOT NULL,
        device_seq INTEGER NOT NULL,
        reason     TEXT NOT NULL,   -- RejectReason, snake_case
        detail     TEXT NOT NULL,   -- never a field value
        PRIMARY KEY (device_id, device_seq)
    ) WITHOUT ROWID;
    