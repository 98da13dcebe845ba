//! A supervisor's conflict review (issue 14, point 2): the one write a supervisor makes, in the
//! teams they read, and nothing beside it. Against the real server binary.

mod common;

use common::*;
use feltbog_core::app::forms::{ConflictChoice, VisitEdit};
use feltbog_core::domain::EntityKind;
use feltbog_core::hlc::Hlc;
use feltbog_core::protocol::{FieldChange, FieldOp, RejectReason};
use feltbog_server::storage::Transact;

/// A worker of `team` corrects the same visit's note on two tablets offline: one open conflict
/// on the server.
fn conflict_in(
    dir: &std::path::Path,
    server: &Server,
    team: &str,
    tag: &str,
) -> (
    feltbog_core::app::App,
    feltbog_core::app::App,
    uuid::Uuid,
    uuid::Uuid,
) {
    conflict_about(dir, server, team, tag, true)
}

/// As [`conflict_in`]; `about_citizen` false: the visit is an anonymous contact (filed under
/// the team, not a citizen).
fn conflict_about(
    dir: &std::path::Path,
    server: &Server,
    team: &str,
    tag: &str,
    about_citizen: bool,
) -> (
    feltbog_core::app::App,
    feltbog_core::app::App,
    uuid::Uuid,
    uuid::Uuid,
) {
    let w = worker(server, team, &format!("{tag}-worker"), "outreach");
    let (a, _) = app_device(dir, &format!("{tag}-a"), server, &w);
    let (b, _) = app_device(dir, &format!("{tag}-b"), server, &w);
    let citizen = a
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let id = a
        .save_visit(&visit_form(
            Some(citizen).filter(|_| about_citizen),
            "Første udkast",
        ))
        .unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();
    for (app, note) in [(&a, "Talte om bolig"), (&b, "Talte om gæld")] {
        let recent = app.today().unwrap().recent;
        let from = visit_edit_of(recent.iter().find(|v| v.id == id).unwrap());
        app.edit_visit(
            id,
            &VisitEdit {
                note: note.into(),
                ..from.clone()
            },
            &from,
        )
        .unwrap();
    }
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();
    a.sync_once(&|_| {}).unwrap();
    assert_eq!(
        a.conflicts().unwrap().len(),
        1,
        "one open conflict on the note"
    );
    (a, b, citizen, id)
}

#[test]
fn a_supervisor_settles_a_conflict_in_a_team_they_supervise_and_every_device_of_the_team_converges()
{
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let ledelse = server.admin(&["create-team", "Ledelse"]);
    let nord = server.admin(&["create-team", "Team Nord"]);
    let (a, b, citizen, visit) = conflict_in(dir.path(), &server, &nord, "nord");
    let sofie = worker(&server, &ledelse, "Sofie", "supervisor");
    server.admin(&["supervise", "--worker", &sofie, "--team", &nord]);
    let (sup, _) = app_device(dir.path(), "sofie", &server, &sofie);
    sup.sync_once(&|_| {}).unwrap();
    assert!(sup.state().offer.review_conflicts && !sup.state().offer.resolve_conflicts);

    let open = sup.conflicts().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].field, "note");
    // A notice is not hers to dismiss; an open conflict is hers to settle.
    assert!(
        sup.resolve_conflict(open[0].id, &ConflictChoice::Dismiss)
            .is_err()
    );
    sup.resolve_conflict(
        open[0].id,
        &ConflictChoice::Merged {
            text: "Talte om bolig og gæld".into(),
        },
    )
    .unwrap();
    sup.sync_once(&|_| {}).unwrap();
    assert_eq!(
        sup.sync_bar().only_here,
        0,
        "the server accepted the review"
    );
    assert!(sup.set_aside().unwrap().is_empty());

    for app in [&a, &b, &sup] {
        app.sync_once(&|_| {}).unwrap();
        assert!(app.conflicts().unwrap().is_empty(), "settled everywhere");
        let v = app
            .citizen(citizen)
            .unwrap()
            .visits
            .into_iter()
            .find(|v| v.id == visit)
            .unwrap();
        assert_eq!(v.note, "Talte om bolig og gæld");
    }
}

#[test]
fn a_supervisors_review_of_an_anonymous_contact_reaches_the_team_it_belongs_to() {
    // Filed under the team, not a citizen: the change must be logged under the record's team
    // (Team Nord), not the supervisor's own (a bug the real-app walk found).
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let ledelse = server.admin(&["create-team", "Ledelse"]);
    let nord = server.admin(&["create-team", "Team Nord"]);
    let (a, b, _, visit) = conflict_about(dir.path(), &server, &nord, "anon", false);
    let sofie = worker(&server, &ledelse, "Sofie", "supervisor");
    server.admin(&["supervise", "--worker", &sofie, "--team", &nord]);
    let (sup, _) = app_device(dir.path(), "sofie", &server, &sofie);
    sup.sync_once(&|_| {}).unwrap();
    let open = sup.conflicts().unwrap();
    assert_eq!(open.len(), 1);
    sup.resolve_conflict(open[0].id, &ConflictChoice::KeepMine)
        .unwrap();
    sup.sync_once(&|_| {}).unwrap();
    assert!(sup.set_aside().unwrap().is_empty());
    let kept = open[0].mine.clone();
    for app in [&a, &b] {
        app.sync_once(&|_| {}).unwrap();
        assert!(
            app.conflicts().unwrap().is_empty(),
            "settled on the team's devices"
        );
        let v = app
            .today()
            .unwrap()
            .recent
            .into_iter()
            .find(|v| v.id == visit)
            .unwrap();
        assert_eq!(v.note, kept);
    }
}

