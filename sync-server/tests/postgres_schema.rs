//! The PostgreSQL schema is SQLite's, table for table: the same columns in the same order with
//! the same types, nullability and defaults, text compared bytewise (SQLite's BINARY is
//! PostgreSQL's "C"), the same primary keys, indexes and triggers. The server's statements
//! differ between the backends only in dialect, so a SQLite migration without its PostgreSQL
//! twin (or the other way round) fails here.
//!
//! Runs against a real PostgreSQL server: `FELTBOG_TEST_POSTGRES` (a `postgres://` URL or a
//! key=value string), by default the one on 127.0.0.1:5432 with database `test` that this
//! project's machines and CI have. Each run works in a schema of its own, dropped afterwards.

mod common;

use common::pg::Scratch;
use feltbog_server::db;
use std::collections::BTreeMap;

/// A column as both backends describe it: position, type, NOT NULL, default.
type Columns = BTreeMap<(String, String), (i64, String, bool, Option<String>)>;
/// Per table: primary-key columns in order, and the other indexes as (unique, columns).
type Keys = BTreeMap<String, (Vec<String>, Vec<(bool, Vec<String>)>)>;

/// SQLite's schema after every migration, in the terms PostgreSQL uses.
fn sqlite_schema() -> (Columns, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let conn = db::open(dir.path()).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
               AND name NOT IN ('sqlite_sequence', 'refinery_schema_history')",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let (mut columns, mut keys) = (Columns::new(), Keys::new());
    for table in tables {
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (cid, name, decl, not_null, default, pk_at) = row.unwrap();
            let ty = match decl.as_str() {
                "BLOB" => "bytea",
                "INTEGER" => "bigint",
                "TEXT" => "text",
                other => panic!("{table}.{name}: SQLite type {other} has no PostgreSQL twin"),
            };
            if pk_at > 0 {
                pk.push((pk_at, name.clone()));
            }
            columns.insert(
                (table.clone(), name),
                (cid + 1, ty.to_owned(), not_null || pk_at > 0, default),
            );
        }
        pk.sort();
        let mut indexes = Vec::new();
        let list: Vec<(String, bool, String)> = conn
            .prepare(&format!("PRAGMA index_list({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (index, unique, origin) in list {
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> = conn
                .prepare(&format!("PRAGMA index_info({index})"))
                .unwrap()
                .query_map([], |r| r.get(2))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            indexes.push((unique, cols));
        }
        indexes.sort();
        keys.insert(table, (pk.into_iter().map(|(_, c)| c).collect(), indexes));
    }
    (columns, keys)
}

/// The scratch schema's tables as PostgreSQL describes them.
fn postgres_schema(client: &mut postgres::Client, schema: &str) -> (Columns, Keys) {
    let mut columns = Columns::new();
    for row in client
        .query(
            "SELECT table_name::text, column_name::text, ordinal_position::bigint, data_type::text,
                    is_nullable = 'NO', column_default::text, collation_name::text
             FROM information_schema.columns
             WHERE table_schema = $1 AND table_name <> 'refinery_schema_history'",
            &[&schema],
        )
        .unwrap()
    {
        // `'anon'::text` is SQLite's `'anon'`.
        let default: Option<String> = row.get(5);
        let default = default.map(|d| d.trim_end_matches("::text").to_owned());
        let (table, column, ty): (String, String, String) = (row.get(0), row.get(1), row.get(3));
        if ty == "text" {
            let collation: Option<String> = row.get(6);
            assert_eq!(
                collation.as_deref(),
                Some("C"),
                "{table}.{column}: text compares bytewise, as SQLite's BINARY"
            );
        }
        columns.insert((table, column), (row.get(2), ty, row.get(4), default));
    }
    let mut keys = Keys::new();
    for row in client
        .query(
            "SELECT t.relname::text, ix.indisprimary, ix.indisunique,
                    array_agg(a.attname::text ORDER BY k.n)
             FROM pg_index ix
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace s ON s.oid = t.relnamespace
             CROSS JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE s.nspname = $1 AND t.relname <> 'refinery_schema_history'
             GROUP BY ix.indexrelid, t.relname, ix.indisprimary, ix.indisunique",
            &[&schema],
        )
        .unwrap()
    {
        let entry = keys.entry(row.get(0)).or_default();
        let cols: Vec<String> = row.get(3);
        if row.get(1) {
            entry.0 = cols;
        } else {
            entry.1.push((row.get(2), cols));
        }
    }
    for (_, indexes) in keys.values_mut() {
        indexes.sort();
    }
    (columns, keys)
}

#[test]
fn the_postgres_schema_is_the_sqlite_schema_table_for_table() {
    let scratch = Scratch::new();
    let mut client = scratch.connect();
    db::migrate_postgres(&mut client).unwrap();
    db::migrate_postgres(&mut client).expect("a second run finds nothing to do");

    let (sqlite_columns, sqlite_keys) = sqlite_schema();
    let (pg_columns, pg_keys) = postgres_schema(&mut client, &scratch.name);
    // The change log's `seq` is SQLite's AUTOINCREMENT and PostgreSQL's identity column: no
    // default on either side.
    for ((table, column), sqlite) in &sqlite_columns {
        let key = (table.clone(), column.clone());
        assert_eq!(
            pg_columns.get(&key),
            Some(sqlite),
            "{table}.{column}: PostgreSQL differs from SQLite (type, NOT NULL, default)"
        );
    }
    for (table, column) in pg_columns.keys() {
        assert!(
            sqlite_columns.contains_key(&(table.clone(), column.clone())),
            "{table}.{column} is only in PostgreSQL's schema"
        );
    }
    assert_eq!(pg_keys, sqlite_keys, "primary keys and indexes");

    let mut triggers = |sql: &str| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = if sql.is_empty() {
            let dir = tempfile::tempdir().unwrap();
            let conn = db::open(dir.path()).unwrap();
            conn.prepare("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        } else {
            client
                .query(sql, &[&scratch.name])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        };
        out.sort();
        out.dedup();
        out
    };
    let mut pg_triggers = triggers(
        "SELECT event_object_table::text, trigger_name::text FROM information_schema.triggers
         WHERE trigger_schema = $1",
    );
    // Only PostgreSQL can empty a table without deleting its rows: one trigger more.
    pg_triggers.retain(|(_, name)| name != "audit_no_truncate");
    assert_eq!(pg_triggers, triggers(""), "triggers");
    // A row triggers fire on (row triggers do not fire on an empty table).
    client
        .batch_execute(
            "INSERT INTO audit (seq, at_ms, actor, action, prev_hash, hash)
             VALUES (1, 0, 'server', 'test', '\\x00', '\\x00')",
        )
        .unwrap();
    for forbidden in [
        "UPDATE audit SET at_ms = 0",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let err = client.batch_execute(forbidden).unwrap_err();
        assert!(
            format!("{err:?}").contains("append-only"),
            "{forbidden}: {err:?}"
        );
    }

    let seeded: i64 = client
        .query_one("SELECT count(*) FROM server_state WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        seeded, 1,
        "the server's own row, as SQLite's migration 1 seeds it"
    );
}

/// A database migrated by a build with an applied migration edited since is refused, as on
/// SQLite.
#[test]
fn an_edited_postgres_migration_is_refused() {
    let scratch = Scratch::new();
    let mut client = scratch.connect();
    db::migrate_postgres(&mut client).unwrap();
    client
        .batch_execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1")
        .unwrap();
    assert!(matches!(
        db::migrate_postgres(&mut client),
        Err(db::DbError::Migration(_))
    ));
}
