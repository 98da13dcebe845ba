//! Where the server's requests get a database connection, on either backend.
//!
//! On SQLite (the embedded default) one connection writes, one at a time, and a second reads
//! beside it (WAL lets it): readiness checks and reports do not wait for a push. On PostgreSQL
//! (several instances) a pool of connections serves every request; writers still commit one at
//! a time, by the writers' advisory lock every writing transaction takes first
//! ([`crate::storage::Transact`]), so the change log's numbers stay in commit order across
//! instances.

use crate::db::{self, DbError};
use crate::storage::{Db, PgSession, StorageError, Transact};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where the server's data lives (`--database-url`): a SQLite database in a data directory,
/// or a PostgreSQL database.
#[derive(Clone)]
pub enum Location {
    Sqlite(PathBuf),
    /// Held parsed; never printed (it may hold a password).
    Postgres(Box<postgres::Config>),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            Location::Postgres(_) => f.write_str("postgres"),
        }
    }
}

impl Location {
    /// `url` as given (`postgres://…`, `postgresql://…`, `sqlite:DIR` or a directory), or the
    /// data directory's SQLite database when there is none. A bad URL's error does not repeat it.
    pub fn parse(url: Option<&str>, data_dir: &Path) -> Result<Location, DbError> {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Ok(Location::Sqlite(data_dir.to_owned()));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut config: postgres::Config = url.parse().map_err(|_| {
                DbError::Location("the PostgreSQL URL does not parse (postgres://USER@HOST/DB)")
            })?;
            // Records cross the network to another machine only encrypted: `prefer` (the
            // default) would fall back to plain text for anyone in the middle who asks.
            let remote = config.get_hosts().iter().any(|h| match h {
                postgres::config::Host::Tcp(name) => {
                    !matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]")
                }
                postgres::config::Host::Unix(_) => false,
            });
            let mode = config.get_ssl_mode();
            if remote && mode != postgres::config::SslMode::Require {
                return Err(DbError::Location(
                    "a PostgreSQL server on this machine, or sslmode=require in the URL",
                ));
            }
            // On this machine the connection never leaves it: `prefer` goes without TLS (which
            // would otherwise need the local server's certificate in the system's CA store).
            if !remote && mode == postgres::config::SslMode::Prefer {
                config.ssl_mode(postgres::config::SslMode::Disable);
            }
            return Ok(Location::Postgres(Box::new(config)));
        }
        if let Some(dir) = url.strip_prefix("sqlite:") {
            return Ok(Location::Sqlite(PathBuf::from(dir)));
        }
        // Anything else that looks like a connection string (another scheme, a mistyped one,
        // PostgreSQL's key=value form) is refused rather than taken for a directory to create.
        if url.contains("://") || url.contains('=') || url.contains('@') {
            return Err(DbError::Location(
                "--database-url takes postgres://USER@HOST/DB or sqlite:DIR",
            ));
        }
        Ok(Location::Sqlite(PathBuf::from(url)))
    }

    /// Opens one connection, migrated (the command line's tools use one).
    pub fn open(&self) -> Result<crate::storage::Database, DbError> {
        Ok(match self {
            Location::Sqlite(dir) => crate::storage::Database::Sqlite(db::open(dir)?),
            Location::Postgres(config) => {
                let mut client = config.connect(tls()?).map_err(connect_error)?;
                db::migrate_postgres(&mut client)?;
                crate::storage::Database::Postgres(client)
            }
        })
    }
}