#[test]
fn a_supervisor_writes_nothing_but_the_review_and_nothing_in_a_team_they_do_not_supervise() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let ledelse = server.admin(&["create-team", "Ledelse"]);
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let (nord_a, _, nord_citizen, nord_visit) = conflict_in(dir.path(), &server, &nord, "nord");
    let (syd_a, _, _, syd_visit) = conflict_in(dir.path(), &server, &syd, "syd");
    let sofie = worker(&server, &ledelse, "Sofie", "supervisor");
    server.admin(&["supervise", "--worker", &sofie, "--team", &nord]);
    let mut store = device(dir.path(), "sofie", &server, &sofie);
    sync(&mut store);
    let mut raw = Raw::of(&mut store);
    let at = Hlc::new(chrono::Utc::now().timestamp_millis() as u64, 0).unwrap();
    let op = |entity, id, field: &str, value: serde_json::Value| FieldOp {
        entity,
        id,
        field: field.into(),
        change: FieldChange::Assign { value },
        hlc: at,
        base: None,
    };
    let nord_conflict = nord_a.conflicts().unwrap()[0].id;
    let syd_conflict = syd_a.conflicts().unwrap()[0].id;
    let refused = |what: &str, r: Result<(), (RejectReason, String)>| {
        assert_eq!(r.map_err(|e| e.0), Err(RejectReason::OutOfScope), "{what}");
    };
    // Another field of the record under review, another record of the team, a new record.
    refused(
        "another field of the record under review",
        raw.write(vec![op(
            EntityKind::Visit,
            nord_visit,
            "duration_minutes",
            99.into(),
        )]),
    );
    refused(
        "another record of the team",
        raw.write(vec![op(
            EntityKind::Citizen,
            nord_citizen,
            "phone",
            "11223344".into(),
        )]),
    );
    // The same review in a team she does not supervise.
    refused(
        "the review in a team she does not supervise",
        raw.write(vec![op(EntityKind::Visit, syd_visit, "note", "x".into())]),
    );
    refused(
        "a conflict in a team she does not supervise",
        raw.write(vec![op(
            EntityKind::Conflict,
            syd_conflict,
            "status",
            "resolved".into(),
        )]),
    );
    // The review itself, in her supervised team, is accepted.
    raw.write(vec![op(
        EntityKind::Visit,
        nord_visit,
        "note",
        "Samlet".into(),
    )])
    .expect("the field under review");
    raw.write(vec![op(
        EntityKind::Conflict,
        nord_conflict,
        "status",
        "resolved".into(),
    )])
    .expect("the conflict's status");
    // Still nothing else: the review opened no other field.
    refused(
        "another field after the review",
        raw.write(vec![op(EntityKind::Visit, nord_visit, "place", "x".into())]),
    );
}

/// The citizen form of `app`'s copy of `citizen` with each goal's text replaced by `texts`
/// (same order), and the form it started from.
fn goal_edit(
    app: &feltbog_core::app::App,
    citizen: uuid::Uuid,
    texts: &[&str],
) -> (
    feltbog_core::app::forms::CitizenInput,
    feltbog_core::app::forms::CitizenInput,
) {
    let goals: Vec<serde_json::Value> = app
        .citizen(citizen)
        .unwrap()
        .goals
        .iter()
        .map(|g| serde_json::json!({"id": g.id, "text": g.text, "status": g.status}))
        .collect();
    let form = |goals: Vec<serde_json::Value>| {
        let mut f = citizen_form(serde_json::json!({"alias": "Jens", "goals": goals}));
        f.id = Some(citizen);
        f
    };
    let edited = goals
        .iter()
        .zip(texts)
        .map(|(g, t)| {
            let mut g = g.clone();
            g["text"] = (*t).into();
            g
        })
        .collect();
    (form(edited), form(goals))
}

