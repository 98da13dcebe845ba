//! Each supervisors' report over the municipality dataset of DESIGN §7 (20 teams, 6,000
//! citizens, 400,000 visits, 60,000 tasks) on SQLite, against a plain SQL reference measured in
//! the same run. Prints figures; asserts nothing. Run:
//!
//!     cargo bench -p feltbog-server --bench reports
//!
//! The dataset is written straight into the server's tables in the stored form the sync path
//! writes (one row per field, values as JSON; each citizen's creation, and a later move for a
//! third of them, in the change log), because pushing 5 million field operations through sync
//! would take the run's time without telling anything about the reports. Targets (issue 15):
//! under 1 s per report over all teams.

use chrono::{DateTime, Duration, Utc};
use feltbog_core::dataset::{self, MUNICIPALITY};
use feltbog_core::domain::{EntityKind, HousingSituation};
use feltbog_core::hlc::{DeviceId, Hlc};
use feltbog_core::protocol::{FieldChange, FieldOp, Mutation};
use feltbog_server::db;
use feltbog_server::reports::{self, Filter, Period, ReportKind};
use rusqlite::params;
use std::time::Instant;
use uuid::Uuid;

fn hlc(at: DateTime<Utc>) -> i64 {
    Hlc::new(at.timestamp_millis() as u64, 0).unwrap().as_u64() as i64
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db::open(dir.path()).unwrap();
    println!("machine: {}", dataset::machine_description());
    let t = Instant::now();
    let data = dataset::generate(MUNICIPALITY, 7);
    let device = DeviceId(Uuid::from_u128(7));
    let tx = conn.transaction().unwrap();
    {
        let mut team = tx
            .prepare("INSERT INTO teams (id, name, created_ms) VALUES (?1, ?2, 0)")
            .unwrap();
        for (i, t) in data.teams.iter().enumerate() {
            team.execute(params![&t.0.as_bytes()[..], format!("Team {i}")])
                .unwrap();
        }
        let mut worker = tx
            .prepare(
                "INSERT INTO workers (id, team_id, name, role) VALUES (?1, ?2, ?3, 'outreach')",
            )
            .unwrap();
        for (i, w) in data.workers.iter().enumerate() {
            let team = data.teams[i % data.teams.len()];
            worker
                .execute(params![
                    &w.0.as_bytes()[..],
                    &team.0.as_bytes()[..],
                    format!("Medarbejder {i}")
                ])
                .unwrap();
        }
        let mut record = tx
            .prepare(
                "INSERT INTO records (entity, record_id, team_id, class, citizen_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        let mut field = tx
            .prepare(
                "INSERT INTO fields (entity, record_id, field, value, hlc, device) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        let mut put = |entity: EntityKind,
                       id: Uuid,
                       team: Uuid,
                       citizen: Option<Uuid>,
                       value: serde_json::Value,
                       at: DateTime<Utc>| {
            let class = if entity == EntityKind::Citizen {
                "citizen"
            } else {
                "case"
            };
            record
                .execute(params![
                    entity.as_str(),
                    &id.as_bytes()[..],
                    &team.as_bytes()[..],
                    class,
                    citizen.map(|c| c.as_bytes().to_vec())
                ])
                .unwrap();
            let serde_json::Value::Object(fields) = value else {
                unreachable!()
            };
            for (name, v) in fields {
                if name == "goals" {
                    continue;
                }
                field
                    .execute(params![
                        entity.as_str(),
                        &id.as_bytes()[..],
                        name,
                        v.to_string(),
                        hlc(at),
                        &device.0.as_bytes()[..]
                    ])
                    .unwrap();
            }
        };
        let mut citizen_row = tx
            .prepare("INSERT INTO citizens (citizen_id, team_id) VALUES (?1, ?2)")
            .unwrap();
        let mut change = tx
            .prepare(
                "INSERT INTO changes (team_id, device_id, mutation, class, citizen_id) VALUES (?1, ?2, ?3, 'citizen', ?4)",
            )
            .unwrap();
        let team_of = |c: &feltbog_core::domain::Citizen| c.team_id.unwrap().0;
        for (i, c) in data.citizens.iter().enumerate() {
            put(
                EntityKind::Citizen,
                c.id.0,
                team_of(c),
                Some(c.id.0),
                serde_json::to_value(c).unwrap(),
                c.created_at,
            );
            citizen_row
                .execute(params![&c.id.0.as_bytes()[..], &team_of(c).as_bytes()[..]])
                .unwrap();
            // The creation, and for a third of them a move 200 days on: the housing history.
            let mut moves = vec![(c.created_at, c.housing)];
            if i % 3 == 0 {
                moves.push((
                    c.created_at + Duration::days(200),
                    HousingSituation::OwnRental,
                ));
            }
            for (seq, (at, housing)) in moves.into_iter().enumerate() {
                let m = Mutation {
                    device_id: device,
                    device_seq: (i * 2 + seq) as u64 + 1,
                    ops: vec![FieldOp {
                        entity: EntityKind::Citizen,
                        id: c.id.0,
                        field: "housing".into(),
                        change: FieldChange::Assign {
                            value: serde_json::to_value(housing).unwrap(),
                        },
                        hlc: Hlc::from_u64(hlc(at) as u64),
                        base: None,
                    }],
                };
                change
                    .execute(params![
                        &team_of(c).as_bytes()[..],
                        &device.0.as_bytes()[..],
                        serde_json::to_string(&m).unwrap(),
                        &c.id.0.as_bytes()[..]
                    ])
                    .unwrap();
            }
        }
        let team_of_citizen: std::collections::HashMap<Uuid, Uuid> =
            data.citizens.iter().map(|c| (c.id.0, team_of(c))).collect();
        for v in &data.visits {
            let c = v.citizen_id.unwrap().0;
            put(
                EntityKind::Visit,
                v.id.0,
                team_of_citizen[&c],
                Some(c),
                serde_json::to_value(v).unwrap(),
                v.started_at,
            );
        }
        for t in &data.tasks {
            let c = t.citizen_id.0;
            put(
                EntityKind::Task,
                t.id.0,
                team_of_citizen[&c],
                Some(c),
                serde_json::to_value(t).unwrap(),
                t.created_at + Duration::days(3),
            );
        }
    }
    tx.commit().unwrap();
    let first = data
        .visits
        .iter()
        .map(|v| v.started_at)
        .min()
        .unwrap()
        .date_naive();
    let last = data
        .visits
        .iter()
        .map(|v| v.started_at)
        .max()
        .unwrap()
        .date_naive();
    println!(
        "dataset: {} teams, {} citizens, {} visits, {} tasks, {first} to {last}; loaded in {:.1} s",
        data.teams.len(),
        data.citizens.len(),
        data.visits.len(),
        data.tasks.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    reports::refresh(&mut conn).unwrap();
    println!(
        "report rows for 400,000 visits built from their fields (once, then kept up to the change log): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let teams: Vec<Uuid> = data.teams.iter().map(|t| t.0).collect();
    let all = Filter {
        period: Period::new(first, last).unwrap(),
        teams: teams.clone(),
    };
    let one = Filter {
        period: all.period,
        teams: vec![teams[0]],
    };
    let now = last.and_hms_opt(12, 0, 0).unwrap().and_utc();

    // The reference: the contacts by ISO week of all teams as one hand-written SQL query.
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .fold(f64::MAX, f64::min)
    };
    let reference = best(&mut || {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM (SELECT strftime('%Y-%W', json_extract(f.value, '$')) AS w, count(*)
                 FROM records r JOIN fields f ON f.entity = r.entity AND f.record_id = r.record_id
                   AND f.field = 'started_at'
                 WHERE r.entity = 'visit' GROUP BY w)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n > 0);
    });
    println!("reference: contacts by week in plain SQL, all teams: {reference:.0} ms (best of 3)");
    println!("{:<12} {:>14} {:>14}", "report", "all 20 teams", "one team");
    for kind in ReportKind::ALL {
        let run = |f: &Filter| {
            best(&mut || {
                reports::run(&conn, kind, f, now).unwrap();
            })
        };
        let (a, o) = (run(&all), run(&one));
        println!(
            "{:<12} {:>11.0} ms {:>11.0} ms   ({:.1}× the reference)",
            kind.as_str(),
            a,
            o,
            a / reference
        );
    }
}
