//! A device killed with SIGKILL in the middle of syncing (DESIGN §8): a real `feltbog-device sync`
//! process against a real server on 127.0.0.1 (the server library, served in this test), killed
//! at random points while it pushes and pulls pages, again and again. After every kill the store
//! opens with `integrity_check` ok, its cursor has not moved back, and every edit the device
//! saved is still in its outbox or on the server. At the end every replica converges.
//!
//! `FELTBOG_SYNC_KILLS` sets the number of kills (default 50); `FELTBOG_CRASH_SEED` the seed.

use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::dataset::SplitMix as Rng;
use feltbog_core::domain::{Citizen, CitizenId, EntityKind, Visit, VisitId, VisitKind, WorkerId};
use feltbog_core::keystore::NoPlatformSecret;
use feltbog_core::store::{CreateOptions, Store};
use feltbog_core::sync::{self, Retry, http::HttpTransport};
use feltbog_server::{AppState, Config, identity};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_feltbog-device");
const PASS: &str = "sync-kill-pin";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pass() -> Passphrase {
    Passphrase::new(PASS).unwrap()
}

fn open(path: &Path) -> Store {
    let mut store = Store::open(path, Arc::new(NoPlatformSecret)).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    store.unlock(&pass()).unwrap();
    store
}

fn visits(
    store: &mut Store,
    citizen: CitizenId,
    author: WorkerId,
    n: usize,
    rng: &mut Rng,
) -> Vec<VisitId> {
    let batch: Vec<Visit> = (0..n)
        .map(|_| Visit {
            note: format!("besøg {}", rng.next_u64()).into(),
            ..Visit::with_citizen(citizen, author, VisitKind::HomeVisit)
        })
        .collect();
    store.save_all(&batch).unwrap();
    batch.iter().map(|v| v.id).collect()
}

fn sync_in_process(store: &mut Store) {
    let url = store.enrolment().unwrap().unwrap().server_url;
    let transport = HttpTransport::new(&url).unwrap();
    sync::sync_now(store, &transport, Retry::default(), &mut |_| {}).unwrap();
}

