//! `feltbog-server migrate --from sqlite:DIR --to postgres://…` moves a deployment whole
//! (issue 18, point 4): a team's caseload synced by two workers' devices, a citizen moved to
//! another team (an erasure and copies in the change log), a revoked device and the audit trail
//! of all of it, copied into a new PostgreSQL schema on the real server and compared table for
//! table, with the change log's sequence continuing where SQLite's would.

mod common;

use common::pg::Scratch;
use common::*;
use feltbog_core::dataset::{self, Spec};
use feltbog_core::domain::WorkerId;
use feltbog_server::identity::{Caller, Role};
use feltbog_server::storage::{Db, Pg, Transact};
use feltbog_server::sync::pull_page;
use feltbog_server::transfer::{self, Side};
use std::process::Command;

/// A small team caseload (the full one is the benchmarks').
const CASELOAD: Spec = Spec {
    teams: 1,
    workers: 2,
    citizens: 12,
    visits: 300,
    tasks: 30,
};

/// A server that has seen real work, stopped; its data directory.
fn deployment(dir: &std::path::Path) -> std::path::PathBuf {
    deployment_with_workers(dir).0
}

/// [`deployment`], and its workers: (worker id, team id, role).
fn deployment_with_workers(
    dir: &std::path::Path,
) -> (std::path::PathBuf, Vec<(String, String, &'static str)>) {
    let server = Server::start(&dir.join("server"));
    let (team, anne) = team_and_worker(&server);
    let bo = worker(&server, &team, "Bo", "outreach");
    let syd = server.admin(&["create-team", "Team Syd"]);
    let sus = worker(&server, &team, "Sus", "supervisor");
    server.admin(&["supervise", "--worker", &sus, "--team", &syd]);
    let cato = worker(&server, &team, "Cato", "caretaker");
    let sven = worker(&server, &syd, "Sven", "outreach");
    let mut a = device(dir, "a", &server, &anne);
    let mut data = dataset::generate(CASELOAD, 7);
    data.written_by(WorkerId(anne.parse().unwrap()));
    a.save_all(&data.citizens).unwrap();
    a.save_all(&data.visits).unwrap();
    a.save_all(&data.tasks).unwrap();
    assert_eq!(sync(&mut a).set_aside, 0);
    let mut b = device(dir, "b", &server, &bo);
    sync(&mut b);
    let moved = data.citizens[0].id.0.to_string();
    server.admin(&["move-citizen", "--citizen", &moved, "--team", &syd]);
    sync(&mut a);
    let device_b = b.device_id().0.to_string();
    server.admin(&["revoke-device", "--device", &device_b]);
    let data_dir = server.data_dir.clone();
    server.kill();
    let workers = vec![
        (anne, team.clone(), "outreach"),
        (bo, team.clone(), "outreach"),
        (sus, team.clone(), "supervisor"),
        (cato, team, "caretaker"),
        (sven, syd, "outreach"),
    ];
    (data_dir, workers)
}

fn migrate(data_dir: &std::path::Path, to: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["migrate", "--from"])
        .arg(format!("sqlite:{}", data_dir.display()))
        .env("FELTBOG_MIGRATE_TO", to)
        .output()
        .unwrap()
}

#[test]
fn a_deployment_moves_to_postgres_whole_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = deployment(dir.path());
    let scratch = Scratch::new();
    let out = migrate(&data_dir, &scratch.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("moved and verified"), "{stdout}");
    assert!(
        !stdout.contains(&scratch.name),
        "the connection string is never printed"
    );

    // Compared again here, apart from the command's own check.
    let sqlite = rusqlite::Connection::open(data_dir.join(feltbog_server::db::FILE_NAME)).unwrap();
    let original = transfer::summary(&sqlite, Side::Sqlite).unwrap();
    let copy = transfer::summary(&Pg::plain(scratch.connect()), Side::Postgres).unwrap();
    assert_eq!(original, copy);
    let rows = |table: &str| {
        original
            .tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.rows)
    };
    // What the deployment holds, so the comparison compared something.
    assert!(rows("records") >= 342, "records: {}", rows("records"));
    assert!(rows("changes") > 342 && rows("audit") > 0 && rows("applied") > 0);
    assert!(original.audit_head.is_some());
    assert_eq!(original.next_change, original.change_head + 1);
    // The move is in the log: the erasure and the copies for the new team.
    let mut pg = scratch.connect();
    let erasures: i64 = pg
        .query_one("SELECT count(*) FROM changes WHERE kind = 'erase'", &[])
        .unwrap()
        .get(0);
    assert_eq!(erasures, 1);

    // The next change PostgreSQL logs continues SQLite's sequence: no cursor a device holds
    // can pass it.
    let seq: i64 = pg
        .query_one(
            "INSERT INTO changes (team_id, device_id, mutation) VALUES ('\\x00', '\\x00', '{}')
             RETURNING seq",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(seq, original.next_change);
    // And the comparison sees one row more.
    let changed = transfer::summary(&Pg::plain(scratch.connect()), Side::Postgres).unwrap();
    assert_ne!(changed.tables, original.tables);
}

