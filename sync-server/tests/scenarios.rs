//! Sync scenarios of issue 3: the real server binary on 127.0.0.1, several encrypted device
//! stores, HTTP in between.

mod common;

use common::*;
use feltbog_core::domain::{
    Citizen, ConflictRecord, ConflictStatus, EntityKind, HousingSituation, Visit, VisitKind,
    WorkerId,
};
use feltbog_core::merge::ConflictKind;
use feltbog_core::protocol::{ErrorBody, ErrorCode, PROTOCOL_HEADER, SyncRequest};
use feltbog_core::store::{ListQuery, Resolution, Store};
use feltbog_core::sync::{Transport, http::HttpTransport};
use feltbog_server::storage::Transact;
use std::io::Write;

/// Waits until the wall clock has passed the newest stamp in `store`'s outbox, so an edit made
/// next anywhere is later by HLC too (two edits in the same millisecond are ordered by their
/// counters, which says nothing about which came first).
fn wait_past_pending(store: &mut Store) {
    let newest = store
        .pending(1_000)
        .unwrap()
        .iter()
        .flat_map(|m| m.ops.iter().map(|op| op.hlc))
        .max()
        .unwrap();
    while feltbog_core::hlc::system_time_ms() <= newest.wall_ms() {
        std::thread::yield_now();
    }
}

/// Saves a citizen and `n` visits to them (notes "`prefix` 0", "`prefix` 1", …) in one batch.
fn citizen_with_visits(
    store: &mut Store,
    alias: &str,
    n: usize,
    kind: VisitKind,
    prefix: &str,
) -> Citizen {
    let c = Citizen::with_alias(alias);
    store.save(&c).unwrap();
    let batch: Vec<Visit> = (0..n)
        .map(|i| {
            let mut v = Visit::with_citizen(c.id, WorkerId::new(), kind);
            v.note = format!("{prefix} {i}").into();
            v
        })
        .collect();
    store.save_all(&batch).unwrap();
    c
}

/// A visit's note as a device holds it now.
fn note_of(store: &mut Store, visit: &Visit) -> String {
    store
        .get::<Visit>(visit.id.0)
        .unwrap()
        .expect("visit present")
        .note
        .expose()
        .clone()
}

fn citizens(store: &mut Store) -> Vec<Citizen> {
    store
        .list::<Citizen>(&ListQuery {
            include_archived: true,
            ..Default::default()
        })
        .unwrap()
}

fn visits(store: &mut Store) -> Vec<Visit> {
    store
        .list::<Visit>(&ListQuery {
            include_archived: true,
            ..Default::default()
        })
        .unwrap()
}

/// Two devices of one worker that both hold one citizen and one visit of theirs.
fn pair(dir: &std::path::Path, server: &Server) -> (Store, Store, Citizen, Visit) {
    let (_team, worker) = team_and_worker(server);
    let mut a = device(dir, "a", server, &worker);
    let mut b = device(dir, "b", server, &worker);
    let citizen = Citizen::with_alias("Fisk");
    a.save(&citizen).unwrap();
    // The device claims some other author: the server replaces it with the signed-in worker and
    // echoes the correction, so both devices must end up with the real author.
    let mut visit = Visit::with_citizen(citizen.id, WorkerId::new(), VisitKind::HomeVisit);
    visit.note = "første udkast".into();
    a.save(&visit).unwrap();
    sync(&mut a);
    sync(&mut b);
    // Both devices now agree, author included.
    let visit = b
        .get::<Visit>(visit.id.0)
        .unwrap()
        .expect("visit reached B");
    assert_eq!(a.get::<Visit>(visit.id.0).unwrap(), Some(visit.clone()));
    (a, b, citizen, visit)
}

#[test]
fn a_record_made_on_one_device_appears_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &worker);
    let mut c = Citizen::with_alias("Store Per");
    c.tags.insert("herberg".into());
    // Whatever the device says, a new citizen belongs to its creator's team.
    c.team_id = Some(feltbog_core::domain::TeamId(team.parse().unwrap()));
    a.save(&c).unwrap();
    let report = sync(&mut a);
    assert_eq!((report.pushed, report.acked), (1, 1));
    assert_eq!(
        a.outbox_len().unwrap(),
        0,
        "acknowledged mutations leave the outbox"
    );
    sync(&mut b);
    assert_eq!(citizens(&mut b), vec![c.clone()]);
    assert_eq!(
        citizens(&mut a),
        vec![c],
        "the server's team reached its author too"
    );
}

