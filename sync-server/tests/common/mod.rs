//! Test harness: the real `feltbog-server` binary on 127.0.0.1 (port 0), administered through
//! its own CLI, and device stores that sync to it over HTTP.
#![allow(dead_code)]

pub mod pg;

use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::protocol::{FieldOp, Mutation, RejectReason, SyncRequest, SyncResponse};
use feltbog_core::store::{CreateOptions, Store};
use feltbog_core::sync::{self, Retry, SyncReport, http::HttpTransport};
use feltbog_core::sync::{Transport, TransportError};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_feltbog-server");

/// A running server process; killed (SIGKILL) on drop.
pub struct Server {
    pub data_dir: PathBuf,
    pub url: String,
    /// The database URL the server was started on (`None`: SQLite in `data_dir`).
    pub database: Option<String>,
    child: Child,
}

impl Server {
    /// An instance on the PostgreSQL database `database_url`, which other instances may
    /// share (`data_dir` holds nothing then but is where its admin commands run).
    pub fn start_shared(data_dir: &Path, database_url: &str) -> Server {
        Self::start_shared_on(data_dir, database_url, "127.0.0.1:0")
    }

    /// [`Server::start_shared`] on `listen` (the address devices know, after a move).
    pub fn start_shared_on(data_dir: &Path, database_url: &str, listen: &str) -> Server {
        Self::start_shared_with(data_dir, database_url, listen, &[])
    }

    /// [`Server::start_shared_on`] with extra `serve` flags (the enrolment limit is raised
    /// unless they set it).
    pub fn start_shared_with(
        data_dir: &Path,
        database_url: &str,
        listen: &str,
        flags: &[&str],
    ) -> Server {
        let mut args = vec!["serve", "--listen", listen];
        if !flags.contains(&"--enrol-rate-per-minute") {
            args.extend(["--enrol-rate-per-minute", "100000"]);
        }
        let args: Vec<String> = args.iter().chain(flags).map(|a| a.to_string()).collect();
        Self::spawn_on(
            Command::new(BIN),
            &args,
            data_dir,
            Some(database_url.to_owned()),
        )
    }