#[test]
fn two_workers_editing_different_goals_offline_both_keep_theirs_and_the_same_goal_is_a_conflict_in_words()
 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let bo = worker(&server, &nord, "Bo", "home_support");
    let (a, _) = app_device(dir.path(), "anna", &server, &anna);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let goal = |text: &str| serde_json::json!({"id": null, "text": text, "status": "active"});
    let citizen = a
        .save_citizen(
            &citizen_form(serde_json::json!({"alias": "Jens",
                "goals": [goal("Egen bolig"), goal("Et job")]})),
            None,
        )
        .unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();

    // Offline, Anna rewrites the first goal and Bo the second.
    let (edit, from) = goal_edit(&a, citizen, &["Egen lejlighed i Nordvest", "Et job"]);
    a.save_citizen(&edit, Some(&from)).unwrap();
    let (edit, from) = goal_edit(&b, citizen, &["Egen bolig", "Et fleksjob"]);
    b.save_citizen(&edit, Some(&from)).unwrap();
    for app in [&a, &b, &a] {
        app.sync_once(&|_| {}).unwrap();
    }
    for app in [&a, &b] {
        assert!(
            app.conflicts().unwrap().is_empty(),
            "different goals: no conflict"
        );
        let texts: Vec<String> = app
            .citizen(citizen)
            .unwrap()
            .goals
            .into_iter()
            .map(|g| g.text)
            .collect();
        assert_eq!(
            texts,
            ["Egen lejlighed i Nordvest", "Et fleksjob"],
            "both kept"
        );
    }

    // Offline, both rewrite the first goal: one conflict about that goal, in words.
    let (edit, from) = goal_edit(&a, citizen, &["Bolig tæt på datteren", "Et fleksjob"]);
    a.save_citizen(&edit, Some(&from)).unwrap();
    let (edit, from) = goal_edit(&b, citizen, &["Bolig med have", "Et fleksjob"]);
    b.save_citizen(&edit, Some(&from)).unwrap();
    for app in [&a, &b, &a] {
        app.sync_once(&|_| {}).unwrap();
    }
    let open = a.conflicts().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let c = &open[0];
    assert_eq!(c.field, "goals");
    assert_eq!(c.mine, "Bolig tæt på datteren");
    assert_eq!(c.theirs, "Bolig med have");
    assert_eq!(
        c.theirs_author.as_deref(),
        Some("Bo"),
        "the other version names its author"
    );
    assert_eq!(c.mine_author.as_deref(), Some("Anna"));
    assert_eq!(c.mine_details[0].field, "goal_status");
    assert_eq!(c.mine_details[0].values, ["active"]);
    assert!(!c.mine.contains('{') && !c.theirs.contains('{'), "no JSON");

    // Written together as typed text: every device keeps the merged goal, the other intact.
    a.resolve_conflict(
        c.id,
        &ConflictChoice::Merged {
            text: "Bolig med have tæt på datteren".into(),
        },
    )
    .unwrap();
    for app in [&a, &b, &a] {
        app.sync_once(&|_| {}).unwrap();
    }
    for app in [&a, &b] {
        assert!(app.conflicts().unwrap().is_empty(), "settled everywhere");
        assert!(
            app.set_aside().unwrap().is_empty(),
            "the server took the merged goal"
        );
        let goals = app.citizen(citizen).unwrap().goals;
        let texts: Vec<&str> = goals.iter().map(|g| g.text.as_str()).collect();
        assert_eq!(texts, ["Bolig med have tæt på datteren", "Et fleksjob"]);
    }
}

#[test]
fn a_supervisors_review_of_a_consent_names_no_worker_the_versions_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let ledelse = server.admin(&["create-team", "Ledelse"]);
    let nord = server.admin(&["create-team", "Team Nord"]);
    let (a, b, citizen, _) = conflict_in(dir.path(), &server, &nord, "consent");
    // Both tablets record the consent's scope offline: an open conflict on that consent.
    for (app, scope) in [(&a, "Bolig og økonomi"), (&b, "Kun bolig")] {
        let mut form = citizen_form(serde_json::json!({"alias": "Jens", "consent":
            {"status": "given", "date": "2026-12-01", "scope": scope, "method": "verbal"}}));
        form.id = Some(citizen);
        app.save_citizen(&form, None).unwrap();
    }
    for app in [&a, &b, &a] {
        app.sync_once(&|_| {}).unwrap();
    }
    // The consent to recording, the item the citizen form edits (issue 17).
    let item = feltbog_core::domain::schema::item_field("consents", citizen);
    assert!(a.conflicts().unwrap().iter().any(|c| c.field == "consents"));
    let sofie = worker(&server, &ledelse, "Sofie", "supervisor");
    server.admin(&["supervise", "--worker", &sofie, "--team", &nord]);
    let mut store = device(dir.path(), "sofie", &server, &sofie);
    sync(&mut store);
    let held = server_db(&dir.path().join("server"))
        .read(|db| feltbog_server::sync::field_value(db, EntityKind::Citizen, citizen, &item))
        .unwrap()
        .unwrap();
    let mut raw = Raw::of(&mut store);
    let at = Hlc::new(chrono::Utc::now().timestamp_millis() as u64, 0).unwrap();
    let write = |value: serde_json::Value| FieldOp {
        entity: EntityKind::Citizen,
        id: citizen,
        field: item.clone(),
        change: FieldChange::Assign { value },
        hlc: at,
        base: None,
    };
    let mut forged = held.clone();
    forged["recorded_by"] = serde_json::json!(uuid::Uuid::now_v7());
    forged["scope"] = "Samlet".into();
    assert_eq!(
        raw.write(vec![write(forged)]).map_err(|e| e.0),
        Err(RejectReason::OutOfScope),
        "a recorder neither version named"
    );
    let mut merged = held;
    merged["scope"] = "Bolig, og økonomi når han er klar".into();
    raw.write(vec![write(merged)])
        .expect("the words written together, the recorder kept");
}
