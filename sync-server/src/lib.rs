//! # feltbog-server
//!
//! The sync server (DESIGN §6): a library with a short `main`. [`router`] builds the axum
//! router over an [`AppState`]; [`serve`] runs it on a listener (tests bind port 0). Storage is
//! one embedded SQLite database ([`db`]); the domain lives in [`identity`] (teams, workers,
//! roles, enrolment, tokens, revocation), [`scope`] (who may see and change what), [`sync`]
//! (applying pushes with the shared merge rules, serving pulls, moves and retention) and
//! [`audit`] (the hash-chained access log). [`http`] is the thin boundary; [`rate`] limits
//! requests per device.
#![forbid(unsafe_code)]

pub mod audit;
pub mod db;
pub mod http;
pub mod identity;
pub mod rate;
pub mod scope;
pub mod sync;

pub use http::router;

use std::sync::{Arc, Mutex};

/// Server settings, from flags and environment variables (see `main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    /// How far ahead of the server clock an edit's HLC may run (DESIGN §5, property 6).
    pub max_drift_ms: u64,
    /// Sync and rotation requests per device.
    pub device_rate: rate::RateLimit,
    /// Enrolment attempts and requests with unknown tokens per client address (guessing).
    pub enrol_rate: rate::RateLimit,
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
        }
    }
}

/// Shared by all handlers. Besides the database, only the rate limiters' counters live here
/// (per instance: behind a load balancer each instance limits on its own).
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Mutex<rusqlite::Connection>>,
    pub config: Arc<Config>,
    pub device_limiter: Arc<rate::Limiter>,
    pub enrol_limiter: Arc<rate::Limiter>,
}

impl AppState {
    /// State over an open database.
    pub fn new(conn: rusqlite::Connection, config: Config) -> AppState {
        AppState {
            db: Arc::new(Mutex::new(conn)),
            device_limiter: Arc::new(rate::Limiter::new(config.device_rate)),
            enrol_limiter: Arc::new(rate::Limiter::new(config.enrol_rate)),
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
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
