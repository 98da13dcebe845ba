//! Store benchmark (issue 2). Prints figures; asserts nothing. Run:
//!
//!     cargo bench -p feltbog-core --features dataset --bench store
//!
//! On the team dataset of DESIGN §7 (generated deterministically, seed 1):
//! 1. saving one visit through the encrypted store vs. the same rows through plain rusqlite
//!    with the same pragmas (WAL, synchronous=FULL, foreign keys) — the record as plain JSON and
//!    the same outbox mutation in the clear; the reference is measured in this run;
//! 2. unlock, split into key derivation (calibrated Argon2id) and the rest;
//! 3. open + list the caseload (300 citizens, 20,000 visits, 3,000 tasks), excluding key
//!    derivation, vs. the same rows as plain JSON through rusqlite; measured in a child process
//!    so its peak memory is the caseload's, not the generator's.

use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::dataset::{self, Dataset};
use feltbog_core::domain::{Citizen, Record, Task, Visit, VisitId};
use feltbog_core::hlc::{DeviceId, Hlc};
use feltbog_core::keystore::NoPlatformSecret;
use feltbog_core::protocol::{FieldChange, FieldOp, Mutation};
use feltbog_core::store::{CreateOptions, ListQuery, Store, schema};
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASS: &str = "benchmark-passphrase";
const SAVES: usize = 300;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--list-child") {
        list_child(Path::new(&args[i + 1]), Path::new(&args[i + 2]));
        return;
    }
    let dir =
        tempfile::tempdir_in(std::env::var("FELTBOG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    println!("# Feltbog store benchmark");
    println!("machine: {}", dataset::machine_description());
    let data = dataset::generate(dataset::TEAM, 1);
    println!(
        "dataset: team (seed 1): {} citizens, {} visits, {} tasks",
        data.citizens.len(),
        data.visits.len(),
        data.tasks.len()
    );

    let (kdf, estimate) = KdfParams::calibrate(KdfParams::DEFAULT_TARGET).unwrap();
    println!(
        "key derivation: {kdf} (calibrated to {} ms; estimate {} ms)",
        KdfParams::DEFAULT_TARGET.as_millis(),
        estimate.as_millis()
    );

    let enc_path = dir.path().join("encrypted.feltbog");
    let plain_path = dir.path().join("plain.sqlite");
    let mut store = Store::create(
        &enc_path,
        &Passphrase::new(PASS).unwrap(),
        &CreateOptions::with_kdf(kdf),
    )
    .unwrap();
    let plain = plain_reference(&plain_path);

    // Load the caseload (batched: one transaction per 1,000 records) into both.
    let t = Instant::now();
    store.save_all(&data.citizens).unwrap();
    for chunk in data.visits.chunks(1_000) {
        store.save_all(chunk).unwrap();
    }
    for chunk in data.tasks.chunks(1_000) {
        store.save_all(chunk).unwrap();
    }
    let load_enc = t.elapsed();
    let t = Instant::now();
    plain_load(&plain, &data);
    let load_plain = t.elapsed();
    println!(
        "\nload caseload in batches of 1,000: encrypted {:.2} s, plain {:.2} s (ratio {:.2}x)",
        load_enc.as_secs_f64(),
        load_plain.as_secs_f64(),
        load_enc.as_secs_f64() / load_plain.as_secs_f64()
    );

    // 1. One visit per durable transaction, interleaved so both see the same disk.
    let mut enc_times = Vec::with_capacity(SAVES);
    let mut plain_times = Vec::with_capacity(SAVES);
    let mut seq = 100_000_000i64;
    for i in 0..SAVES {
        let mut v = data.visits[i].clone();
        v.id = VisitId::new();
        let t = Instant::now();
        store.save(&v).unwrap();
        enc_times.push(t.elapsed());
        let mut v = data.visits[i].clone();
        v.id = VisitId::new();
        seq += 1;
        let t = Instant::now();
        plain_save(&plain, &v, seq);
        plain_times.push(t.elapsed());
    }
    let (enc_med, plain_med) = (median(&mut enc_times), median(&mut plain_times));
    println!(
        "\nsave one visit ({SAVES} saves each, WAL + synchronous=FULL, one transaction per save):"
    );
    println!(
        "  encrypted store: median {:.3} ms, p90 {:.3} ms",
        ms(enc_med),
        ms(pct(&enc_times, 0.9))
    );
    println!(
        "  plain rusqlite:  median {:.3} ms, p90 {:.3} ms",
        ms(plain_med),
        ms(pct(&plain_times, 0.9))
    );
    println!(
        "  ratio (median): {:.2}x  (target ≤ 1.3x)",
        enc_med.as_secs_f64() / plain_med.as_secs_f64()
    );
    drop(store);
    drop(plain);

    // 2 + 3 in a child process.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .arg("--list-child")
        .arg(&enc_path)
        .arg(&plain_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!(
        "\npeak memory of this (parent) process, with the generated dataset in memory: {} MiB",
        peak_rss_mib()
    );
}

/// Child: open, unlock, list the whole caseload; then the plain reference; report peak memory.
fn list_child(enc: &Path, plain: &Path) {
    let pass = Passphrase::new(PASS).unwrap();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut store = Store::open(enc, Arc::new(NoPlatformSecret)).unwrap();
        let opened = t.elapsed();
        let report = store.unlock(&pass).unwrap();
        let t = Instant::now();
        let citizens = store.list::<Citizen>(&ListQuery::default()).unwrap();
        let visits = store.list::<Visit>(&ListQuery::default()).unwrap();
        let tasks = store.list::<Task>(&ListQuery::default()).unwrap();
        let listed = t.elapsed();
        if runs.is_empty() {
            println!(
                "\nmemory while the listed caseload is held: {}",
                rss_split()
            );
        }
        assert_eq!((citizens.len(), tasks.len()), (300, 3_000));
        assert!(visits.len() >= 20_000);
        runs.push((opened, report, listed, visits.len()));
    }
    let rss_encrypted = peak_rss_mib();
    println!("\nunlock (5 runs): key derivation / the rest, ms:");
    for (_, r, _, _) in &runs {
        println!(
            "  {:.1} / {:.2}",
            ms(r.key_derivation),
            ms(r.total - r.key_derivation)
        );
    }
    let mut excl_kdf: Vec<Duration> = runs
        .iter()
        .map(|(o, r, l, _)| *o + (r.total - r.key_derivation) + *l)
        .collect();
    let first = excl_kdf[0];
    let med = median(&mut excl_kdf);
    println!(
        "\nopen + list caseload ({} citizens, {} visits, {} tasks), excluding key derivation:",
        300, runs[0].3, 3_000
    );
    println!(
        "  encrypted store: first {:.1} ms, median of 5 {:.1} ms  (target < 150 ms)",
        ms(first),
        ms(med)
    );

    let mut plain_runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let conn = Connection::open(plain).unwrap();
        configure(&conn);
        let c: Vec<Citizen> = plain_list(&conn, "citizen");
        let v: Vec<Visit> = plain_list(&conn, "visit");
        let k: Vec<Task> = plain_list(&conn, "task");
        assert_eq!((c.len(), k.len()), (300, 3_000));
        assert!(v.len() >= 20_000);
        plain_runs.push(t.elapsed());
    }
    let plain_med = median(&mut plain_runs);
    println!(
        "  plain rusqlite + serde_json: median of 5 {:.1} ms",
        ms(plain_med)
    );
    println!(
        "  ratio (median): {:.2}x",
        med.as_secs_f64() / plain_med.as_secs_f64()
    );
    println!(
        "\npeak memory of the open + list process: {rss_encrypted} MiB (VmHWM, encrypted runs; now: {})",
        rss_split()
    );
}

