//! [`Db`] over PostgreSQL (the blocking `postgres` client: the server's domain code is
//! synchronous and runs on blocking threads, on either backend).

use super::{Db, Row, StorageError, Value};
use bytes::BytesMut;
use postgres::GenericClient;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;

type BoxError = Box<dyn Error + Sync + Send>;

/// Writes one row of a bulk load ([`Pg::copy_in`]).
pub type WriteRow<'a> = dyn FnMut(&[Value]) -> Result<(), StorageError> + 'a;

/// Prepared statements by their text (the SQL as written, before `?N` became `$N`).
pub type Statements = HashMap<String, postgres::Statement>;

/// A PostgreSQL connection and the statements it has prepared: a prepared statement belongs to
/// the connection, not to a transaction, so the server's pooled connections keep theirs (as
/// SQLite's `prepare_cached` does) and a request's transaction parses only what is new.
pub struct PgSession {
    pub client: postgres::Client,
    pub statements: Statements,
}

/// A PostgreSQL client or transaction, used through [`Db`]. Prepared statements are kept per
/// statement text, as SQLite's `prepare_cached` keeps them.
pub struct Pg<C: GenericClient> {
    client: RefCell<C>,
    statements: RefCell<Statements>,
    in_transaction: bool,
}

impl<C: GenericClient> Pg<C> {
    /// Over a transaction (what the server's code runs in: [`super::Database`]).
    pub fn new(transaction: C) -> Pg<C> {
        Self::with_statements(transaction, Statements::new())
    }

    /// Over a transaction, with the statements its connection prepared before ([`PgSession`]);
    /// [`Pg::into_parts`] gives them back with those this transaction added.
    pub fn with_statements(transaction: C, statements: Statements) -> Pg<C> {
        Pg {
            client: RefCell::new(transaction),
            statements: RefCell::new(statements),
            in_transaction: true,
        }
    }

    /// The transaction and the prepared statements.
    pub fn into_parts(self) -> (C, Statements) {
        (self.client.into_inner(), self.statements.into_inner())
    }

    /// Over a client outside a transaction, each statement its own (tools and tests).
    pub fn plain(client: C) -> Pg<C> {
        Pg {
            in_transaction: false,
            ..Pg::new(client)
        }
    }

    /// The client, unless a row loop holds it: a statement run from inside another's row
    /// callback is an error, not a panic.
    fn client(&self) -> Result<std::cell::RefMut<'_, C>, StorageError> {
        self.client
            .try_borrow_mut()
            .map_err(|_| StorageError::Nested)
    }

    /// The client back (to commit a transaction).
    pub fn into_inner(self) -> C {
        self.client.into_inner()
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, StorageError> {
        if let Some(stmt) = self.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client()?.prepare(&placeholders(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Loads rows into `table` with `COPY … FROM STDIN (FORMAT binary)`, the fast path for a
    /// bulk load: `fill` is handed a function that writes one row (values in `columns`' order).
    pub fn copy_in(
        &self,
        table: &str,
        columns: &[String],
        fill: &mut dyn FnMut(&mut WriteRow<'_>) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let list = columns.join(", ");
        let types: Vec<Type> = self
            .statement(&format!("SELECT {list} FROM {table} LIMIT 0"))?
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let mut client = self.client()?;
        let sink = client.copy_in(&format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        fill(&mut |row: &[Value]| {
            let refs: Vec<&(dyn ToSql + Sync)> =
                row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            writer.write(&refs)?;
            Ok(())
        })?;
        Ok(writer.finish()?)
    }
}

impl<C: GenericClient> Db for Pg<C> {
    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn join_in_order(&self) -> &'static str {
        "JOIN"
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        let stmt = self.statement(sql)?;
        Ok(self.client()?.execute(&stmt, &refs(params))?)
    }

    fn for_each(
        &self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Row) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        use postgres::fallible_iterator::FallibleIterator;
        let stmt = self.statement(sql)?;
        let width = stmt.columns().len();
        let mut client = self.client()?;
        let mut rows = client.query_raw(&stmt, params.iter())?;
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| row.try_get::<_, Value>(i))
                .collect::<Result<_, _>>()?;
            each(Row(values))?;
        }
        Ok(())
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// SQLite's `?N` (and bare `?`) placeholders as PostgreSQL's `$N`, outside quoted text.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut quote, mut next) = (None::<char>, 1u32);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = digits.parse().unwrap_or(next);
                next = n + 1;
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(format!("an integer for a {ty} parameter").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => Err(format!("a real for a {ty} parameter").into()),
            },
            // `&str` and `&[u8]` would write themselves into any column: only into their own.
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                _ => Err(format!("text for a {ty} parameter").into()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("a blob for a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                Value::Text(String::from_sql(ty, raw)?)
            }
            _ => return Err(format!("a {ty} column").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quoted_text() {
        assert_eq!(
            placeholders("SELECT ?1, '?2', x FROM t WHERE a = ?3 AND b = ?"),
            "SELECT $1, '?2', x FROM t WHERE a = $3 AND b = $4"
        );
        assert_eq!(placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(placeholders("\"we?ird\" = ?12"), "\"we?ird\" = $12");
    }
}
