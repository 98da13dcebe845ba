
    ALTER TABLE devices ADD COLUMN standing_hash BLOB;
    CREATE UNIQUE INDEX devices_by_standing ON devices (standing_hash);
    