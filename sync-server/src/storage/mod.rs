//! The server's storage seam: one small interface over SQLite (the embedded default) and
//! PostgreSQL (several instances), so each statement is written once, in the SQL both speak.
//!
//! Statements use SQLite's numbered placeholders (`?1`, `?2`, …); the PostgreSQL side turns
//! them into `$1`, `$2`. Values cross the seam as [`Value`], SQLite's five storage classes,
//! which PostgreSQL's typed columns read and write through conversions that refuse anything
//! lossy (an integer too large for an `integer` column is an error, not a wrap). Where the two
//! dialects differ (locks, sequences) the backend says so in a method of its own, never in a
//! `match` on the backend in domain code. `docs/storage.md` has the design.

mod postgres;
mod sqlite;

pub use postgres::{Pg, PgSession, Statements};

use rusqlite::TransactionBehavior;

use uuid::Uuid;

/// Why a statement failed, without its parameters (they may be personal data).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Shown without the values PostgreSQL quotes (see [`postgres_reason`]).
    #[error("PostgreSQL: {}", postgres_reason(.0))]
    Postgres(#[from] ::postgres::Error),
    /// A row that must exist (the caller's own, read in its transaction) does not.
    #[error("no {0} row")]
    Missing(&'static str),
    /// A statement was run from inside another statement's row loop (PostgreSQL holds one
    /// connection per transaction: read the rows first).
    #[error("a statement inside another's row loop")]
    Nested,
    /// A row has another number of columns than the type read from it.
    #[error("a row of {found} columns read as {expected}")]
    Arity { found: usize, expected: usize },
    /// The caller stopped reading rows ([`each_row`]); its own reason is returned instead.
    #[error("stopped")]
    Stopped,
    /// A stored value is not of the type the caller reads it as.
    #[error("column {column}: expected {expected}")]
    Type {
        column: usize,
        expected: &'static str,
    },
}

/// What a PostgreSQL error says, without the values it quotes: a server error's DETAIL (and
/// some of its messages) repeat the row's values, which may be personal data, and an error's
/// text reaches logs and answers. The SQLSTATE and the constraint or table it names say what
/// went wrong; errors that are not the server's (connection, conversion) name no values.
pub fn postgres_reason(e: &::postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut reason = format!("error {}", db.code().code());
    if let Some(constraint) = db.constraint() {
        reason.push_str(&format!(" (constraint {constraint})"));
    } else if let Some(table) = db.table() {
        reason.push_str(&format!(" (table {table})"));
    }
    reason
}

/// A value as it crosses the seam: SQLite's storage classes. Booleans are integers, as in
/// SQLite and in this schema's PostgreSQL twin (`bigint` columns).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Value {
        Value::Blob(v.clone())
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}

/// Ids are stored as their 16 bytes on both backends.
impl From<Uuid> for Value {
    fn from(v: Uuid) -> Value {
        Value::Blob(v.as_bytes().to_vec())
    }
}

