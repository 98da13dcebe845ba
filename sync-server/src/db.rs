//! The server's SQLite database: numbered migrations and connection settings.
//!
//! Append-only migrations, like the device store's. The server holds the municipality's copy of
//! every record in the clear (supervisors' reports read it); protect the data directory with
//! disk encryption and file permissions.

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

const MIGRATIONS: &[&str] = &[
    // 1: identity, the merged field state, the change log.
    r#"
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
    "#,
    // 2: what each applied mutation was, so a replay that differs (a device re-stamped it after
    // an older copy got through) is answered with the version that was applied.
    r#"
    ALTER TABLE applied ADD COLUMN digest BLOB;        -- SHA-256 of the mutation as received
    ALTER TABLE applied ADD COLUMN change_seq INTEGER; -- its row in the change log
    ALTER TABLE changes ADD COLUMN copy_of INTEGER;    -- a re-sent copy of that row
    "#,
    // 3: access control (DESIGN §6): what each record is about, each citizen's scope, erasure
    // rows in the change log, revocation and rotation, the hash-chained audit trail.
    r#"
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
    "#,
    // 4: caretakers see the sites they are assigned to (their logs and residents), not every
    // site of their team; supervisors may read more teams than their own.
    r#"
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
    "#,
    // 5: a citizen's goals merge goal by goal (core's `schema::item_fields`): each goal stored
    // as its own field `goals__<id as 32 hex>`, under the stamp of the list it came from.
    r#"
    INSERT OR IGNORE INTO fields (entity, record_id, field, value, hlc, device, set_state)
        SELECT f.entity, f.record_id,
               'goals__' || lower(replace(json_extract(g.value, '$.id'), '-', '')),
               g.value, f.hlc, f.device, NULL
        FROM fields f, json_each(f.value) g
        WHERE f.entity = 'citizen' AND f.field = 'goals' AND json_valid(f.value)
          AND json_type(f.value) = 'array';
    DELETE FROM fields WHERE entity = 'citizen' AND field = 'goals';
    "#,
    // 6: supervisors sign in to the reports dashboard with a password (issue 15), and the
    // audit trail says which report and filter a view or export was.
    r#"
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
    "#,
    // 7: reports read one team's records of a kind; without this each read scanned the fields
    // of every record of that kind (`cargo bench -p feltbog-server --bench reports`).
    r#"
    CREATE INDEX records_by_team ON records (entity, team_id);
    "#,
    // 8: one compact row per countable visit for reports (`reports::refresh` keeps it up to the
    // change log; `report_seq` is the last change it has read).
    r#"
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
    "#,
    // 9: a change of a worker's scope (role, team, sites, supervised teams) no longer revokes
    // their devices (issue 16; `epochs.rs`). It ends a scope epoch, whose scope is kept so the
    // edits a device made before it learned of the change are judged under it; each device
    // remembers the epoch it knows and, after learning, for which of its edits the old one holds.
    r#"
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
    "#,
    // 10: the lock-state credential (issue 16, `identity::check_standing`): a second secret per
    // device that learns "revoked" and nothing else, so a locked tablet can wipe itself.
    r#"
    ALTER TABLE devices ADD COLUMN standing_hash BLOB;
    CREATE UNIQUE INDEX devices_by_standing ON devices (standing_hash);
    "#,
    // 11: a mutation refused for good stays refused (issue 16): since a record can leave a
    // writer's scope and come back, a late copy of a refused push must get the same answer, not
    // land after the device set the edit aside.
    r#"
    CREATE TABLE refused (
        device_id  BLOB NOT NULL,
        device_seq INTEGER NOT NULL,
        reason     TEXT NOT NULL,   -- RejectReason, snake_case
        detail     TEXT NOT NULL,   -- never a field value
        PRIMARY KEY (device_id, device_seq)
    ) WITHOUT ROWID;
    "#,
    // 12: consent per purpose (issue 17). A citizen's single consent becomes the consent for
    // one purpose, `recording`, stored as the item `consents__<the citizen's id>` under the
    // stamp it had: the item core's `schema::upcast_legacy` reads a device's old cell as, so
    // devices and server agree without a sync. Its `scope` words are kept.
    r#"
    INSERT OR IGNORE INTO fields (entity, record_id, field, value, hlc, device, set_state)
        SELECT f.entity, f.record_id,
               'consents__' || lower(hex(f.record_id)),
               json_object(
                   'id', lower(substr(hex(f.record_id), 1, 8) || '-' || substr(hex(f.record_id), 9, 4)
                       || '-' || substr(hex(f.record_id), 13, 4) || '-'
                       || substr(hex(f.record_id), 17, 4) || '-' || substr(hex(f.record_id), 21, 12)),
                   'purpose', 'recording',
                   'status', json_extract(f.value, '$.status'),
                   'date', json_extract(f.value, '$.date'),
                   'method', json_extract(f.value, '$.method'),
                   'recorded_by', json_extract(f.value, '$.recorded_by'),
                   'scope', json_extract(f.value, '$.scope')),
               f.hlc, f.device, NULL
        FROM fields f
        WHERE f.entity = 'citizen' AND f.field = 'consent' AND json_valid(f.value)
          AND json_type(f.value) = 'object';
    DELETE FROM fields WHERE entity = 'citizen' AND field = 'consent';
    "#,
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Database errors at the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database has schema version {found}, newer than this server supports ({supported})"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens (creating if needed) the database in `data_dir` and migrates it.
pub fn open(data_dir: &Path) -> Result<Connection, DbError> {
    std::fs::create_dir_all(data_dir)?;
    let mut conn = Connection::open(data_dir.join("feltbog-server.sqlite"))?;
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    // secure_delete: purged content is overwritten, not left in free pages.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // The sync transaction runs a few dozen distinct statements per mutation (they are all
    // `prepare_cached`); the default cache of 16 would parse most of them again each time.
    conn.set_prepared_statement_cache_capacity(64);
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > LATEST {
        return Err(DbError::NewerSchema {
            found,
            supported: LATEST,
        });
    }
    for v in found..LATEST {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[v as usize])?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
        tracing::info!(from = v, to = v + 1, "server database migrated");
    }
    tracing::debug!(schema = LATEST, "server database open");
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    /// A database in `dir` migrated to `version` only, as an older server left it.
    fn at_version(dir: &std::path::Path, version: usize) -> Connection {
        let mut conn = Connection::open(dir.join("feltbog-server.sqlite")).unwrap();
        for (v, sql) in MIGRATIONS[..version].iter().enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", v as u32 + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        conn
    }

    #[test]
    fn a_version_3_database_migrates_with_sites_filled_in_and_caretakers_keeping_their_sites() {
        let dir = tempfile::tempdir().unwrap();
        let (team, caretaker, site, log, resident, conflict) = (
            [1u8; 16],
            [0xau8; 16],
            [4u8; 16],
            [5u8; 16],
            [6u8; 16],
            [7u8; 16],
        );
        {
            let conn = at_version(dir.path(), 3);
            let uuid = |b: [u8; 16]| format!("\"{}\"", uuid::Uuid::from_bytes(b));
            conn.execute("INSERT INTO teams VALUES (?1, 'Nord', 0)", [&team[..]])
                .unwrap();
            conn.execute(
                "INSERT INTO workers (id, team_id, name, role) VALUES (?1, ?2, 'K', 'caretaker')",
                params![&caretaker[..], &team[..]],
            )
            .unwrap();
            for (entity, id, class, citizen) in [
                ("site", site, "site", None),
                ("site_log_entry", log, "site_log", None),
                ("citizen", resident, "citizen", Some(resident)),
                ("conflict", conflict, "site_log", None),
            ] {
                conn.execute(
                    "INSERT INTO records (entity, record_id, team_id, class, citizen_id)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        entity,
                        &id[..],
                        &team[..],
                        class,
                        citizen.map(|c| c.to_vec())
                    ],
                )
                .unwrap();
                conn.execute(
                    "INSERT INTO changes (team_id, device_id, mutation, class, citizen_id)
                     VALUES (?1, x'00', ?2, ?3, ?4)",
                    params![
                        &team[..],
                        format!(r#"{{"ops":[{{"entity":"{entity}","id":{}}}]}}"#, uuid(id)),
                        class,
                        citizen.map(|c| c.to_vec())
                    ],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO citizens (citizen_id, team_id, resident) VALUES (?1, ?2, 1)",
                params![&resident[..], &team[..]],
            )
            .unwrap();
            let field = |entity: &str, id: [u8; 16], field: &str, value: String| {
                conn.execute(
                    "INSERT INTO fields (entity, record_id, field, value, hlc, device)
                     VALUES (?1, ?2, ?3, ?4, 1, x'00')",
                    params![entity, &id[..], field, value],
                )
                .unwrap();
            };
            field("site_log_entry", log, "site_id", uuid(site));
            field("citizen", resident, "site_id", uuid(site));
            // A conflict over the log entry: placed at the entry's site.
            field("conflict", conflict, "entity", "\"site_log_entry\"".into());
            field("conflict", conflict, "record_id", uuid(log));
        }
        let conn = open(dir.path()).unwrap();
        let sites_of = |sql: &str| -> Vec<Option<Vec<u8>>> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let at = Some(site.to_vec());
        assert_eq!(
            sites_of("SELECT site_id FROM records ORDER BY entity"),
            vec![None, at.clone(), at.clone(), at.clone()],
            "citizen (by `citizens`), conflict, site, site log"
        );
        assert_eq!(sites_of("SELECT site_id FROM citizens"), vec![at.clone()]);
        assert_eq!(
            sites_of("SELECT site_id FROM changes ORDER BY seq"),
            vec![at.clone(), at.clone(), None, at.clone()]
        );
        assert_eq!(
            sites_of("SELECT site_id FROM caretaker_sites"),
            vec![at],
            "the caretaker keeps the team's site"
        );
    }

    #[test]
    fn a_version_2_database_migrates_with_scopes_filled_in_and_overbroad_devices_revoked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = at_version(dir.path(), 2);
            let (team, citizen, visit) = ([1u8; 16], [2u8; 16], [3u8; 16]);
            let uuid = |b: [u8; 16]| format!("\"{}\"", uuid::Uuid::from_bytes(b));
            conn.execute_batch(&format!(
                "INSERT INTO teams VALUES (x'{t}', 'Nord', 0);
                 INSERT INTO workers (id, team_id, name, role) VALUES
                     (x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', x'{t}', 'K', 'caretaker'),
                     (x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', x'{t}', 'O', 'outreach');
                 INSERT INTO devices (id, worker_id, token_hash, enrolled_ms) VALUES
                     (x'0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c', x'0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', x'01', 0),
                     (x'0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d', x'0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', x'02', 0);
                 INSERT INTO records (entity, record_id, team_id) VALUES
                     ('citizen', x'{c}', x'{t}'), ('visit', x'{v}', x'{t}');",
                t = "01".repeat(16),
                c = "02".repeat(16),
                v = "03".repeat(16),
            ))
            .unwrap();
            let field = |entity: &str, id: [u8; 16], field: &str, value: &str| {
                conn.execute(
                    "INSERT INTO fields (entity, record_id, field, value, hlc, device)
                     VALUES (?1, ?2, ?3, ?4, 1, x'00')",
                    params![entity, &id[..], field, value],
                )
                .unwrap();
            };
            field("citizen", citizen, "site_id", &uuid([9; 16]));
            field("citizen", citizen, "archived", "true");
            field("visit", visit, "citizen_id", &uuid(citizen));
            for (entity, id) in [("citizen", citizen), ("visit", visit)] {
                conn.execute(
                    "INSERT INTO changes (team_id, device_id, mutation) VALUES (?1, x'00', ?2)",
                    params![
                        &team[..],
                        format!(r#"{{"ops":[{{"entity":"{entity}","id":{}}}]}}"#, uuid(id))
                    ],
                )
                .unwrap();
            }
        }
        let conn = open(dir.path()).unwrap();
        let (resident, closed): (bool, Option<i64>) = conn
            .query_row(
                "SELECT resident, closed_ms FROM citizens WHERE citizen_id = ?1",
                [&[2u8; 16][..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(
            resident && closed.is_some(),
            "resident and closed carried over"
        );
        let classes: Vec<(String, Option<Vec<u8>>)> = conn
            .prepare("SELECT class, citizen_id FROM changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            classes,
            vec![
                ("citizen".to_owned(), Some(vec![2u8; 16])),
                ("case".to_owned(), Some(vec![2u8; 16]))
            ]
        );
        let active: Vec<bool> = conn
            .prepare("SELECT active FROM devices ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            active,
            vec![false, true],
            "the caretaker's device re-enrols"
        );
    }

    /// Server migrations are append-only (`feltbog_core::migration_lock`): `migrations.lock`
    /// holds the SHA-256 of each one's text.
    #[test]
    fn applied_server_migrations_never_change() {
        let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations.lock");
        feltbog_core::migration_lock::check(&lock, MIGRATIONS).unwrap();
    }

    #[test]
    fn a_version_11_database_migrates_with_the_single_consent_as_the_consent_for_one_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let citizen = uuid::Uuid::now_v7();
        let other = uuid::Uuid::now_v7();
        let worker = uuid::Uuid::now_v7();
        let consent = serde_json::json!({"status": "given", "date": "2026-03-04",
            "scope": "deling med jobcentret", "method": "written", "recorded_by": worker});
        {
            let conn = at_version(dir.path(), 11);
            for (id, field, value) in [
                (citizen, "consent", consent.to_string()),
                (citizen, "alias", "\"Fisk\"".to_owned()),
                (other, "consent", "null".to_owned()),
            ] {
                conn.execute(
                    "INSERT INTO fields (entity, record_id, field, value, hlc, device)
                     VALUES ('citizen', ?1, ?2, ?3, 77, ?4)",
                    params![&id.as_bytes()[..], field, value, &[9u8; 16][..]],
                )
                .unwrap();
            }
        }
        let conn = open(dir.path()).unwrap();
        type FieldRow = (Vec<u8>, String, String, i64, Vec<u8>);
        let rows: Vec<FieldRow> = conn
            .prepare(
                "SELECT record_id, field, value, hlc, device FROM fields ORDER BY record_id, field",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let fields: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let item = format!("consents__{}", citizen.simple());
        assert_eq!(fields, ["alias", item.as_str()], "every other field kept");
        let (_, _, value, hlc, device) = &rows[1];
        let value: serde_json::Value = serde_json::from_str(value).unwrap();
        // The very item a device derives from its own copy of the consent, stamp and all.
        let legacy: feltbog_core::domain::Consent =
            serde_json::from_value(consent.clone()).unwrap();
        let expected = feltbog_core::domain::pathway::legacy_consent(
            feltbog_core::domain::CitizenId(citizen),
            &legacy,
        );
        assert_eq!(value, serde_json::to_value(&expected).unwrap());
        assert_eq!(
            feltbog_core::domain::schema::upcast_legacy(
                feltbog_core::domain::EntityKind::Citizen,
                citizen,
                "consent",
                &consent
            ),
            Some((item.clone(), value.clone()))
        );
        assert_eq!((*hlc, device.as_slice()), (77, &[9u8; 16][..]));
        assert_eq!(value["purpose"], "recording");
        assert_eq!(value["scope"], "deling med jobcentret");
    }

    #[test]
    fn a_version_4_database_migrates_with_each_goal_in_its_own_field() {
        let dir = tempfile::tempdir().unwrap();
        let citizen = [6u8; 16];
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let goal = |id: uuid::Uuid, text: &str| serde_json::json!({"id": id, "text": text, "status": "active", "created": "2026-12-01"});
        {
            let conn = at_version(dir.path(), 4);
            let list = serde_json::json!([goal(a, "bolig"), goal(b, "job")]).to_string();
            conn.execute(
                "INSERT INTO fields (entity, record_id, field, value, hlc, device)
                 VALUES ('citizen', ?1, 'goals', ?2, 77, ?3)",
                params![&citizen[..], list, &[9u8; 16][..]],
            )
            .unwrap();
        }
        let conn = open(dir.path()).unwrap();
        let mut rows: Vec<(String, String, i64)> = conn
            .prepare("SELECT field, value, hlc FROM fields WHERE record_id = ?1 ORDER BY field")
            .unwrap()
            .query_map([&citizen[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        let mut expected = vec![
            (format!("goals__{}", a.simple()), goal(a, "bolig"), 77),
            (format!("goals__{}", b.simple()), goal(b, "job"), 77),
        ];
        expected.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            rows.len(),
            2,
            "the whole list is gone, each goal has its field"
        );
        for ((field, value, hlc), (want_field, want_value, want_hlc)) in rows.iter().zip(&expected)
        {
            assert_eq!(field, want_field);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(value).unwrap(),
                *want_value
            );
            assert_eq!(hlc, want_hlc, "each goal keeps the list's stamp");
        }
    }
}
