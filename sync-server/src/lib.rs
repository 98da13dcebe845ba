//! # feltbog-server
//!
//! The sync server (DESIGN §6): a library with a short `main`. [`router`] builds the axum
//! router over an [`AppState`]; [`serve`] runs it on a listener (tests bind port 0). Storage is
//! an embedded SQLite database by default or PostgreSQL for several instances ([`db`]: opening,
//! migrations for both; [`pool`]: where requests get a connection), always reached through
//! [`storage`] (one SQL over both backends; every transaction begins in
//! [`storage::Transact`]); [`transfer`] moves a deployment to PostgreSQL and verifies it. The domain lives in [`identity`] (teams, workers,
//! roles, enrolment, tokens, revocation), [`scope`] (who may see and change what), [`sync`]
//! (applying pushes with the shared merge rules, serving pulls, moves and retention) and
//! [`audit`] (the hash-chained access log); [`admin`] performs an administrator's actions, each in
//! one transaction with its audit rows. [`http`] is the thin boundary; [`rate`] limits
//! requests and writes per device; [`listen`] accepts connections within limits a client
//! cannot get around (a cap, idle and header deadlines).
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod db;
pub mod epochs;
pub mod http;
pub mod identity;
pub mod listen;
pub mod pool;
pub mod rate;
pub mod reports;
pub mod review;
pub mod scope;
pub mod storage;
pub mod sync;
pub mod transfer;
pub mod web;

pub use http::router;

use std::sync::Arc;

/// Server settings, from flags and environment variables (see `main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    /// How far ahead of the server clock an edit's HLC may run (DESIGN §5, property 6).
    pub max_drift_ms: u64,
    /// Sync and rotation requests per device.
    pub device_rate: rate::RateLimit,
    /// Enrolment attempts and requests with unknown tokens per client address (guessing).
    pub enrol_rate: rate::RateLimit,
    /// What one device may write ([`WriteBudget`]).
    pub write_budget: WriteBudget,
    /// Connections: the cap and the deadlines ([`listen`]).
    pub connections: listen::ConnectionLimits,
    /// Marks the dashboard's session cookie `Secure`: set it when a TLS proxy is in front.
    pub secure_cookies: bool,
}

/// What one device may make the server write, per minute: field operations (each is work in
/// the write transaction) and estimated stored kibibytes ([`stored_bytes_estimate`]). A hostile
/// or runaway device cannot hold the write lock for long or fill the disk quickly; an honest
/// device's largest push (`limits::MAX_OPS_PER_PUSH`, `limits::PUSH_BYTES`) always fits a
/// full bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBudget {
    pub ops: rate::RateLimit,
    pub kib: rate::RateLimit,
}

impl WriteBudget {
    /// The burst an honest client's largest push needs.
    pub fn min_burst() -> (u32, u32) {
        use feltbog_core::protocol::limits;
        let ops = limits::MAX_OPS_PER_PUSH;
        let bytes = limits::PUSH_BYTES + ops * STORED_BYTES_PER_OP;
        (ops as u32, bytes.div_ceil(1024) as u32)
    }

    /// Whether the largest honest push fits a full bucket (else that device would wait forever).
    pub fn validate(&self) -> Result<(), String> {
        let (ops, kib) = Self::min_burst();
        if self.ops.burst < ops || self.kib.burst < kib {
            return Err(format!(
                "the write budget's burst must hold one full push: at least {ops} ops and {kib} KiB"
            ));
        }
        Ok(())
    }
}

impl Default for WriteBudget {
    fn default() -> Self {
        // About 30,000 ops a minute is a few hundred ms of write lock a minute per device, and a
        // full caseload (20,000 visits) uploads in under ten minutes.
        WriteBudget {
            ops: rate::RateLimit {
                per_minute: 30_000,
                burst: 30_000,
            },
            kib: rate::RateLimit {
                per_minute: 16 * 1024,
                burst: 16 * 1024,
            },
        }
    }
}

/// What the server stores per field operation besides its value: a row in the merged field
/// state, the op's envelope in the change log, the audit rows, index entries (measured by
/// `cargo bench -p feltbog-server --bench push_lock`: about 345 bytes an op of 20-byte values).
pub const STORED_BYTES_PER_OP: usize = 320;

/// The bytes a mutation is expected to add to the database: its text in the change log and the
/// overhead of each op.
pub fn stored_bytes_estimate(m: &feltbog_core::protocol::Mutation) -> usize {
    let values: usize = m.ops.iter().map(|op| op_bytes(op) + op.field.len()).sum();
    values + m.ops.len() * STORED_BYTES_PER_OP
}

/// The serialized size of what one op writes: its value, and for a removal the stamps of the
/// adds it observed (each stored as text of about 50 bytes).
pub fn op_bytes(op: &feltbog_core::protocol::FieldOp) -> usize {
    let observed = match &op.change {
        feltbog_core::protocol::FieldChange::Remove { observed, .. } => observed.len() * 64,
        _ => 0,
    };
    op.change.value().to_string().len() + observed
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_drift_ms: feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
            // A device syncs every minute, and in a burst after a save or a long offline spell
            // (one round trip per page): generous for that, a wall for a runaway loop.
            device_rate: rate::RateLimit {
                per_minute: 120,
                burst: 60,
            },
            enrol_rate: rate::RateLimit {
                per_minute: 10,
                burst: 10,
            },
            write_budget: WriteBudget::default(),
            connections: listen::ConnectionLimits::default(),
            secure_cookies: false,
        }
    }
}

/// Shared by all handlers: the database and the rate limits (in memory on SQLite, in the
/// database every instance shares on PostgreSQL: [`rate::Bucket`]).
#[derive(Clone)]
pub struct AppState {
    /// The connections requests use ([`pool`]).
    pub db: Arc<pool::Pool>,
    pub config: Arc<Config>,
    pub device_limiter: Arc<rate::Bucket>,
    pub enrol_limiter: Arc<rate::Bucket>,
    pub ops_budget: Arc<rate::Bucket>,
    pub bytes_budget: Arc<rate::Bucket>,
}

impl AppState {
    /// State over an open database (a [`pool::Pool`], or one SQLite connection).
    pub fn new(db: impl Into<pool::Pool>, config: Config) -> AppState {
        let db: pool::Pool = db.into();
        let shared = db.is_shared();
        let bucket = |kind, limit| Arc::new(rate::Bucket::new(kind, limit, shared));
        AppState {
            db: Arc::new(db),
            device_limiter: bucket("device", config.device_rate),
            enrol_limiter: bucket("address", config.enrol_rate),
            ops_budget: bucket("write_ops", config.write_budget.ops),
            bytes_budget: bucket("write_kib", config.write_budget.kib),
            config: Arc::new(config),
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.connections;
    listen::serve(listener, router(state), limits, shutdown).await
}
