//! Process-level faults with the real binaries (issue 4, point 5): three devices sync over HTTP
//! through a TCP proxy that cuts connections mid-request and mid-response and delays traffic,
//! while the real `feltbog-server` is SIGKILLed and restarted 50 times. Afterwards, with the
//! network healed, every replica converges and no acknowledged edit is lost.

mod common;

use common::{Server, pass};
use feltbog_core::crypto::KdfParams;
use feltbog_core::dataset::SplitMix;
use feltbog_core::domain::{Citizen, CitizenId, Visit, VisitId, VisitKind, WorkerId};
use feltbog_core::store::{CreateOptions, Saved, Store};
use feltbog_core::sync::{self, Retry, http::HttpTransport};
use feltbog_server::storage::{Database, Transact};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the proxy treats one connection.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Pass,
    /// Forward this many bytes of the request, then cut both ways.
    CutRequest(usize),
    /// Forward the whole request and this many bytes of the response, then cut.
    CutResponse(usize),
    /// Hold every chunk back this long in both directions.
    Delay(Duration),
}

/// A TCP proxy in front of the server: passes traffic through, or (when faulty) cuts and delays
/// connections. Follows the server to new ports; in front of several instances, sends each
/// connection to one of them at random.
struct Proxy {
    addr: String,
    targets: Arc<Mutex<Vec<String>>>,
    faulty: Arc<AtomicBool>,
    connections: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: String, seed: u64) -> Proxy {
        Self::start_many(vec![target], seed)
    }

    fn start_many(targets: Vec<String>, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let proxy = Proxy {
            addr,
            targets: Arc::new(Mutex::new(targets)),
            faulty: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
        };
        let (targets, faulty, connections, cuts) = (
            proxy.targets.clone(),
            proxy.faulty.clone(),
            proxy.connections.clone(),
            proxy.cuts.clone(),
        );
        let rng = Mutex::new(SplitMix(seed));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let upstream_addr = {
                    let targets = targets.lock().unwrap();
                    let i = rng.lock().unwrap().below(targets.len() as u64) as usize;
                    targets[i].clone()
                };
                let fate = if faulty.load(Ordering::SeqCst) {
                    let mut rng = rng.lock().unwrap();
                    match rng.below(10) {
                        0..2 => Fate::CutRequest(1 + rng.below(700) as usize),
                        2..4 => Fate::CutResponse(1 + rng.below(500) as usize),
                        4..6 => Fate::Delay(Duration::from_millis(5 + rng.below(150))),
                        _ => Fate::Pass,
                    }
                } else {
                    Fate::Pass
                };
                if matches!(fate, Fate::CutRequest(_) | Fate::CutResponse(_)) {
                    cuts.fetch_add(1, Ordering::SeqCst);
                }
                thread::spawn(move || {
                    // The server may be down (killed): the client then sees its connection close.
                    let Ok(upstream) = TcpStream::connect(&upstream_addr) else {
                        return;
                    };
                    let (request_limit, response_limit, delay) = match fate {
                        Fate::Pass => (None, None, None),
                        Fate::CutRequest(n) => (Some(n), None, None),
                        Fate::CutResponse(n) => (None, Some(n), None),
                        Fate::Delay(d) => (None, None, Some(d)),
                    };
                    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    let up = thread::spawn(move || pump(client, upstream, request_limit, delay));
                    pump(u2, c2, response_limit, delay);
                    let _ = up.join();
                });
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn retarget(&self, addr: String) {
        self.retarget_at(0, addr);
    }

    /// The instance at `i` moved to `addr` (it was restarted).
    fn retarget_at(&self, i: usize, addr: String) {
        self.targets.lock().unwrap()[i] = addr;
    }

    fn set_faulty(&self, faulty: bool) {
        self.faulty.store(faulty, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, cutting both sockets after `limit` bytes.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>, delay: Option<Duration>) {
    let mut buf = [0u8; 8192];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(d) = delay {
            thread::sleep(d);
        }
        let n = match limit {
            Some(limit) if sent + n >= limit => {
                let _ = to.write_all(&buf[..limit - sent]);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
            _ => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn enrolled_device(
    dir: &std::path::Path,
    name: &str,
    server: &Server,
    team: &str,
    proxy: &Proxy,
) -> Store {
    let worker = server.admin(&["create-worker", "--team", team, "--name", name]);
    let mut store = Store::create(
        &dir.join(format!("{name}.feltbog")),
        &pass(),
        &CreateOptions::with_kdf(KdfParams::MINIMUM),
    )
    .unwrap();
    let code = server.admin(&["enrolment-code", "--worker", &worker]);
    let transport = HttpTransport::new(&proxy.url()).unwrap();
    sync::enrol(&mut store, &transport, &proxy.url(), &code).unwrap();
    store
}

fn try_sync(store: &mut Store, url: &str) -> Result<sync::SyncReport, sync::SyncError> {
    let transport = HttpTransport::new(url).unwrap();
    sync::sync_now(
        store,
        &transport,
        Retry {
            attempts: 3,
            first_delay: Duration::from_millis(20),
        },
        &mut |_| {},
    )
}

/// What one device did through a storm: its store, the visits it saved durably, and its
/// cursor before it and after every sync that got through.
type Storm = (Store, Vec<VisitId>, Vec<u64>);

/// One device through a storm, until `stop`: each round a visit about `shared` (and every third
/// round an edit of the citizen's phone), then a sync through `url` that may fail.
fn through_the_storm(
    i: usize,
    mut store: Store,
    shared: CitizenId,
    url: &str,
    stop: &AtomicBool,
    saves: &AtomicU64,
) -> Storm {
    let mut acknowledged = Vec::new();
    let mut cursors = vec![store.sync_status().unwrap().cursor];
    let author = WorkerId(store.enrolment().unwrap().unwrap().worker_id);
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let visit = Visit {
            id: VisitId(uuid::Uuid::from_u64_pair(i as u64 + 1, k)),
            note: format!("besøg {i}-{k}").into(),
            ..Visit::with_citizen(shared, author, VisitKind::HomeVisit)
        };
        if let Saved::Written { .. } = store.save(&visit).unwrap() {
            acknowledged.push(visit.id);
        }
        if k.is_multiple_of(3) {
            let mut c: Citizen = store.get(shared.0).unwrap().unwrap();
            c.phone = Some(format!("+45 {i}{k:07}").into());
            store.save(&c).unwrap();
        }
        saves.fetch_add(1, Ordering::SeqCst);
        if try_sync(&mut store, url).is_ok() {
            cursors.push(store.sync_status().unwrap().cursor);
        }
    }
    (store, acknowledged, cursors)
}

#[test]
fn three_devices_converge_through_cut_connections_and_50_server_kills() {
    const KILLS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mut server = Server::start(&data);
    let team = server.admin(&["create-team", "Team Nord"]);
    let proxy = Proxy::start(server.addr(), 0xFA17);

    let mut devices: Vec<Store> = ["anne", "bo", "cille"]
        .into_iter()
        .map(|name| enrolled_device(dir.path(), name, &server, &team, &proxy))
        .collect();
    // One citizen everyone edits, created and synced before the storm.
    let shared = Citizen::with_alias("Fælles");
    devices[0].save(&shared).unwrap();
    for d in &mut devices {
        try_sync(d, &proxy.url()).unwrap();
    }
    proxy.set_faulty(true);

    let stop = Arc::new(AtomicBool::new(false));
    let saves = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let (stop, saves, url) = (stop.clone(), saves.clone(), proxy.url());
            thread::spawn(move || through_the_storm(i, store, shared.id, &url, &stop, &saves))
        })
        .collect();

    let started = Instant::now();
    let mut rng = SplitMix(0x4B11);
    for _ in 0..KILLS {
        // Kill while traffic flows: after a random number of new connections through the proxy.
        let seen = proxy.connections.load(Ordering::SeqCst);
        let wait_for = 2 + rng.below(12);
        while proxy.connections.load(Ordering::SeqCst) < seen + wait_for {
            assert!(started.elapsed() < Duration::from_secs(600), "no traffic");
            thread::sleep(Duration::from_millis(1));
        }
        server.kill();
        server = Server::start(&data);
        proxy.retarget(server.addr());
    }
    stop.store(true, Ordering::SeqCst);
    let mut results: Vec<Storm> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let storm = started.elapsed();
    assert!(
        proxy.cuts.load(Ordering::SeqCst) > 20,
        "the proxy cut connections"
    );

    // The network heals: sync everyone until a whole round moves nothing.
    proxy.set_faulty(false);
    for round in 0.. {
        assert!(round < 20, "devices still sync after 20 healed rounds");
        let mut moved = false;
        for (store, _, _) in &mut results {
            let report = try_sync(store, &proxy.url()).expect("healed sync");
            moved |= report.pushed > 0 || report.pulled > 0;
        }
        if !moved {
            break;
        }
    }

    let all_acknowledged: Vec<VisitId> = results.iter().flat_map(|r| r.1.clone()).collect();
    assert!(
        all_acknowledged.len() > 50,
        "devices saved while the server died"
    );
    println!(
        "{KILLS} server kills in {:.1} s; {} connections, {} cut; {} saves, {} visits acknowledged",
        storm.as_secs_f64(),
        proxy.connections.load(Ordering::SeqCst),
        proxy.cuts.load(Ordering::SeqCst),
        saves.load(Ordering::SeqCst),
        all_acknowledged.len()
    );
    let team_id: uuid::Uuid = team.parse().unwrap();
    let on_server = common::server_db(&data)
        .read(|db| feltbog_server::sync::replica_state(db, team_id))
        .unwrap();
    for (store, _, _) in &mut results {
        assert_eq!(store.outbox_len().unwrap(), 0);
        for id in &all_acknowledged {
            let visit: Option<Visit> = store.get(id.0).unwrap();
            assert!(visit.is_some(), "an acknowledged visit is missing");
        }
        assert!(
            store.replica_state().unwrap() == on_server,
            "a device differs from the server"
        );
    }
}

/// Issue 18: two instances of the server on one PostgreSQL database, devices syncing through
/// either at random (the proxy picks one per connection) while it cuts and delays connections,
/// and one instance or the other SIGKILLed and restarted 50 times. Afterwards every replica
/// converges, no acknowledged edit is lost, no device's cursor ever went back, and the audit
/// trail is one chain that verifies.
#[test]
fn two_instances_on_one_postgres_converge_through_cut_connections_and_50_kills() {
    const KILLS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let scratch = common::pg::Scratch::new();
    let database = scratch.url();
    let data = [dir.path().join("a"), dir.path().join("b")];
    let mut servers = [
        Server::start_shared(&data[0], &database),
        Server::start_shared(&data[1], &database),
    ];
    let team = servers[0].admin(&["create-team", "Team Nord"]);
    let proxy = Proxy::start_many(vec![servers[0].addr(), servers[1].addr()], 0x2157);

    let mut devices: Vec<Store> = ["anne", "bo", "cille"]
        .into_iter()
        .map(|name| enrolled_device(dir.path(), name, &servers[1], &team, &proxy))
        .collect();
    let shared = Citizen::with_alias("Fælles");
    devices[0].save(&shared).unwrap();
    for d in &mut devices {
        try_sync(d, &proxy.url()).unwrap();
    }
    proxy.set_faulty(true);

    let stop = Arc::new(AtomicBool::new(false));
    let saves = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let (stop, saves, url) = (stop.clone(), saves.clone(), proxy.url());
            thread::spawn(move || through_the_storm(i, store, shared.id, &url, &stop, &saves))
        })
        .collect();

    let started = Instant::now();
    let mut rng = SplitMix(0x2B11);
    for _ in 0..KILLS {
        let seen = proxy.connections.load(Ordering::SeqCst);
        let wait_for = 2 + rng.below(12);
        while proxy.connections.load(Ordering::SeqCst) < seen + wait_for {
            assert!(started.elapsed() < Duration::from_secs(600), "no traffic");
            thread::sleep(Duration::from_millis(1));
        }
        let i = rng.below(2) as usize;
        let old = std::mem::replace(&mut servers[i], Server::start_shared(&data[i], &database));
        old.kill();
        proxy.retarget_at(i, servers[i].addr());
    }
    stop.store(true, Ordering::SeqCst);
    let mut results: Vec<Storm> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let storm = started.elapsed();
    assert!(
        proxy.cuts.load(Ordering::SeqCst) > 20,
        "the proxy cut connections"
    );

    proxy.set_faulty(false);
    for round in 0.. {
        assert!(round < 20, "devices still sync after 20 healed rounds");
        let mut moved = false;
        for (store, _, cursors) in &mut results {
            let report = try_sync(store, &proxy.url()).expect("healed sync");
            cursors.push(store.sync_status().unwrap().cursor);
            moved |= report.pushed > 0 || report.pulled > 0;
        }
        if !moved {
            break;
        }
    }

    let all_acknowledged: Vec<VisitId> = results.iter().flat_map(|r| r.1.clone()).collect();
    assert!(
        all_acknowledged.len() > 50,
        "devices saved while instances died"
    );
    println!(
        "{KILLS} instance kills in {:.1} s; {} connections, {} cut; {} visits acknowledged",
        storm.as_secs_f64(),
        proxy.connections.load(Ordering::SeqCst),
        proxy.cuts.load(Ordering::SeqCst),
        all_acknowledged.len()
    );
    let team_id: uuid::Uuid = team.parse().unwrap();
    let mut db = Database::Postgres(scratch.connect());
    let on_server = db
        .read(|db| feltbog_server::sync::replica_state(db, team_id))
        .unwrap();
    for (store, _, cursors) in &mut results {
        assert!(
            cursors.windows(2).all(|w| w[0] <= w[1]),
            "a device's cursor went back: {cursors:?}"
        );
        assert_eq!(store.outbox_len().unwrap(), 0);
        for id in &all_acknowledged {
            let visit: Option<Visit> = store.get(id.0).unwrap();
            assert!(visit.is_some(), "an acknowledged visit is missing");
        }
        assert!(
            store.replica_state().unwrap() == on_server,
            "a device differs from the server"
        );
    }
    // One chain: every instance appended to it under the writers' lock.
    let verified = servers[0].admin(&["audit-verify"]);
    assert!(verified.starts_with("audit chain intact"), "{verified}");
}
