//! The app's commands through Tauri's real IPC layer and its real capability (the app's own
//! `tauri.conf.json` and `capabilities/`), on Tauri's mock runtime — no window — against a real
//! `feltbog-server` (its library on a loopback port). What the UI does, minus the pixels:
//! first run, saves, background sync, lock and unlock, and the error codes the UI translates.

use feltbog_app_lib::with_commands;
use feltbog_core::app::{App, AppConfig};
use feltbog_server::{AppState as ServerState, Config as ServerConfig, identity};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow, WebviewWindowBuilder};

struct Server {
    url: String,
    dir: tempfile::TempDir,
    codes: Vec<String>,
    _runtime: tokio::runtime::Runtime,
}

fn server(workers: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let conn = feltbog_server::db::open(dir.path()).unwrap();
    let now = feltbog_core::hlc::system_time_ms();
    let team = identity::create_team(&conn, "Team Nord", now).unwrap();
    let codes = (0..workers)
        .map(|i| {
            let w = identity::create_worker(&conn, team, &format!("W{i}"), "outreach").unwrap();
            identity::issue_enrolment_code(&conn, w, now).unwrap()
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = ServerState::new(conn, ServerConfig::default());
    runtime.spawn(feltbog_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Server {
        url,
        dir,
        codes,
        _runtime: runtime,
    }
}

struct Ui {
    window: WebviewWindow<MockRuntime>,
    app: Arc<App>,
    _tauri: tauri::App<MockRuntime>,
}

fn app_in(dir: &std::path::Path) -> Ui {
    let mut config = AppConfig::new(dir.to_path_buf());
    // The floor of the KDF cost: these tests unlock several times.
    config.kdf_target = Duration::from_millis(1);
    let app = Arc::new(App::new(config));
    let tauri = with_commands(mock_builder())
        .build(tauri::generate_context!())
        .unwrap();
    tauri.manage(Arc::clone(&app));
    feltbog_app_lib::start_loops(&app, tauri.handle());
    let window = WebviewWindowBuilder::new(&tauri, "main", Default::default())
        .build()
        .unwrap();
    Ui {
        window,
        app,
        _tauri: tauri,
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.app.stop();
    }
}

impl Ui {
    fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().unwrap())
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.call(cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    fn err(&self, cmd: &str, args: Value) -> Value {
        match self.call(cmd, args) {
            Ok(v) => panic!("{cmd} should have failed, answered {v}"),
            Err(e) => e,
        }
    }

    /// Kicks the background sync and waits (bounded) until a sync that started after the kick
    /// has finished with nothing left unsynced.
    fn synced(&self) -> Value {
        let before = self.ok("sync_bar", json!({}))["last_success_ms"].as_u64();
        // The bar keeps milliseconds: make sure the next good sync stamps a later one.
        std::thread::sleep(Duration::from_millis(2));
        self.ok("sync_now", json!({}));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let bar = self.ok("sync_bar", json!({}));
            let newer = bar["last_success_ms"].as_u64() > before;
            if newer && bar["unsynced"] == 0 && bar["state"] == "online" {
                return bar;
            }
            assert!(Instant::now() < deadline, "not synced in 30 s: {bar}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn quick_contact(count: u32, note: &str) -> Value {
    json!({ "input": {
        "citizen_id": null, "anonymous_count": count, "anonymous_description": "ved stationen",
        "kind": "street_contact", "started_at_ms": null, "duration_minutes": 5, "place": "",
        "themes": ["housing", "network_and_loneliness"], "referrals": [], "note": note,
        "wellbeing": null, "follow_up": null
    }})
}

fn first_run(ui: &Ui, url: &str, code: &str) -> Result<Value, Value> {
    ui.call(
        "first_run",
        json!({ "input": { "server_url": url, "code": code, "pin": "246813" } }),
    )
}

#[test]
fn first_run_save_sync_lock_and_unlock_through_ipc() {
    let server = server(1);
    let dir = tempfile::tempdir().unwrap();
    let ui = app_in(dir.path());
    assert_eq!(ui.ok("app_state", json!({}))["phase"], "first_run");

    // A wrong code is refused with its code and leaves nothing behind to block a retry.
    let e = first_run(&ui, &server.url, "WRONG-CODE").unwrap_err();
    assert_eq!(e["code"], "enrolment_refused", "{e}");
    assert!(!dir.path().join(feltbog_core::app::STORE_FILE).exists());
    for bad in [
        "ftp://x",
        "http://10.0.0.5:8787",
        "http://feltbog.example.dk",
        "https://",
    ] {
        let e = first_run(&ui, bad, &server.codes[0]).unwrap_err();
        assert_eq!(e["code"], "bad_server_address", "{bad}: {e}");
    }

    let state = first_run(&ui, &server.url, &server.codes[0]).unwrap();
    assert_eq!(state["phase"], "unlocked", "{state}");

    // A quick contact is saved, shows as unsynced until the background sync takes it.
    let id = ui.ok("save_visit", quick_contact(2, "kort snak"));
    let bar = ui.synced();
    assert_eq!(bar["set_aside"], 0);
    let log =
        feltbog_server::sync::change_log(&feltbog_server::db::open(server.dir.path()).unwrap())
            .unwrap();
    let visit_id: uuid::Uuid = serde_json::from_value(id).unwrap();
    assert!(
        log.iter()
            .flat_map(|c| &c.mutation.ops)
            .any(|op| op.id == visit_id),
        "the visit is on the server"
    );

    // Invalid input comes back as `invalid` naming the field, never echoing the value.
    let e = ui.err("save_visit", quick_contact(0, "hemmelig-note-XYZ"));
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("invalid"), Some("anonymous.count")),
        "{e}"
    );
    assert!(!e.to_string().contains("hemmelig"), "{e}");

    // Locked: screens get `locked`; a wrong PIN says how many attempts are left.
    ui.ok("lock", json!({}));
    assert_eq!(ui.ok("app_state", json!({}))["phase"], "locked");
    assert_eq!(ui.err("today", json!({}))["code"], "locked");
    let e = ui.err("unlock", json!({ "pin": "135799" }));
    assert_eq!(e["code"], "wrong_pin", "{e}");
    assert!(e["attempts_left"].as_u64().is_some(), "{e}");
    ui.ok("unlock", json!({ "pin": "246813" }));
    let today = ui.ok("today", json!({}));
    assert_eq!(today["recent"][0]["anonymous_count"], 2, "{today}");
    assert_eq!(today["recent"][0]["mine"], true);
}

#[test]
fn a_colleagues_citizen_visit_and_follow_up_arrive_by_background_sync() {
    let server = server(2);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = app_in(dir_a.path());
    let b = app_in(dir_b.path());
    first_run(&a, &server.url, &server.codes[0]).unwrap();
    first_run(&b, &server.url, &server.codes[1]).unwrap();

    let citizen = a.ok(
        "save_citizen",
        json!({ "input": {
            "id": null, "alias": "Fisk", "full_name": "", "cpr": "", "birth_year": null,
            "phone": "", "housing": "street", "site_id": null, "consent": null,
            "goals": [{ "id": null, "text": "Få min egen lejlighed", "status": "active" }],
            "tags": ["natcafé"], "archived": false
        }}),
    );
    a.ok(
        "save_visit",
        json!({ "input": {
            "citizen_id": citizen, "anonymous_count": null, "anonymous_description": "",
            "kind": "home_visit", "started_at_ms": null, "duration_minutes": 45, "place": "",
            "themes": ["housing"], "referrals": ["housing_support"], "note": "Boligansøgning",
            "wellbeing": 6, "follow_up": { "title": "Ring til boligkontoret", "due": "2099-01-01" }
        }}),
    );
    a.synced();
    b.synced();
    let page = b.ok("citizen", json!({ "id": citizen }));
    assert_eq!(page["goals"][0]["text"], "Få min egen lejlighed", "{page}");
    assert_eq!(page["visits"][0]["note"], "Boligansøgning");
    assert_eq!(page["visits"][0]["mine"], false, "written by A");
    assert_eq!(page["tasks"][0]["title"], "Ring til boligkontoret");
    let found = b.ok("caseload", json!({ "search": "fis" }));
    assert_eq!(found[0]["label"], "Fisk", "{found}");
    assert_eq!(found[0]["open_tasks"], 1);
}

#[test]
fn the_idle_lock_drops_the_keys() {
    let server = server(1);
    let dir = tempfile::tempdir().unwrap();
    let mut config = AppConfig::new(dir.path().to_path_buf());
    config.kdf_target = Duration::from_millis(1);
    config.idle_lock_override = Some(Duration::from_millis(200));
    let app = App::new(config);
    app.first_run(&feltbog_core::app::forms::FirstRunInput {
        server_url: server.url.clone(),
        code: server.codes[0].clone(),
        pin: "246813".into(),
    })
    .unwrap();
    assert!(!app.lock_if_idle(Instant::now()), "just touched");
    assert!(app.lock_if_idle(Instant::now() + Duration::from_millis(250)));
    assert_eq!(
        app.today().unwrap_err().code,
        feltbog_core::app::ErrorCode::Locked
    );
}

#[test]
fn the_capability_allows_the_apps_commands_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ui = app_in(dir.path());
    // Every app command gets through the ACL (called with no arguments, most then fail on
    // their arguments or the phase — but never as "not allowed").
    // The list is build.rs's, so a command added there is checked here too.
    let build = include_str!("../build.rs");
    let listed = &build[build
        .find(".commands(&[")
        .expect("build.rs lists the commands")..];
    let listed = &listed[..listed.find("])").unwrap()];
    // One quoted command name per line.
    let commands: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.trim().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(
        commands.len() >= 30 && commands.contains(&"wipe"),
        "{commands:?}"
    );
    for cmd in commands {
        if let Err(e) = ui.call(cmd, json!({})) {
            assert!(!e.to_string().contains("not allowed"), "{cmd}: {e}");
        }
    }
    // No file-system plugin is registered at all.
    let e = ui.err("plugin:fs|read_file", json!({ "path": "/etc/passwd" }));
    assert!(e.to_string().contains("not allowed"), "{e}");
    // Core commands exist but the capability does not grant them: closing or creating
    // windows, emitting events from the page.
    for cmd in [
        "plugin:window|close",
        "plugin:webview|create_webview_window",
        "plugin:event|emit",
    ] {
        let e = ui.err(cmd, json!({}));
        assert!(e.to_string().contains("not allowed"), "{cmd}: {e}");
    }
}

#[test]
fn wipe_needs_the_keys_and_the_count_that_was_shown() {
    let server = server(1);
    let dir = tempfile::tempdir().unwrap();
    let ui = app_in(dir.path());
    first_run(&ui, &server.url, &server.codes[0]).unwrap();
    drop(server); // the server goes away: the next save stays unsynced
    ui.ok("save_visit", quick_contact(1, "ikke synkroniseret"));
    assert_eq!(ui.ok("sync_bar", json!({}))["unsynced"], 1);
    // The confirmation showed no unsynced change, but one is waiting: refused.
    let e = ui.err("wipe", json!({ "unsynced_shown": 0 }));
    assert_eq!(
        (e["code"].as_str(), e["field"].as_str()),
        (Some("invalid"), Some("unsynced")),
        "{e}"
    );
    ui.ok("lock", json!({}));
    let e = ui.err("wipe", json!({ "unsynced_shown": 99 }));
    assert_eq!(
        e["code"], "locked",
        "a locked tablet cannot be emptied: {e}"
    );
    assert!(dir.path().join(feltbog_core::app::STORE_FILE).exists());
    ui.ok("unlock", json!({ "pin": "246813" }));
    let state = ui.ok("wipe", json!({ "unsynced_shown": 99 }));
    assert_eq!(state["phase"], "first_run");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(feltbog_core::app::STORE_FILE))
        .collect();
    assert!(left.is_empty(), "store files left: {left:?}");
}

#[test]
fn a_refused_visit_leaves_no_follow_up_task_behind() {
    let server = server(1);
    let dir = tempfile::tempdir().unwrap();
    let ui = app_in(dir.path());
    first_run(&ui, &server.url, &server.codes[0]).unwrap();
    let citizen = ui.ok(
        "save_citizen",
        json!({ "input": {
            "id": null, "alias": "Ørn", "full_name": "", "cpr": "", "birth_year": null,
            "phone": "", "housing": "shelter", "site_id": null, "consent": null, "goals": [],
            "tags": [], "archived": false
        }, "started_from": null }),
    );
    let visit = |wellbeing: u8, title: &str| {
        json!({ "input": {
            "citizen_id": citizen, "anonymous_count": null, "anonymous_description": "",
            "kind": "home_visit", "started_at_ms": null, "duration_minutes": 30, "place": "",
            "themes": [], "referrals": [], "note": "", "wellbeing": wellbeing,
            "follow_up": { "title": title, "due": "2099-01-01" }
        }})
    };
    let e = ui.err("save_visit", visit(11, "Ring til lægen"));
    assert_eq!(e["field"], "wellbeing", "{e}");
    let e = ui.err("save_visit", visit(5, "   "));
    assert_eq!(e["field"], "follow_up.title", "{e}");
    assert_eq!(ui.ok("tasks", json!({ "include_closed": true })), json!([]));
    ui.ok("save_visit", visit(5, "Ring til lægen"));
    let tasks = ui.ok("tasks", json!({ "include_closed": true }));
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
}

#[test]
fn a_first_run_cut_short_before_enrolment_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    // What a first run leaves if the app dies during enrolment: a store, never enrolled.
    let store = feltbog_core::store::Store::create(
        &dir.path().join(feltbog_core::app::STORE_FILE),
        &feltbog_core::crypto::Passphrase::new("246813").unwrap(),
        &feltbog_core::store::CreateOptions::with_kdf(feltbog_core::crypto::KdfParams::MINIMUM),
    )
    .unwrap();
    drop(store);
    let ui = app_in(dir.path());
    assert_eq!(ui.ok("app_state", json!({}))["phase"], "first_run");
    assert!(!dir.path().join(feltbog_core::app::STORE_FILE).exists());
}

#[test]
fn a_store_the_app_cannot_open_is_reported_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(feltbog_core::app::STORE_FILE);
    std::fs::write(&path, b"not a database at all, but someone's file").unwrap();
    let ui = app_in(dir.path());
    let e = ui.err("app_state", json!({}));
    assert_eq!(e["code"], "internal", "{e}");
    let e = first_run(&ui, "http://127.0.0.1:9", "CODE").unwrap_err();
    assert_eq!(e["code"], "internal", "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"not a database at all, but someone's file"
    );
}
