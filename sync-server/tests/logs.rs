//! Nothing personal and no secret in any log: a full scenario with every log at its most
//! verbose, seeded with unique marker strings as names, CPR numbers, phone numbers, goals and
//! notes, and then every line of output searched for them (DESIGN §6, "no sensitive values in
//! logs").

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Everything the HTTP client and the rest of this process log (the `log` facade: reqwest,
/// hyper, rustls), at trace level.
struct Capture(Arc<Mutex<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {} {}\n", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push_str(&line);
    }
    fn flush(&self) {}
}

const MARKERS: [&str; 7] = [
    "Markoer-Alias-7f3a",
    "Markoer Fuldnavn Qz",
    "120385-9173",
    "1203859173",
    "61 23 45 97",
    "Markoer-maal-beef",
    "Markoer-note-c0ffee",
];

#[test]
fn no_marker_or_secret_reaches_any_log_with_trace_logging_on() {
    let client_log = Arc::new(Mutex::new(String::new()));
    log::set_boxed_logger(Box::new(Capture(client_log.clone()))).unwrap();
    log::set_max_level(log::LevelFilter::Trace);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    // The server at its most verbose, every byte of its output kept.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--enrol-rate-per-minute", "1000"])
        .env("FELTBOG_DATA_DIR", &data)
        .env("FELTBOG_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = r.read_to_end(&mut all);
            String::from_utf8_lossy(&all).into_owned()
        })
    };
    let server_out = drain(Box::new(stdout));
    let server_err = drain(Box::new(child.stderr.take().unwrap()));

    let mut admin_out = String::new();
    let mut run_admin = |args: &[&str]| -> String {
        let out = Command::new(BIN)
            .arg("admin")
            .args(args)
            .env("FELTBOG_DATA_DIR", &data)
            .env("FELTBOG_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        admin_out.push_str(&String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let nord = run_admin(&["create-team", "Team Nord"]);
    let syd = run_admin(&["create-team", "Team Syd"]);
    let w1 = run_admin(&["create-worker", "--team", &nord, "--name", "Anne"]);
    let w2 = run_admin(&["create-worker", "--team", &nord, "--name", "Bo"]);
    let w3 = run_admin(&["create-worker", "--team", &syd, "--name", "Cai"]);
    let mut secrets = Vec::new();
    let mut enrol_app = |name: &str, worker: &str, run_admin: &mut dyn FnMut(&[&str]) -> String| {
        let code = run_admin(&["enrolment-code", "--worker", worker]);
        secrets.push(code.clone());
        let data = dir.path().join(name);
        let mut config = feltbog_core::app::AppConfig::new(data);
        config.kdf_target = std::time::Duration::from_millis(1);
        let app = feltbog_core::app::App::new(config);
        app.first_run(&feltbog_core::app::forms::FirstRunInput {
            server_url: url.clone(),
            code,
            pin: "739154".into(),
        })
        .unwrap();
        app
    };
    let a = enrol_app("a", &w1, &mut run_admin);
    let b = enrol_app("b", &w2, &mut run_admin);
    let c = enrol_app("c", &w3, &mut run_admin);
    // The real device tokens, read from each tablet's own store (a second connection, unlocked
    // with the PIN): none of them may appear in any log either.
    let mut tokens = Vec::new();
    for name in ["a", "b", "c"] {
        let mut store = feltbog_core::store::Store::open(
            &dir.path().join(name).join(feltbog_core::app::STORE_FILE),
            Arc::new(feltbog_core::keystore::NoPlatformSecret),
        )
        .unwrap();
        store
            .unlock(&feltbog_core::crypto::Passphrase::new("739154").unwrap())
            .unwrap();
        tokens.push(store.enrolment().unwrap().unwrap().token.expose().clone());
    }
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );

    // A citizen full of markers, a visit with a marker note, a quick anonymous contact.
    let x = a
        .save_citizen(
            &citizen_form(serde_json::json!({
                "alias": MARKERS[0], "full_name": MARKERS[1], "cpr": MARKERS[2],
                "phone": MARKERS[4], "goals": [{"id": null, "text": MARKERS[5], "status": "active"}],
                "tags": ["markoer-tag"]
            })),
            None,
        )
        .unwrap();
    let visit: feltbog_core::app::forms::VisitInput = serde_json::from_value(serde_json::json!({
        "citizen_id": x, "anonymous_count": null, "anonymous_description": "",
        "kind": "home_visit", "started_at_ms": null, "duration_minutes": 30, "place": MARKERS[6],
        "themes": ["housing"], "referrals": [], "note": MARKERS[6], "wellbeing": 4,
        "follow_up": {"title": MARKERS[6], "due": "2030-01-01"}
    }))
    .unwrap();
    a.save_visit(&visit).unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();
    b.citizen(x).unwrap();
    // Concurrent edits of the same field on two tablets: a conflict carrying both values.
    let mut started = citizen_form(serde_json::json!({"alias": MARKERS[0],
        "full_name": MARKERS[1], "cpr": MARKERS[2], "phone": MARKERS[4],
        "tags": ["markoer-tag"]}));
    started.id = Some(x);
    started.goals = a
        .citizen(x)
        .unwrap()
        .goals
        .iter()
        .map(|g| {
            serde_json::from_value(
                serde_json::json!({"id": g.id, "text": g.text, "status": g.status}),
            )
            .unwrap()
        })
        .collect();
    for (app, who) in [(&a, "A"), (&b, "B")] {
        let mut edit = started.clone();
        edit.full_name = format!("{} {who}", MARKERS[1]);
        app.save_citizen(&edit, Some(&started)).unwrap();
    }
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();
    a.sync_once(&|_| {}).unwrap();
    assert!(!a.conflicts().unwrap().is_empty(), "the edits conflicted");
    // Another team's device: nothing of the citizen; then the citizen moves there.
    c.sync_once(&|_| {}).unwrap();
    run_admin(&["audit-export", "--citizen", &x.to_string()]);
    run_admin(&["move-citizen", "--citizen", &x.to_string(), "--team", &syd]);
    c.sync_once(&|_| {}).unwrap();
    a.sync_once(&|_| {}).unwrap();
    // Revocation, a refused token, retention, verification.
    let device_b = run_admin(&["devices"])
        .lines()
        .find(|l| l.split('\t').nth(1) == Some(w2.as_str()))
        .unwrap()
        .split('\t')
        .next()
        .unwrap()
        .to_owned();
    run_admin(&["revoke-device", "--device", &device_b]);
    assert!(b.sync_once(&|_| {}).is_err());
    run_admin(&["retention", "--device-days", "30", "--purge-days", "3650"]);
    run_admin(&["audit-verify"]);
    let wrong = feltbog_core::sync::http::HttpTransport::new(&url).unwrap();
    let _ = feltbog_core::sync::Transport::sync(
        &wrong,
        "0123456789abcdef-not-a-token",
        &feltbog_core::protocol::SyncRequest {
            mutations: vec![],
            cursor: 0,
            access_log: vec![],
            profile_digest: None,
            ..Default::default()
        },
    );

    let _ = child.kill();
    let _ = child.wait();
    let logs = [
        ("server stdout", server_out.join().unwrap()),
        ("server stderr", server_err.join().unwrap()),
        ("admin CLI", admin_out),
        ("HTTP client", client_log.lock().unwrap().clone()),
    ];
    // Trace logging was really on: the logs are not empty and name what happened.
    let all: String = logs.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        all.contains("TRACE") || all.contains("trace"),
        "trace output present"
    );
    assert!(all.contains("device enrolled") && all.contains("sync"));
    assert!(
        logs[2].1.contains("server database open"),
        "the admin CLI logs at trace level too"
    );
    for (name, text) in &logs {
        // Written to pipes, not a terminal: no colour codes for a log file or a journal.
        assert!(!text.contains('\u{1b}'), "{name} has terminal escape codes");
        for marker in MARKERS.iter().chain(["markoer-tag"].iter()) {
            assert!(
                !text.contains(marker),
                "{name} contains personal data {marker:?}"
            );
        }
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} contains an enrolment code"
            );
        }
        for token in tokens
            .iter()
            .map(String::as_str)
            .chain(["0123456789abcdef-not-a-token"])
        {
            assert!(!text.contains(token), "{name} contains a device token");
        }
    }
    println!(
        "searched {} lines of trace-level output for {} markers and {} secrets",
        all.lines().count(),
        MARKERS.len() + 1,
        secrets.len() + tokens.len() + 1
    );
}