impl From<&Uuid> for Value {
    fn from(v: &Uuid) -> Value {
        Value::Blob(v.as_bytes().to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A row as read through the seam.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StorageError> {
        convert(self.0.get(i).cloned().unwrap_or(Value::Null), i)
    }
}

fn convert<T: FromValue>(v: Value, column: usize) -> Result<T, StorageError> {
    T::from_value(v).ok_or(StorageError::Type {
        column,
        expected: T::NAME,
    })
}

/// A Rust type a [`Value`] reads as.
pub trait FromValue: Sized {
    /// Named in a type error.
    const NAME: &'static str;
    fn from_value(v: Value) -> Option<Self>;
}

impl FromValue for i64 {
    const NAME: &'static str = "integer";
    fn from_value(v: Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
}

impl FromValue for u64 {
    const NAME: &'static str = "non-negative integer";
    fn from_value(v: Value) -> Option<u64> {
        i64::from_value(v).and_then(|i| u64::try_from(i).ok())
    }
}

impl FromValue for bool {
    const NAME: &'static str = "boolean";
    fn from_value(v: Value) -> Option<bool> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for f64 {
    const NAME: &'static str = "real";
    fn from_value(v: Value) -> Option<f64> {
        match v {
            Value::Real(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    const NAME: &'static str = "text";
    fn from_value(v: Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const NAME: &'static str = "blob";
    fn from_value(v: Value) -> Option<Vec<u8>> {
        match v {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

impl FromValue for Uuid {
    const NAME: &'static str = "16-byte id";
    fn from_value(v: Value) -> Option<Uuid> {
        match v {
            Value::Blob(b) => Uuid::from_slice(&b).ok(),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_value(v: Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl FromValue for Value {
    const NAME: &'static str = "value";
    fn from_value(v: Value) -> Option<Value> {
        Some(v)
    }
}

/// A Rust type a whole [`Row`] reads as: one value, or a tuple of them in column order.
pub trait FromRow: Sized {
    fn from_row(row: Row) -> Result<Self, StorageError>;
}

impl<T: FromValue> FromRow for T {
    fn from_row(row: Row) -> Result<T, StorageError> {
        arity(&row, 1)?;
        convert(row.0.into_iter().next().unwrap_or(Value::Null), 0)
    }
}

/// A row read as a type of `expected` columns must have that many: a query and the type it
/// is read as cannot drift apart unnoticed.
fn arity(row: &Row, expected: usize) -> Result<(), StorageError> {
    match row.0.len() {
        found if found == expected => Ok(()),
        found => Err(StorageError::Arity { found, expected }),
    }
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: FromValue),+> FromRow for ($($t,)+) {
            fn from_row(row: Row) -> Result<Self, StorageError> {
                arity(&row, [$($i),+].len())?;
                let mut values = row.0.into_iter();
                Ok(($(convert::<$t>(values.next().unwrap_or(Value::Null), $i)?,)+))
            }
        }
    };
}
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// Statement parameters: `args![worker, seq as i64, "text"]` is a `&[Value]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::storage::Value::from($v)),*][..]
    };
}

/// A database as the server's code uses it: statements in the SQL both backends speak, with
/// `?N` placeholders. Implemented for a SQLite connection (or transaction) and for [`Pg`].
pub trait Db {
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError>;

    /// Runs a query, handing each row to `each` as it arrives (a table copy or a digest
    /// never holds the whole table).
    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;

    /// Whether a transaction is open (statements then belong to it, and nest in savepoints).
    fn in_transaction(&self) -> bool;

    /// The join that makes the planner read its tables in the order written: SQLite's
    /// `CROSS JOIN` (its documented hint); PostgreSQL's planner is not told, and `CROSS JOIN`
    /// with `ON` is not its syntax.
    fn join_in_order(&self) -> &'static str {
        "CROSS JOIN"
    }

    /// Every row of a query.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        let mut rows = Vec::new();
        self.for_each(sql, params, &mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok(rows)
    }

    /// The first row of a query, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// Hands each row of a query to `each`, which may stop the reading with an error of its own
/// (a fault it found in a row): that error is returned.
pub fn each_row<E: From<StorageError>>(
    db: &dyn Db,
    sql: &str,
    params: &[Value],
    mut each: impl FnMut(Row) -> Result<(), E>,
) -> Result<(), E> {
    let mut stopped = None;
    let read = db.for_each(sql, params, &mut |row| {
        each(row).map_err(|e| {
            stopped = Some(e);
            StorageError::Stopped
        })
    });
    match stopped {
        Some(e) => Err(e),
        None => Ok(read?),
    }
}

/// Typed reads over any [`Db`].
pub trait DbExt: Db {
    /// The first row, as `T`, if there is one.
    fn one<T: FromRow>(&self, sql: &str, params: &[Value]) -> Result<Option<T>, StorageError> {
        self.query_opt(sql, params)?.map(T::from_row).transpose()
    }

    /// Every row, as `T`.
    fn all<T: FromRow>(&self, sql: &str, params: &[Value]) -> Result<Vec<T>, StorageError> {
        self.query(sql, params)?
            .into_iter()
            .map(T::from_row)
            .collect()
    }

    /// The row a query always returns (an aggregate, `count(*) > 0`, the caller's own row), as
    /// `T`; no row is an error.
    fn value<T: FromRow>(&self, sql: &str, params: &[Value]) -> Result<T, StorageError> {
        T::from_row(
            self.query_opt(sql, params)?
                .ok_or(StorageError::Missing("result"))?,
        )
    }
}

impl<D: Db + ?Sized> DbExt for D {}

/// The server's database, on either backend, owned (the command line's tools and tests open
/// one; the server's requests borrow one from [`crate::pool`]).
pub enum Database {
    Sqlite(rusqlite::Connection),
    Postgres(::postgres::Client),
}

/// Where the server's transactions begin: every entry point takes a `&mut impl Transact` and
/// runs its work through [`Transact::write`] or [`Transact::read`], which know what each
/// backend needs to keep the change log's order (docs/storage.md). Implemented by a SQLite
/// connection, a PostgreSQL client and [`Database`].
pub trait Transact {
    /// Runs `f` in one writing transaction and commits if it returns `Ok((_, true))`; rolls
    /// back otherwise. On SQLite an IMMEDIATE transaction (the write lock from the start); on
    /// PostgreSQL the writers' advisory lock is its first statement, so writers commit one at a
    /// time and the change log's sequence numbers are in commit order.
    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E>;

    /// Runs `f` on one consistent snapshot, writing nothing.
    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E>;

    /// Runs `f` in one writing transaction, committed if it returns `Ok`.
    fn write<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_if(|db| f(db).map(|out| (out, true)))
    }

    /// Runs `f` in one writing transaction that takes no place in the writers' order: for
    /// writes that log no change and append no audit row (rate limits), which need only their
    /// own rows locked. On SQLite the same as [`Transact::write`] (one writer anyway).
    fn write_aside<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write(f)
    }

    /// After content was deleted for good (a purge): removes the copies the backend keeps
    /// outside its live pages where it can. SQLite overwrites freed pages (`secure_delete`),
    /// and this moves the write-ahead log's copies out. PostgreSQL keeps dead rows until
    /// VACUUM and has no secure delete: its data directory must be on an encrypted volume
    /// (docs/storage.md), so nothing is done here.
    fn scrub(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl Transact for rusqlite::Connection {
    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        let tx = self
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StorageError::from)?;
        let (out, commit) = f(&tx)?;
        if commit {
            tx.commit().map_err(StorageError::from)?;
        }
        Ok(out)
    }

    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.transaction().map_err(StorageError::from)?;
        f(&tx)
    }

    fn scrub(&mut self) -> Result<(), StorageError> {
        self.prepare_cached("PRAGMA wal_checkpoint(TRUNCATE)")?
            .query_row([], |_| Ok(()))?;
        Ok(())
    }
}

/// What a PostgreSQL transaction is for ([`run_pg`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum PgKind {
    /// Takes the writers' lock first: change-log numbers and audit rows in commit order.
    Ordered,
    /// Writes nothing the writers' order is about (rate limits).
    Aside,
    /// A REPEATABLE READ, READ ONLY snapshot.
    Read,
}

/// Runs `f` in one transaction on `client` with `statements` (prepared before on this
/// connection) as its cache, which keeps what `f` prepares whatever `f` returns (a prepared
/// statement outlives a rolled-back transaction); commits if `f` says so.
fn run_pg<T, E: From<StorageError>>(
    client: &mut ::postgres::Client,
    statements: &mut postgres::Statements,
    kind: PgKind,
    f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
) -> Result<T, E> {
    let tx = match kind {
        PgKind::Read => client
            .build_transaction()
            .isolation_level(::postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start(),
        PgKind::Ordered | PgKind::Aside => client.transaction(),
    }
    .map_err(StorageError::from)?;
    let pg = Pg::with_statements(tx, std::mem::take(statements));
    let result = (|| {
        if kind == PgKind::Ordered {
            pg.execute(
                "SELECT pg_advisory_xact_lock(?1)",
                &[Value::Int(crate::db::WRITERS_LOCK)],
            )?;
        }
        f(&pg)
    })();
    let (tx, kept) = pg.into_parts();
    *statements = kept;
    let (out, commit) = result?;
    if commit && kind != PgKind::Read {
        tx.commit().map_err(StorageError::from)?;
    }
    Ok(out)
}

/// A client without a statement cache beyond each transaction (tools and tests).
impl Transact for ::postgres::Client {
    fn write_aside<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        run_pg(self, &mut Default::default(), PgKind::Aside, |db| {
            f(db).map(|out| (out, true))
        })
    }

    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        run_pg(self, &mut Default::default(), PgKind::Ordered, f)
    }

    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        run_pg(self, &mut Default::default(), PgKind::Read, |db| {
            f(db).map(|out| (out, false))
        })
    }
}

/// The server's pooled PostgreSQL connections: each keeps the statements it prepared.
impl Transact for PgSession {
    fn write_aside<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        run_pg(
            &mut self.client,
            &mut self.statements,
            PgKind::Aside,
            |db| f(db).map(|out| (out, true)),
        )
    }

    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        run_pg(&mut self.client, &mut self.statements, PgKind::Ordered, f)
    }

    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        run_pg(&mut self.client, &mut self.statements, PgKind::Read, |db| {
            f(db).map(|out| (out, false))
        })
    }
}

impl Transact for Database {
    fn write_aside<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Database::Sqlite(conn) => conn.write_aside(f),
            Database::Postgres(client) => client.write_aside(f),
        }
    }

    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        match self {
            Database::Sqlite(conn) => conn.write_if(f),
            Database::Postgres(client) => client.write_if(f),
        }
    }

    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Database::Sqlite(conn) => conn.read(f),
            Database::Postgres(client) => client.read(f),
        }
    }

    fn scrub(&mut self) -> Result<(), StorageError> {
        match self {
            Database::Sqlite(conn) => conn.scrub(),
            Database::Postgres(client) => client.scrub(),
        }
    }
}
