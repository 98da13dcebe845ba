//! `feltbog-server`: parse the command line, then call the library.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use feltbog_core::hlc::DeviceId;
use feltbog_core::hlc::system_time_ms;
use feltbog_server::listen::ConnectionLimits;
use feltbog_server::pool::{Location, Pool};
use feltbog_server::storage::Transact;
use feltbog_server::{AppState, Config, WriteBudget, admin, audit, db, identity, rate, sync};
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
    /// The database: a `postgres://` URL (several instances share one), or `sqlite:DIR`;
    /// unset, the SQLite database in the data directory. Read from the environment rather
    /// than the command line where it holds a password (the process list shows arguments).
    #[arg(
        long,
        env = "FELTBOG_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
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
        /// Sync requests a device may make per minute (sustained).
        #[arg(long, env = "FELTBOG_DEVICE_RATE_PER_MINUTE", default_value_t = 120)]
        device_rate_per_minute: u32,
        /// Requests a device may make at once before the per-minute rate applies.
        #[arg(long, env = "FELTBOG_DEVICE_BURST", default_value_t = 60)]
        device_burst: u32,
        /// Enrolment attempts and unknown-token requests per client address per minute (and at
        /// once). Behind a reverse proxy every client shares its address: raise this there.
        #[arg(long, env = "FELTBOG_ENROL_RATE_PER_MINUTE", default_value_t = 10)]
        enrol_rate_per_minute: u32,
        /// Mark the dashboard's session cookie Secure: set this behind a TLS proxy.
        #[arg(long, env = "FELTBOG_SECURE_COOKIES")]
        secure_cookies: bool,
        /// Connections to PostgreSQL this instance keeps (SQLite uses one writer and one reader).
        #[arg(long, env = "FELTBOG_POOL_SIZE", default_value_t = 8)]
        pool_size: u32,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Administration: teams, workers, devices, citizens' teams, audit, retention.
    Admin(AdminArgs),
    /// Move a deployment from SQLite into an empty PostgreSQL database, then compare both
    /// (every table, the change log's sequence, the audit chain's head); nothing is committed
    /// unless they are equal. Stop the server first.
    Migrate {
        /// `sqlite:DIR`, DIR being the server's data directory.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://…` or `host=… dbname=…`. Also read from the
        /// environment, which keeps a password out of the process list. Never printed.
        #[arg(long, env = "FELTBOG_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
}

/// An admin command and who runs it.
#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// Who runs this command, for the audit trail (default: the login from SUDO_USER, USER
    /// or LOGNAME). What the system says, not a credential: guard the server's shell.
    #[arg(long, env = "FELTBOG_OPERATOR", global = true)]
    operator: Option<String>,
    #[command(subcommand)]
    command: Admin,
}

/// What one device may write, and how many connections and how much time clients get.
#[derive(clap::Args, Debug, Clone, Copy)]
struct LimitArgs {
    /// Field operations a device may push per minute (and at once).
    #[arg(long, env = "FELTBOG_WRITE_OPS_PER_MINUTE", default_value_t = WriteBudget::default().ops.per_minute)]
    write_ops_per_minute: u32,
    /// Estimated stored KiB a device may push per minute (and at once).
    #[arg(long, env = "FELTBOG_WRITE_KIB_PER_MINUTE", default_value_t = WriteBudget::default().kib.per_minute)]
    write_kib_per_minute: u32,
    /// Open connections at most; lowered to fit the open-file limit (less 64 kept back).
    #[arg(long, env = "FELTBOG_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds from connecting until a request's headers are complete.
    #[arg(long, env = "FELTBOG_HEADER_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Seconds to receive a whole request body.
    #[arg(long, env = "FELTBOG_BODY_TIMEOUT_SECS", default_value_t = ConnectionLimits::default().body_timeout.as_secs())]
    body_timeout_secs: u64,
    /// Seconds a connection may sit idle between requests.
    #[arg(long, env = "FELTBOG_KEEP_ALIVE_SECS", default_value_t = ConnectionLimits::default().keep_alive.as_secs())]
    keep_alive_secs: u64,
}

