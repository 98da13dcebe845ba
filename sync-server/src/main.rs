//! `feltbog-server`: parse the command line, then call the library.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use feltbog_core::hlc::system_time_ms;
use feltbog_server::{AppState, Config, db, identity};
use std::net::SocketAddr;
use std::path::PathBuf;
use uuid::Uuid;

/// Feltbog's sync server.
#[derive(Parser, Debug)]
#[command(name = "feltbog-server", version, about)]
struct Cli {
    /// Where the server keeps its database.
    #[arg(
        long,
        env = "FELTBOG_DATA_DIR",
        default_value = "feltbog-server-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API.
    Serve {
        #[arg(long, env = "FELTBOG_LISTEN", default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// How far (ms) an edit's timestamp may run ahead of the server clock.
        #[arg(long, env = "FELTBOG_MAX_DRIFT_MS", default_value_t = feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS)]
        max_drift_ms: u64,
    },
    /// Administration: teams, workers, enrolment codes.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand, Debug)]
enum Admin {
    /// Create a team; prints its id.
    CreateTeam { name: String },
    /// Create a worker in a team; prints its id.
    CreateWorker {
        #[arg(long)]
        team: Uuid,
        #[arg(long)]
        name: String,
        /// outreach, home_support, caretaker, supervisor or admin
        #[arg(long, default_value = "outreach")]
        role: String,
    },
    /// Issue a one-time enrolment code (valid 24 hours) for a worker's device.
    EnrolmentCode {
        #[arg(long)]
        worker: Uuid,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            max_drift_ms,
        } => serve(&cli.data_dir, listen, max_drift_ms),
        Command::Admin(admin) => {
            let conn = db::open(&cli.data_dir).context("cannot open the server database")?;
            let now = system_time_ms();
            match admin {
                Admin::CreateTeam { name } => {
                    println!("{}", identity::create_team(&conn, &name, now)?)
                }
                Admin::CreateWorker { team, name, role } => {
                    println!("{}", identity::create_worker(&conn, team, &name, &role)?)
                }
                Admin::EnrolmentCode { worker } => {
                    println!("{}", identity::issue_enrolment_code(&conn, worker, now)?)
                }
            }
            Ok(())
        }
    }
}

fn serve(data_dir: &std::path::Path, listen: SocketAddr, max_drift_ms: u64) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FELTBOG_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let conn = db::open(data_dir).context("cannot open the server database")?;
    let state = AppState::new(conn, Config { max_drift_ms });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        // The address is printed so scripts and tests that ask for port 0 learn the real one.
        println!("listening on http://{}", listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, "feltbog-server listening");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        feltbog_server::serve(listener, state, shutdown).await?;
        Ok(())
    })
}