#[test]
fn offline_edits_of_different_fields_merge_without_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, citizen, _) = pair(dir.path(), &server);
    let mut on_a = a.get::<Citizen>(citizen.id.0).unwrap().unwrap();
    on_a.phone = Some("+45 11 22 33 44".into());
    on_a.tags.insert("gæld".into());
    a.save(&on_a).unwrap();
    let mut on_b = b.get::<Citizen>(citizen.id.0).unwrap().unwrap();
    on_b.housing = HousingSituation::Shelter;
    on_b.tags.insert("herberg".into());
    b.save(&on_b).unwrap();
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    let merged_a = a.get::<Citizen>(citizen.id.0).unwrap().unwrap();
    let merged_b = b.get::<Citizen>(citizen.id.0).unwrap().unwrap();
    assert_eq!(merged_a, merged_b);
    assert_eq!(merged_a.phone, Some("+45 11 22 33 44".into()));
    assert_eq!(merged_a.housing, HousingSituation::Shelter);
    assert_eq!(merged_a.tags.len(), 2, "both set additions survive");
    assert!(a.conflicts(true).unwrap().is_empty() && b.conflicts(true).unwrap().is_empty());
}

#[test]
fn the_later_scalar_edit_wins_everywhere_and_leaves_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, citizen, _) = pair(dir.path(), &server);
    a.edit_field(
        EntityKind::Citizen,
        citizen.id.0,
        "housing",
        "street".into(),
    )
    .unwrap();
    wait_past_pending(&mut a);
    b.edit_field(
        EntityKind::Citizen,
        citizen.id.0,
        "housing",
        "own_rental".into(),
    )
    .unwrap();
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    for store in [&mut a, &mut b] {
        assert_eq!(
            store.get::<Citizen>(citizen.id.0).unwrap().unwrap().housing,
            HousingSituation::OwnRental
        );
        let conflicts = store.conflicts(false).unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].kind, ConflictKind::Notice);
        assert_eq!(conflicts[0].loser, serde_json::json!("street"));
        assert_eq!(conflicts[0].winner, serde_json::json!("own_rental"));
    }
}

#[test]
fn concurrent_notes_become_a_conflict_everywhere_and_converge_on_the_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, _, visit) = pair(dir.path(), &server);
    a.edit_field(
        EntityKind::Visit,
        visit.id.0,
        "note",
        "A: talte om gæld".into(),
    )
    .unwrap();
    b.edit_field(
        EntityKind::Visit,
        visit.id.0,
        "note",
        "B: aftalte lægebesøg".into(),
    )
    .unwrap();
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    let mut ids = Vec::new();
    for store in [&mut a, &mut b] {
        let conflicts = store.conflicts(false).unwrap();
        assert_eq!(conflicts.len(), 1, "one open conflict on every device");
        let c = &conflicts[0];
        assert_eq!(c.kind, ConflictKind::Open);
        let texts = [c.winner.as_str().unwrap(), c.loser.as_str().unwrap()];
        assert!(
            texts.contains(&"A: talte om gæld") && texts.contains(&"B: aftalte lægebesøg"),
            "{texts:?}"
        );
        ids.push(c.id);
    }
    assert_eq!(ids[0], ids[1]);
    b.resolve_conflict(
        ids[0],
        Resolution::Merged("Talte om gæld; aftalte lægebesøg".into()),
    )
    .unwrap();
    sync(&mut b);
    sync(&mut a);
    for store in [&mut a, &mut b] {
        assert_eq!(note_of(store, &visit), "Talte om gæld; aftalte lægebesøg");
        let all: Vec<ConflictRecord> = store.conflicts(true).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].status, ConflictStatus::Resolved);
        assert!(store.conflicts(false).unwrap().is_empty());
    }
}

