//! A revoked device erases itself, whichever request finds out: `feltbog-device sync` and
//! `feltbog-device rotate-token` against a real server (the server library on loopback) after
//! an administrator revoked the device. Store, WAL and keys are gone afterwards.

use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::domain::Citizen;
use feltbog_core::store::{CreateOptions, Store};
use feltbog_core::sync::{self, http::HttpTransport};
use feltbog_server::{AppState, Config, identity};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_feltbog-device");
const PASS: &str = "revoked-pin-1";

fn files_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sync_and_rotate_token_on_a_revoked_device_erase_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let conn = feltbog_server::db::open(&server_dir).unwrap();
    let now = feltbog_core::hlc::system_time_ms();
    let team = identity::create_team(&conn, "Team Nord", now).unwrap();
    let worker = identity::create_worker(&conn, team, "Anne", "outreach").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let codes: Vec<String> = (0..2)
        .map(|_| identity::issue_enrolment_code(&conn, worker, now).unwrap())
        .collect();
    runtime.spawn(feltbog_server::serve(
        listener,
        AppState::new(conn, Config::default()),
        std::future::pending(),
    ));

    for (name, code, command) in [
        ("sync", &codes[0], &["sync", "--attempts", "1"][..]),
        ("rotate", &codes[1], &["rotate-token"][..]),
    ] {
        let home = dir.path().join(name);
        std::fs::create_dir(&home).unwrap();
        let path = home.join("device.feltbog");
        let mut store = Store::create(
            &path,
            &Passphrase::new(PASS).unwrap(),
            &CreateOptions::with_kdf(KdfParams::MINIMUM),
        )
        .unwrap();
        let transport = HttpTransport::new(&url).unwrap();
        sync::enrol(&mut store, &transport, &url, code).unwrap();
        store.save(&Citizen::with_alias("Fie")).unwrap();
        let device = store.device_id();
        drop(store);
        assert!(!files_of(&home).is_empty());

        let mut admin = feltbog_server::db::open(&server_dir).unwrap();
        feltbog_server::admin::revoke_device(
            &mut admin,
            device,
            feltbog_core::hlc::system_time_ms(),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("--store")
            .arg(&path)
            .args(command)
            .env("FELTBOG_PASSPHRASE", PASS)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("revoked"), "{name}: {stderr}");
        assert!(stderr.contains("erased"), "{name}: {stderr}");
        assert_eq!(
            files_of(&home),
            Vec::<String>::new(),
            "{name}: store, WAL and keys gone"
        );
    }
}