fn configure(conn: &Connection) {
    let _: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;",
    )
    .unwrap();
}

/// The plain reference: the store's own schema and pragmas, values as plain JSON.
fn plain_reference(path: &Path) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    configure(&conn);
    schema::migrate_to(&mut conn, schema::LATEST).unwrap();
    conn.execute(
        "INSERT INTO header (id, device_id, kdf_salt, kdf_params, keystore, master_wrapped) VALUES (1, x'00', x'00', '{}', 'none', x'00')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO data_keys (key_id, scope, wrapped) VALUES (x'00', 'general', x'00')",
        [],
    )
    .unwrap();
    conn
}

/// The mutation the store queues for a new record: one op per field, one `Add` per element of a
/// set field — built here in the clear, so the reference writes the same outbox content.
fn plain_mutation<R: Record>(r: &R, seq: i64) -> Vec<u8> {
    let serde_json::Value::Object(fields) = serde_json::to_value(r).unwrap() else {
        unreachable!()
    };
    let hlc = Hlc::new(1_763_900_000_000, 0).unwrap();
    let mut ops = Vec::new();
    for (field, value) in fields {
        let changes = match (R::SET_FIELDS.contains(&field.as_str()), value) {
            (true, serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|value| FieldChange::Add { value })
                .collect(),
            (_, value) => vec![FieldChange::Assign { value }],
        };
        for change in changes {
            ops.push(FieldOp {
                entity: R::KIND,
                id: r.record_id(),
                field: field.clone(),
                change,
                hlc,
                base: None,
            });
        }
    }
    let m = Mutation {
        device_id: DeviceId(uuid::Uuid::nil()),
        device_seq: seq as u64,
        ops,
    };
    serde_json::to_vec(&m).unwrap()
}

