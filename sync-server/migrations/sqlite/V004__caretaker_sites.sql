
    CREATE TABLE caretaker_sites (
        worker_id BLOB NOT NULL REFERENCES workers (id),
        site_id   BLOB NOT NULL,
        PRIMARY KEY (worker_id, site_id)
    ) WITHOUT ROWID;
    -- The site a record belongs to: a site its own id, a site-log entry its site, a conflict
    -- the site of the record it is about. A citizen's current site is in `citizens`.
    ALTER TABLE records ADD COLUMN site_id BLOB;
    ALTER TABLE citizens ADD COLUMN site_id BLOB;
    ALTER TABLE changes ADD COLUMN site_id BLOB;
    UPDATE records SET site_id = record_id WHERE entity = 'site';
    UPDATE records SET site_id = (SELECT unhex(replace(json_extract(f.value, '$'), '-', ''))
        FROM fields f WHERE f.entity = 'site_log_entry' AND f.record_id = records.record_id
          AND f.field = 'site_id')
        WHERE entity = 'site_log_entry';
    UPDATE records SET site_id = (SELECT a.site_id FROM records a
        WHERE a.entity = (SELECT json_extract(f.value, '$') FROM fields f
                WHERE f.entity = 'conflict' AND f.record_id = records.record_id
                  AND f.field = 'entity')
          AND a.record_id = (SELECT unhex(replace(json_extract(f.value, '$'), '-', ''))
                FROM fields f WHERE f.entity = 'conflict' AND f.record_id = records.record_id
                  AND f.field = 'record_id'))
        WHERE entity = 'conflict' AND class IN ('site', 'site_log');
    UPDATE citizens SET site_id = (SELECT unhex(replace(json_extract(f.value, '$'), '-', ''))
        FROM fields f WHERE f.entity = 'citizen' AND f.record_id = citizens.citizen_id
          AND f.field = 'site_id');
    UPDATE changes SET site_id = (SELECT max(r.site_id) FROM records r
        WHERE r.entity = json_extract(changes.mutation, '$.ops[0].entity')
          AND r.record_id = unhex(replace(json_extract(changes.mutation, '$.ops[0].id'), '-', '')))
        WHERE class IN ('site', 'site_log') AND kind = 'mutation';
    -- The person at the admin command line, on administrator rows (hashed when present).
    ALTER TABLE audit ADD COLUMN operator TEXT;
    -- Teams a supervisor reads besides their own.
    CREATE TABLE supervised_teams (
        worker_id BLOB NOT NULL REFERENCES workers (id),
        team_id   BLOB NOT NULL REFERENCES teams (id),
        PRIMARY KEY (worker_id, team_id)
    ) WITHOUT ROWID;
    -- Caretakers keep what they saw: every site of their team.
    INSERT INTO caretaker_sites (worker_id, site_id)
        SELECT w.id, r.record_id FROM workers w
        JOIN records r ON r.entity = 'site' AND r.team_id = w.team_id
        WHERE w.role = 'caretaker';
    