impl LimitArgs {
    /// The budget and limits, checked: each deadline at least a second, and a budget that
    /// holds one full push.
    fn into_limits(self) -> Result<(WriteBudget, ConnectionLimits)> {
        let per_minute = |n: u32| rate::RateLimit {
            per_minute: n,
            burst: n,
        };
        let budget = WriteBudget {
            ops: per_minute(self.write_ops_per_minute),
            kib: per_minute(self.write_kib_per_minute),
        };
        budget.validate().map_err(anyhow::Error::msg)?;
        let secs = |name: &str, n: u64| {
            anyhow::ensure!(n >= 1, "{name} must be at least 1 second");
            Ok(std::time::Duration::from_secs(n))
        };
        let limits = ConnectionLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: secs("--header-timeout-secs", self.header_timeout_secs)?,
            body_timeout: secs("--body-timeout-secs", self.body_timeout_secs)?,
            keep_alive: secs("--keep-alive-secs", self.keep_alive_secs)?,
        };
        Ok((budget, limits))
    }
}

/// The municipality's retention rules for closed cases (both off unless given).
#[derive(clap::Args, Debug, Clone, Copy)]
struct RetentionArgs {
    /// Erase a closed case from every device this many days after it was closed.
    #[arg(long, env = "FELTBOG_RETENTION_DEVICE_DAYS")]
    device_days: Option<u32>,
    /// Purge a closed case from the server this many days after it was closed.
    #[arg(long, env = "FELTBOG_RETENTION_PURGE_DAYS")]
    purge_days: Option<u32>,
}

