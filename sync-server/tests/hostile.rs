//! One enrolled device cannot harm its team (issue 13): a client that speaks the protocol
//! directly, not through `core`, against the real server binary on loopback. Each test here
//! reproduces a defect found by trying the server as an attacker with an enrolled tablet would.

mod common;

use common::*;
use feltbog_core::domain::{Citizen, EntityKind, SiteLogEntry, Task, Visit};
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::protocol::{FieldChange, FieldOp, RejectReason, limits};
use feltbog_core::store::{ListQuery, Store};
use feltbog_core::sync::Transport;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Field ops that create record `id` of `entity` from `fields`, stamped now.
fn create(entity: EntityKind, id: Uuid, fields: Value) -> Vec<FieldOp> {
    let hlc = Hlc::new(system_time_ms(), 0).unwrap();
    let mut ops = vec![assign(entity, id, "id", json!(id), hlc)];
    for (field, value) in fields.as_object().unwrap() {
        if entity.set_fields().contains(&field.as_str()) {
            for item in value.as_array().unwrap() {
                ops.push(FieldOp {
                    entity,
                    id,
                    field: field.clone(),
                    change: FieldChange::Add {
                        value: item.clone(),
                    },
                    hlc,
                    base: None,
                });
            }
        } else {
            ops.push(assign(entity, id, field, value.clone(), hlc));
        }
    }
    ops
}

fn assign(entity: EntityKind, id: Uuid, field: &str, value: Value, hlc: Hlc) -> FieldOp {
    FieldOp {
        entity,
        id,
        field: field.into(),
        change: FieldChange::Assign { value },
        hlc,
        base: None,
    }
}

fn edit(entity: EntityKind, id: Uuid, field: &str, value: Value) -> FieldOp {
    assign(
        entity,
        id,
        field,
        value,
        Hlc::new(system_time_ms(), 0).unwrap(),
    )
}

/// A visit about `citizen`, with every field an honest device sends except those in `leave_out`.
fn visit_fields(citizen: Uuid, author: &str, leave_out: &[&str]) -> Value {
    let mut v = json!({
        "citizen_id": citizen, "anonymous": null, "author": author, "team_id": null,
        "started_at": "2026-12-06T10:00:00Z", "duration_minutes": 30, "kind": "home_visit",
        "place": null, "note": "Talte om huslejen", "wellbeing": null, "follow_up": null,
        "archived": false, "themes": ["housing"], "referrals": []
    });
    for field in leave_out {
        v.as_object_mut().unwrap().remove(*field);
    }
    v
}

fn log_fields(site: Uuid, residents: &[Uuid], leave_out: &[&str]) -> Value {
    let mut v = json!({
        "site_id": site, "at": "2026-12-06T10:00:00Z", "kind": "repair",
        "note": "Dør repareret", "residents": residents, "author": Uuid::nil(), "archived": false
    });
    for field in leave_out {
        v.as_object_mut().unwrap().remove(*field);
    }
    v
}

/// Two teams on one server, each with an outreach worker's device; Nord has a second device
/// (a colleague) and a caretaker, and a site with a resident.
struct Teams {
    _dir: tempfile::TempDir,
    server: Server,
    nord: String,
    me: String,
    mine: Store,
    colleague: Store,
    syd_worker: String,
    syd: Store,
    /// Nord's site, its resident, and a citizen without a site.
    site: Uuid,
    resident: Uuid,
    citizen: Uuid,
    /// Syd's citizen and task.
    syd_citizen: Uuid,
    syd_task: Uuid,
}

