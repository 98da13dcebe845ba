//! # feltbog-server
//!
//! The sync server (DESIGN §6): a library with a short `main`. [`router`] builds the axum
//! router over an [`AppState`]; [`serve`] runs it on a listener (tests bind port 0). Storage is
//! one embedded SQLite database ([`db`]); the domain lives in [`identity`] (teams, workers,
//! enrolment, tokens) and [`sync`] (applying pushes with the shared merge rules, serving
//! pulls). [`http`] is the thin boundary.
#![forbid(unsafe_code)]

pub mod db;
pub mod http;
pub mod identity;
pub mod sync;

pub use http::router;

use std::sync::{Arc, Mutex};

/// Server settings, from flags and environment variables (see `main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    /// How far ahead of the server clock an edit's HLC may run (DESIGN §5, property 6).
    pub max_drift_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_drift_ms: feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
        }
    }
}

/// Shared by all handlers. The server keeps no other state between requests.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Mutex<rusqlite::Connection>>,
    pub config: Arc<Config>,
}

impl AppState {
    /// State over an open database.
    pub fn new(conn: rusqlite::Connection, config: Config) -> AppState {
        AppState {
            db: Arc::new(Mutex::new(conn)),
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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