#[test]
fn a_device_whose_clock_runs_a_day_ahead_cannot_win_over_a_later_edit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, _, visit) = pair(dir.path(), &server);
    a.set_clock_offset_ms(24 * 60 * 60 * 1000).unwrap();
    a.edit_field(
        EntityKind::Visit,
        visit.id.0,
        "note",
        "A, med uret et døgn foran".into(),
    )
    .unwrap();
    let report = sync(&mut a);
    assert!(
        report.restamped >= 1,
        "the server must refuse the future stamp: {report:?}"
    );
    assert_eq!(a.outbox_len().unwrap(), 0, "re-stamped and accepted");
    // The accepted stamp is today's (from the server's clock), so it lies at or before now;
    // once the wall clock moves on, B's edit is later by HLC as well as in time.
    let after_sync = feltbog_core::hlc::system_time_ms();
    while feltbog_core::hlc::system_time_ms() <= after_sync {
        std::thread::yield_now();
    }
    // A real edit made afterwards on B, which had not seen A's edit.
    b.edit_field(EntityKind::Visit, visit.id.0, "note", "B, senere".into())
        .unwrap();
    sync(&mut b);
    sync(&mut a);
    for store in [&mut a, &mut b] {
        assert_eq!(note_of(store, &visit), "B, senere");
        let c = &store.conflicts(false).unwrap()[0];
        assert_eq!(
            c.loser.as_str(),
            Some("A, med uret et døgn foran"),
            "A's edit is kept as the loser"
        );
    }
}

fn server_count(server: &Server, sql: &str) -> i64 {
    server_value(&server.data_dir, sql, &[])
}

#[test]
fn the_same_push_sent_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &worker);
    let c = Citizen::with_alias("To gange");
    a.save(&c).unwrap();
    a.save(&Visit::with_citizen(
        c.id,
        WorkerId::new(),
        VisitKind::Phone,
    ))
    .unwrap();
    let token = a.enrolment().unwrap().unwrap().token.expose().clone();
    let request = SyncRequest {
        mutations: a.pending(100).unwrap(),
        cursor: 0,
        access_log: vec![],
        profile_digest: None,
        ..Default::default()
    };
    let transport = HttpTransport::new(&server.url).unwrap();
    let (first, _) = transport.sync(&token, &request).unwrap();
    let log_after_first = server_count(&server, "SELECT count(*) FROM changes");
    let (second, _) = transport.sync(&token, &request).unwrap();
    assert_eq!(first.acked, vec![1, 2]);
    assert_eq!(second.acked, vec![1, 2], "a replay is acknowledged again");
    assert_eq!(
        server_count(&server, "SELECT count(*) FROM changes"),
        log_after_first,
        "and changes nothing"
    );
    a.apply_sync_response(&second).unwrap();
    sync(&mut b);
    assert_eq!(citizens(&mut b).len(), 1);
    assert_eq!(visits(&mut b).len(), 1);
}

#[test]
fn a_server_killed_during_a_push_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &worker);
    citizen_with_visits(
        &mut a,
        "Mange besøg",
        1_500,
        VisitKind::StreetContact,
        "besøg",
    );
    let addr = server.addr();
    let syncing = std::thread::spawn(move || {
        let result = try_sync(&mut a);
        (a, result.is_ok())
    });
    // Kill the server once it has applied part of the outbox (a crash in the middle of a push).
    let applied = || server_count(&server, "SELECT count(*) FROM applied");
    let started = std::time::Instant::now();
    while applied() == 0 && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::yield_now();
    }
    server.kill();
    let (mut a, finished) = syncing.join().unwrap();
    let server = Server::start_on(&data, &addr);
    if !finished {
        assert!(a.outbox_len().unwrap() > 0);
    }
    sync(&mut a);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert_eq!(server_count(&server, "SELECT count(*) FROM applied"), 1_501);
    assert_eq!(
        server_count(&server, "SELECT count(*) FROM changes"),
        1_501,
        "nothing doubled in the log"
    );
    sync(&mut b);
    let on_b = visits(&mut b);
    assert_eq!(on_b.len(), 1_500);
    let notes: std::collections::BTreeSet<_> =
        on_b.iter().map(|v| v.note.expose().clone()).collect();
    assert_eq!(notes.len(), 1_500, "every acknowledged visit arrived once");
}