impl From<RetentionArgs> for sync::Retention {
    fn from(a: RetentionArgs) -> Self {
        sync::Retention {
            device_days: a.device_days,
            purge_days: a.purge_days,
        }
    }
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
    /// List workers: id, team, role, active, name.
    Workers,
    /// Change a worker's role. Their devices take the new scope on their next sync, after pushing
    /// what they had pending.
    SetRole {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        role: String,
    },
    /// Move a worker to another team. Their devices take the new scope on their next sync, after
    /// pushing what they had pending.
    MoveWorker {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        team: Uuid,
    },
    /// Disable a worker: every device of theirs is refused and wipes itself on its next sync.
    DisableWorker {
        #[arg(long)]
        worker: Uuid,
    },
    /// Enable a disabled worker again (old devices stay revoked).
    EnableWorker {
        #[arg(long)]
        worker: Uuid,
    },
    /// Issue a one-time enrolment code for a worker's device, as text and as a QR code.
    EnrolmentCode {
        #[arg(long)]
        worker: Uuid,
        /// Minutes the code stays valid (at most 1440).
        #[arg(long, default_value_t = 30)]
        valid_minutes: u64,
        /// The server address the tablet should use; put in the QR code with the code.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        server_url: String,
        /// Also print the QR code when the output is not a terminal (a terminal gets it anyway;
        /// scripts that capture the output get just the code).
        #[arg(long)]
        qr: bool,
    },
    /// List devices: id, worker, enrolled, revoked.
    Devices,
    /// Revoke a device (lost or stolen): refused and wiped on its next request.
    RevokeDevice {
        #[arg(long)]
        device: Uuid,
    },
    /// List sites: id, team, assigned caretakers (comma-separated), name.
    Sites,
    /// Assign a caretaker to a site of their team: their devices receive the site, its log and
    /// its residents. (A site a caretaker creates is theirs already.)
    AssignSite {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        site: Uuid,
    },
    /// Take a site from a caretaker. Their devices erase the site, its log and its residents on
    /// their next sync, after pushing what they had pending.
    UnassignSite {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        site: Uuid,
    },
    /// Let a supervisor read another team too (reviews across teams). Their devices pull it on
    /// their next sync.
    Supervise {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        team: Uuid,
    },
    /// Stop a supervisor reading another team. Their devices erase it on their next sync.
    Unsupervise {
        #[arg(long)]
        worker: Uuid,
        #[arg(long)]
        team: Uuid,
    },
    /// Reopen a closed case that retention took off the devices: the citizen and their history
    /// come back to their team's devices on their next sync.
    ReopenCase {
        #[arg(long)]
        citizen: Uuid,
    },
    /// Move a citizen and their history to another team. The old team's devices erase them.
    MoveCitizen {
        #[arg(long)]
        citizen: Uuid,
        #[arg(long)]
        team: Uuid,
    },
    /// Apply the retention rules now (for a daily cron job; `serve` also runs them hourly).
    Retention {
        #[command(flatten)]
        rules: RetentionArgs,
    },
    /// Verify the audit trail's hash chain; names the first broken row. Prints the head as
    /// SEQ:HASH: keep that off the server and pass it to a later run with --since.
    AuditVerify {
        /// A head printed by an earlier run: the chain must still run through it, which
        /// finds a rewrite whose hashes were recomputed.
        #[arg(long, value_name = "SEQ:HASH")]
        since: Option<audit::Anchor>,
    },
    /// Export every audit row about one citizen as JSON lines (GDPR Art. 15).
    AuditExport {
        #[arg(long)]
        citizen: Uuid,
    },
    /// Let a supervisor sign in to the reports dashboard: gives them a login name and prints a
    /// one-time code (valid 72 hours) to set their password with at the server's address.
    /// Issuing a new code ends their password and sessions (and lifts a lock-out).
    WebAccess {
        #[arg(long)]
        worker: Uuid,
        /// 3–64 of a–z, 0–9, '.', '_', '-'.
        #[arg(long)]
        login: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            max_drift_ms,
            device_rate_per_minute,
            device_burst,
            enrol_rate_per_minute,
            secure_cookies,
            pool_size,
            limits,
            retention,
        } => {
            let (write_budget, connections) = limits.into_limits()?;
            let config = Config {
                write_budget,
                connections,
                max_drift_ms,
                device_rate: rate::RateLimit {
                    per_minute: device_rate_per_minute,
                    burst: device_burst,
                },
                enrol_rate: rate::RateLimit {
                    per_minute: enrol_rate_per_minute,
                    burst: enrol_rate_per_minute,
                },
                secure_cookies,
            };
            let location = Location::parse(cli.database_url.as_deref(), &cli.data_dir)?;
            serve(&location, pool_size, listen, config, retention.into())
        }
        Command::Migrate { from, to } => {
            init_logging("warn");
            migrate(&from, &to)
        }
        Command::Admin(args) => {
            init_logging("warn");
            let operator = args
                .operator
                .or_else(|| {
                    ["SUDO_USER", "USER", "LOGNAME"]
                        .iter()
                        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
                })
                .unwrap_or_else(|| "unknown".into());
            audit::set_operator(&operator).map_err(anyhow::Error::msg)?;
            let location = Location::parse(cli.database_url.as_deref(), &cli.data_dir)?;
            run_admin(&location, args.command)
        }
    }
}

/// `migrate --from sqlite:DIR --to postgres://…`: the move, and what both sides hold.
fn migrate(from: &str, to: &str) -> Result<()> {
    let dir = from
        .strip_prefix("sqlite:")
        .context("--from takes sqlite:DIR, the server's data directory")?;
    let file = std::path::Path::new(dir).join(db::FILE_NAME);
    anyhow::ensure!(
        file.is_file(),
        "no server database in {dir} (expected {})",
        db::FILE_NAME
    );
    let mut source =
        db::open(std::path::Path::new(dir)).context("cannot open the SQLite database")?;
    // The connection string may hold a password: it is never echoed, not even in an error.
    // The same rules as --database-url: a server on another machine only with sslmode=require.
    let Location::Postgres(config) = Location::parse(Some(to), std::path::Path::new(dir))
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?
    else {
        anyhow::bail!("--to takes a PostgreSQL URL (postgres://USER@HOST/DB)");
    };
    let mut target = config
        .connect(feltbog_server::pool::tls()?)
        .context("cannot connect to PostgreSQL")?;
    let summary = feltbog_server::transfer::sqlite_to_postgres(&mut source, &mut target)?;
    println!("moved and verified: both databases hold");
    for t in &summary.tables {
        println!("  {:<18} {:>9} rows  sha256 {}", t.table, t.rows, t.sha256);
    }
    println!(
        "  change log head {}, next {}; audit chain head {}",
        summary.change_head,
        summary.next_change,
        summary.audit_head.as_deref().unwrap_or("(empty)")
    );
    Ok(())
}

