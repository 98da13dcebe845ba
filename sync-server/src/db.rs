//! The server's SQLite database: numbered migrations and connection settings.
//!
//! Append-only migrations, like the device store's, one SQL file each under
//! `migrations/sqlite/`, run by refinery, which records each applied migration with a checksum
//! in `refinery_schema_history` and refuses a database whose applied migrations differ from
//! this build's (an edited migration, or a newer server's). `PRAGMA user_version` still says
//! the schema version, for older servers that read only that: a database they did not migrate
//! with refinery is adopted on first open (`adopt`). The server holds the municipality's copy of
//! every record in the clear (supervisors' reports read it); protect the data directory with
//! disk encryption and file permissions.

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// One migration file under `migrations/sqlite/`: its name and its SQL.
macro_rules! migration {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
        )
    };
}

/// The server's SQLite migrations in order, as refinery names them (`V<n>__<what>`, fixed once
/// committed: the name is part of the checksum a database records) with their SQL, one file
/// each under `migrations/sqlite/`. Append-only: `migrations/sqlite.lock` pins every file's text.
const MIGRATIONS: &[(&str, &str)] = &[
    // 1: identity, the merged field state, the change log.
    migration!("V001__identity"),
    // 2: what each applied mutation was, so a replay that differs (a device re-stamped it after
    // an older copy got through) is answered with the version that was applied.
    migration!("V002__applied_digests"),
    // 3: access control (DESIGN §6): what each record is about, each citizen's scope, erasure
    // rows in the change log, revocation and rotation, the hash-chained audit trail.
    migration!("V003__access_control"),
    // 4: caretakers see the sites they are assigned to (their logs and residents), not every
    // site of their team; supervisors may read more teams than their own.
    migration!("V004__caretaker_sites"),
    // 5: a citizen's goals merge goal by goal (core's `schema::item_fields`): each goal stored
    // as its own field `goals__<id as 32 hex>`, under the stamp of the list it came from.
    migration!("V005__goals_per_field"),
    // 6: supervisors sign in to the reports dashboard with a password (issue 15), and the
    // audit trail says which report and filter a view or export was.
    migration!("V006__web_logins"),
    // 7: reports read one team's records of a kind; without this each read scanned the fields
    // of every record of that kind (`cargo bench -p feltbog-server --bench reports`).
    migration!("V007__reports_index"),
    // 8: one compact row per countable visit for reports (`reports::refresh` keeps it up to the
    // change log; `report_seq` is the last change it has read).
    migration!("V008__visit_facts"),
    // 9: a change of a worker's scope (role, team, sites, supervised teams) no longer revokes
    // their devices (issue 16; `epochs.rs`). It ends a scope epoch, whose scope is kept so the
    // edits a device made before it learned of the change are judged under it; each device
    // remembers the epoch it knows and, after learning, for which of its edits the old one holds.
    migration!("V009__scope_epochs"),
    // 10: the lock-state credential (issue 16, `identity::check_standing`): a second secret per
    // device that learns "revoked" and nothing else, so a locked tablet can wipe itself.
    migration!("V010__standing_tokens"),
    // 11: a mutation refused for good stays refused (issue 16): since a record can leave a
    // writer's scope and come back, a late copy of a refused push must get the same answer, not
    // land after the device set the edit aside.
    migration!("V011__refused_for_good"),
    // 12: consent per purpose (issue 17). A citizen's single consent becomes the consent for
    // one purpose, `recording`, stored as the item `consents__<the citizen's id>` under the
    // stamp it had: the item core's `schema::upcast_legacy` reads a device's old cell as, so
    // devices and server agree without a sync. Its `scope` words are kept.
    migration!("V012__consent_per_purpose"),
    // 13: rate limits every instance shares (issue 18, `rate::Shared`): on PostgreSQL several
    // instances answer one client, and each limiting on its own would multiply the limit.
    migration!("V013__rate_limits"),
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The server's PostgreSQL migrations in order, one file each under `migrations/postgres/`:
/// the same schema as SQLite's, table for table and column for column (the parity test in
/// `tests/postgres_schema.rs`). Append-only: `migrations/postgres.lock` pins every file's text.
pub const POSTGRES_MIGRATIONS: &[(&str, &str)] = &[
    // 1: the schema SQLite reaches with its migrations 1-12.
    (
        "V001__schema",
        include_str!("../migrations/postgres/V001__schema.sql"),
    ),
    // 2: SQLite's 13, rate limits every instance shares.
    (
        "V002__rate_limits",
        include_str!("../migrations/postgres/V002__rate_limits.sql"),
    ),
];

/// The advisory lock key instances migrate under ("feltbog" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_656c_7462_6f67;

/// The advisory lock every writing transaction on PostgreSQL takes first ("writers" in
/// ASCII): writers commit one at a time, so the change log's sequence numbers are in commit
/// order and a device's cursor never passes a change still being written (docs/storage.md).
pub const WRITERS_LOCK: i64 = 0x0077_7269_7465_7273;

/// refinery's runner with this server's rules: pending migrations run in one transaction with
/// their history rows (a crash leaves none or all of them applied), and a database whose
/// applied migrations differ from this build's (an edited migration, or a newer server's) is
/// refused.
fn runner(migrations: &[refinery_core::Migration]) -> refinery_core::Runner {
    refinery_core::Runner::new(migrations)
        .set_grouped(true)
        .set_abort_divergent(true)
        .set_abort_missing(true)
}

/// Migrates the PostgreSQL database `client` is connected to (in its `search_path` schema),
/// with the same refinery checks as SQLite's: an applied migration that differs from this
/// build's, or one this build does not know, is refused.
pub fn migrate_postgres(client: &mut postgres::Client) -> Result<(), DbError> {
    let migrations = migrations(POSTGRES_MIGRATIONS)?;
    let pg = |e: postgres::Error| DbError::Migration(e.to_string());
    // Several instances may start at once: one migrates, the others wait and find it done.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    let report = runner(&migrations).run(client);
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    let report = report.map_err(|e| DbError::Migration(e.to_string()))?;
    for m in report.applied_migrations() {
        tracing::info!(to = m.version(), "postgres database migrated");
    }
    Ok(())
}

/// Database errors at the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(
        "the database has schema version {found}, newer than this server supports ({supported})"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
    /// `--database-url` is not a database this server can open (the text is not repeated: it
    /// may hold a password).
    #[error("{0}")]
    Location(&'static str),
    /// A migration failed, or the database's applied migrations are not this build's.
    #[error("migration: {0}")]
    Migration(String),
}

/// A list of migrations as refinery runs them.
fn migrations(list: &[(&str, &str)]) -> Result<Vec<refinery_core::Migration>, DbError> {
    list.iter()
        .map(|(name, sql)| {
            refinery_core::Migration::unapplied(name, sql)
                .map_err(|e| DbError::Migration(e.to_string()))
        })
        .collect()
}

/// Records migrations `1..=version` as applied in refinery's history table, for a database an
/// older server migrated by `user_version` alone (refinery then runs only the rest). Nothing
/// to do on a new database or one refinery has seen.
fn adopt(
    conn: &mut Connection,
    version: u32,
    migrations: &[refinery_core::Migration],
) -> Result<(), DbError> {
    if version == 0 {
        return Ok(());
    }
    // Checked under the write lock: two processes opening at once adopt once.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seen: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'refinery_schema_history'",
        [],
        |r| r.get(0),
    )?;
    if seen {
        return Ok(());
    }
    // The table as refinery creates it (`refinery_core::traits::ASSERT_MIGRATIONS_TABLE_QUERY`).
    tx.execute_batch(
        "CREATE TABLE refinery_schema_history (version int4 PRIMARY KEY, name VARCHAR(255),
             applied_on VARCHAR(255), checksum VARCHAR(255));",
    )?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for m in &migrations[..version as usize] {
        tx.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![m.version(), m.name(), now, m.checksum().to_string()],
        )?;
    }
    tx.commit()?;
    tracing::info!(version, "server database adopted by refinery");
    Ok(())
}

