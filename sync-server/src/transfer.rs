//! Moving a deployment from SQLite to PostgreSQL (`feltbog-server migrate`): every table copied
//! as it is, then both compared, so nothing is lost on the way and a device synced before the
//! move syncs on after it (the change log keeps its sequence numbers, the cursors devices hold).
//!
//! The copy reads the SQLite database inside one transaction that holds its write lock, so a
//! server still running on it cannot write in the middle (it waits, or fails and its device
//! retries); stop it before the move all the same, and start the PostgreSQL instances after.

use crate::db;
use crate::storage::{Db, Pg, Row, StorageError, Value};
use rusqlite::{Connection, TransactionBehavior};

/// Every table of the schema, in the order a copy fills them (a row's references first).
/// `tests/transfer.rs` checks it against the schema, so a new table cannot be left behind.
pub const TABLES: &[&str] = &[
    "teams",
    "workers",
    "devices",
    "enrolment_codes",
    "supervised_teams",
    "caretaker_sites",
    "scope_epochs",
    "fields",
    "records",
    "citizens",
    "changes",
    "applied",
    "refused",
    "server_state",
    "audit",
    "report_visits",
    "web_logins",
    "web_sessions",
    // A client's recent requests: the limits hold across the move too.
    "rate_limits",
];

/// Why a move did not happen, or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The target holds a deployment already: a move never merges two.
    #[error("the target database is not empty (table {0} has rows); move into a new database")]
    TargetNotEmpty(&'static str),
    /// The copy differs from the original (nothing was committed).
    #[error("the copy differs from the original in table {0}")]
    Differs(&'static str),
}

/// What a table holds, on either side: its rows and a digest of them in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    pub table: &'static str,
    pub rows: u64,
    pub sha256: String,
}

/// Both sides after a move, equal (or the move fails): each table, the head of the change
/// log and the next sequence number (devices' cursors are positions in it), and the audit
/// chain's head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub tables: Vec<TableSummary>,
    pub change_head: i64,
    pub next_change: i64,
    pub audit_head: Option<String>,
}

/// Copies the SQLite deployment `from` into the empty PostgreSQL database `to` (migrated
/// first), verifies the copy inside the same PostgreSQL transaction, and commits only if both
/// sides are equal. Returns the summary both share.
pub fn sqlite_to_postgres(
    from: &mut Connection,
    to: &mut postgres::Client,
) -> Result<Summary, TransferError> {
    db::migrate_postgres(to)?;
    let source = from
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StorageError::from)?;
    let target = Pg::new(to.transaction().map_err(StorageError::from)?);
    // The writers' lock every writing transaction takes first (docs/storage.md): no instance
    // started early writes while the copy runs.
    target.execute(
        "SELECT pg_advisory_xact_lock(?1)",
        &[Value::Int(db::WRITERS_LOCK)],
    )?;
    for &table in TABLES {
        let seeded = table == "server_state";
        let rows = count(&target, table)?;
        if rows > 0 && !seeded {
            return Err(TransferError::TargetNotEmpty(table));
        }
    }
    // The one row the schema seeds, replaced by the original's.
    target.execute("DELETE FROM server_state", &[])?;
    for &table in TABLES {
        let columns = columns(&source, table)?;
        let select = format!("SELECT {} FROM {table}", columns.join(", "));
        target.copy_in(table, &columns, &mut |write| {
            source.for_each(&select, &[], &mut |row| write(&row.0))
        })?;
    }
    // The change log's sequence continues where SQLite's would have: AUTOINCREMENT never
    // reuses a number, even one whose row retention removed.
    let next: i64 = source
        .query_opt(
            "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
            &[],
        )?
        .map(|r| r.get(0))
        .transpose()?
        .unwrap_or(0);
    if next > 0 {
        target.execute(
            "SELECT setval(pg_get_serial_sequence('changes', 'seq'), ?1)",
            &[Value::Int(next)],
        )?;
    }
    let original = summary(&*source, Side::Sqlite)?;
    let copy = summary(&target, Side::Postgres)?;
    for (a, b) in original.tables.iter().zip(&copy.tables) {
        if a != b {
            return Err(TransferError::Differs(a.table));
        }
    }
    if original != copy {
        return Err(TransferError::Differs("changes (sequence) or audit (head)"));
    }
    target.into_inner().commit().map_err(StorageError::from)?;
    // The source transaction only read: let it go.
    source.rollback().map_err(StorageError::from)?;
    Ok(copy)
}

/// Which backend a summary reads: they keep the change log's next number differently.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Sqlite,
    Postgres,
}