#[test]
fn a_device_killed_mid_sync_again_and_again_loses_nothing_and_converges() {
    let kills = env_u64("FELTBOG_SYNC_KILLS", 50);
    let seed = env_u64("FELTBOG_CRASH_SEED", 0x5eed_5c5c);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();

    // The server: its library on a tokio runtime, on a loopback port.
    let server_dir = dir.path().join("server");
    let conn = feltbog_server::db::open(&server_dir).unwrap();
    let now = feltbog_core::hlc::system_time_ms();
    let team = identity::create_team(&conn, "Team Nord", now).unwrap();
    let mut codes = Vec::new();
    for name in ["Anne", "Bo"] {
        let worker = identity::create_worker(&conn, team, name, "outreach").unwrap();
        codes.push(identity::issue_enrolment_code(&conn, worker, now).unwrap());
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(conn, Config::default());
    runtime.spawn(feltbog_server::serve(
        listener,
        state,
        std::future::pending(),
    ));

    // Device A is the process we kill; B is a colleague whose edits A keeps pulling.
    let a_path = dir.path().join("a.feltbog");
    let options = CreateOptions::with_kdf(KdfParams::MINIMUM);
    let mut a = Store::create(&a_path, &pass(), &options).unwrap();
    let mut b = Store::create(&dir.path().join("b.feltbog"), &pass(), &options).unwrap();
    let transport = HttpTransport::new(&url).unwrap();
    sync::enrol(&mut a, &transport, &url, &codes[0]).unwrap();
    sync::enrol(&mut b, &transport, &url, &codes[1]).unwrap();
    let author_a = WorkerId(a.enrolment().unwrap().unwrap().worker_id);
    let author_b = WorkerId(b.enrolment().unwrap().unwrap().worker_id);
    let citizen = Citizen::with_alias("Fælles borger");
    b.save(&citizen).unwrap();
    visits(&mut b, citizen.id, author_b, 1_500, &mut rng);
    sync_in_process(&mut b);
    let mut saved_on_a: BTreeSet<VisitId> = BTreeSet::new();
    drop(a);

    // How long one round's sync takes when nobody kills it (unlock included).
    let full_sync = {
        let mut a = open(&a_path);
        saved_on_a.extend(visits(&mut a, citizen.id, author_a, 100, &mut rng));
        drop(a);
        visits(&mut b, citizen.id, author_b, 100, &mut rng);
        sync_in_process(&mut b);
        let t = Instant::now();
        let status = Command::new(BIN)
            .arg("--store")
            .arg(&a_path)
            .args(["sync", "--attempts", "1"])
            .env("FELTBOG_PASSPHRASE", PASS)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        t.elapsed()
    };

    let started = Instant::now();
    let (mut killed_mid_sync, mut last_cursor) = (0u64, 0u64);
    for round in 0..kills {
        let ctx = format!("round {round}, replay with FELTBOG_CRASH_SEED={seed}");
        // New work on both sides, so every sync has pages to push and pull.
        let mut a = open(&a_path);
        saved_on_a.extend(visits(&mut a, citizen.id, author_a, 100, &mut rng));
        drop(a);
        visits(&mut b, citizen.id, author_b, 100, &mut rng);
        sync_in_process(&mut b);

        let mut child = Command::new(BIN)
            .arg("--store")
            .arg(&a_path)
            .args(["sync", "--attempts", "1"])
            .env("FELTBOG_PASSPHRASE", PASS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a random moment within the first 70 % of how long such a sync took when left
        // alone (timing varies; most kills must still land before the child is done).
        let spin = full_sync.mul_f64(rng.below(700) as f64 / 1_000.0);
        let t = Instant::now();
        while t.elapsed() < spin {
            std::hint::spin_loop();
        }
        if child.try_wait().unwrap().is_none() {
            killed_mid_sync += 1;
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let _ = status;

        // After the kill: intact, cursor not moved back, every saved edit in the outbox or on
        // the server.
        let mut a = open(&a_path);
        let status = a.sync_status().unwrap();
        assert!(status.cursor >= last_cursor, "{ctx}: cursor moved back");
        last_cursor = status.cursor;
        let pending: BTreeSet<uuid::Uuid> = a
            .outbox()
            .unwrap()
            .iter()
            .filter_map(|m| m.ops.first().map(|op| op.id))
            .collect();
        let server = rusqlite::Connection::open(server_dir.join("feltbog-server.sqlite")).unwrap();
        let on_server: BTreeSet<uuid::Uuid> = server
            .prepare("SELECT record_id FROM records WHERE entity = 'visit'")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|id| uuid::Uuid::from_slice(&id.unwrap()).unwrap())
            .collect();
        for id in &saved_on_a {
            assert!(
                pending.contains(&id.0) || on_server.contains(&id.0),
                "{ctx}: a saved visit is neither pending nor on the server"
            );
        }
    }
    assert!(
        killed_mid_sync * 4 >= kills,
        "kills must land while the sync runs ({killed_mid_sync} of {kills})"
    );

    // Heal: A syncs to the end, B catches up; all three replicas agree, stamps included.
    let mut a = open(&a_path);
    sync_in_process(&mut a);
    sync_in_process(&mut b);
    sync_in_process(&mut a);
    let server = feltbog_server::db::open(&server_dir).unwrap();
    let on_server = feltbog_server::sync::replica_state(&server, team).unwrap();
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert!(
        a.replica_state().unwrap() == on_server,
        "A differs from the server"
    );
    assert!(
        b.replica_state().unwrap() == on_server,
        "B differs from the server"
    );
    for id in &saved_on_a {
        assert!(on_server.contains_key(&(EntityKind::Visit, id.0)));
    }
    println!(
        "{kills} kills ({killed_mid_sync} mid-sync) in {:.1} s; {} visits saved on A, {} records converged",
        started.elapsed().as_secs_f64(),
        saved_on_a.len(),
        on_server.len()
    );
}
