//! A PostgreSQL schema of its own for one test, on the real server: `FELTBOG_TEST_POSTGRES`
//! (a `postgres://` URL or a key=value string), by default the one on 127.0.0.1:5432 with
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
        let base = std::env::var("FELTBOG_TEST_POSTGRES")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
        let config: postgres::Config = base.parse().expect("FELTBOG_TEST_POSTGRES");
        let mut admin = config.connect(postgres::NoTls).unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} (start it, or set FELTBOG_TEST_POSTGRES): {e}")
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