/// TLS for connections to PostgreSQL: rustls (with ring, as the devices' HTTP client), checking
/// the server's certificate and name against the system's CA certificates (add a private CA
/// there: `update-ca-certificates`). Whether it is used is the URL's `sslmode`: `require`
/// always (and [`Location::parse`] insists on it for a server on another machine); on this
/// machine `prefer`, the default, goes without.
pub fn tls() -> Result<MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system store holds but rustls cannot read are skipped, not fatal.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| DbError::Location("TLS for PostgreSQL could not be set up"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A connection error without the connection string's parts (user, host and database are
/// not secret, but the message should never carry a password the string held).
fn connect_error(e: postgres::Error) -> DbError {
    DbError::Storage(StorageError::Postgres(e))
}

/// The connections the server's requests use.
#[allow(clippy::large_enum_variant)] // one per process: boxing would only add a hop per request
pub enum Pool {
    Sqlite {
        writer: Mutex<rusqlite::Connection>,
        /// None: reads use the writer (a state made over one connection, in tests).
        reader: Option<Mutex<rusqlite::Connection>>,
    },
    Postgres(r2d2::Pool<Sessions>),
}

/// Makes the pool's PostgreSQL connections ([`PgSession`]: each keeps its prepared statements).
pub struct Sessions {
    config: postgres::Config,
    tls: MakeRustlsConnect,
}

impl r2d2::ManageConnection for Sessions {
    type Connection = PgSession;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgSession, postgres::Error> {
        Ok(PgSession {
            client: self.config.connect(self.tls.clone())?,
            statements: Default::default(),
        })
    }

    fn is_valid(&self, session: &mut PgSession) -> Result<(), postgres::Error> {
        session.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, session: &mut PgSession) -> bool {
        session.client.is_closed()
    }
}

/// One borrowed connection, on either backend: what a request's work runs on
/// ([`Transact`]: every transaction it begins knows what its backend needs).
pub enum Conn<'a> {
    Sqlite(&'a mut rusqlite::Connection),
    Postgres(&'a mut PgSession),
}

impl Transact for Conn<'_> {
    fn write_aside<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conn::Sqlite(conn) => conn.write_aside(f),
            Conn::Postgres(client) => client.write_aside(f),
        }
    }

    fn write_if<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<(T, bool), E>,
    ) -> Result<T, E> {
        match self {
            Conn::Sqlite(conn) => conn.write_if(f),
            Conn::Postgres(client) => client.write_if(f),
        }
    }

    fn read<T, E: From<StorageError>>(
        &mut self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conn::Sqlite(conn) => conn.read(f),
            Conn::Postgres(client) => client.read(f),
        }
    }

    fn scrub(&mut self) -> Result<(), StorageError> {
        match self {
            Conn::Sqlite(conn) => conn.scrub(),
            Conn::Postgres(client) => client.scrub(),
        }
    }
}

/// One SQLite connection for everything (tests that need no reader beside the writer).
impl From<rusqlite::Connection> for Pool {
    fn from(conn: rusqlite::Connection) -> Pool {
        Pool::Sqlite {
            writer: Mutex::new(conn),
            reader: None,
        }
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("database lock poisoned")]
    Poisoned,
    /// Every PostgreSQL connection stayed busy, or the server did not answer.
    #[error("no database connection: {0}")]
    Unavailable(String),
}

/// How long a request waits for a PostgreSQL connection before it is answered 500.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

impl Pool {
    /// Opens `location` (migrating it): SQLite's two connections, or a PostgreSQL pool of
    /// `size` connections.
    pub fn open(location: &Location, size: u32) -> Result<Pool, DbError> {
        match location {
            Location::Sqlite(dir) => Ok(Pool::sqlite(db::open(dir)?, db::open(dir)?)),
            Location::Postgres(config) => {
                let mut client = config.connect(tls()?).map_err(connect_error)?;
                db::migrate_postgres(&mut client)?;
                drop(client);
                let manager = Sessions {
                    config: config.as_ref().clone(),
                    tls: tls()?,
                };
                let pool = r2d2::Pool::builder()
                    .max_size(size.max(1))
                    .min_idle(Some(1))
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .build(manager)
                    .map_err(|e| DbError::Migration(format!("PostgreSQL pool: {e}")))?;
                Ok(Pool::Postgres(pool))
            }
        }
    }

