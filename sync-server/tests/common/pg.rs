//! A PostgreSQL schema of its own for one test, on the real server: `FELTBOG_TEST_DATABASE` or
//! `FELTBOG_TEST_POSTGRES` (a `postgres://` URL), by default the one on 127.0.0.1:5432 with
//! database `test` that this project's machines and CI have. Dropped when the test ends.

/// A scratch schema; dropped (with everything in it) on drop.
pub struct Scratch {
    admin: postgres::Client,
    pub name: String,
    base: String,
    config: postgres::Config,
}

impl Scratch {
    pub fn new() -> Scratch {
        // The conformance suite's database when one is given, so one variable points every
        // PostgreSQL test elsewhere.
        let base = suite_database()
            .or_else(|| std::env::var("FELTBOG_TEST_POSTGRES").ok())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        let config: postgres::Config = base.parse().expect("FELTBOG_TEST_POSTGRES");
        // The URL is not repeated: it may hold a password.
        let mut admin = config.connect(postgres::NoTls).unwrap_or_else(|e| {
            panic!("no PostgreSQL (start it, or set FELTBOG_TEST_DATABASE): {e}")
        });
        let name = format!("feltbog_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let mut config = config;
        config.options(&format!("-c search_path={name}"));
        Scratch {
            admin,
            name,
            base,
            config,
        }
    }

    /// A connection whose tables are the scratch schema's.
    pub fn connect(&self) -> postgres::Client {
        self.config.connect(postgres::NoTls).unwrap()
    }

    /// The connection string of [`Scratch::connect`], for the server's command line.
    pub fn url(&self) -> String {
        let options = format!("-c search_path={}", self.name);
        if self.base.starts_with("postgres") {
            let sep = if self.base.contains('?') { '&' } else { '?' };
            format!(
                "{}{sep}options={}",
                self.base,
                options.replace(' ', "%20").replace('=', "%3D")
            )
        } else {
            format!("{} options='{options}'", self.base)
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// The conformance suite's backend (issue 18): `FELTBOG_TEST_DATABASE`, a `postgres://` URL,
/// runs every server the harness starts on PostgreSQL, each data directory in a schema of its
/// own; unset, on SQLite in the data directory.
pub fn suite_database() -> Option<String> {
    std::env::var("FELTBOG_TEST_DATABASE")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// Schemas of the suite are named for the test process that made them, so a later process
/// can drop those of a process that is gone (a test binary has no hook at exit).
const SUITE_PREFIX: &str = "feltbog_suite_";

/// The database URL of the server whose data directory is `data_dir`, on the suite's
/// PostgreSQL: one schema per data directory (a restarted server finds its data), made on
/// first use. `None` when the suite runs on SQLite.
pub fn url_for(data_dir: &std::path::Path) -> Option<String> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static MADE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let base = suite_database()?;
    let made = MADE.get_or_init(|| {
        sweep(&base, false);
        Mutex::new(HashSet::new())
    });
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = ring::digest::digest(&ring::digest::SHA256, path.to_string_lossy().as_bytes());
    let tag: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("{SUITE_PREFIX}{}_{tag}", std::process::id());
    let mut made = made.lock().unwrap();
    if made.insert(name.clone()) {
        let mut admin = connect_base(&base);
        admin
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {name}"))
            .unwrap();
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{name}"))
}

fn connect_base(base: &str) -> postgres::Client {
    let config: postgres::Config = base.parse().expect("FELTBOG_TEST_DATABASE");
    config
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("FELTBOG_TEST_DATABASE: cannot connect: {e}"))
}

/// Drops the suite's schemas of test processes that are gone (`all`: every one of them, at
/// the end of a run).
pub fn sweep(base: &str, all: bool) {
    let mut admin = connect_base(base);
    let names: Vec<String> = admin
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&SUITE_PREFIX],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in names {
        let pid = name[SUITE_PREFIX.len()..].split('_').next().unwrap_or("");
        let alive = std::path::Path::new("/proc").join(pid).exists();
        if all || !alive || pid.is_empty() {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}
