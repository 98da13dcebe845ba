//! Editing and hand-over (issue 14, point 5): against the real server binary, through the app's
//! own core (`App`), one tablet per worker.

mod common;

use common::*;
use feltbog_core::app::forms::{HandoverInput, TaskEdit, TaskInput};

#[test]
fn a_citizen_handed_over_reaches_the_new_workers_today_with_the_note_and_keeps_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = worker(&server, &nord, "Anne", "outreach");
    let bo = worker(&server, &nord, "Bo", "home_support");
    worker(&server, &nord, "Carl", "caretaker");
    let (a, _) = app_device(dir.path(), "anne", &server, &anne);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let jens = a
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    a.save_visit(&visit_form(Some(jens), "Mødt ved banegården"))
        .unwrap();
    a.sync_once(&|_| {}).unwrap();

    // Only workers who carry cases can take one over: Bo, not the caretaker, not Anne herself.
    let names: Vec<String> = a
        .colleagues()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Bo"]);
    let bo_id: uuid::Uuid = bo.parse().unwrap();
    a.hand_over(&HandoverInput {
        citizen_id: jens,
        to: bo_id,
        note: "Boligmøde fredag kl. 10".into(),
        task_title: "Overdraget fra Anne".into(),
    })
    .unwrap();
    a.sync_once(&|_| {}).unwrap();
    assert_eq!(
        a.sync_bar().only_here,
        0,
        "the server accepted the hand-over"
    );

    b.sync_once(&|_| {}).unwrap();
    let today = b.today().unwrap();
    let first = &today.due_tasks[0];
    assert!(first.for_me, "the hand-over comes first on Bo's today");
    assert_eq!(first.citizen_label, "Jens");
    assert_eq!(first.title, "Overdraget fra Anne: Boligmøde fredag kl. 10");
    let page = b.citizen(jens).unwrap();
    assert_eq!(page.primary_worker, Some(bo_id));
    assert_eq!(page.primary_worker_name.as_deref(), Some("Bo"));
    assert_eq!(page.visits.len(), 1, "Anne's visit stays with the citizen");
    assert_eq!(page.visits[0].note, "Mødt ved banegården");
    assert!(!page.visits[0].mine);

    // A caretaker is no one to hand a case to.
    let carl = server.admin(&["workers"]);
    let carl_id = carl
        .lines()
        .find(|l| l.contains("Carl"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.parse::<uuid::Uuid>().ok())
        })
        .expect("Carl's id in the worker list");
    let refused = a
        .hand_over(&HandoverInput {
            citizen_id: jens,
            to: carl_id,
            note: String::new(),
            task_title: "Overdraget fra Anne".into(),
        })
        .unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("to"));
}

#[test]
fn a_task_edit_writes_only_what_changed_and_a_colleagues_concurrent_change_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = worker(&server, &nord, "Anne", "outreach");
    let bo = worker(&server, &nord, "Bo", "home_support");
    let (a, _) = app_device(dir.path(), "anne", &server, &anne);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let jens = a
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let due = (chrono::Local::now().date_naive() + chrono::Duration::days(3)).to_string();
    let task = a
        .save_task(&TaskInput {
            citizen_id: jens,
            title: "Ring til lægen".into(),
            due: due.clone(),
        })
        .unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();

    // Offline, both edit the task: Anne the due date and assignee, Bo the title.
    let opened = |app: &feltbog_core::app::App| {
        let t = app
            .tasks(false)
            .unwrap()
            .into_iter()
            .find(|t| t.id == task)
            .unwrap();
        TaskEdit {
            title: t.title,
            due: t.due.to_string(),
            assignee: t.assignee,
        }
    };
    let later = (chrono::Local::now().date_naive() + chrono::Duration::days(10)).to_string();
    let from = opened(&a);
    let bo_id: uuid::Uuid = bo.parse().unwrap();
    a.edit_task(
        task,
        &TaskEdit {
            due: later.clone(),
            assignee: Some(bo_id),
            ..from.clone()
        },
        &from,
    )
    .unwrap();
    let from_b = opened(&b);
    b.edit_task(
        task,
        &TaskEdit {
            title: "Ring til lægen om medicin".into(),
            ..from_b.clone()
        },
        &from_b,
    )
    .unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();
    a.sync_once(&|_| {}).unwrap();
    for app in [&a, &b] {
        let t = app
            .tasks(false)
            .unwrap()
            .into_iter()
            .find(|t| t.id == task)
            .unwrap();
        assert_eq!(t.title, "Ring til lægen om medicin");
        assert_eq!(t.due.to_string(), later);
        assert_eq!(t.assignee, Some(bo_id));
        assert_eq!(t.assignee_name.as_deref(), Some("Bo"));
    }
    assert!(
        a.conflicts().unwrap().is_empty(),
        "different fields: no conflict"
    );
    assert!(
        b.tasks(false)
            .unwrap()
            .iter()
            .any(|t| t.id == task && t.for_me)
    );
}