#[test]
fn an_offline_edit_to_a_citizen_archived_elsewhere_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, citizen, _) = pair(dir.path(), &server);
    a.set_archived::<Citizen>(citizen.id.0, true).unwrap();
    b.edit_field(
        EntityKind::Citizen,
        citizen.id.0,
        "phone",
        "+45 55 66 77 88".into(),
    )
    .unwrap();
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    for store in [&mut a, &mut b] {
        let c = store.get::<Citizen>(citizen.id.0).unwrap().unwrap();
        assert!(c.archived, "the archive stands");
        assert_eq!(
            c.phone,
            Some("+45 55 66 77 88".into()),
            "and the offline edit is not lost"
        );
    }
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let token = a.enrolment().unwrap().unwrap().token.expose().clone();
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/sync", server.url);
    let send = |body: Vec<u8>, gzip: bool, token: &str, version: &str| {
        let mut req = http
            .post(&url)
            .header(PROTOCOL_HEADER, version)
            .bearer_auth(token)
            .body(body);
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let body: ErrorBody =
            serde_json::from_slice(&resp.bytes().unwrap()).expect("a JSON error body");
        (status, body)
    };
    let valid = serde_json::to_vec(&SyncRequest {
        mutations: vec![],
        cursor: 0,
        access_log: vec![],
        profile_digest: None,
        ..Default::default()
    })
    .unwrap();

    let current = feltbog_core::protocol::PROTOCOL_VERSION.to_string();
    let (status, body) = send(vec![b' '; 3 * 1024 * 1024], false, &token, &current);
    assert_eq!(
        (status, body.code),
        (413, ErrorCode::TooLarge),
        "{}",
        body.message
    );

    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 40 * 1024 * 1024]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 1024 * 1024, "the bomb itself is small");
    let (status, body) = send(bomb, true, &token, &current);
    assert_eq!((status, body.code), (413, ErrorCode::TooLarge));
    assert!(
        body.message.contains("after decompression"),
        "{}",
        body.message
    );

    let (status, body) = send(valid.clone(), false, "0".repeat(64).as_str(), &current);
    assert_eq!((status, body.code), (401, ErrorCode::Unauthorized));

    let (status, body) = send(valid.clone(), false, &token, "0");
    assert_eq!((status, body.code), (426, ErrorCode::UpdateRequired));
    assert!(body.message.contains("update the app"));

    let (status, body) = send(b"{not json".to_vec(), false, &token, &current);
    assert_eq!((status, body.code), (400, ErrorCode::BadRequest));

    let health = http.get(format!("{}/healthz", server.url)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    a.save(&Citizen::with_alias("Efter fejlene")).unwrap();
    assert_eq!(sync(&mut a).acked, 1, "the server keeps serving");
}

#[test]
fn a_mutation_naming_another_device_is_rejected_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let b = device(dir.path(), "b", &server, &worker);
    a.save(&Citizen::with_alias("Forfalsket")).unwrap();
    let token = a.enrolment().unwrap().unwrap().token.expose().clone();
    let mut forged = a.pending(10).unwrap();
    forged[0].device_id = b.device_id();
    let transport = HttpTransport::new(&server.url).unwrap();
    let (response, _) = transport
        .sync(
            &token,
            &SyncRequest {
                mutations: forged,
                cursor: 0,
                access_log: vec![],
                profile_digest: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(response.acked.is_empty());
    assert_eq!(
        response.rejected[0].reason,
        feltbog_core::protocol::RejectReason::ForgedDevice
    );
    assert_eq!(
        server_count(&server, "SELECT count(*) FROM fields"),
        0,
        "nothing of it was stored"
    );
}

#[test]
fn a_worker_cannot_take_over_the_authorship_of_a_visit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, _, visit) = pair(dir.path(), &server);
    let original = visit.author;
    b.edit_field(
        EntityKind::Visit,
        visit.id.0,
        "author",
        serde_json::to_value(WorkerId::new()).unwrap(),
    )
    .unwrap();
    sync(&mut b);
    sync(&mut a);
    for store in [&mut a, &mut b] {
        assert_eq!(
            store.get::<Visit>(visit.id.0).unwrap().unwrap().author,
            original
        );
    }
}

