//! The server under many devices at once, on SQLite and on PostgreSQL, in one run (issue 18).
//! Prints figures; asserts nothing. Run:
//!
//!     cargo bench -p feltbog-server --bench load                  # 50, 200 and 500 devices
//!     FELTBOG_LOAD_DEVICES=50 FELTBOG_LOAD_BACKENDS=PostgreSQL cargo bench -p feltbog-server --bench load
//!
//! For each backend and each number of devices: a real `feltbog-server` on 127.0.0.1 (rate
//! limits raised: the engine is measured), every device enrolled through it, then
//! 1. ingest: every device pushes its visits at once (one request each): field ops per
//!    second, and each request's latency (p50, p99);
//! 2. pull: every device asks for its first page at once, from an empty cursor: changes served
//!    per second, and each request's latency;
//! 3. the server process's peak memory (VmHWM; PostgreSQL's own processes not counted).
//!
//! PostgreSQL is the one on 127.0.0.1:5432 (`FELTBOG_TEST_POSTGRES` elsewhere), each run in a
//! schema of its own, dropped after.

use feltbog_core::domain::{Citizen, Visit, VisitKind, WorkerId};
use feltbog_core::protocol::SyncRequest;
use feltbog_core::store::Store;
use feltbog_core::sync::{Transport, http::HttpTransport};
use std::io::Write;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Server, UNTHROTTLED, device};

/// Visits each device pushes (one request).
const VISITS: usize = 20;

fn main() {
    let counts: Vec<usize> = std::env::var("FELTBOG_LOAD_DEVICES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![50, 200, 500]);
    println!("# Feltbog server load benchmark");
    println!("machine: {}", feltbog_core::dataset::machine_description());
    println!(
        "each device pushes {VISITS} visits in one request, then pulls one page from an empty cursor\n"
    );
    println!(
        "| backend | devices | ingest ops/s | push p50 | push p99 | pull changes/s | pull p50 | pull p99 | retried (503, timeout) | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let backends: Vec<String> = std::env::var("FELTBOG_LOAD_BACKENDS")
        .map(|v| v.split(',').map(|b| b.trim().to_owned()).collect())
        .unwrap_or_else(|_| vec!["SQLite".into(), "PostgreSQL".into()]);
    for &n in &counts {
        for backend in backends.iter().map(String::as_str) {
            let row = run(backend, n);
            println!(
                "| {backend} | {n} | {:.0} | {} | {} | {:.0} | {} | {} | {} | {} MiB |",
                row.ingest_ops_per_s,
                ms(row.push.0),
                ms(row.push.1),
                row.pull_changes_per_s,
                ms(row.pull.0),
                ms(row.pull.1),
                row.busy,
                row.peak_kib / 1024
            );
            let _ = std::io::stdout().flush();
        }
    }
}

struct Row {
    ingest_ops_per_s: f64,
    /// Answers "busy, try again" (503) the devices got and retried after.
    busy: u32,
    push: (Duration, Duration),
    pull_changes_per_s: f64,
    pull: (Duration, Duration),
    peak_kib: u64,
}

/// Sends until an answer other than "busy" (503) or a timeout, as a device's sync does,
/// counting those.
fn patiently<T>(
    mut send: impl FnMut() -> Result<T, feltbog_core::sync::TransportError>,
) -> (T, u32) {
    let mut busy = 0;
    loop {
        match send() {
            Ok(answer) => return (answer, busy),
            Err(feltbog_core::sync::TransportError::Refused {
                status: 503,
                retry_after_ms,
                ..
            }) => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(retry_after_ms.unwrap_or(1000)));
            }
            // A request that timed out on the client's side: tried again, as a device does.
            Err(feltbog_core::sync::TransportError::Unreachable(_)) => {
                busy += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// p50 and p99 of `times`.
fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

fn run(backend: &str, devices: usize) -> Row {
    let dir =
        tempfile::tempdir_in(std::env::var("FELTBOG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let data = dir.path().join("server");
    let scratch = (backend == "PostgreSQL").then(common::pg::Scratch::new);
    let mut flags = UNTHROTTLED.to_vec();
    let max = (devices * 2 + 64).to_string();
    flags.extend(["--max-connections", &max]);
    let server = match &scratch {
        Some(s) => Server::start_shared_with(&data, &s.url(), "127.0.0.1:0", &flags),
        None => Server::start_with(&data, "127.0.0.1:0", &flags),
    };
    let team = server.admin(&["create-team", "Last"]);
    let worker = server.admin(&["create-worker", "--team", &team, "--name", "Last"]);
    let author = WorkerId(worker.parse().unwrap());
    let mut first = device(dir.path(), "first", &server, &worker);
    let citizens: Vec<Citizen> = (0..50)
        .map(|i| Citizen::with_alias(&format!("Borger {i}")))
        .collect();
    first.save_all(&citizens).unwrap();
    common::sync(&mut first);
    // Each device's push, made before the clock starts.
    let mut pushes: Vec<(String, SyncRequest, usize)> = Vec::new();
    for i in 0..devices {
        let mut d: Store = device(dir.path(), &format!("d{i}"), &server, &worker);
        let visits: Vec<Visit> = (0..VISITS)
            .map(|j| {
                let mut v = Visit::with_citizen(
                    citizens[(i + j) % citizens.len()].id,
                    author,
                    VisitKind::StreetContact,
                );
                v.note = format!("kontakt {i}-{j}").into();
                v
            })
            .collect();
        d.save_all(&visits).unwrap();
        let mutations = d.pending(10_000).unwrap();
        let ops = mutations.iter().map(|m| m.ops.len()).sum();
        let token = d.enrolment().unwrap().unwrap().token.expose().clone();
        let request = SyncRequest {
            mutations,
            cursor: u64::MAX / 2,
            ..Default::default()
        };
        pushes.push((token, request, ops));
    }
    let ops: usize = pushes.iter().map(|p| p.2).sum();
    let url = server.url.clone();

    // 1. Everyone pushes at once.
    let started = Instant::now();
    let handles: Vec<_> = pushes
        .iter()
        .map(|(token, request, _)| {
            let (url, token, request) = (url.clone(), token.clone(), request.clone());
            std::thread::spawn(move || {
                let transport = HttpTransport::new(&url).unwrap();
                let t = Instant::now();
                let (_, busy) = patiently(|| transport.sync(&token, &request));
                (t.elapsed(), busy)
            })
        })
        .collect();
    let pushed: Vec<(Duration, u32)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ingest = started.elapsed();

    // 2. Everyone pulls a first page at once.
    let started = Instant::now();
    let handles: Vec<_> = pushes
        .iter()
        .map(|(token, _, _)| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let transport = HttpTransport::new(&url).unwrap();
                let t = Instant::now();
                let ((answer, _), busy) =
                    patiently(|| transport.sync(&token, &SyncRequest::default()));
                (t.elapsed(), answer.pull.changes.len(), busy)
            })
        })
        .collect();
    let pulls: Vec<(Duration, usize, u32)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let pull_wall = started.elapsed();
    let changes: usize = pulls.iter().map(|p| p.1).sum();

    let peak_kib = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    server.kill();
    Row {
        ingest_ops_per_s: ops as f64 / ingest.as_secs_f64(),
        busy: pushed.iter().map(|p| p.1).sum::<u32>() + pulls.iter().map(|p| p.2).sum::<u32>(),
        push: percentiles(pushed.iter().map(|p| p.0).collect()),
        pull_changes_per_s: changes as f64 / pull_wall.as_secs_f64(),
        pull: percentiles(pulls.iter().map(|p| p.0).collect()),
        peak_kib,
    }
}