fn teams() -> Teams {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd_team = server.admin(&["create-team", "Team Syd"]);
    let me = server.admin(&["create-worker", "--team", &nord, "--name", "Mig"]);
    let colleague_worker = server.admin(&["create-worker", "--team", &nord, "--name", "Kollega"]);
    let syd_worker = server.admin(&["create-worker", "--team", &syd_team, "--name", "Syd"]);
    let mut mine = device(dir.path(), "mine", &server, &me);
    let colleague = device(dir.path(), "colleague", &server, &colleague_worker);
    let mut syd = device(dir.path(), "syd", &server, &syd_worker);

    let site = feltbog_core::domain::Site {
        id: feltbog_core::domain::SiteId::new(),
        kind: feltbog_core::domain::SiteKind::AlternativeHousing,
        name: "Skæve hus".into(),
        address: "Vej 1".into(),
        archived: false,
        created_at: chrono::Utc::now(),
    };
    let mut resident = Citizen::with_alias("Beboer");
    resident.site_id = Some(site.id);
    let citizen = Citizen::with_alias("Borger");
    mine.save(&site).unwrap();
    mine.save(&resident).unwrap();
    mine.save(&citizen).unwrap();
    sync(&mut mine);

    let syd_citizen = Citizen::with_alias("Sydborger");
    let now = chrono::Utc::now();
    let syd_task = Task {
        id: feltbog_core::domain::TaskId::new(),
        citizen_id: syd_citizen.id,
        title: "Ring".into(),
        created_at: now,
        due: now.date_naive(),
        assignee: None,
        status: Default::default(),
        archived: false,
    };
    syd.save(&syd_citizen).unwrap();
    syd.save(&syd_task).unwrap();
    sync(&mut syd);
    Teams {
        _dir: dir,
        server,
        nord,
        me,
        mine,
        colleague,
        syd_worker,
        syd,
        site: site.id.0,
        resident: resident.id.0,
        citizen: citizen.id.0,
        syd_citizen: syd_citizen.id.0,
        syd_task: syd_task.id.0,
    }
}

#[test]
fn a_visit_or_log_entry_created_without_an_author_gets_its_writer_and_every_teammate_lists_it() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    let visit = Uuid::now_v7();
    raw.write(create(
        EntityKind::Visit,
        visit,
        visit_fields(t.citizen, &t.me, &["author"]),
    ))
    .expect("a visit without an author op is completed by the server");
    let entry = Uuid::now_v7();
    raw.write(create(
        EntityKind::SiteLogEntry,
        entry,
        log_fields(t.site, &[], &["author"]),
    ))
    .expect("a log entry without an author op is completed by the server");

    // Every teammate's device lists visits and log entries without error, with the author.
    sync(&mut t.colleague);
    let visits: Vec<Visit> = t.colleague.list(&ListQuery::default()).unwrap();
    let stored = visits.iter().find(|v| v.id.0 == visit).expect("pulled");
    assert_eq!(stored.author.0.to_string(), t.me);
    let entries: Vec<SiteLogEntry> = t.colleague.list(&ListQuery::default()).unwrap();
    let stored = entries.iter().find(|e| e.id.0 == entry).expect("pulled");
    assert_eq!(stored.author.0.to_string(), t.me);
    // The writer's own device lists its own visits too (it has the server's author).
    sync(&mut t.mine);
    let _: Vec<Visit> = t.mine.list(&ListQuery::default()).unwrap();

    // A teammate cannot take the authorship by sending an author op later.
    let mut theirs = Raw::of(&mut t.colleague);
    let colleague_worker = t.colleague.enrolment().unwrap().unwrap().worker_id;
    theirs
        .write(vec![edit(
            EntityKind::Visit,
            visit,
            "author",
            json!(colleague_worker),
        )])
        .expect("the edit is taken, the author kept");
    sync(&mut t.mine);
    let v: Visit = t.mine.get(visit).unwrap().unwrap();
    assert_eq!(v.author.0.to_string(), t.me, "the author stays the writer");
}