#[test]
fn a_visit_corrected_on_two_tablets_offline_merges_field_by_field_with_a_conflict_on_the_note() {
    use feltbog_core::app::forms::VisitEdit;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = worker(&server, &nord, "Anne", "outreach");
    // Anne's two tablets.
    let (a1, _) = app_device(dir.path(), "anne-1", &server, &anne);
    let (a2, _) = app_device(dir.path(), "anne-2", &server, &anne);
    let jens = a1
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let id = a1
        .save_visit(&visit_form(Some(jens), "Mødt ved banegården"))
        .unwrap();
    a1.sync_once(&|_| {}).unwrap();
    a2.sync_once(&|_| {}).unwrap();

    let opened = |app: &feltbog_core::app::App| {
        let shown = app.citizen(jens).unwrap().visits;
        visit_edit_of(shown.iter().find(|v| v.id == id).unwrap())
    };
    use feltbog_core::domain::Theme;
    let from1 = opened(&a1);
    a1.edit_visit(
        id,
        &VisitEdit {
            duration_minutes: 35,
            themes: vec![Theme::Housing],
            note: "Mødt ved banegården, talte om bolig".into(),
            ..from1.clone()
        },
        &from1,
    )
    .unwrap();
    let from2 = opened(&a2);
    a2.edit_visit(
        id,
        &VisitEdit {
            place: "Banegården".into(),
            themes: vec![Theme::PhysicalHealth],
            note: "Mødt ved banegården, ondt i foden".into(),
            ..from2.clone()
        },
        &from2,
    )
    .unwrap();
    a1.sync_once(&|_| {}).unwrap();
    a2.sync_once(&|_| {}).unwrap();
    a1.sync_once(&|_| {}).unwrap();

    for app in [&a1, &a2] {
        let v = app
            .citizen(jens)
            .unwrap()
            .visits
            .into_iter()
            .find(|v| v.id == id)
            .unwrap();
        assert_eq!(v.duration_minutes, 35, "one tablet's duration");
        assert_eq!(v.place.as_deref(), Some("Banegården"), "the other's place");
        assert_eq!(
            v.themes,
            [Theme::Housing, Theme::PhysicalHealth],
            "both themes kept"
        );
        let conflicts = app.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "only the note is in conflict");
        assert_eq!(conflicts[0].field, "note");
        let both = [conflicts[0].mine.as_str(), conflicts[0].theirs.as_str()];
        assert!(both.contains(&"Mødt ved banegården, talte om bolig"));
        assert!(both.contains(&"Mødt ved banegården, ondt i foden"));
    }
}

#[test]
fn an_anonymous_contact_is_linked_to_a_citizen_later_and_a_colleagues_visit_is_not_corrected() {
    use feltbog_core::app::forms::VisitEdit;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = worker(&server, &nord, "Anne", "outreach");
    let bo = worker(&server, &nord, "Bo", "home_support");
    let (a, _) = app_device(dir.path(), "anne", &server, &anne);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let jens = a
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let anon = visit_form(None, "En mand ved kirken, ville ikke sige navn");
    let contact = a.save_visit(&anon).unwrap();
    a.sync_once(&|_| {}).unwrap();

    let linked = a.link_visit(contact, jens).unwrap();
    a.sync_once(&|_| {}).unwrap();
    assert_eq!(a.sync_bar().only_here, 0, "the server accepted the link");
    b.sync_once(&|_| {}).unwrap();
    let page = b.citizen(jens).unwrap();
    assert_eq!(page.visits.len(), 1);
    assert_eq!(page.visits[0].id, linked);
    assert_eq!(
        page.visits[0].note,
        "En mand ved kirken, ville ikke sige navn"
    );
    assert!(
        b.today().unwrap().recent.iter().all(|v| v.id != contact),
        "the anonymous copy is archived"
    );

    // Bo cannot correct Anne's visit from the app.
    let from = visit_edit_of(&page.visits[0]);
    let err = b
        .edit_visit(
            linked,
            &VisitEdit {
                note: "Rettet".into(),
                ..from.clone()
            },
            &from,
        )
        .unwrap_err();
    assert_eq!(err.code, feltbog_core::app::ErrorCode::NotAllowed);
}