fn run_admin(location: &Location, admin: Admin) -> Result<()> {
    let mut conn = location.open().context("cannot open the server database")?;
    let now = system_time_ms();
    match admin {
        Admin::CreateTeam { name } => println!(
            "{}",
            conn.write(|tx| identity::create_team(tx, &name, now))?
        ),
        Admin::CreateWorker { team, name, role } => println!(
            "{}",
            conn.write(|tx| identity::create_worker(tx, team, &name, &role))?
        ),
        Admin::Workers => {
            for w in conn.read(identity::list_workers)? {
                let state = if w.active { "active" } else { "disabled" };
                println!("{}\t{}\t{}\t{}\t{}", w.id, w.team_id, w.role, state, w.name);
            }
        }
        Admin::SetRole { worker, role } => {
            if admin::set_role(&mut conn, worker, &role, now)? {
                println!("role changed{RESCOPED}");
            } else {
                println!("the worker has this role already");
            }
        }
        Admin::MoveWorker { worker, team } => {
            if admin::move_worker(&mut conn, worker, team, now)? {
                println!("worker moved{RESCOPED}");
            } else {
                println!("the worker is in this team already");
            }
        }
        Admin::DisableWorker { worker } => {
            let n = admin::disable_worker(&mut conn, worker, now)?;
            println!("worker disabled; {n} device(s) will wipe on their next sync");
        }
        Admin::EnableWorker { worker } => {
            admin::enable_worker(&mut conn, worker, now)?;
            println!("worker enabled; enrol their devices again");
        }
        Admin::EnrolmentCode {
            worker,
            valid_minutes,
            server_url,
            qr,
        } => {
            let ttl = valid_minutes.saturating_mul(60_000);
            let code = admin::issue_enrolment_code(&mut conn, worker, now, ttl)?;
            if !qr && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                println!("{code}");
            } else {
                let payload = identity::enrolment_qr_payload(&server_url, &code);
                let qr =
                    qrcode::QrCode::new(payload.as_bytes()).context("cannot make the QR code")?;
                println!(
                    "{}",
                    qr.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                );
                println!(
                    "Server: {server_url}\nKode / code: {code}\n(valid {valid_minutes} min, one device)"
                );
            }
        }
        Admin::Devices => {
            for d in conn.read(identity::list_devices)? {
                let revoked = d.revoked_ms.map_or("active".to_owned(), iso);
                println!(
                    "{}\t{}\t{}\t{}",
                    d.id,
                    d.worker_id,
                    iso(d.enrolled_ms),
                    revoked
                );
            }
        }
        Admin::RevokeDevice { device } => {
            admin::revoke_device(&mut conn, DeviceId(device), now)?;
            println!("device revoked; it wipes its data on its next request");
        }
        Admin::Sites => {
            for site in conn.read(sync::list_sites)? {
                let caretakers: Vec<String> = site.caretakers.iter().map(Uuid::to_string).collect();
                println!(
                    "{}\t{}\t{}\t{}",
                    site.id,
                    site.team_id,
                    caretakers.join(","),
                    site.name
                );
            }
        }
        Admin::AssignSite { worker, site } => {
            let new = sync::assign_site(
                &mut conn,
                worker,
                site,
                now,
                feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
            )?;
            println!(
                "{}",
                if new {
                    "site assigned; the caretaker's devices receive it on their next sync"
                } else {
                    "the caretaker has this site already"
                }
            );
        }
        Admin::UnassignSite { worker, site } => {
            if sync::unassign_site(&mut conn, worker, site, now)? {
                println!("site taken from the caretaker{RESCOPED}");
            } else {
                println!("the caretaker did not have this site");
            }
        }
        Admin::Supervise { worker, team } | Admin::Unsupervise { worker, team } => {
            let on = matches!(admin, Admin::Supervise { .. });
            if admin::set_supervised(&mut conn, worker, team, on, now)? {
                println!("done{RESCOPED}");
            } else {
                println!("nothing to change");
            }
        }
        Admin::ReopenCase { citizen } => {
            let done = sync::reopen_case(
                &mut conn,
                citizen,
                now,
                feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
            )?;
            println!(
                "{}",
                match done {
                    sync::Reopened::Reopened =>
                        "case reopened; the team's devices receive the citizen and their history on their next sync",
                    sync::Reopened::OnDevices => "the case is on the devices already",
                }
            );
        }
        Admin::MoveCitizen { citizen, team } => {
            sync::move_citizen(
                &mut conn,
                citizen,
                team,
                now,
                feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
            )?;
            println!("citizen moved; the old team's devices erase them on their next sync");
        }
        Admin::Retention { rules } => {
            let report = sync::apply_retention(&mut conn, rules.into(), now)?;
            println!(
                "{} closed case(s) taken off devices, {} purged",
                report.off_devices, report.purged
            );
        }
        Admin::AuditVerify { since } => {
            let verified = match since {
                Some(anchor) => conn.read(|db| audit::verify_from(db, anchor))?,
                None => conn.read(audit::verify)?,
            };
            let head = verified
                .head
                .map(|hash| {
                    audit::Anchor {
                        seq: verified.rows,
                        hash,
                    }
                    .to_string()
                })
                .unwrap_or_else(|| "none".into());
            println!("audit chain intact: {} rows, head {head}", verified.rows);
        }
        Admin::WebAccess { worker, login } => {
            let code = admin::web_access(&mut conn, worker, &login, now)?;
            println!("{code}");
            eprintln!(
                "give the supervisor this one-time code; at the server's address they choose \
                 \"Første gang\" (first time), type login name and code, and set a password \
                 of at least 12 characters; valid 72 hours"
            );
        }
        Admin::AuditExport { citizen } => {
            let mut out = std::io::stdout().lock();
            let n = admin::export_citizen_audit(&mut conn, citizen, &mut out, now)?;
            eprintln!("{n} audit row(s) exported");
        }
    }
    Ok(())
}