    pub fn start(data_dir: &Path) -> Server {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    pub fn start_on(data_dir: &Path, listen: &str) -> Server {
        Self::start_with(data_dir, listen, &[])
    }

    /// Serving under an open-file limit of `nofile` (the shell's `ulimit -n`), as many hosts
    /// run it.
    pub fn start_limited(data_dir: &Path, nofile: u32) -> Server {
        let command = Command::new("sh");
        Self::spawn(
            command,
            &[
                "-c".into(),
                format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
                BIN.into(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--enrol-rate-per-minute".into(),
                "100000".into(),
            ],
            data_dir,
        )
    }

    /// With extra `serve` flags. Tests enrol many devices from one address: the enrolment
    /// limit is raised unless a test sets it.
    pub fn start_with(data_dir: &Path, listen: &str, flags: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", listen];
        if !flags.contains(&"--enrol-rate-per-minute") {
            args.extend(["--enrol-rate-per-minute", "100000"]);
        }
        let args: Vec<String> = args.iter().chain(flags).map(|a| a.to_string()).collect();
        Self::spawn(Command::new(BIN), &args, data_dir)
    }

    fn spawn(command: Command, args: &[String], data_dir: &Path) -> Server {
        Self::spawn_on(command, args, data_dir, pg::url_for(data_dir))
    }

    fn spawn_on(
        mut command: Command,
        args: &[String],
        data_dir: &Path,
        database: Option<String>,
    ) -> Server {
        if let Some(url) = &database {
            command.env("FELTBOG_DATABASE_URL", url);
        }
        let mut child = command
            .args(args)
            .env("FELTBOG_DATA_DIR", data_dir)
            .env("FELTBOG_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start feltbog-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("server prints its address")
            .to_owned();
        Server {
            data_dir: data_dir.to_owned(),
            url,
            database,
            child,
        }
    }

    /// The server's process id (benchmarks read its peak memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn admin(&self, args: &[&str]) -> String {
        let out = admin_command(&self.data_dir, self.database.as_deref(), args);
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags of a server for benchmarks: the engine is measured, not the per-device rate limit
/// (120 requests a minute, bursts of 60) nor the write budget (30,000 ops a minute), which
/// would pace a large upload.
pub const UNTHROTTLED: [&str; 8] = [
    "--device-rate-per-minute",
    "1000000",
    "--device-burst",
    "1000000",
    "--write-ops-per-minute",
    "100000000",
    "--write-kib-per-minute",
    "100000000",
];

/// A server for benchmarks ([`UNTHROTTLED`]).
pub fn unthrottled(data_dir: &Path) -> Server {
    Server::start_with(data_dir, "127.0.0.1:0", &UNTHROTTLED)
}

/// One whole sync of `store` with `url`, timed.
pub fn timed_sync(store: &mut Store, url: &str) -> (SyncReport, std::time::Duration) {
    let transport = HttpTransport::new(url).unwrap();
    let t = std::time::Instant::now();
    let report = sync::sync_now(store, &transport, Retry::default(), &mut |_| {}).unwrap();
    (report, t.elapsed())
}

pub fn admin(data_dir: &Path, args: &[&str]) -> String {
    let out = admin_output(data_dir, args);
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The database of the server whose data directory is `data_dir`, on the suite's backend
/// ([`pg::url_for`]): what a test reads (or damages) behind the server's back goes through
/// the same seam as the server's own statements.
pub fn server_db(data_dir: &Path) -> feltbog_server::storage::Database {
    let url = pg::url_for(data_dir);
    feltbog_server::pool::Location::parse(url.as_deref(), data_dir)
        .unwrap()
        .open()
        .unwrap()
}

/// One value a query on the server's database returns (a count, a flag, a stored text).
pub fn server_value<T: feltbog_server::storage::FromRow>(
    data_dir: &Path,
    sql: &str,
    params: &[feltbog_server::storage::Value],
) -> T {
    use feltbog_server::storage::{DbExt, Transact};
    server_db(data_dir)
        .read(|db| db.value(sql, params))
        .unwrap()
}

/// Every row a query on the server's database returns.
pub fn server_all<T: feltbog_server::storage::FromRow>(
    data_dir: &Path,
    sql: &str,
    params: &[feltbog_server::storage::Value],
) -> Vec<T> {
    use feltbog_server::storage::{DbExt, Transact};
    server_db(data_dir).read(|db| db.all(sql, params)).unwrap()
}

/// Runs one statement on the server's database, behind the server's back (a test that
/// damages or ages what the server holds).
pub fn server_execute(
    data_dir: &Path,
    sql: &str,
    params: &[feltbog_server::storage::Value],
) -> u64 {
    use feltbog_server::storage::Transact;
    server_db(data_dir)
        .write(|db| db.execute(sql, params))
        .unwrap()
}

/// Drops the triggers that keep the audit log append-only (an attacker with the database),
/// as each backend names them.
pub fn drop_audit_triggers(db: &mut feltbog_server::storage::Database) {
    use feltbog_server::storage::{Database, StorageError, Transact};
    let sql = match db {
        Database::Sqlite(_) => "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
        Database::Postgres(_) => {
            "DROP TRIGGER audit_no_update ON audit; DROP TRIGGER audit_no_delete ON audit;"
        }
    };
    db.write(|tx| {
        for statement in sql.split_terminator(';') {
            tx.execute(statement.trim(), &[])?;
        }
        Ok::<_, StorageError>(())
    })
    .unwrap();
}

/// An `admin` command's whole outcome (a test of a refusal reads its status and message).
pub fn admin_output(data_dir: &Path, args: &[&str]) -> std::process::Output {
    admin_command(data_dir, pg::url_for(data_dir).as_deref(), args)
}

fn admin_command(data_dir: &Path, database: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    if let Some(url) = database {
        command.env("FELTBOG_DATABASE_URL", url);
    }
    command
        .arg("admin")
        .args(args)
        .env("FELTBOG_DATA_DIR", data_dir)
        .output()
        .unwrap()
}

/// A team with one worker; returns (team id, worker id).
pub fn team_and_worker(server: &Server) -> (String, String) {
    let team = server.admin(&["create-team", "Team Nord"]);
    let worker = server.admin(&["create-worker", "--team", &team, "--name", "Anne"]);
    (team, worker)
}

pub fn pass() -> Passphrase {
    Passphrase::new("device-pin-123").unwrap()
}

/// A new device store, enrolled for `worker`.
pub fn device(dir: &Path, name: &str, server: &Server, worker: &str) -> Store {
    let path = dir.join(format!("{name}.feltbog"));
    let mut store =
        Store::create(&path, &pass(), &CreateOptions::with_kdf(KdfParams::MINIMUM)).unwrap();
    let code = server.admin(&["enrolment-code", "--worker", worker]);
    let transport = HttpTransport::new(&server.url).unwrap();
    sync::enrol(&mut store, &transport, &server.url, &code).unwrap();
    store
}

pub fn sync(store: &mut Store) -> SyncReport {
    try_sync(store).expect("sync")
}

pub fn try_sync(store: &mut Store) -> Result<SyncReport, sync::SyncError> {
    let url = store.enrolment().unwrap().unwrap().server_url;
    let transport = HttpTransport::new(&url).unwrap();
    sync::sync_now(
        store,
        &transport,
        Retry {
            attempts: 3,
            first_delay: Duration::from_millis(50),
        },
        &mut |_| {},
    )
}

/// The tablet app's core (what the Tauri commands call), enrolled for `worker`, in its own data
/// directory under `dir`.
pub fn app_device(
    dir: &Path,
    name: &str,
    server: &Server,
    worker: &str,
) -> (feltbog_core::app::App, PathBuf) {
    let data = dir.join(name);
    let mut config = feltbog_core::app::AppConfig::new(data.clone());
    config.kdf_target = Duration::from_millis(1);
    let app = feltbog_core::app::App::new(config);
    let code = server.admin(&["enrolment-code", "--worker", worker]);
    app.first_run(&feltbog_core::app::forms::FirstRunInput {
        server_url: server.url.clone(),
        code,
        pin: "739154".into(),
    })
    .expect("first run");
    (app, data)
}

/// The citizen form, from JSON (as the UI sends it); fields not given are empty.
pub fn citizen_form(fields: serde_json::Value) -> feltbog_core::app::forms::CitizenInput {
    let mut form = serde_json::json!({
        "id": null, "alias": "", "full_name": "", "cpr": "", "birth_year": null, "phone": "",
        "housing": "other", "site_id": null, "consent": null, "goals": [], "tags": [],
        "archived": false
    });
    for (k, v) in fields.as_object().unwrap() {
        form[k] = v.clone();
    }
    serde_json::from_value(form).unwrap()
}

/// Files of a device store left in an app's data directory.
pub fn store_files(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "settings.json")
                .collect()
        })
        .unwrap_or_default()
}

/// A raw client for one device: pushes hand-made mutations over HTTP.
pub struct Raw {
    pub transport: HttpTransport,
    pub token: String,
    pub device: feltbog_core::hlc::DeviceId,
    pub seq: u64,
}

impl Raw {
    pub fn of(store: &mut Store) -> Raw {
        let e = store.enrolment().unwrap().unwrap();
        Raw {
            transport: HttpTransport::new(&e.server_url).unwrap(),
            token: e.token.expose().clone(),
            device: store.device_id(),
            seq: 1_000_000,
        }
    }

    pub fn push(&mut self, ops: Vec<FieldOp>) -> Result<SyncResponse, TransportError> {
        self.seq += 1;
        let request = SyncRequest {
            mutations: vec![Mutation {
                device_id: self.device,
                device_seq: self.seq,
                ops,
            }],
            cursor: u64::MAX / 2,
            access_log: vec![],
            profile_digest: None,
            ..Default::default()
        };
        self.transport.sync(&self.token, &request).map(|(r, _)| r)
    }

    /// Pushes one mutation; `Ok(())` if acknowledged, else the refusal.
    pub fn write(&mut self, ops: Vec<FieldOp>) -> Result<(), (RejectReason, String)> {
        let response = self.push(ops).expect("the request itself is answered");
        match response.rejected.first() {
            Some(r) => Err((r.reason, r.detail.clone())),
            None => {
                assert_eq!(response.acked, vec![self.seq]);
                Ok(())
            }
        }
    }
}

/// A worker of `team` with `role`, made with the admin CLI; returns their id.
pub fn worker(server: &Server, team: &str, name: &str, role: &str) -> String {
    server.admin(&[
        "create-worker",
        "--team",
        team,
        "--name",
        name,
        "--role",
        role,
    ])
}

/// The visit form for a home visit about `citizen` (anonymous, one person, when `None`).
pub fn visit_form(citizen: Option<uuid::Uuid>, note: &str) -> feltbog_core::app::forms::VisitInput {
    feltbog_core::app::forms::VisitInput {
        citizen_id: citizen,
        anonymous_count: citizen.is_none().then_some(1),
        anonymous_description: String::new(),
        kind: feltbog_core::domain::VisitKind::HomeVisit,
        started_at_ms: None,
        duration_minutes: 30,
        place: String::new(),
        themes: vec![],
        referrals: vec![],
        note: note.into(),
        wellbeing: None,
        follow_up: None,
        course_id: None,
        goals: Vec::new(),
    }
}

/// The correction form as it opens on a visit the app shows.
pub fn visit_edit_of(
    v: &feltbog_core::app::views::VisitView,
) -> feltbog_core::app::forms::VisitEdit {
    feltbog_core::app::forms::VisitEdit {
        kind: v.kind,
        started_at_ms: v.started_at_ms,
        duration_minutes: v.duration_minutes,
        place: v.place.clone().unwrap_or_default(),
        themes: v.themes.clone(),
        referrals: v.referrals.clone(),
        note: v.note.clone(),
        wellbeing: v.wellbeing,
        anonymous_count: v.anonymous_count,
        anonymous_description: v.anonymous_description.clone().unwrap_or_default(),
    }
}

/// The device ids of `worker`'s devices, from `admin devices`.
pub fn devices_of(server: &Server, worker: &str) -> Vec<String> {
    server
        .admin(&["devices"])
        .lines()
        .filter(|l| l.split('\t').nth(1) == Some(worker))
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

/// The last 32 bytes of the sealed cells of each record (an AEAD tag and the end of a sealed
/// value: unique to that record), read from the store's file.
pub fn sealed_tails(store: &Store, ids: &[Uuid]) -> Vec<Vec<u8>> {
    let db = rusqlite::Connection::open(store.path()).unwrap();
    let tails: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            let cells: Vec<u8> = db
                .query_row(
                    "SELECT cells FROM records WHERE id = ?1",
                    [&id.as_bytes()[..]],
                    |r| r.get(0),
                )
                .unwrap_or_else(|_| panic!("record {id} is on the device"));
            cells[cells.len() - 32..].to_vec()
        })
        .collect();
    // Positive control: the scan finds them while they are there.
    assert!(
        tails.iter().all(|t| in_store_files(store, t)),
        "scan saw the records"
    );
    tails
}

pub fn in_store_files(store: &Store, needle: &[u8]) -> bool {
    let name = store
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir(store.path().parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .any(|e| {
            std::fs::read(e.path())
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle)
        })
}
