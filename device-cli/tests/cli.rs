//! `feltbog-device` as a user runs it: a real binary, a real store file.

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_feltbog-device");

fn run(store: &Path, args: &[&str], passphrase: Option<&str>, stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--store")
        .arg(store)
        .args(args)
        .env_remove("FELTBOG_PASSPHRASE")
        .env_remove("FELTBOG_STORE");
    if let Some(p) = passphrase {
        cmd.env("FELTBOG_PASSPHRASE", p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn init(store: &Path) {
    let out = run(
        store,
        &["init", "--kdf-memory-kib", "19456", "--kdf-iterations", "2"],
        None,
        "123456\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Argon2id m=19456 KiB, t=2, p=1"), "{text}");
}

#[test]
fn init_add_list_show_and_outbox_with_the_passphrase_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nested/dir/device.feltbog");
    init(&store);
    let added = ok_json(run(
        &store,
        &[
            "--json",
            "citizen",
            "add",
            "--alias",
            "Fisk",
            "--cpr",
            "010190-1234",
            "--tag",
            "herberg",
        ],
        None,
        "123456\n",
    ));
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["device_seq"], 1);
    let visit = ok_json(run(
        &store,
        &[
            "--json",
            "visit",
            "add",
            "--citizen",
            &id,
            "--kind",
            "home_visit",
            "--theme",
            "housing",
            "--note",
            "husleje",
        ],
        Some("123456"),
        "",
    ));
    assert_eq!(visit["saved"], "visit");

    let list = ok_json(run(
        &store,
        &["--json", "citizen", "list"],
        Some("123456"),
        "",
    ));
    assert_eq!(list[0]["alias"], "Fisk");
    assert_eq!(list[0]["cpr"], "010190-1234");
    let shown = ok_json(run(
        &store,
        &["--json", "visit", "show", visit["id"].as_str().unwrap()],
        Some("123456"),
        "",
    ));
    assert_eq!(shown["note"], "husleje");
    assert_eq!(shown["themes"], serde_json::json!(["housing"]));
    let outbox = ok_json(run(&store, &["--json", "outbox"], Some("123456"), ""));
    assert_eq!(outbox.as_array().unwrap().len(), 2);
    let status = ok_json(run(&store, &["--json", "status"], None, ""));
    assert_eq!(status["outbox"], 2);
    assert_eq!(status["records"]["visit"], 1);
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.feltbog");
    init(&store);
    let out = run(
        &store,
        &["citizen", "add", "--alias", "x", "--cpr", "320190-1234"],
        Some("123456"),
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid --cpr") && !err.contains("320190"),
        "{err}"
    );

    let out = run(
        &store,
        &[
            "visit",
            "add",
            "--anonymous",
            "2",
            "--kind",
            "phone",
            "--wellbeing",
            "12",
        ],
        Some("123456"),
        "",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wellbeing is out of range"));

    let out = run(&store, &["citizen", "list"], Some("forkert"), "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong passphrase or PIN (9 attempts left")
    );

    let out = run(&store, &["citizen", "list"], None, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no passphrase"));

    let out = run(&store, &["init"], Some("123"), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 6 characters"));
}

#[test]
fn import_reports_bad_lines_without_quoting_them_and_saves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.feltbog");
    init(&store);
    let citizen = serde_json::json!({"kind": "citizen", "record": serde_json::to_value(
        feltbog_core::domain::Citizen::with_alias("Importeret")).unwrap()});
    let input = format!(
        "123456\n{citizen}\n{{\"kind\":\"visit\",\"record\":{{\"note\":\"HEMMELIG\"}}}}\nnot json\n"
    );
    let out = run(&store, &["import"], None, &input);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("saved citizen"))
            .count(),
        1,
        "{stdout}"
    );
    assert!(
        stderr.contains("line 2: not a valid record")
            && stderr.contains("line 3: not a valid record"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of 3 lines were not saved"), "{stderr}");
    assert!(!stderr.contains("HEMMELIG"), "{stderr}");
}