#[test]
fn restamping_keeps_a_workers_own_consecutive_edits_and_set_changes_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (mut a, mut b, _, visit) = pair(dir.path(), &server);
    a.set_clock_offset_ms(24 * 60 * 60 * 1000).unwrap();
    // Two consecutive saves of the note, and a theme added then removed — all stamped a day ahead.
    let mut v = a.get::<Visit>(visit.id.0).unwrap().unwrap();
    v.note = "første version".into();
    v.themes.insert(feltbog_core::domain::Theme::Housing);
    a.save(&v).unwrap();
    v.note = "anden version".into();
    v.themes.remove(&feltbog_core::domain::Theme::Housing);
    v.themes.insert(feltbog_core::domain::Theme::Crisis);
    a.save(&v).unwrap();
    let report = sync(&mut a);
    assert_eq!(report.restamped, 2, "{report:?}");
    sync(&mut b);
    sync(&mut a);
    let on_a = a.get::<Visit>(visit.id.0).unwrap().unwrap();
    let on_b = b.get::<Visit>(visit.id.0).unwrap().unwrap();
    assert_eq!(on_a, on_b);
    assert_eq!(on_b.note.expose(), "anden version");
    assert_eq!(
        on_b.themes,
        std::collections::BTreeSet::from([feltbog_core::domain::Theme::Crisis])
    );
    assert!(
        a.conflicts(true).unwrap().is_empty(),
        "a worker's own consecutive edits never conflict"
    );
    assert!(b.conflicts(true).unwrap().is_empty());
}

#[test]
fn a_record_whose_creation_is_incomplete_or_invalid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    a.save(&Citizen::with_alias("Halv")).unwrap();
    let token = a.enrolment().unwrap().unwrap().token.expose().clone();
    let mut partial = a.pending(10).unwrap();
    partial[0].ops.retain(|op| op.field != "created_at");
    let mut invalid = a.pending(10).unwrap();
    for op in &mut invalid[0].ops {
        if op.field == "alias" {
            op.change = feltbog_core::protocol::FieldChange::Assign {
                value: serde_json::Value::Null,
            };
        }
    }
    // Sent under numbers of their own: a refusal for good is kept per (device, seq), so a
    // late copy gets it again, and the device's own mutation must not share its number.
    partial[0].device_seq = 1001;
    invalid[0].device_seq = 1002;
    let transport = HttpTransport::new(&server.url).unwrap();
    for mutations in [partial, invalid] {
        let (response, _) = transport
            .sync(
                &token,
                &SyncRequest {
                    mutations,
                    cursor: 0,
                    access_log: vec![],
                    profile_digest: None,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(response.rejected.len(), 1);
        assert_eq!(
            response.rejected[0].reason,
            feltbog_core::protocol::RejectReason::Invalid
        );
        assert!(
            !response.rejected[0].detail.contains("Halv"),
            "{}",
            response.rejected[0].detail
        );
    }
    assert_eq!(server_count(&server, "SELECT count(*) FROM fields"), 0);
    // The whole record is accepted.
    assert_eq!(sync(&mut a).acked, 1);
}

/// A network that misbehaves a set number of times: after `deliver` requests it drops every
/// further one before it reaches the server, and it loses the first `lose` answers on the way
/// back — after the server has committed them.
struct Flaky {
    inner: HttpTransport,
    deliver: std::cell::Cell<u32>,
    lose: std::cell::Cell<u32>,
}

impl Flaky {
    fn new(server: &Server, deliver: u32, lose: u32) -> Flaky {
        Flaky {
            inner: HttpTransport::new(&server.url).unwrap(),
            deliver: std::cell::Cell::new(deliver),
            lose: std::cell::Cell::new(lose),
        }
    }
}

impl Transport for Flaky {
    fn enrol(
        &self,
        request: &feltbog_core::protocol::EnrolRequest,
    ) -> Result<feltbog_core::protocol::EnrolResponse, feltbog_core::sync::TransportError> {
        self.inner.enrol(request)
    }

    fn sync(
        &self,
        token: &str,
        request: &SyncRequest,
    ) -> Result<
        (
            feltbog_core::protocol::SyncResponse,
            feltbog_core::sync::WireBytes,
        ),
        feltbog_core::sync::TransportError,
    > {
        let lost = |what: &str| Err(feltbog_core::sync::TransportError::Unreachable(what.into()));
        if self.deliver.get() == 0 {
            return lost("request dropped");
        }
        self.deliver.set(self.deliver.get() - 1);
        let answer = self.inner.sync(token, request)?;
        if self.lose.get() > 0 {
            self.lose.set(self.lose.get() - 1);
            return lost("response lost");
        }
        Ok(answer)
    }
}

#[test]
fn responses_lost_after_the_server_committed_are_retried_without_doubling() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &worker);
    citizen_with_visits(&mut a, "Tabt svar", 450, VisitKind::Phone, "opkald");
    let flaky = Flaky::new(&server, u32::MAX, 2);
    let retry = feltbog_core::sync::Retry {
        attempts: 3,
        first_delay: std::time::Duration::from_millis(10),
    };
    let report = feltbog_core::sync::sync_now(&mut a, &flaky, retry, &mut |_| {}).unwrap();
    assert_eq!(flaky.lose.get(), 0, "both responses were lost");
    assert_eq!(report.acked, 451);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert_eq!(
        server_count(&server, "SELECT count(*) FROM changes"),
        451,
        "a resent batch is applied once"
    );
    sync(&mut b);
    assert_eq!(visits(&mut b).len(), 450);
}

