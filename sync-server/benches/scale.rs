//! Does one team's sync cost grow with other teams' data? (Issue 18.) Prints figures; asserts
//! nothing. Run:
//!
//!     cargo bench -p feltbog-server --bench scale
//!
//! Two real servers (release binary, 127.0.0.1): one holding one team's caseload (the team
//! dataset of DESIGN §7, seed 1), the other holding the municipality's 20 teams (the same team
//! and 19 more, seeds 2–20). Each team's caseload is uploaded by its own device in rounds of
//! 1,000 visits, so the teams' changes interleave in the change log as a day's work does. Then,
//! on each server, a fresh device of the first team makes its first sync: time, requests,
//! changes. Both figures come from the same run; the ratio is what to read. `SCALE_TEAMS`
//! overrides the 20 (e.g. 5 for a quick look).

use feltbog_core::dataset;
use feltbog_core::store::Store;
use std::path::Path;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Server, device, timed_sync};

/// Loads `teams` caseloads onto `server`, interleaved; returns the first team's worker and the
/// mutations the server acknowledged.
fn load(dir: &Path, server: &Server, teams: usize) -> (String, usize) {
    let mut acked = 0;
    let mut devices = Vec::new();
    let mut first_worker = String::new();
    for t in 0..teams {
        let team = server.admin(&["create-team", &format!("Team {t}")]);
        let worker = server.admin(&["create-worker", "--team", &team, "--name", "W"]);
        if t == 0 {
            first_worker = worker.clone();
        }
        let store = device(dir, &format!("load-{t}"), server, &worker);
        let mut data = dataset::generate(dataset::TEAM, t as u64 + 1);
        data.written_by(feltbog_core::domain::WorkerId(worker.parse().unwrap()));
        devices.push((store, data, 0usize));
    }
    // Citizens first (visits refer to them), then visits and tasks in rounds.
    for (store, data, _) in &mut devices {
        store.save_all(&data.citizens).unwrap();
        acked += pushed(store, &server.url);
    }
    loop {
        let mut more = false;
        for (store, data, at) in &mut devices {
            if *at < data.visits.len() {
                let end = (*at + 1_000).min(data.visits.len());
                store.save_all(&data.visits[*at..end]).unwrap();
                *at = end;
                if *at == data.visits.len() {
                    store.save_all(&data.tasks).unwrap();
                }
                acked += pushed(store, &server.url);
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    (first_worker, acked)
}

/// One sync; every pushed mutation must be acknowledged (a benchmark of refused work would
/// measure nothing).
fn pushed(store: &mut Store, url: &str) -> usize {
    let (report, _) = timed_sync(store, url);
    if report.set_aside > 0 {
        let why = store.set_aside().unwrap();
        panic!("{report:?}: {:?}", &why[..why.len().min(3)]);
    }
    report.acked
}

fn main() {
    let teams: usize = std::env::var("SCALE_TEAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir =
        tempfile::tempdir_in(std::env::var("FELTBOG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    println!("# Feltbog: one team's first sync against the server's size");
    println!("machine: {}", dataset::machine_description());
    let mut rows = Vec::new();
    for n in [1, teams] {
        let data = dir.path().join(format!("server-{n}"));
        let devices = dir.path().join(format!("devices-{n}"));
        std::fs::create_dir_all(&devices).unwrap();
        let server = common::unthrottled(&data);
        let t = Instant::now();
        let (worker, acked) = load(&devices, &server, n);
        let load_time = t.elapsed();
        let mut fresh = device(&devices, "fresh", &server, &worker);
        let (report, took) = timed_sync(&mut fresh, &server.url);
        let db_bytes = std::fs::metadata(data.join("feltbog-server.sqlite"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "\nserver holding {n} team(s): {acked} mutations loaded in {:.1} s ({:.0} MiB database)",
            load_time.as_secs_f64(),
            db_bytes as f64 / (1024.0 * 1024.0)
        );
        println!(
            "  first sync of team 1's fresh device: {:.2} s, {} requests, {} changes pulled",
            took.as_secs_f64(),
            report.requests,
            report.pulled
        );
        rows.push((n, took, report.pulled));
    }
    let (one, many) = (rows[0], rows[1]);
    println!(
        "\nratio ({} teams / 1 team): time {:.2}×, changes pulled {} / {} (must be equal)",
        many.0,
        many.1.as_secs_f64() / one.1.as_secs_f64(),
        many.2,
        one.2
    );
}