/// Every table's rows and digest, the change log's head and next number, the audit head.
pub fn summary(db: &dyn Db, side: Side) -> Result<Summary, TransferError> {
    let mut tables = Vec::new();
    for &table in TABLES {
        tables.push(table_summary(db, table)?);
    }
    let one = |sql: &str| -> Result<Option<Row>, TransferError> { Ok(db.query_opt(sql, &[])?) };
    let change_head: i64 = one("SELECT coalesce(max(seq), 0) FROM changes")?
        .map(|r| r.get(0))
        .transpose()?
        .unwrap_or(0);
    let next_change: i64 = match side {
        Side::Sqlite => one("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")?,
        Side::Postgres => one("SELECT coalesce(pg_sequence_last_value(
                 pg_get_serial_sequence('changes', 'seq')::regclass), 0)")?,
    }
    .map(|r| r.get(0))
    .transpose()?
    .unwrap_or(0)
        + 1;
    let audit_head = one("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .map(|r| r.get::<Vec<u8>>(0))
        .transpose()?
        .map(hex);
    Ok(Summary {
        tables,
        change_head,
        next_change,
        audit_head,
    })
}

/// A table's row count and the SHA-256 of its rows in primary-key order (bytewise on both
/// backends: blobs, and text in the "C" collation on PostgreSQL).
fn table_summary(db: &dyn Db, table: &'static str) -> Result<TableSummary, TransferError> {
    let key = primary_key(table);
    let sql = format!("SELECT * FROM {table} ORDER BY {key}");
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut rows = 0u64;
    db.for_each(&sql, &[], &mut |row| {
        rows += 1;
        for value in &row.0 {
            match value {
                Value::Null => hash.update(b"n"),
                Value::Int(i) => {
                    hash.update(b"i");
                    hash.update(&i.to_be_bytes());
                }
                Value::Real(f) => {
                    hash.update(b"r");
                    hash.update(&f.to_bits().to_be_bytes());
                }
                Value::Text(s) => {
                    hash.update(b"t");
                    hash.update(&(s.len() as u64).to_be_bytes());
                    hash.update(s.as_bytes());
                }
                Value::Blob(b) => {
                    hash.update(b"b");
                    hash.update(&(b.len() as u64).to_be_bytes());
                    hash.update(b);
                }
            }
        }
        hash.update(b"\n");
        Ok(())
    })?;
    Ok(TableSummary {
        table,
        rows,
        sha256: hex(hash.finish().as_ref().to_vec()),
    })
}

/// The primary key a table's rows are ordered by when compared (the schema's, the same on
/// both backends: `tests/postgres_schema.rs`).
fn primary_key(table: &str) -> &'static str {
    match table {
        "teams" | "workers" | "devices" => "id",
        "enrolment_codes" => "code_hash",
        "supervised_teams" => "worker_id, team_id",
        "caretaker_sites" => "worker_id, site_id",
        "scope_epochs" => "worker_id, epoch",
        "fields" => "entity, record_id, field",
        "records" => "entity, record_id",
        "citizens" => "citizen_id",
        "changes" | "audit" => "seq",
        "applied" | "refused" => "device_id, device_seq",
        "server_state" => "id",
        "report_visits" => "team_id, started_ms, visit_id",
        "web_logins" => "worker_id",
        "rate_limits" => "kind, key",
        _ => "token_hash",
    }
}

fn count(db: &dyn Db, table: &str) -> Result<i64, TransferError> {
    Ok(db
        .query_opt(&format!("SELECT count(*) FROM {table}"), &[])?
        .map(|r| r.get(0))
        .transpose()?
        .unwrap_or(0))
}

/// A SQLite table's columns in order (the PostgreSQL twin has the same).
fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, TransferError> {
    Ok(conn
        .query(
            &format!("SELECT name FROM pragma_table_info('{table}')"),
            &[],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?)
}

fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of SQLite's schema is copied, compared by its whole primary key.
    #[test]
    fn every_table_is_copied_and_compared_by_its_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(dir.path()).unwrap();
        let mut schema: Vec<String> = conn
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                   AND name NOT IN ('sqlite_sequence', 'refinery_schema_history')",
                &[],
            )
            .unwrap()
            .into_iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        schema.sort();
        let mut copied: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        copied.sort();
        assert_eq!(schema, copied);
        for table in TABLES {
            let key: Vec<String> = conn
                .query(
                    &format!(
                        "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
                    ),
                    &[],
                )
                .unwrap()
                .into_iter()
                .map(|r| r.get(0).unwrap())
                .collect();
            assert_eq!(primary_key(table), key.join(", "), "{table}");
        }
    }
}