/// Found by review of the simulation: an edit refused as too far ahead is re-stamped under the
/// same `(device, seq)`. If an older copy of the request gets through once its stamp has come
/// within the bound, the server applies the old stamps; the re-stamped copy is then a replay
/// that differs, and the server sends the device the applied version so every replica agrees.
#[test]
fn an_old_copy_of_a_refused_edit_that_gets_through_later_still_converges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, worker) = team_and_worker(&server);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &worker);
    let citizen = Citizen::with_alias("Gammel kopi");
    a.save(&citizen).unwrap();
    sync(&mut a);
    sync(&mut b);

    // A's clock runs just past the bound; it edits the phone.
    let drift = feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS as i64;
    a.set_clock_offset_ms(drift + 800).unwrap();
    let mut c: Citizen = a.get(citizen.id.0).unwrap().unwrap();
    c.phone = Some("+45 11 22 33 44".into());
    a.save(&c).unwrap();
    let old_copy = SyncRequest {
        mutations: a.pending(10).unwrap(),
        cursor: a.sync_status().unwrap().cursor,
        access_log: vec![],
        profile_digest: None,
        ..Default::default()
    };
    let seq = old_copy.mutations[0].device_seq;

    // A syncs: refused, re-stamped; the re-stamped push is dropped on the way.
    let once = Flaky::new(&server, 1, 0);
    let retry = feltbog_core::sync::Retry {
        attempts: 1,
        first_delay: std::time::Duration::ZERO,
    };
    assert!(feltbog_core::sync::sync_now(&mut a, &once, retry, &mut |_| {}).is_err());
    let restamped = a.pending(10).unwrap();
    assert_eq!(restamped[0].device_seq, seq);
    assert_ne!(restamped[0].ops[0].hlc, old_copy.mutations[0].ops[0].hlc);

    // The old copy arrives once its stamp has come within the bound (under a second).
    let token = a.enrolment().unwrap().unwrap().token.expose().clone();
    let late = HttpTransport::new(&server.url).unwrap();
    let started = std::time::Instant::now();
    loop {
        let (response, _) = late.sync(&token, &old_copy).unwrap();
        if response.acked.contains(&seq) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A pushes its re-stamped copy (a replay that differs), then everyone syncs.
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    let on_server = server_db(&server.data_dir)
        .read(|db| feltbog_server::sync::replica_state(db, team.parse().unwrap()))
        .unwrap();
    assert!(
        a.replica_state().unwrap() == on_server,
        "A holds the applied stamps"
    );
    assert!(
        b.replica_state().unwrap() == on_server,
        "B holds the applied stamps"
    );
    let phone = |s: &mut Store| s.get::<Citizen>(citizen.id.0).unwrap().unwrap().phone;
    assert_eq!(phone(&mut a).unwrap().expose(), "+45 11 22 33 44");
    assert_eq!(phone(&mut b).unwrap().expose(), "+45 11 22 33 44");
}