#[test]
fn unknown_fields_top_level_or_nested_are_refused_and_never_reach_the_team() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    let made_up: Vec<FieldOp> = (0..300)
        .map(|i| {
            edit(
                EntityKind::Citizen,
                t.citizen,
                &format!("made_up_{i}"),
                json!(i),
            )
        })
        .collect();
    assert_eq!(
        raw.write(made_up),
        Err((
            RejectReason::Invalid,
            "the record has no such field".to_owned()
        ))
    );
    // Nested: a goal with a key a goal does not have (goals travel one by one).
    let goal_id = Uuid::now_v7();
    let goal_field = feltbog_core::domain::schema::item_field("goals", goal_id);
    let goal = json!({"id": goal_id, "text": "Egen bolig", "status": "active",
        "created": "2026-12-06", "hidden_payload": "x"});
    let (reason, _) = raw
        .write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            &goal_field,
            goal,
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    // A whole list, a goal under another goal's id and a goal of the nil id are refused too.
    let valid = json!({"id": goal_id, "text": "Egen bolig", "status": "active",
        "created": "2026-12-06"});
    let other_field = feltbog_core::domain::schema::item_field("goals", Uuid::now_v7());
    let nil_field = format!("goals__{}", Uuid::nil().simple());
    for (what, field, value) in [
        ("a whole list", "goals", json!([valid.clone()])),
        (
            "a goal under another id",
            other_field.as_str(),
            valid.clone(),
        ),
        ("the nil id", nil_field.as_str(), valid.clone()),
    ] {
        let (reason, _) = raw
            .write(vec![edit(EntityKind::Citizen, t.citizen, field, value)])
            .unwrap_err();
        assert_eq!(reason, RejectReason::Invalid, "{what}");
    }
    // The goal under its own id is taken, and then removed.
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        &goal_field,
        valid,
    )])
    .expect("a valid goal");
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        &goal_field,
        Value::Null,
    )])
    .expect("removing the goal");
    // Removal marks for goals nobody made are kept (a removal may overtake its goal), but a
    // record holds at most GOALS_EVER goals, removed ones included.
    let ever = feltbog_core::domain::limits::GOALS_EVER;
    let marks = |n: usize| -> Vec<FieldOp> {
        (0..n)
            .map(|_| {
                let field = feltbog_core::domain::schema::item_field("goals", Uuid::now_v7());
                edit(EntityKind::Citizen, t.citizen, &field, Value::Null)
            })
            .collect()
    };
    // The goal just removed is one; fill up to the bound.
    for _ in 0..(ever - 1) / 100 {
        raw.write(marks(100))
            .expect("removal marks up to the bound");
    }
    raw.write(marks((ever - 1) % 100))
        .expect("removal marks up to the bound");
    let (reason, detail) = raw.write(marks(1)).unwrap_err();
    assert_eq!(reason, RejectReason::Invalid, "{detail}");
    // A new visit with an anonymous contact carrying an extra key.
    let mut fields = visit_fields(t.citizen, &t.me, &[]);
    fields["citizen_id"] = Value::Null;
    fields["anonymous"] = json!({"count": 2, "description": "To", "extra": true});
    let (reason, _) = raw
        .write(create(EntityKind::Visit, Uuid::now_v7(), fields))
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    // A conflict's other fields are the server's.
    let (reason, _) = raw
        .write(vec![edit(
            EntityKind::Conflict,
            Uuid::now_v7(),
            "winner",
            json!("x"),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);

    // Nothing of it reached the colleague: their citizen has no such field and lists fine.
    sync(&mut t.colleague);
    let citizens: Vec<Citizen> = t.colleague.list(&ListQuery::default()).unwrap();
    assert!(citizens.iter().any(|c| c.id.0 == t.citizen));
    // The refusals were audited and the chain still verifies (the CLI fails if not).
    t.server.admin(&["audit-verify"]);
}

#[test]
fn references_outside_the_writers_scope_are_refused_as_if_they_did_not_exist() {
    let mut t = teams();
    let mut syd = Raw::of(&mut t.syd);
    let syd_site = Uuid::now_v7();
    syd.write(create(
        EntityKind::Site,
        syd_site,
        json!({"kind": "alternative_housing", "name": "Sydhus", "address": "Vej 2",
               "archived": false, "created_at": "2026-12-06T10:00:00Z"}),
    ))
    .unwrap();
    let unavailable = Err((
        RejectReason::OutOfScope,
        "a record it refers to is not available to this worker".to_owned(),
    ));
    // Team Syd's log entry naming Team Nord's resident: refused exactly as a made-up id.
    let entry = |residents: &[Uuid]| {
        create(
            EntityKind::SiteLogEntry,
            Uuid::now_v7(),
            log_fields(syd_site, residents, &[]),
        )
    };
    assert_eq!(syd.write(entry(&[t.resident])), unavailable);
    assert_eq!(syd.write(entry(&[Uuid::now_v7()])), unavailable);
    // And by an edit of an existing entry.
    let own = entry(&[]);
    let own_id = own[0].id;
    syd.write(own).unwrap();
    let add = FieldOp {
        change: FieldChange::Add {
            value: json!(t.resident),
        },
        ..edit(EntityKind::SiteLogEntry, own_id, "residents", Value::Null)
    };
    assert_eq!(syd.write(vec![add]), unavailable);
    // Nord's citizen's audit export names no write of Team Syd's.
    let export = t
        .server
        .admin(&["audit-export", "--citizen", &t.resident.to_string()]);
    assert!(
        !export.contains(&t.syd_worker),
        "Syd's attempts are not filed under Nord's citizen"
    );

    let mut raw = Raw::of(&mut t.mine);
    // A visit whose follow-up is another team's task; a task assigned to another team's
    // worker; a citizen whose primary worker or consent recorder is another team's.
    let mut fields = visit_fields(t.citizen, &t.me, &[]);
    fields["follow_up"] = json!(t.syd_task);
    assert_eq!(
        raw.write(create(EntityKind::Visit, Uuid::now_v7(), fields)),
        unavailable
    );
    let task = json!({"citizen_id": t.citizen, "title": "Ring", "created_at":
        "2026-12-06T10:00:00Z", "due": "2030-01-01", "assignee": t.syd_worker,
        "status": "open", "archived": false});
    assert_eq!(
        raw.write(create(EntityKind::Task, Uuid::now_v7(), task)),
        unavailable
    );
    assert_eq!(
        raw.write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            "primary_worker",
            json!(t.syd_worker)
        )]),
        unavailable
    );
    let consent_id = Uuid::now_v7();
    let consent = json!({"id": consent_id, "purpose": "recording", "status": "given",
        "date": "2026-12-06", "scope": "alt", "method": "verbal", "recorded_by": t.syd_worker});
    assert_eq!(
        raw.write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            &feltbog_core::domain::schema::item_field("consents", consent_id),
            consent
        )]),
        unavailable
    );
    // A visit about Syd's citizen, and a citizen placed at Syd's site.
    assert_eq!(
        raw.write(create(
            EntityKind::Visit,
            Uuid::now_v7(),
            visit_fields(t.syd_citizen, &t.me, &[])
        ))
        .unwrap_err()
        .0,
        RejectReason::OutOfScope
    );
    assert_eq!(
        raw.write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            "site_id",
            json!(syd_site)
        )]),
        unavailable
    );
    // The same references within the team are fine.
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        "primary_worker",
        json!(t.me),
    )])
    .unwrap();
    let _ = &t.nord;
}