/// Said after a scope change (`epochs.rs`): nothing is revoked and nothing unsynced is lost.
const RESCOPED: &str = "; on their next sync the worker's devices push what they had pending \
     (judged under the old scope), erase what left their scope and pull what entered it";

fn iso(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Logs go to stderr at `FELTBOG_LOG` (an `EnvFilter`, e.g. `debug`) or `default`: stdout
/// carries what a command answers (the address `serve` listens on, an id, a code).
fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FELTBOG_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(
    location: &Location,
    pool_size: u32,
    listen: SocketAddr,
    config: Config,
    retention: sync::Retention,
) -> Result<()> {
    init_logging("info");
    let pool = Pool::open(location, pool_size).context("cannot open the server database")?;
    let state = AppState::new(pool, config);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = feltbog_server::listen::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        // The address is printed so scripts and tests that ask for port 0 learn the real one.
        println!("listening on http://{}", listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, "feltbog-server listening");
        if retention != sync::Retention::default() {
            tokio::spawn(retention_loop(state.clone(), retention));
        }
        // Ctrl-C, or SIGTERM from systemd or a container runtime: stop accepting and let the
        // requests in progress finish.
        let shutdown = async {
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async {
                        match term.as_mut() {
                            Some(t) => { t.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        };
        feltbog_server::serve(listener, state, shutdown).await?;
        Ok(())
    })
}

/// Applies the retention rules at start and every hour.
async fn retention_loop(state: AppState, rules: sync::Retention) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            state
                .db
                .with(|conn| {
                    Ok::<_, anyhow::Error>(sync::apply_retention(conn, rules, system_time_ms())?)
                })
                .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok(Ok(r)) => tracing::info!(
                off_devices = r.off_devices,
                purged = r.purged,
                "retention applied"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}