fn plain_write<R: Record>(conn: &Connection, r: &R, seq: i64) {
    let p = r.projection();
    let json = serde_json::to_vec(r).unwrap();
    let mutation = plain_mutation(r, seq);
    conn.query_row(
        "SELECT count(*) FROM records WHERE entity = ?1 AND id = ?2",
        params![R::KIND.as_str(), &r.record_id().as_bytes()[..]],
        |row| row.get::<_, i64>(0),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO records (entity, id, citizen_id, site_id, sort_key, archived, key_id, cells) VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'00', ?7)",
        params![
            R::KIND.as_str(),
            &r.record_id().as_bytes()[..],
            p.citizen_id.map(|c| c.0.as_bytes().to_vec()),
            p.site_id.map(|s| s.0.as_bytes().to_vec()),
            p.sort_key,
            p.archived,
            &json
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO outbox (device_seq, entity, record_id, key_id, sealed) VALUES (?1, ?2, ?3, x'00', ?4)",
        params![seq, R::KIND.as_str(), &r.record_id().as_bytes()[..], &mutation],
    )
    .unwrap();
    conn.execute(
        "UPDATE header SET device_seq = ?1, hlc_last = ?1 WHERE id = 1",
        [seq],
    )
    .unwrap();
}

fn plain_save<R: Record>(conn: &Connection, r: &R, seq: i64) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    plain_write(conn, r, seq);
    conn.execute_batch("COMMIT").unwrap();
}

fn plain_load(conn: &Connection, data: &Dataset) {
    let mut seq = 0;
    let mut batch = |write: &mut dyn FnMut(&Connection, i64)| {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        seq += 1;
        write(conn, seq);
        conn.execute_batch("COMMIT").unwrap();
    };
    batch(&mut |c, s| {
        for (i, r) in data.citizens.iter().enumerate() {
            plain_write(c, r, s * 100_000 + i as i64);
        }
    });
    for chunk in data.visits.chunks(1_000) {
        batch(&mut |c, s| {
            for (i, r) in chunk.iter().enumerate() {
                plain_write(c, r, s * 100_000 + i as i64);
            }
        });
    }
    for chunk in data.tasks.chunks(1_000) {
        batch(&mut |c, s| {
            for (i, r) in chunk.iter().enumerate() {
                plain_write(c, r, s * 100_000 + i as i64);
            }
        });
    }
}

fn plain_list<R: Record>(conn: &Connection, entity: &str) -> Vec<R> {
    let mut stmt = conn
        .prepare(
            "SELECT cells FROM records WHERE entity = ?1 AND archived = 0 ORDER BY sort_key DESC",
        )
        .unwrap();
    let mut rows = stmt.query([entity]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        out.push(serde_json::from_slice(row.get_ref(0).unwrap().as_blob().unwrap()).unwrap());
    }
    out
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() as f64 * p) as usize).min(s.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Anonymous vs. file-backed resident memory: the store maps its file (mmap_size), and mapped
/// pages of the file count in VmHWM although the kernel can drop them at any time.
fn rss_split() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0)
    };
    format!(
        "RssAnon {} MiB, RssFile {} MiB",
        get("RssAnon:"),
        get("RssFile:")
    )
}
