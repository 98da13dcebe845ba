//! A save says what happened, and refused edits are visible and recoverable (issue 14, points 3
//! and 4): against the real server binary, through the app's own core (`App`).

mod common;

use common::*;
use feltbog_core::app::forms::VisitInput;
use feltbog_core::app::views::{RefusedBecause, SaveMark};
use feltbog_core::domain::{EntityKind, Visit, VisitKind};

fn visit_form(citizen: Option<uuid::Uuid>, note: &str) -> VisitInput {
    VisitInput {
        citizen_id: citizen,
        anonymous_count: citizen.is_none().then_some(1),
        anonymous_description: String::new(),
        kind: VisitKind::HomeVisit,
        started_at_ms: None,
        duration_minutes: 45,
        place: "Toftevej".into(),
        themes: vec![feltbog_core::domain::Theme::Housing],
        referrals: vec![],
        note: note.into(),
        wellbeing: Some(6),
        follow_up: None,
        course_id: None,
        goals: Vec::new(),
    }
}

/// What the server answers to a push it refuses for good (as for a record out of scope).
fn refuse(store: &mut feltbog_core::store::Store, seq: u64) {
    use feltbog_core::protocol::{PullPage, RejectReason, Rejection, SyncResponse};
    store
        .apply_sync_response(&SyncResponse {
            acked: vec![],
            rejected: vec![Rejection {
                device_seq: seq,
                reason: RejectReason::OutOfScope,
                detail: "out of scope".into(),
            }],
            pull: PullPage {
                changes: vec![],
                next_cursor: 0,
                more: false,
                erase: vec![],
                resync: false,
            },
            server_hlc: feltbog_core::hlc::Hlc::from_u64(0),
            server_time_ms: chrono::Utc::now().timestamp_millis() as u64,
            access_acked: 0,
            profile: None,
            standing_token: None,
            rescope: false,
        })
        .unwrap();
}

#[test]
fn a_visit_refused_after_its_citizen_moved_team_is_shown_with_its_reason_and_sent_again_as_a_new_contact()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let anne = worker(&server, &nord, "Anne", "outreach");
    let (app, _) = app_device(dir.path(), "anne", &server, &anne);
    let jens = app
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let karen = app
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Karen"})), None)
        .unwrap();
    app.sync_once(&|_| {}).unwrap();

    // Offline, Anne logs a visit with Jens; meanwhile Jens moves to Team Syd.
    let visit = app
        .save_visit(&visit_form(Some(jens), "Talte om flytning"))
        .unwrap();
    let marked = app.citizen(jens).unwrap().visits;
    assert_eq!(
        marked.iter().find(|v| v.id == visit).unwrap().mark,
        Some(SaveMark::Pending),
        "saved on the tablet, not yet on the server"
    );
    server.admin(&[
        "move-citizen",
        "--citizen",
        &jens.to_string(),
        "--team",
        &syd,
    ]);
    app.sync_once(&|_| {}).unwrap();

    // Refused, set aside and shown with its reason and values; Jens left the device.
    let bar = app.sync_bar();
    assert_eq!((bar.unsynced, bar.set_aside, bar.only_here), (0, 1, 1));
    let list = app.set_aside().unwrap();
    assert_eq!(list.len(), 1);
    let refused = &list[0];
    assert_eq!(refused.entity, EntityKind::Visit);
    assert_eq!(refused.reason, RefusedBecause::OutOfScope);
    assert!(!refused.on_device && !refused.can_resend && refused.can_copy);
    let note = refused.fields.iter().find(|f| f.field == "note").unwrap();
    assert_eq!(note.values, ["Talte om flytning"]);
    let themes = refused.fields.iter().find(|f| f.field == "themes").unwrap();
    assert_eq!(themes.values, ["housing"]);
    assert!(
        refused.fields.iter().all(|f| f.field != "author"),
        "server-owned fields are not listed"
    );

    // Anne puts it into a new contact about Karen, whom she may write; the values arrive.
    let copy = app.copy_set_aside(refused.seq, Some(karen)).unwrap();
    assert!(
        app.set_aside().unwrap().is_empty(),
        "the refused edit is resolved"
    );
    app.sync_once(&|_| {}).unwrap();
    assert_eq!(app.sync_bar().only_here, 0);
    let bo = worker(&server, &nord, "Bo", "home_support");
    let mut colleague = device(dir.path(), "bo", &server, &bo);
    sync(&mut colleague);
    let arrived: Visit = colleague
        .get(copy)
        .unwrap()
        .expect("the copy reached the team");
    assert_eq!(arrived.note.expose(), "Talte om flytning");
    assert_eq!(arrived.citizen_id.map(|c| c.0), Some(karen));
    assert_eq!(arrived.duration_minutes, 45);
    assert_eq!(
        arrived.place.as_ref().map(|p| p.expose().as_str()),
        Some("Toftevej")
    );
    assert_eq!(arrived.wellbeing, Some(6));
    assert!(colleague.get::<Visit>(visit).unwrap().is_none());
}

