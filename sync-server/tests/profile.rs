//! The device knows who it serves (issue 14, point 1) and a wipe counts refused work (point 3):
//! against the real server binary, through the app's own core (`App`) and a device store.

mod common;

use common::*;
use feltbog_core::access::Role;
use feltbog_core::protocol::SyncRequest;
use feltbog_core::sync::Transport;

#[test]
fn the_device_learns_its_worker_role_team_and_directory_and_hears_of_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = server.admin(&[
        "create-worker",
        "--team",
        &nord,
        "--name",
        "Anne",
        "--role",
        "home_support",
    ]);
    let (app, _) = app_device(dir.path(), "anne", &server, &anne);
    let me = app
        .state()
        .me
        .expect("enrolment told the device who it serves");
    assert_eq!(me.name, "Anne");
    assert_eq!(me.role, Role::HomeSupport);
    assert_eq!(me.team, "Team Nord");

    // A store sees the directory; a new colleague reaches it on the next sync.
    let mut store = device(dir.path(), "store", &server, &anne);
    let names = |store: &mut feltbog_core::store::Store| -> Vec<String> {
        let p = store.profile().unwrap().unwrap();
        p.directory.iter().map(|d| d.name.clone()).collect()
    };
    assert_eq!(names(&mut store), ["Anne"]);
    server.admin(&[
        "create-worker",
        "--team",
        &nord,
        "--name",
        "Bo",
        "--role",
        "caretaker",
    ]);
    sync(&mut store);
    assert_eq!(names(&mut store), ["Anne", "Bo"]);
    let bo = store.profile().unwrap().unwrap();
    assert!(
        bo.directory
            .iter()
            .any(|d| d.name == "Bo" && d.role == Role::Caretaker)
    );

    // The profile travels only when it changed: the device's digest stops it.
    let raw = Raw::of(&mut store);
    let ask = |digest: Option<String>| {
        raw.transport
            .sync(
                &raw.token,
                &SyncRequest {
                    mutations: vec![],
                    cursor: u64::MAX / 2,
                    access_log: vec![],
                    profile_digest: digest,
                },
            )
            .unwrap()
            .0
            .profile
    };
    let held = store.profile().unwrap().unwrap();
    assert_eq!(ask(Some(held.digest())), None);
    assert_eq!(ask(Some("stale".into())), Some(held.clone()));
    assert_eq!(ask(None), Some(held));
}

#[test]
fn refused_edits_count_as_work_only_on_this_tablet_and_a_wipe_must_have_shown_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let caretaker = server.admin(&[
        "create-worker",
        "--team",
        &nord,
        "--name",
        "Carl",
        "--role",
        "caretaker",
    ]);
    let (app, data) = app_device(dir.path(), "carl", &server, &caretaker);
    // Today's app still offers a caretaker the citizen form; the server refuses the save.
    app.save_citizen(&citizen_form(serde_json::json!({"alias": "Fisk"})), None)
        .unwrap();
    app.sync_once(&|_| {}).unwrap();
    let bar = app.sync_bar();
    assert_eq!((bar.unsynced, bar.set_aside, bar.only_here), (0, 1, 1));
    // A wipe that showed "nothing is lost" is refused: the refused edit is only here.
    let refused = app.wipe(0).unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("unsynced"));
    assert!(!store_files(&data).is_empty(), "nothing was wiped");
    app.wipe(1).expect("the wipe that showed it goes ahead");
    assert!(store_files(&data).is_empty());
}
