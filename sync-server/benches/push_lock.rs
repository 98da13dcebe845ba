//! How long one push holds the server's write lock, and what it adds to the database (issue 13).
//! Prints figures; asserts nothing. Run:
//!
//!     cargo bench -p feltbog-server --bench push_lock
//!
//! Through the server library over a real SQLite file (the HTTP layer adds decoding, not lock
//! time). One device creates citizens, 20 ops each, in pushes of:
//! - `limits::MAX_OPS_PER_PUSH` ops (10,000: what the server now accepts in one push);
//! - about 105,000 ops (500 mutations of 210 ops: what one push could carry before), the
//!   reference, measured in the same run.
//!
//! Also prints the database's growth per op, the figure behind `STORED_BYTES_PER_OP`.

use feltbog_core::domain::{Citizen, EntityKind};
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::protocol::{FieldChange, FieldOp, Mutation, SyncRequest, limits};
use feltbog_server::{db, identity, sync};
use std::time::Instant;
use uuid::Uuid;

/// `count` mutations, each creating one citizen with `tags` tag adds besides its fields.
fn citizens(
    device: feltbog_core::hlc::DeviceId,
    first_seq: u64,
    count: usize,
    tags: usize,
) -> Vec<Mutation> {
    (0..count)
        .map(|i| {
            let citizen = Citizen::with_alias(&format!("Borger {i}"));
            let serde_json::Value::Object(fields) = serde_json::to_value(&citizen).unwrap() else {
                unreachable!()
            };
            let hlc = Hlc::new(system_time_ms(), 0).unwrap();
            let op = |field: &str, change| FieldOp {
                entity: EntityKind::Citizen,
                id: citizen.id.0,
                field: field.into(),
                change,
                hlc,
                base: None,
            };
            let mut ops: Vec<FieldOp> = fields
                .into_iter()
                .filter(|(f, _)| f != "tags")
                .map(|(f, value)| op(&f, FieldChange::Assign { value }))
                .collect();
            for t in 0..tags {
                ops.push(op(
                    "tags",
                    FieldChange::Add {
                        value: format!("t{t}").into(),
                    },
                ));
            }
            Mutation {
                device_id: device,
                device_seq: first_seq + i as u64,
                ops,
            }
        })
        .collect()
}

/// The bytes the database's pages take, after moving the WAL into the main file.
fn db_bytes(conn: &rusqlite::Connection) -> u64 {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    ((pages - free) * size) as u64
}

fn main() {
    let dir =
        tempfile::tempdir_in(std::env::var("FELTBOG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let mut conn = db::open(dir.path()).unwrap();
    let now = system_time_ms();
    let team = identity::create_team(&conn, "Nord", now).unwrap();
    let worker = identity::create_worker(&conn, team, "Anne", "outreach").unwrap();
    let code = identity::issue_enrolment_code(&conn, worker, now).unwrap();
    let device = feltbog_core::hlc::DeviceId(Uuid::now_v7());
    let (caller, _) = identity::enrol(&mut conn, &code, device, now).unwrap();

    println!("# How long one push holds the write lock");
    println!("machine: {}", feltbog_core::dataset::machine_description());
    // 14 citizen fields + 5 tag adds = 19 ops a mutation.
    let per = 19;
    let mut seq = 1;
    for round in 0..3 {
        for (label, mutations) in [
            ("at the limit", limits::MAX_OPS_PER_PUSH / per),
            ("reference, as before the limit", 5_250),
        ] {
            let push = citizens(device, seq, mutations, 5);
            seq += mutations as u64;
            let ops: usize = push.iter().map(|m| m.ops.len()).sum();
            let bytes = serde_json::to_vec(&push).unwrap().len();
            let before = db_bytes(&conn);
            let request = SyncRequest {
                mutations: push,
                cursor: u64::MAX / 2,
                access_log: vec![],
                profile_digest: None,
                ..Default::default()
            };
            let t = Instant::now();
            let answer =
                sync::sync(&mut conn, &caller, &request, system_time_ms(), 300_000).unwrap();
            let held = t.elapsed();
            let grown = db_bytes(&conn).saturating_sub(before);
            assert_eq!(answer.acked.len(), mutations, "every mutation applied");
            println!(
                "round {round}: {label}: {ops} ops, {:.1} MiB JSON: lock held {:.0} ms ({:.1} µs/op); database +{:.1} MiB ({} bytes/op)",
                bytes as f64 / 1048576.0,
                held.as_secs_f64() * 1e3,
                held.as_secs_f64() * 1e6 / ops as f64,
                grown as f64 / 1048576.0,
                grown / ops as u64,
            );
        }
    }
}