#[test]
fn a_refusal_the_role_cannot_mend_offers_only_a_discard_which_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let carl = worker(&server, &nord, "Carl", "caretaker");
    let (app, _) = app_device(dir.path(), "carl", &server, &carl);
    // The app offers a caretaker no citizen form; the core's call stands in for an old app.
    let id = app
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Fisk"})), None)
        .unwrap();
    assert_eq!(app.citizen(id).unwrap().mark, Some(SaveMark::Pending));
    app.sync_once(&|_| {}).unwrap();
    assert_eq!(app.citizen(id).unwrap().mark, Some(SaveMark::Refused));
    let list = app.set_aside().unwrap();
    assert_eq!(list.len(), 1);
    let refused = &list[0];
    assert_eq!(refused.reason, RefusedBecause::OutOfScope);
    assert!(refused.on_device && !refused.can_resend && !refused.can_copy);
    let err = app.resend_set_aside(refused.seq).unwrap_err();
    assert_eq!(err.code, feltbog_core::app::ErrorCode::NotAllowed);
    assert_eq!(
        app.sync_bar().set_aside,
        1,
        "a refused resend keeps the edit"
    );
    app.discard_set_aside(refused.seq).unwrap();
    assert!(app.set_aside().unwrap().is_empty());
    assert_eq!(app.sync_bar().only_here, 0);
    assert!(app.discard_set_aside(refused.seq).is_err(), "gone for good");
}

#[test]
fn a_refused_edit_sent_again_carries_every_value_it_wrote_and_the_team_receives_them() {
    use feltbog_core::domain::Citizen;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_team, anne) = team_and_worker(&server);
    let mut store = device(dir.path(), "anne", &server, &anne);
    let mut jens = Citizen::with_alias("Jens");
    store.save(&jens).unwrap();
    sync(&mut store);
    jens.phone = Some("22 33 44 55".into());
    jens.tags.insert("natcafé".into());
    store.save(&jens).unwrap();
    let seq = store.last_device_seq().unwrap();
    // The server's answer refusing that edit (as it would for a record out of scope).
    refuse(&mut store, seq);
    assert_eq!(store.outbox_len().unwrap(), 0);
    // The device shows the values already: a plain save would send nothing.
    let shown: Citizen = store.get(jens.id.0).unwrap().unwrap();
    assert_eq!(
        store.save(&shown).unwrap(),
        feltbog_core::store::Saved::Unchanged
    );
    store.resend_set_aside(seq).unwrap();
    assert_eq!(store.set_aside_edits().unwrap().len(), 0);
    assert_eq!(store.outbox_len().unwrap(), 1);
    sync(&mut store);
    let bo = server.admin(&["create-worker", "--team", &_team, "--name", "Bo"]);
    let mut colleague = device(dir.path(), "bo", &server, &bo);
    sync(&mut colleague);
    let seen: Citizen = colleague.get(jens.id.0).unwrap().unwrap();
    assert_eq!(
        seen.phone.as_ref().map(|p| p.expose().as_str()),
        Some("22 33 44 55")
    );
    assert!(seen.tags.contains("natcafé"));
    // Device and server agree field by field, stamps included: a later edit is no conflict.
    jens.phone = Some("99 88 77 66".into());
    store.save(&jens).unwrap();
    sync(&mut store);
    sync(&mut colleague);
    assert!(colleague.conflicts(true).unwrap().is_empty());
    assert_eq!(
        colleague
            .get::<Citizen>(jens.id.0)
            .unwrap()
            .unwrap()
            .phone
            .map(|p| p.expose().clone()),
        Some("99 88 77 66".into())
    );
}

#[test]
fn a_refused_goal_edit_and_removal_sent_again_reach_the_team_goal_by_goal() {
    use feltbog_core::domain::{Citizen, Goal, GoalId, GoalStatus};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, anne) = team_and_worker(&server);
    let mut store = device(dir.path(), "anne", &server, &anne);
    let goal = |text: &str| Goal {
        id: GoalId::new(),
        text: text.into(),
        status: GoalStatus::Active,
        created: chrono::Utc::now().date_naive(),
    };
    let mut jens = Citizen::with_alias("Jens");
    jens.goals = vec![goal("bolig"), goal("job")];
    store.save(&jens).unwrap();
    sync(&mut store);
    // One goal reworded, the other removed, in one save the server refuses.
    jens.goals[0].text = "egen bolig".into();
    jens.goals.pop();
    store.save(&jens).unwrap();
    let seq = store.last_device_seq().unwrap();
    refuse(&mut store, seq);
    store.resend_set_aside(seq).unwrap();
    assert_eq!(store.set_aside_edits().unwrap().len(), 0);
    assert_eq!(
        store.outbox_len().unwrap(),
        1,
        "the goal edit and removal are sent again"
    );
    sync(&mut store);
    let bo = server.admin(&["create-worker", "--team", &team, "--name", "Bo"]);
    let mut colleague = device(dir.path(), "bo", &server, &bo);
    sync(&mut colleague);
    let texts = |s: &mut feltbog_core::store::Store| -> Vec<String> {
        let c: Citizen = s.get(jens.id.0).unwrap().unwrap();
        c.goals.iter().map(|g| g.text.expose().clone()).collect()
    };
    assert_eq!(
        texts(&mut colleague),
        ["egen bolig"],
        "reworded and removed on the server"
    );
    assert_eq!(texts(&mut store), ["egen bolig"]);
    // Device and server agree goal by goal: a later edit is no conflict.
    jens.goals[0].text = "egen bolig tæt på datteren".into();
    store.save(&jens).unwrap();
    sync(&mut store);
    sync(&mut colleague);
    assert!(colleague.conflicts(true).unwrap().is_empty());
    assert_eq!(texts(&mut colleague), ["egen bolig tæt på datteren"]);
}