#[test]
fn nil_ids_are_refused_for_records_and_references() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    let (reason, _) = raw
        .write(create(
            EntityKind::Visit,
            Uuid::nil(),
            visit_fields(t.citizen, &t.me, &[]),
        ))
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    let (reason, _) = raw
        .write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            "primary_worker",
            json!(Uuid::nil()),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
}

/// Sends `request` (raw HTTP/1.1) and returns the whole answer.
fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn an_error_answer_never_quotes_a_header_the_client_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let answer = http(
        &server.addr(),
        "POST /v1/enrol HTTP/1.1\r\nhost: x\r\nfeltbog-protocol: SECRET-7f3a\r\n\
         content-length: 2\r\nconnection: close\r\n\r\n{}",
    );
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        !answer.contains("SECRET"),
        "the header is quoted back: {answer}"
    );
}

#[test]
fn a_push_past_the_op_limit_or_the_write_budget_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ops, kib) = feltbog_server::WriteBudget::min_burst();
    let server = Server::start_with(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[
            "--write-ops-per-minute",
            &ops.to_string(),
            "--write-kib-per-minute",
            &kib.to_string(),
            "--device-burst",
            "1000",
        ],
    );
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "d", &server, &worker);
    let citizen = Citizen::with_alias("Fisk");
    store.save(&citizen).unwrap();
    sync(&mut store);
    let mut raw = Raw::of(&mut store);
    // One op too many in one push: refused as a whole, before anything is applied.
    let mutation = |raw: &mut Raw, n: usize| {
        raw.seq += 1;
        feltbog_core::protocol::Mutation {
            device_id: raw.device,
            device_seq: raw.seq,
            ops: (0..n)
                .map(|_| edit(EntityKind::Citizen, citizen.id.0, "phone", json!("1")))
                .collect(),
        }
    };
    let push = |raw: &mut Raw, mutations| {
        raw.transport.sync(
            &raw.token,
            &feltbog_core::protocol::SyncRequest {
                mutations,
                cursor: u64::MAX / 2,
                access_log: vec![],
                profile_digest: None,
                ..Default::default()
            },
        )
    };
    let per = limits::MAX_OPS_PER_MUTATION;
    let too_many: Vec<_> = (0..limits::MAX_OPS_PER_PUSH / per + 1)
        .map(|_| mutation(&mut raw, per))
        .collect();
    match push(&mut raw, too_many) {
        Err(feltbog_core::sync::TransportError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert!(message.contains("field operations per push"), "{message}");
        }
        other => panic!("expected 400, got {other:?}"),
    }
    // A full budget's worth goes through (each mutation refused on its own: one value per
    // field), then the device waits.
    let full: Vec<_> = (0..limits::MAX_OPS_PER_PUSH / per)
        .map(|_| mutation(&mut raw, per))
        .collect();
    push(&mut raw, full).expect("one full push fits the budget");
    // 4,000 more ops: 24 s of refill at 10,000 a minute, far more than passes between pushes.
    let more: Vec<_> = (0..10).map(|_| mutation(&mut raw, per)).collect();
    match push(&mut raw, more) {
        Err(feltbog_core::sync::TransportError::Refused {
            status,
            retry_after_ms,
            message,
            ..
        }) => {
            assert_eq!(status, 429);
            assert!(retry_after_ms.is_some_and(|ms| ms > 0));
            assert!(message.contains("written too much"), "{message}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[test]
fn health_and_sync_answer_within_a_second_while_1200_idle_connections_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    // Set up through the admin CLI, then serve under the common 1,024 open-file limit.
    std::fs::create_dir_all(&data).unwrap();
    let team = admin(&data, &["create-team", "Team Nord"]);
    let worker = admin(&data, &["create-worker", "--team", &team, "--name", "Anne"]);
    let server = Server::start_limited(&data, 1024);
    let mut store = device(dir.path(), "d", &server, &worker);
    let addr = server.addr();

    // 1,200 connections that never send a byte, all held open by this test.
    // Each connect is bounded: a server that stops accepting fails the test, not hangs it.
    let socket: std::net::SocketAddr = addr.parse().unwrap();
    let idle: Vec<TcpStream> = (0..1200)
        .map(|i| {
            TcpStream::connect_timeout(&socket, Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();

    let started = Instant::now();
    let answer = http(
        &addr,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    let health = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    let started = Instant::now();
    store.save(&Citizen::with_alias("Fisk")).unwrap();
    let report = try_sync(&mut store).expect("a sync gets through");
    let synced = started.elapsed();
    assert!(report.pushed >= 1);
    println!("with 1,200 idle connections: /healthz {health:?}, sync {synced:?}");
    assert!(
        health < Duration::from_secs(1) && synced < Duration::from_secs(1),
        "healthz {health:?}, sync {synced:?}"
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_a_push_holds_the_write_lock_and_readiness_reads_beside_it() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let writer = feltbog_server::db::open(dir.path()).unwrap();
    let reader = feltbog_server::db::open(dir.path()).unwrap();
    let pool = feltbog_server::pool::Pool::sqlite(writer, reader);
    let state = feltbog_server::AppState::new(pool, Default::default());
    let app = feltbog_server::router(state.clone());
    // A long push: the write connection is taken and a write transaction is open.
    let (taken_tx, taken_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let db = state.db.clone();
    let holder = std::thread::spawn(move || {
        use feltbog_server::storage::Transact;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        db.with(|conn| {
            conn.write(|_| {
                taken_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok::<_, Error>(())
            })
        })
        .unwrap();
    });
    taken_rx.recv().unwrap();
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(request))
            .await
            .unwrap_or_else(|_| panic!("{path} waited on the write lock"))
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), 100)
            .await
            .unwrap();
        assert_eq!(&bytes[..], body.as_bytes());
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
}

fn count(server: &Server, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(server.data_dir.join("feltbog-server.sqlite")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_resent_sequence_number_is_echoed_back_at_most_once() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        "phone",
        json!("1"),
    )])
    .unwrap();
    let seq = raw.seq;
    let copies = || {
        count(
            &t.server,
            "SELECT count(*) FROM changes WHERE copy_of IS NOT NULL",
        )
    };
    let before = copies();
    // The same sequence number, alternating two other versions, many times over.
    for i in 0..20 {
        raw.seq = seq - 1;
        raw.write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            "phone",
            json!(format!("{}", i % 2 + 2)),
        )])
        .expect("a replay is acknowledged");
    }
    assert_eq!(
        copies() - before,
        1,
        "one echo of the applied version, not one per resend"
    );
}

