//! The storage seam speaks one SQL to both backends: the same statements, with SQLite's `?N`
//! placeholders and values, give the same rows from SQLite and from the real PostgreSQL.

mod common;

use common::pg::Scratch;
use feltbog_server::storage::{Db, Pg, Row, Value};

/// The statements run on both backends, and what each query returned.
fn exercise(db: &dyn Db) -> Vec<Vec<Row>> {
    db.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, name text, data bytea, flag bigint NOT NULL)",
        &[],
    )
    .ok();
    /// id, name, data, flag
    type Sample<'a> = (i64, Option<&'a str>, Option<&'a [u8]>, bool);
    let rows: [Sample; 3] = [
        (1, Some("Ærø"), Some(&[0, 255]), true),
        (2, None, None, false),
        (i64::MAX, Some("it's ?1 inside"), Some(&[]), true),
    ];
    for (id, name, data, flag) in rows {
        let changed = db
            .execute(
                "INSERT INTO t (id, name, data, flag) VALUES (?1, ?2, ?3, ?4)",
                &[id.into(), name.into(), data.into(), flag.into()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let ignored = db
        .execute(
            "INSERT INTO t (id, name, data, flag) VALUES (?1, 'x', NULL, 0) ON CONFLICT DO NOTHING",
            &[1i64.into()],
        )
        .unwrap();
    assert_eq!(ignored, 0, "a conflict changes nothing");
    vec![
        db.query("SELECT id, name, data, flag FROM t ORDER BY id", &[])
            .unwrap(),
        // A comparison is a boolean in PostgreSQL and an integer in SQLite: both read as 1/0.
        db.query(
            "SELECT count(*) > 0, count(*), max(id) FROM t WHERE flag = ?1 AND name <> ?2",
            &[true.into(), "it's ?1 inside".into()],
        )
        .unwrap(),
        db.query(
            "SELECT id FROM t WHERE data = ?1 OR name IS NULL ORDER BY id LIMIT ?2",
            &[Value::Blob(vec![0, 255]), 5i64.into()],
        )
        .unwrap(),
        db.query(
            "UPDATE t SET flag = 1 - flag WHERE id = ?1 RETURNING flag",
            &[2i64.into()],
        )
        .unwrap(),
    ]
}

#[test]
fn the_same_statements_give_the_same_rows_on_both_backends() {
    let sqlite = rusqlite::Connection::open_in_memory().unwrap();
    let on_sqlite = exercise(&sqlite);
    let scratch = Scratch::new();
    let on_postgres = exercise(&Pg::plain(scratch.connect()));
    assert_eq!(on_sqlite, on_postgres);
    assert_eq!(on_sqlite[0].len(), 3);
    assert!(on_sqlite[1][0].get::<bool>(0).unwrap());
    assert_eq!(on_sqlite[2].len(), 2);
    assert_eq!(on_sqlite[3][0].get::<i64>(0).unwrap(), 1);
}

#[test]
fn a_value_postgres_cannot_hold_is_an_error_not_a_wrap() {
    let scratch = Scratch::new();
    let pg = Pg::plain(scratch.connect());
    pg.execute("CREATE TABLE small (n integer)", &[]).unwrap();
    assert!(
        pg.execute("INSERT INTO small (n) VALUES (?1)", &[Value::Int(1 << 40)])
            .is_err()
    );
    assert!(
        pg.execute("INSERT INTO small (n) VALUES (?1)", &[Value::Int(7)])
            .is_ok()
    );
    // Text is not bytes, bytes are not text.
    pg.execute("CREATE TABLE typed (b bytea, t text)", &[])
        .unwrap();
    assert!(
        pg.execute("INSERT INTO typed (b) VALUES (?1)", &["abc".into()])
            .is_err()
    );
    assert!(
        pg.execute(
            "INSERT INTO typed (t) VALUES (?1)",
            &[Value::Blob(b"abc".to_vec())]
        )
        .is_err()
    );
}

#[test]
fn a_row_read_as_a_type_of_another_width_is_an_error() {
    use feltbog_server::storage::{DbExt, StorageError};
    let sqlite = rusqlite::Connection::open_in_memory().unwrap();
    let scratch = Scratch::new();
    let postgres = Pg::plain(scratch.connect());
    for db in [&sqlite as &dyn Db, &postgres] {
        assert!(matches!(
            db.one::<(i64, i64)>("SELECT 1", &[]),
            Err(StorageError::Arity {
                found: 1,
                expected: 2
            })
        ));
        assert!(matches!(
            db.value::<i64>("SELECT 1, 2", &[]),
            Err(StorageError::Arity {
                found: 2,
                expected: 1
            })
        ));
        assert_eq!(db.value::<(i64, i64)>("SELECT 1, 2", &[]).unwrap(), (1, 2));
    }
}

/// The audit chain is the same chain on both backends: the same rows appended give the same
/// hashes and head, and the PostgreSQL chain verifies (and still finds an edit).
#[test]
fn the_audit_chain_is_the_same_on_both_backends() {
    use feltbog_server::audit::{self, Action, Entry};
    use uuid::Uuid;
    let entries: Vec<Entry> =
        (0..40u128)
            .map(|i| {
                let citizen = Uuid::from_u128(100 + i % 3);
                match i % 3 {
                    0 => Entry::device(Uuid::from_u128(1), Uuid::from_u128(2), Action::Read)
                        .record("citizen", citizen, Some(citizen)),
                    1 => Entry::device(Uuid::from_u128(1), Uuid::from_u128(2), Action::DeviceRead)
                        .record("visit", Uuid::from_u128(1000 + i), Some(citizen))
                        .device_at(1_700_000_000_000 + i as u64),
                    _ => Entry::server(Action::Purge).record("site", Uuid::from_u128(i), None),
                }
            })
            .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = feltbog_server::db::open(dir.path()).unwrap();
    let tx = sqlite.transaction().unwrap();
    audit::append_many(&tx, 1_700_000_000_000, &entries[..25]).unwrap();
    audit::append(&tx, 1_700_000_000_001, &entries[25]).unwrap();
    audit::append_many(&tx, 1_700_000_000_002, &entries[26..]).unwrap();
    let on_sqlite = audit::verify(&tx).unwrap();
    tx.commit().unwrap();

    let scratch = Scratch::new();
    let mut client = scratch.connect();
    feltbog_server::db::migrate_postgres(&mut client).unwrap();
    let pg = Pg::new(client.transaction().unwrap());
    audit::append_many(&pg, 1_700_000_000_000, &entries[..25]).unwrap();
    audit::append(&pg, 1_700_000_000_001, &entries[25]).unwrap();
    audit::append_many(&pg, 1_700_000_000_002, &entries[26..]).unwrap();
    let on_postgres = audit::verify(&pg).unwrap();
    pg.into_inner().commit().unwrap();
    assert_eq!(on_sqlite, on_postgres);
    assert_eq!(on_postgres.rows, 40);

    // An edit behind the triggers' back is found on PostgreSQL too.
    let mut client = scratch.connect();
    client
        .batch_execute(
            "ALTER TABLE audit DISABLE TRIGGER USER;
             UPDATE audit SET action = 'write' WHERE seq = 7;",
        )
        .unwrap();
    let pg = Pg::new(client.transaction().unwrap());
    match audit::verify(&pg) {
        Err(audit::AuditError::Broken { seq, .. }) => assert_eq!(seq, 7),
        other => panic!("an edited row must be found: {other:?}"),
    }
}

/// A parameter that only appears in a select list (`INSERT … SELECT ?1`, how the change log
/// copies a citizen's history to a new team) works on PostgreSQL too: the server types it from
/// the target column, inside a transaction that goes on afterwards; a value of the wrong type
/// is still refused.
#[test]
fn a_parameter_in_a_select_list_takes_its_target_columns_type() {
    let copy = |db: &dyn Db| {
        db.execute("CREATE TABLE src (id bigint PRIMARY KEY, data bytea)", &[])
            .unwrap();
        db.execute(
            "CREATE TABLE dst (id bigint, team bytea, note text, data bytea)",
            &[],
        )
        .unwrap();
        for id in 1..=3i64 {
            db.execute(
                "INSERT INTO src (id, data) VALUES (?1, ?2)",
                &[id.into(), Value::Blob(vec![id as u8])],
            )
            .unwrap();
        }
        let copied = db
            .execute(
                "INSERT INTO dst (id, team, note, data) SELECT id, ?1, ?2, data FROM src
                 WHERE id >= ?3 ORDER BY id",
                &[Value::Blob(vec![7; 16]), Value::Null, 2i64.into()],
            )
            .unwrap();
        assert_eq!(copied, 2);
        // The same statement again, from the prepared one.
        db.execute(
            "INSERT INTO dst (id, team, note, data) SELECT id, ?1, ?2, data FROM src
             WHERE id >= ?3 ORDER BY id",
            &[Value::Blob(vec![8; 16]), "n".into(), 3i64.into()],
        )
        .unwrap();
        db.query(
            "SELECT id, team, note, data FROM dst ORDER BY id, team",
            &[],
        )
        .unwrap()
    };
    let sqlite = rusqlite::Connection::open_in_memory().unwrap();
    let on_sqlite = copy(&sqlite);
    let scratch = Scratch::new();
    let mut client = scratch.connect();
    let pg = Pg::new(client.transaction().unwrap());
    let on_postgres = copy(&pg);
    assert_eq!(on_sqlite, on_postgres);
    assert_eq!(on_postgres.len(), 3);
    // Text for the bytea column the server typed by itself is still refused.
    assert!(
        pg.execute(
            "INSERT INTO src (id, data) VALUES (?1, ?2)",
            &[9i64.into(), "x".into()]
        )
        .is_err()
    );
    pg.into_inner().rollback().unwrap();
}

/// A PostgreSQL error names what went wrong, never the values it would quote (a duplicate
/// key's DETAIL repeats the key; a name or a CPR number must not reach a log that way).
#[test]
fn a_postgres_error_quotes_no_value() {
    let scratch = Scratch::new();
    let pg = Pg::plain(scratch.connect());
    pg.execute("CREATE TABLE people (name text PRIMARY KEY)", &[])
        .unwrap();
    pg.execute(
        "INSERT INTO people (name) VALUES (?1)",
        &["Anne Hansen".into()],
    )
    .unwrap();
    let e = pg
        .execute(
            "INSERT INTO people (name) VALUES (?1)",
            &["Anne Hansen".into()],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("23505") && e.contains("people_pkey"), "{e}");
    assert!(!e.contains("Anne"), "{e}");
    let e = pg
        .execute("SELECT CAST(?1 AS bigint)", &["0101901234".into()])
        .unwrap_err()
        .to_string();
    assert!(!e.contains("0101901234"), "{e}");
}

/// `Database` runs a transaction as its backend needs, the same way on both: a write commits
/// when asked and rolls back otherwise (or on an error), and a read writes nothing.
#[test]
fn database_transactions_commit_roll_back_and_read_alike() {
    use feltbog_server::storage::{Database, DbExt, StorageError, Transact};
    let scratch = Scratch::new();
    let mut postgres = scratch.connect();
    feltbog_server::db::migrate_postgres(&mut postgres).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = feltbog_server::db::open(dir.path()).unwrap();
    for mut db in [Database::Sqlite(sqlite), Database::Postgres(postgres)] {
        let insert = |db: &dyn Db, id: u8| {
            db.execute(
                "INSERT INTO teams (id, name, created_ms) VALUES (?1, ?2, 0)",
                &[Value::Blob(vec![id; 16]), "Team".into()],
            )
        };
        let count = |db: &mut Database| -> i64 {
            db.read(|tx| tx.value::<i64>("SELECT count(*) FROM teams", &[]))
                .unwrap()
        };
        db.write(|tx| insert(tx, 1)).unwrap();
        assert_eq!(count(&mut db), 1, "a write commits");
        db.write_if(|tx| insert(tx, 2).map(|_| ((), false)))
            .unwrap();
        assert_eq!(count(&mut db), 1, "a write asked not to commit rolls back");
        let failed: Result<(), StorageError> = db.write(|tx| {
            insert(tx, 3)?;
            insert(tx, 1).map(|_| ())
        });
        assert!(failed.is_err());
        assert_eq!(count(&mut db), 1, "a failed write leaves nothing");
        // PostgreSQL refuses the statement (READ ONLY); SQLite's snapshot is never committed.
        let _ = db.read(|tx| insert(tx, 4));
        assert_eq!(count(&mut db), 1, "a read writes nothing");
    }
}

/// Connections to PostgreSQL go through rustls: with `sslmode=require` the server must offer
/// TLS with a certificate the system's CA store trusts, else there is no connection at all
/// (never a fall-back to plain text). This machine's PostgreSQL has no such certificate (none
/// or Debian's self-signed one), so the connection is refused, and the error does not repeat
/// the URL's password.
#[test]
fn with_sslmode_require_an_untrusted_server_is_not_connected_to() {
    let scratch = Scratch::new();
    let url = scratch
        .url()
        .replacen("postgres://postgres@", "postgres://postgres:hemmeligt@", 1);
    let location = feltbog_server::pool::Location::parse(
        Some(&format!("{url}&sslmode=require")),
        ".".as_ref(),
    )
    .unwrap();
    let err = location
        .open()
        .err()
        .expect("no connection without trusted TLS")
        .to_string();
    assert!(!err.contains("hemmeligt"), "{err}");
    // The same URL without it connects in plain text on this machine (loopback only).
    let local = feltbog_server::pool::Location::parse(Some(&url), ".".as_ref()).unwrap();
    assert!(local.open().is_ok());
}