/// The database file in the server's data directory.
pub const FILE_NAME: &str = "feltbog-server.sqlite";

/// Opens (creating if needed) the database in `data_dir` and migrates it.
pub fn open(data_dir: &Path) -> Result<Connection, DbError> {
    std::fs::create_dir_all(data_dir)?;
    let mut conn = Connection::open(data_dir.join(FILE_NAME))?;
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
    let migrations = migrations(MIGRATIONS)?;
    adopt(&mut conn, found, &migrations)?;
    let report = runner(&migrations)
        .run(&mut conn)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    for m in report.applied_migrations() {
        tracing::info!(to = m.version(), "server database migrated");
    }
    // For servers older than refinery here, which read only this. (A crash just before it
    // leaves it behind the history; the next open sets it.)
    if found != LATEST {
        conn.pragma_update(None, "user_version", LATEST)?;
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
        for (v, (_, sql)) in MIGRATIONS[..version].iter().enumerate() {
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

    /// A database an older server migrated by `user_version` alone is adopted: refinery then
    /// knows every migration it ran, runs only the rest, and refuses a database whose applied
    /// migrations differ from this build's (an edited migration, or a newer server's).
    #[test]
    fn refinery_adopts_an_older_database_and_refuses_a_divergent_or_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        drop(at_version(dir.path(), 7));
        let conn = open(dir.path()).unwrap();
        let history = |conn: &Connection| -> Vec<(u32, String)> {
            conn.prepare("SELECT version, name FROM refinery_schema_history ORDER BY version")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let names: Vec<(u32, String)> = MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (i as u32 + 1, name.split_once("__").unwrap().1.to_owned()))
            .collect();
        assert_eq!(history(&conn), names, "1..=7 adopted, 8.. run by refinery");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
        drop(conn);
        assert_eq!(
            history(&open(dir.path()).unwrap()),
            names,
            "a second open: no change"
        );

        // An applied migration whose text changed since: its checksum no longer matches.
        let conn = Connection::open(dir.path().join("feltbog-server.sqlite")).unwrap();
        conn.execute(
            "UPDATE refinery_schema_history SET checksum = '1' WHERE version = 5",
            [],
        )
        .unwrap();
        drop(conn);
        let err = open(dir.path()).unwrap_err();
        assert!(matches!(err, DbError::Migration(_)), "{err}");

        // A newer server's migration, recorded but unknown to this build.
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history VALUES (?1, 'from_the_future', '2030-01-01T00:00:00Z', '7')",
            [LATEST + 1],
        )
        .unwrap();
        drop(conn);
        assert!(matches!(open(dir.path()), Err(DbError::Migration(_))));
        let conn = Connection::open(dir.path().join("feltbog-server.sqlite")).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(open(dir.path()), Err(DbError::NewerSchema { .. })));
    }

    /// Server migrations are append-only (`feltbog_core::migration_lock`): `sqlite.lock`
    /// holds the SHA-256 of each one's text.
    #[test]
    fn applied_server_migrations_never_change() {
        let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite.lock");
        let texts: Vec<&str> = MIGRATIONS.iter().map(|(_, sql)| *sql).collect();
        feltbog_core::migration_lock::check(&lock, &texts).unwrap();
        let lock =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres.lock");
        let texts: Vec<&str> = POSTGRES_MIGRATIONS.iter().map(|(_, sql)| *sql).collect();
        feltbog_core::migration_lock::check(&lock, &texts).unwrap();
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
