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

pub use postgres::Pg;

use uuid::Uuid;

/// Why a statement failed, without its parameters (they may be personal data).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// A stored value is not of the type the caller reads it as.
    #[error("column {column}: expected {expected}")]
    Type {
        column: usize,
        expected: &'static str,
    },
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
        T::from_value(self.0.get(i).unwrap_or(&Value::Null)).ok_or(StorageError::Type {
            column: i,
            expected: T::NAME,
        })
    }
}

/// A Rust type a [`Value`] reads as.
pub trait FromValue: Sized {
    /// Named in a type error.
    const NAME: &'static str;
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const NAME: &'static str = "integer";
    fn from_value(v: &Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for bool {
    const NAME: &'static str = "boolean";
    fn from_value(v: &Value) -> Option<bool> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for String {
    const NAME: &'static str = "text";
    fn from_value(v: &Value) -> Option<String> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const NAME: &'static str = "blob";
    fn from_value(v: &Value) -> Option<Vec<u8>> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl FromValue for Uuid {
    const NAME: &'static str = "16-byte id";
    fn from_value(v: &Value) -> Option<Uuid> {
        match v {
            Value::Blob(b) => Uuid::from_slice(b).ok(),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_value(v: &Value) -> Option<Option<T>> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl FromValue for Value {
    const NAME: &'static str = "value";
    fn from_value(v: &Value) -> Option<Value> {
        Some(v.clone())
    }
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
