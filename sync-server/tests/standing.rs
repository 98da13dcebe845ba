//! A lost tablet wipes itself even while locked (issue 16, point 2): the lock-state credential
//! learns "revoked" and nothing else. Against the real server binary.

mod common;

use common::*;
use feltbog_core::domain::Citizen;
use feltbog_core::protocol::SyncRequest;
use feltbog_core::sync::{Transport, TransportError, http::HttpTransport};

/// `Err` as (status, wipe), or `Ok` as (200, false).
fn status<T>(r: Result<T, TransportError>) -> (u16, bool) {
    match r {
        Ok(_) => (200, false),
        Err(TransportError::Refused { status, wipe, .. }) => (status, wipe),
        Err(other) => panic!("no answer: {other}"),
    }
}

#[test]
fn the_lock_state_credential_learns_revoked_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "d", &server, &worker);
    let person = Citizen::with_alias("Jens");
    store.save(&person).unwrap();
    sync(&mut store);
    let (url, standing) = store.standing().unwrap().expect("issued at enrolment");
    let token = store.enrolment().unwrap().unwrap().token.expose().clone();
    let http = HttpTransport::new(&url).unwrap();
    let read = SyncRequest::default();
    let write = SyncRequest {
        mutations: store.outbox().unwrap(),
        ..SyncRequest::default()
    };
    // The matrix cells of the lock-state credential: it stands, and opens nothing.
    assert_eq!(status(http.standing(standing.expose())), (200, false));
    assert_eq!(
        status(http.sync(standing.expose(), &read)),
        (401, false),
        "no reads"
    );
    assert_eq!(
        status(http.sync(standing.expose(), &write)),
        (401, false),
        "no writes"
    );
    assert_eq!(
        status(http.rotate(standing.expose())),
        (401, false),
        "no new token"
    );
    // A device token is not a lock-state credential either.
    assert_eq!(status(http.standing(&token)), (401, false));
    assert_eq!(status(http.standing("0".repeat(64).as_str())), (401, false));

    // Revoked: the credential learns it, and still opens nothing.
    let id = devices_of(&server, &worker).pop().unwrap();
    server.admin(&["revoke-device", "--device", &id]);
    assert_eq!(
        status(http.standing(standing.expose())),
        (401, true),
        "wipe"
    );
    assert_eq!(status(http.sync(standing.expose(), &read)), (401, false));
}

#[test]
fn a_device_enrolled_before_the_credential_gets_one_at_its_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "d", &server, &worker);
    let (url, first) = store.standing().unwrap().unwrap();
    // As a store from before: no credential held.
    rusqlite::Connection::open(store.path())
        .unwrap()
        .execute("UPDATE sync_state SET standing_token = NULL", [])
        .unwrap();
    assert!(store.standing().unwrap().is_none());
    sync(&mut store);
    let (_, second) = store.standing().unwrap().expect("issued in the sync");
    let http = HttpTransport::new(&url).unwrap();
    assert_eq!(status(http.standing(second.expose())), (200, false));
    assert_eq!(
        status(http.standing(first.expose())),
        (401, false),
        "the one it replaced is unknown"
    );
}

#[test]
fn a_revoked_tablet_left_locked_wipes_itself_at_its_next_standing_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, worker) = team_and_worker(&server);
    let (app, data) = app_device(dir.path(), "tablet", &server, &worker);
    app.save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    app.sync_once(&|_| {}).unwrap();
    assert!(app.lock(), "locked");
    // Standing: nothing happens, the store stays (locked).
    assert!(!app.check_standing(&|_| {}).unwrap());
    assert!(!store_files(&data).is_empty());
    assert_eq!(app.state().phase, feltbog_core::app::Phase::Locked);

    let id = devices_of(&server, &worker).pop().unwrap();
    server.admin(&["revoke-device", "--device", &id]);
    let bars = std::cell::RefCell::new(Vec::new());
    assert!(
        app.check_standing(&|bar| bars.borrow_mut().push(bar.state))
            .unwrap()
    );
    assert!(store_files(&data).is_empty(), "{:?}", store_files(&data));
    assert_eq!(app.state().phase, feltbog_core::app::Phase::FirstRun);
    assert_eq!(
        bars.borrow().last(),
        Some(&feltbog_core::app::SyncState::Revoked),
        "the screen is told"
    );
}
