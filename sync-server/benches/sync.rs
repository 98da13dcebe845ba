//! Sync benchmark (issue 3). Prints figures; asserts nothing. Run:
//!
//!     cargo bench -p feltbog-server --bench sync
//!
//! Against the real server binary on 127.0.0.1, with the team dataset of DESIGN §7:
//! 1. first sync of the whole caseload to a fresh device: time, requests, bytes on the wire —
//!    beside the reference of shipping the same records as one gzip JSON document;
//! 2. a sync with nothing changed: requests and bytes (target: one request);
//! 3. a sync of 10 changed records;
//! 4. server ingest in field ops per second with 50 devices pushing at once.

use feltbog_core::dataset;
use feltbog_core::domain::{Visit, VisitKind, WorkerId};
use feltbog_core::store::Store;
use feltbog_core::sync::{self, http::HttpTransport};
use std::io::Write;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{device, timed_sync};

fn main() {
    let dir =
        tempfile::tempdir_in(std::env::var("FELTBOG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let data = dir.path().join("server");
    let server = common::unthrottled(&data);
    let url = server.url.clone();

    println!("# Feltbog sync benchmark");
    println!("machine: {}", dataset::machine_description());
    let team = server.admin(&["create-team", "Bench team"]);
    let worker = server.admin(&["create-worker", "--team", &team, "--name", "Bench"]);
    let mut data_set = dataset::generate(dataset::TEAM, 1);
    data_set.written_by(WorkerId(worker.parse().unwrap()));
    println!(
        "dataset: team (seed 1): {} citizens, {} visits, {} tasks",
        data_set.citizens.len(),
        data_set.visits.len(),
        data_set.tasks.len()
    );

    // The caseload starts on device A and is uploaded once.
    let mut a = device(dir.path(), "a", &server, &worker);
    a.save_all(&data_set.citizens).unwrap();
    for chunk in data_set.visits.chunks(1_000) {
        a.save_all(chunk).unwrap();
    }
    for chunk in data_set.tasks.chunks(1_000) {
        a.save_all(chunk).unwrap();
    }
    let (up, up_time) = timed_sync(&mut a, &url);
    println!(
        "\nupload of the caseload from device A: {:.2} s, {} requests, {} mutations, {:.1} MiB sent",
        up_time.as_secs_f64(),
        up.requests,
        up.pushed,
        up.bytes.sent as f64 / 1048576.0
    );

    // 1. First sync to a fresh device.
    let mut b = device(dir.path(), "b", &server, &worker);
    let (first, first_time) = timed_sync(&mut b, &url);
    let mut reference = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let t = Instant::now();
    serde_json::to_writer(
        &mut reference,
        &(&data_set.citizens, &data_set.visits, &data_set.tasks),
    )
    .unwrap();
    let reference = reference.finish().unwrap();
    let reference_time = t.elapsed();
    println!("\nfirst sync of the caseload to a fresh device B:");
    println!(
        "  {:.2} s, {} requests, {} mutations pulled, {:.1} MiB received, {:.1} KiB sent",
        first_time.as_secs_f64(),
        first.requests,
        first.pulled,
        first.bytes.received as f64 / 1048576.0,
        first.bytes.sent as f64 / 1024.0
    );
    println!(
        "  reference: the same records as one gzip JSON document: {:.1} MiB (encoded in {:.2} s); bytes ratio {:.2}x",
        reference.len() as f64 / 1048576.0,
        reference_time.as_secs_f64(),
        first.bytes.received as f64 / reference.len() as f64
    );

    // 2. Nothing changed.
    let (idle, idle_time) = timed_sync(&mut b, &url);
    println!(
        "\nsync with nothing changed: {} request(s), {} B sent, {} B received, {:.1} ms (target: one request)",
        idle.requests,
        idle.bytes.sent,
        idle.bytes.received,
        idle_time.as_secs_f64() * 1000.0
    );

    // 3. Ten changed records.
    for v in data_set.visits.iter().take(10) {
        let mut v = v.clone();
        v.note = format!("{} (rettet)", v.note.expose()).into();
        a.save(&v).unwrap();
    }
    let (push10, push10_time) = timed_sync(&mut a, &url);
    let (pull10, pull10_time) = timed_sync(&mut b, &url);
    println!(
        "\nsync of 10 changed records: push from A {} request(s), {} B sent, {:.1} ms; pull to B {} request(s), {} B received, {:.1} ms",
        push10.requests,
        push10.bytes.sent,
        push10_time.as_secs_f64() * 1000.0,
        pull10.requests,
        pull10.bytes.received,
        pull10_time.as_secs_f64() * 1000.0
    );

    // 4. 50 devices pushing at once.
    let per_device = 200;
    let mut devices: Vec<Store> = (0..50)
        .map(|i| device(dir.path(), &format!("d{i}"), &server, &worker))
        .collect();
    let mut ops = 0usize;
    for (i, d) in devices.iter_mut().enumerate() {
        let visits: Vec<Visit> = (0..per_device)
            .map(|j| {
                let mut v = Visit::with_citizen(
                    data_set.citizens[(i + j) % 300].id,
                    WorkerId::new(),
                    VisitKind::StreetContact,
                );
                v.note = format!("kontakt {i}-{j}").into();
                v
            })
            .collect();
        d.save_all(&visits).unwrap();
        ops += d
            .pending(10_000)
            .unwrap()
            .iter()
            .map(|m| m.ops.len())
            .sum::<usize>();
    }
    let started = Instant::now();
    let handles: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            let url = url.clone();
            std::thread::spawn(move || {
                // Push only: the ingest figure is about applying mutations.
                let token = d.enrolment().unwrap().unwrap().token.expose().clone();
                let transport = HttpTransport::new(&url).unwrap();
                let pending = d.pending(10_000).unwrap();
                for chunk in pending.chunks(sync::MAX_PUSH) {
                    let request = feltbog_core::protocol::SyncRequest {
                        mutations: chunk.to_vec(),
                        cursor: u64::MAX / 2,
                        access_log: vec![],
                        profile_digest: None,
                        ..Default::default()
                    };
                    sync::Transport::sync(&transport, &token, &request).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let took = started.elapsed();
    println!(
        "\nserver ingest, 50 devices pushing {} mutations each at once: {} field ops in {:.2} s = {:.0} ops/s ({:.0} mutations/s)",
        per_device,
        ops,
        took.as_secs_f64(),
        ops as f64 / took.as_secs_f64(),
        (50 * per_device) as f64 / took.as_secs_f64()
    );
    server.kill();
    let _ = std::io::stdout().flush();
}