#[test]
fn a_move_into_a_database_that_holds_data_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = deployment(dir.path());
    let scratch = Scratch::new();
    assert!(migrate(&data_dir, &scratch.url()).status.success());
    let before = transfer::summary(&Pg::plain(scratch.connect()), Side::Postgres).unwrap();

    let again = migrate(&data_dir, &scratch.url());
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    let after = transfer::summary(&Pg::plain(scratch.connect()), Side::Postgres).unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_bad_source_or_target_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = migrate(dir.path(), "host=127.0.0.1 dbname=test");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server database"));

    let out = Command::new(BIN)
        .args(["migrate", "--from", "/var/lib/x", "--to", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite:DIR"));

    let data_dir = deployment(dir.path());
    let secret = "postgres://feltbog:s3cret-pw@127.0.0.1:1/none";
    let out = migrate(&data_dir, secret);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password is never printed"
    );
}

/// Every page a worker's device pulls from `cursor` on, to the end of the log.
fn pages(
    db: &dyn Db,
    caller: &Caller,
    cursor: u64,
    resync: bool,
) -> Vec<feltbog_core::protocol::PullPage> {
    let (mut out, mut cursor) = (Vec::new(), cursor);
    loop {
        let page = pull_page(db, caller, cursor, resync).unwrap();
        let more = page.more;
        cursor = page.next_cursor;
        out.push(page);
        if !more {
            return out;
        }
    }
}

/// A device synced before the move pulls the same after it: for every role, from the start,
/// from the middle of the log and afresh after a scope change, the PostgreSQL copy serves page
/// for page what SQLite served (the pull's statements running on PostgreSQL through the
/// storage seam), so nothing is pulled twice or missed.
#[test]
fn every_worker_pulls_the_same_pages_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, workers) = deployment_with_workers(dir.path());
    let scratch = Scratch::new();
    assert!(migrate(&data_dir, &scratch.url()).status.success());
    let sqlite = rusqlite::Connection::open(data_dir.join(feltbog_server::db::FILE_NAME)).unwrap();
    let postgres = Pg::plain(scratch.connect());
    let head = transfer::summary(&sqlite, Side::Sqlite)
        .unwrap()
        .change_head as u64;
    for (worker, team, role) in workers {
        let caller = Caller {
            device_id: feltbog_core::hlc::DeviceId(uuid::Uuid::new_v4()),
            worker_id: worker.parse().unwrap(),
            team_id: team.parse().unwrap(),
            role: Role::parse(role).unwrap(),
        };
        for (cursor, resync) in [(0, false), (head / 2, false), (0, true)] {
            let on_sqlite = pages(&sqlite, &caller, cursor, resync);
            let on_postgres = pages(&postgres, &caller, cursor, resync);
            assert_eq!(on_sqlite, on_postgres, "{role} from {cursor}");
            if role == "outreach" && cursor == 0 {
                let changes: usize = on_sqlite.iter().map(|p| p.changes.len()).sum();
                assert!(
                    changes > 0,
                    "an outreach worker is served their team's records"
                );
            }
        }
    }
}

/// The devices of a deployment sync on after its move, from where they were: a server on
/// PostgreSQL at the same address serves the next changes by the numbers SQLite's would have
/// had, so a device that synced before pulls exactly what is new, nothing twice and nothing
/// missed, and ends with the server's state.
#[test]
fn a_device_synced_before_the_move_syncs_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, anne) = team_and_worker(&server);
    let bo = worker(&server, &team, "Bo", "outreach");
    let mut a = device(dir.path(), "a", &server, &anne);
    let mut b = device(dir.path(), "b", &server, &bo);
    let mut data = dataset::generate(CASELOAD, 11);
    data.written_by(WorkerId(anne.parse().unwrap()));
    a.save_all(&data.citizens).unwrap();
    a.save_all(&data.visits).unwrap();
    assert_eq!(sync(&mut a).set_aside, 0);
    let before = sync(&mut b);
    assert_eq!(before.pulled, data.citizens.len() + data.visits.len());
    let cursor = b.sync_status().unwrap().cursor;
    let (addr, data_dir) = (server.addr(), server.data_dir.clone());
    server.kill();

    let scratch = Scratch::new();
    let out = migrate(&data_dir, &scratch.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_shared_on(&dir.path().join("pg"), &scratch.url(), &addr);
    assert_eq!(sync(&mut b).pulled, 0, "nothing pulled twice");
    // New work after the move: ten visits from A, one from B.
    use feltbog_core::domain::{Visit, VisitKind};
    let author = WorkerId(anne.parse().unwrap());
    let more: Vec<Visit> = (0..10)
        .map(|_| Visit::with_citizen(data.citizens[0].id, author, VisitKind::HomeVisit))
        .collect();
    a.save_all(&more).unwrap();
    assert_eq!(sync(&mut a).acked, 10);
    let after = sync(&mut b);
    assert_eq!(after.pulled, 10, "exactly what is new: {after:?}");
    assert!(b.sync_status().unwrap().cursor > cursor);
    for v in &more {
        assert!(b.get::<Visit>(v.id.0).unwrap().is_some());
    }
    let mut db = feltbog_server::storage::Database::Postgres(scratch.connect());
    let on_server = db
        .read(|tx| feltbog_server::sync::replica_state(tx, team.parse().unwrap()))
        .unwrap();
    assert!(
        b.replica_state().unwrap() == on_server,
        "B holds the server's state"
    );
    assert!(
        a.replica_state().unwrap() == on_server,
        "A holds the server's state"
    );
    assert!(
        server
            .admin(&["audit-verify"])
            .starts_with("audit chain intact")
    );
}