    /// Over two open SQLite connections to one database: `writer` for everything that may
    /// write, `reader` for reads that must not wait for a write.
    pub fn sqlite(writer: rusqlite::Connection, reader: rusqlite::Connection) -> Pool {
        Pool::Sqlite {
            writer: Mutex::new(writer),
            reader: Some(Mutex::new(reader)),
        }
    }

    /// Whether several instances may share this database (its rate limits then live in it).
    pub fn is_shared(&self) -> bool {
        matches!(self, Pool::Postgres(_))
    }

    /// Runs `f` on a connection that may write (on SQLite the one writing connection: requests
    /// queue for it).
    pub fn with<T, E: From<PoolError>>(
        &self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Pool::Sqlite { writer, .. } => {
                let mut conn = writer.lock().map_err(|_| PoolError::Poisoned)?;
                f(&mut Conn::Sqlite(&mut conn))
            }
            Pool::Postgres(pool) => Self::checkout(pool, f),
        }
    }

    /// Runs `f` on a connection for reads that must not wait for a write (on SQLite the
    /// reading connection; on PostgreSQL any).
    pub fn with_reader<T, E: From<PoolError>>(
        &self,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Pool::Sqlite { reader, writer } => {
                let mut conn = reader
                    .as_ref()
                    .unwrap_or(writer)
                    .lock()
                    .map_err(|_| PoolError::Poisoned)?;
                f(&mut Conn::Sqlite(&mut conn))
            }
            Pool::Postgres(pool) => Self::checkout(pool, f),
        }
    }

    fn checkout<T, E: From<PoolError>>(
        pool: &r2d2::Pool<Sessions>,
        f: impl FnOnce(&mut Conn<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut client = pool
            .get()
            .map_err(|e| PoolError::Unavailable(e.to_string()))?;
        f(&mut Conn::Postgres(&mut client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_postgres_sqlite_or_refused_without_being_repeated() {
        let dir = Path::new("data");
        let sqlite = |l: Location| match l {
            Location::Sqlite(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(sqlite(Location::parse(None, dir).unwrap()), dir);
        assert_eq!(sqlite(Location::parse(Some(""), dir).unwrap()), dir);
        assert_eq!(
            sqlite(Location::parse(Some("sqlite:/srv/feltbog"), dir).unwrap()),
            Path::new("/srv/feltbog")
        );
        assert_eq!(
            sqlite(Location::parse(Some("/srv/feltbog"), dir).unwrap()),
            Path::new("/srv/feltbog")
        );
        let pg =
            Location::parse(Some("postgres://feltbog:hemmeligt@localhost/feltbog"), dir).unwrap();
        assert!(matches!(pg, Location::Postgres(_)));
        assert!(!format!("{pg:?}").contains("hemmeligt"));
        // Another machine: only with TLS required.
        assert!(matches!(
            Location::parse(
                Some("postgres://feltbog:hemmeligt@db/feltbog?sslmode=require"),
                dir
            ),
            Ok(Location::Postgres(_))
        ));
        assert!(Location::parse(Some("postgres://u@localhost/feltbog"), dir).is_ok());
        assert!(Location::parse(Some("postgres://u@127.0.0.1:5432/feltbog"), dir).is_ok());
        let err = Location::parse(Some("postgres://feltbog:hemmeligt@db/feltbog"), dir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslmode=require") && !err.contains("hemmeligt"),
            "{err}"
        );
        for bad in [
            "postgre://feltbog:hemmeligt@db/feltbog",
            "mysql://feltbog:hemmeligt@db/feltbog",
            "host=db user=feltbog password=hemmeligt",
            "feltbog:hemmeligt@db",
        ] {
            let err = Location::parse(Some(bad), dir).unwrap_err().to_string();
            assert!(err.contains("--database-url takes"), "{bad}: {err}");
            assert!(!err.contains("hemmeligt"), "{err}");
        }
    }
}
