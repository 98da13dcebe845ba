//! [`Db`] over a SQLite connection (a `rusqlite::Transaction` derefs to one).

use super::{Db, Row, StorageError, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Text that is not UTF-8 is an error, as rusqlite's own `String` reads make it: never
/// altered on the way (an export or a copy would carry the altered text).
fn value(v: ValueRef<'_>, column: usize) -> Result<Value, StorageError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => {
            Value::Text(
                String::from_utf8(t.to_vec()).map_err(|_| StorageError::Type {
                    column,
                    expected: "UTF-8 text",
                })?,
            )
        }
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

impl Db for rusqlite::Connection {
    fn in_transaction(&self) -> bool {
        !self.is_autocommit()
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        let changed = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut stmt = self.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| value(row.get_ref(i)?, i))
                .collect::<Result<_, _>>()?;
            each(Row(values))?;
        }
        Ok(())
    }
}

/// A transaction is used as the connection it runs on (so `&tx` is a `&dyn Db`).
impl Db for rusqlite::Transaction<'_> {
    fn in_transaction(&self) -> bool {
        true
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        Db::execute(&**self, sql, params)
    }

    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        Db::for_each(&**self, sql, params, each)
    }
}