#[test]
fn a_set_removal_with_too_many_observed_stamps_is_refused() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    let stamp = feltbog_core::hlc::Stamp {
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        device: raw.device,
    };
    let remove = |n: usize| FieldOp {
        change: FieldChange::Remove {
            value: json!(t.resident),
            observed: vec![stamp; n],
        },
        ..edit(
            EntityKind::SiteLogEntry,
            Uuid::nil(),
            "residents",
            Value::Null,
        )
    };
    let entry = Uuid::now_v7();
    raw.write(create(
        EntityKind::SiteLogEntry,
        entry,
        log_fields(t.site, &[t.resident], &[]),
    ))
    .unwrap();
    let mut too_many = remove(limits::MAX_OBSERVED_TAGS + 1);
    too_many.id = entry;
    let (reason, _) = raw.write(vec![too_many]).unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    let mut fine = remove(1);
    fine.id = entry;
    raw.write(vec![fine]).expect("an ordinary removal");
}

#[test]
fn an_edit_keeps_the_references_a_record_already_holds_after_their_target_moved_team() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    let colleague = t.colleague.enrolment().unwrap().unwrap().worker_id;
    let consent_id = Uuid::now_v7();
    let consent = |scope: &str| {
        json!({"id": consent_id, "purpose": "recording", "status": "given",
               "date": "2026-12-06", "scope": scope, "method": "verbal",
               "recorded_by": colleague})
    };
    let field = feltbog_core::domain::schema::item_field("consents", consent_id);
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        &field,
        consent("alt"),
    )])
    .unwrap();
    // The colleague who recorded the consent moves to another team.
    let syd_team = t.server.admin(&["create-team", "Team Vest"]);
    t.server.admin(&[
        "move-worker",
        "--worker",
        &colleague.to_string(),
        "--team",
        &syd_team,
    ]);
    // Correcting the consent's scope keeps its recorder: accepted, nothing lost.
    raw.write(vec![edit(
        EntityKind::Citizen,
        t.citizen,
        &field,
        consent("kun bolig"),
    )])
    .expect("a reference the record already holds stays acceptable");
    // Naming them anew elsewhere is refused: they are no longer the team's.
    assert_eq!(
        raw.write(vec![edit(
            EntityKind::Citizen,
            t.citizen,
            "primary_worker",
            json!(colleague),
        )])
        .unwrap_err()
        .0,
        RejectReason::OutOfScope
    );
}

#[test]
fn a_write_that_would_lose_the_merge_is_still_checked_as_a_value_of_its_field() {
    let mut t = teams();
    let mut raw = Raw::of(&mut t.mine);
    // Stamped long ago: it loses to the stored alias and would only become a conflict version.
    let old = Hlc::new(system_time_ms() - 3_600_000, 0).unwrap();
    for value in [json!({"not": "text"}), json!("x".repeat(300))] {
        let op = assign(EntityKind::Citizen, t.citizen, "alias", value, old);
        let (reason, _) = raw.write(vec![op]).unwrap_err();
        assert_eq!(reason, RejectReason::Invalid);
    }
    sync(&mut t.colleague);
    assert!(
        t.colleague.conflicts(true).unwrap().is_empty(),
        "no conflict version carries the refused value"
    );
}
