
    -- A record's scope class: citizen | case (about a citizen) | anon (team work without a
    -- citizen) | site | site_log | conflict rows take the class of the record they are about.
    ALTER TABLE records ADD COLUMN class TEXT NOT NULL DEFAULT 'anon';
    ALTER TABLE records ADD COLUMN citizen_id BLOB;
    -- Each citizen's scope now. Rows of the change log about a citizen are served by this, not
    -- by the team they were written in, so a moved citizen's history follows them.
    CREATE TABLE citizens (
        citizen_id  BLOB PRIMARY KEY,
        team_id     BLOB NOT NULL REFERENCES teams (id),
        resident    INTEGER NOT NULL DEFAULT 0,  -- has a site: the team's caretakers see them
        closed_ms   INTEGER,                     -- archived (case closed) since
        off_devices INTEGER NOT NULL DEFAULT 0,  -- closed past the device retention: erased
        purged_ms   INTEGER                      -- content removed; only the id remains
    ) WITHOUT ROWID;
    ALTER TABLE changes ADD COLUMN class TEXT NOT NULL DEFAULT 'anon';
    ALTER TABLE changes ADD COLUMN citizen_id BLOB;
    -- kind: 'mutation' (a mutation, or with `roles` set a copy delivered to those roles of the
    -- team after a citizen entered their scope) | 'erase' (those roles must erase the citizen).
    ALTER TABLE changes ADD COLUMN kind TEXT NOT NULL DEFAULT 'mutation';
    ALTER TABLE changes ADD COLUMN roles INTEGER;
    CREATE INDEX changes_by_citizen ON changes (citizen_id, seq);
    -- Backfill from what version 2 stored.
    UPDATE records SET class = CASE entity WHEN 'citizen' THEN 'citizen' WHEN 'site' THEN 'site'
        WHEN 'site_log_entry' THEN 'site_log' ELSE 'anon' END;
    UPDATE records SET citizen_id = record_id WHERE entity = 'citizen';
    UPDATE records SET citizen_id = (SELECT unhex(replace(json_extract(f.value, '$'), '-', ''))
        FROM fields f WHERE f.entity = records.entity AND f.record_id = records.record_id
          AND f.field = 'citizen_id')
        WHERE entity IN ('visit', 'task', 'conflict');
    UPDATE records SET class = 'case' WHERE entity IN ('visit', 'task', 'conflict')
        AND citizen_id IS NOT NULL;
    INSERT INTO citizens (citizen_id, team_id, resident, closed_ms)
        SELECT r.record_id, r.team_id,
               coalesce((SELECT f.value != 'null' FROM fields f WHERE f.entity = 'citizen'
                   AND f.record_id = r.record_id AND f.field = 'site_id'), 0),
               (SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000 FROM fields f
                   WHERE f.entity = 'citizen' AND f.record_id = r.record_id
                   AND f.field = 'archived' AND f.value = 'true')
        FROM records r WHERE r.entity = 'citizen';
    UPDATE changes SET (class, citizen_id) = (SELECT coalesce(max(r.class), 'anon'),
        max(r.citizen_id) FROM records r
        WHERE r.entity = json_extract(changes.mutation, '$.ops[0].entity')
          AND r.record_id = unhex(replace(json_extract(changes.mutation, '$.ops[0].id'), '-', '')));
    ALTER TABLE devices ADD COLUMN revoked_ms INTEGER;
    -- Rotation: the new token's hash, until the device first uses it (then it replaces
    -- token_hash). A lost answer to a rotation thus never locks a device out.
    ALTER TABLE devices ADD COLUMN next_token_hash BLOB;
    CREATE UNIQUE INDEX devices_next_token ON devices (next_token_hash);
    -- Before version 3 every device received its whole team. Devices of roles that may now see
    -- less (caretakers, administrators) hold more than their scope: they enrol again.
    UPDATE devices SET active = 0, revoked_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000
        WHERE active = 1
          AND worker_id IN (SELECT id FROM workers WHERE role IN ('caretaker', 'admin'));
    ALTER TABLE workers ADD COLUMN disabled_ms INTEGER;
    -- Append-only, hash-chained: every read and write of citizen data. Never values.
    CREATE TABLE audit (
        seq          INTEGER PRIMARY KEY,
        at_ms        INTEGER NOT NULL,           -- server clock, UTC
        actor        TEXT NOT NULL,              -- device | admin | server
        worker_id    BLOB,
        device_id    BLOB,
        action       TEXT NOT NULL,              -- read | write | denied | device_read | move | erase | purge | ...
        entity       TEXT,
        record_id    BLOB,
        citizen_id   BLOB,
        device_at_ms INTEGER,                    -- device_read: the device's clock
        prev_hash    BLOB NOT NULL,
        hash         BLOB NOT NULL
    );
    CREATE INDEX audit_by_citizen ON audit (citizen_id, seq);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    -- The head of the chain, so deleting the newest rows is detected too.
    ALTER TABLE server_state ADD COLUMN audit_head BLOB;
    ALTER TABLE server_state ADD COLUMN audit_seq INTEGER NOT NULL DEFAULT 0;
    