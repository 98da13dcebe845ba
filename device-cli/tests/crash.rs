//! Crash safety with a real process (issue 2): a child saving records is killed with SIGKILL at
//! random points, again and again. After each kill the store opens, `PRAGMA integrity_check` is
//! ok, and every record the child reported as saved (it prints only after commit) is there —
//! with its outbox mutation, and with no gap in the outbox sequence.
//!
//! `FELTBOG_CRASH_KILLS` sets the number of kills (default 200); `FELTBOG_CRASH_SEED` the seed.

use feltbog_core::crypto::Passphrase;
use feltbog_core::dataset::SplitMix as Rng;
use feltbog_core::domain::{Citizen, CitizenId, EntityKind, Theme, Visit, VisitKind, WorkerId};
use feltbog_core::keystore::NoPlatformSecret;
use feltbog_core::store::Store;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_feltbog-device");
const PASS: &str = "crash-test-pin";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lines for `import`: citizens and visits to them, each with fresh ids.
fn batch(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(n);
    let mut citizen = CitizenId::new();
    for i in 0..n {
        if i % 4 == 0 {
            let mut c = Citizen::with_alias(&format!("Borger {}", rng.next_u64()));
            citizen = c.id;
            c.tags.insert("crash".into());
            lines.push(serde_json::json!({"kind": "citizen", "record": c}).to_string());
        } else {
            let mut v = Visit::with_citizen(citizen, WorkerId::new(), VisitKind::HomeVisit);
            v.note = "x".repeat(rng.below(2_000) as usize).into();
            v.themes.insert(Theme::Housing);
            lines.push(serde_json::json!({"kind": "visit", "record": v}).to_string());
        }
    }
    lines
}

fn verify(path: &Path, acknowledged: &[(String, uuid::Uuid)], round: u64, seed: u64) {
    let ctx = format!("round {round}, replay with FELTBOG_CRASH_SEED={seed}");
    let mut store = Store::open(path, Arc::new(NoPlatformSecret))
        .unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
    assert_eq!(store.integrity_check().unwrap(), "ok", "{ctx}");
    store
        .unlock(&Passphrase::new(PASS).unwrap())
        .unwrap_or_else(|e| panic!("{ctx}: unlock: {e}"));
    for (kind, id) in acknowledged {
        let found = match kind.as_str() {
            "citizen" => store.get::<Citizen>(*id).unwrap().is_some(),
            "visit" => store.get::<Visit>(*id).unwrap().is_some(),
            other => panic!("unexpected kind {other}"),
        };
        assert!(found, "{ctx}: acknowledged {kind} {id} is missing");
    }
    // Every record is a create, so records and outbox mutations must match one to one, and the
    // outbox sequence must run 1..=n without a gap or a repeat.
    let records =
        store.count(EntityKind::Citizen).unwrap() + store.count(EntityKind::Visit).unwrap();
    let seqs: Vec<u64> = store
        .outbox()
        .unwrap()
        .iter()
        .map(|m| m.device_seq)
        .collect();
    assert_eq!(
        seqs.len() as u64,
        records,
        "{ctx}: records and outbox disagree"
    );
    assert!(
        seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1),
        "{ctx}: outbox sequence has a gap"
    );
}

#[test]
fn sigkill_at_random_points_never_loses_an_acknowledged_save() {
    let kills = env_u64("FELTBOG_CRASH_KILLS", 200);
    let seed = env_u64("FELTBOG_CRASH_SEED", 0x5eed_f17b);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.feltbog");
    let init = Command::new(BIN)
        .args(["--store"])
        .arg(&path)
        .args(["init", "--kdf-memory-kib", "19456", "--kdf-iterations", "2"])
        .env("FELTBOG_PASSPHRASE", PASS)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let started = Instant::now();
    let (mut total_acknowledged, mut killed_mid_stream) = (0usize, 0u64);
    for round in 0..kills {
        let mut child = Command::new(BIN)
            .arg("--store")
            .arg(&path)
            .arg("import")
            .env("FELTBOG_PASSPHRASE", PASS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = batch(&mut rng, 200);
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            for line in lines {
                if writeln!(stdin, "{line}").is_err() {
                    break; // the child was killed
                }
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let wait_for = rng.below(40);
        let mut acknowledged = Vec::new();
        let mut line = String::new();
        while (acknowledged.len() as u64) < wait_for {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            acknowledged.push(parse_saved(&line));
        }
        // Land the kill somewhere inside the next saves: spin a random few hundred microseconds.
        let spin = Duration::from_micros(rng.below(3_000));
        let t = Instant::now();
        while t.elapsed() < spin {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        if !status.success() {
            killed_mid_stream += 1;
        }
        // Lines already printed before the kill were printed after their commit: they count too.
        for rest in stdout.lines() {
            acknowledged.push(parse_saved(&rest.unwrap()));
        }
        writer.join().unwrap();
        total_acknowledged += acknowledged.len();
        verify(&path, &acknowledged, round, seed);
    }
    println!(
        "{kills} kills ({killed_mid_stream} while running), {total_acknowledged} acknowledged saves verified in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_mid_stream * 2 > kills,
        "most kills must land while the child runs"
    );
}

fn parse_saved(line: &str) -> (String, uuid::Uuid) {
    let mut parts = line.split_whitespace();
    assert_eq!(parts.next(), Some("saved"), "unexpected line {line:?}");
    let kind = parts.next().unwrap().to_owned();
    (kind, parts.next().unwrap().parse().unwrap())
}
