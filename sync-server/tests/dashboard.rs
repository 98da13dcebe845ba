//! The supervisors' dashboard over real HTTP (issue 15): set-up with a one-time code, sign-in
//! with back-off, sessions by HttpOnly cookie, CSRF on every change, reports only for the
//! teams a supervisor reads, every view and export audited, and nothing personal in any report
//! or export.

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};

/// A browser's view of the dashboard: its cookie and the session's CSRF token.
struct Browser {
    url: String,
    http: Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        // reqwest is built without a default TLS provider; the app's transport installs ring's.
        let _ = feltbog_core::sync::http::HttpTransport::new(&server.url);
        Browser {
            url: server.url.clone(),
            http: Client::new(),
            cookie: None,
            csrf: None,
        }
    }

    fn get(&self, path: &str) -> Response {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(c) = &self.cookie {
            r = r.header("Cookie", c);
        }
        r.send().unwrap()
    }

    fn post(&self, path: &str, body: serde_json::Value, headers: &[(&str, &str)]) -> Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(c) = &self.cookie {
            r = r.header("Cookie", c);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    }

    fn sign_in(&mut self, login: &str, password: &str) -> Response {
        let r = self.post(
            "/dashboard/api/sign-in",
            serde_json::json!({"login": login, "password": password}),
            &[],
        );
        if r.status() == StatusCode::OK {
            let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(
                    set.contains(attribute),
                    "the cookie lacks {attribute}: {set}"
                );
            }
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        r
    }

    fn report(&self, name: &str, query: &str) -> Response {
        self.get(&format!("/dashboard/api/reports/{name}?{query}"))
    }
}

fn json(r: Response) -> serde_json::Value {
    serde_json::from_slice(&r.bytes().unwrap()).unwrap()
}

const PASSWORD: &str = "rapporter om fredagen 7";

/// A supervisor with a password; returns their login.
fn supervisor_with_password(server: &Server, worker: &str, login: &str) {
    let code = server.admin(&["web-access", "--worker", worker, "--login", login]);
    let b = Browser::new(server);
    let r = b.post(
        "/dashboard/api/setup",
        serde_json::json!({"login": login, "code": code, "password": PASSWORD}),
        &[],
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[test]
fn a_supervisor_sets_a_password_signs_in_and_reads_only_the_teams_they_supervise() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let vest = server.admin(&["create-team", "Team Vest"]);
    let sara = worker(&server, &nord, "Sara", "supervisor");
    server.admin(&["supervise", "--worker", &sara, "--team", &syd]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let bo = worker(&server, &syd, "Bo", "outreach");
    let vera = worker(&server, &vest, "Vera", "outreach");
    // Data with markers that must never appear in a report: names, a CPR number, a phone
    // number, a note.
    let (a, _) = app_device(dir.path(), "anna", &server, &anna);
    for i in 0..8 {
        let c = a
            .save_citizen(
                &citizen_form(serde_json::json!({
                    "alias": format!("Markørnavn{i}"), "cpr": "010190-1234", "phone": "88776655"
                })),
                None,
            )
            .unwrap();
        a.save_visit(&feltbog_core::app::forms::VisitInput {
            themes: vec![feltbog_core::domain::Theme::Housing],
            wellbeing: Some(6),
            ..visit_form(Some(c), "Markørnote om helbred")
        })
        .unwrap();
    }
    a.sync_once(&|_| {}).unwrap();
    // Team Syd: three citizens, every figure under the discretion rule.
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    for i in 0..3 {
        let c = b
            .save_citizen(
                &citizen_form(serde_json::json!({"alias": format!("Syd{i}")})),
                None,
            )
            .unwrap();
        b.save_visit(&visit_form(Some(c), "Syd")).unwrap();
    }
    b.sync_once(&|_| {}).unwrap();
    let (v, _) = app_device(dir.path(), "vera", &server, &vera);
    v.save_visit(&visit_form(None, "Vest")).unwrap();
    v.sync_once(&|_| {}).unwrap();

    // Set-up: a wrong code, a short password and a spent code are refused.
    let code = server.admin(&["web-access", "--worker", &sara, "--login", "sara"]);
    let mut web = Browser::new(&server);
    let setup = |code: &str, password: &str| {
        web.post(
            "/dashboard/api/setup",
            serde_json::json!({"login": "sara", "code": code, "password": password}),
            &[],
        )
        .status()
    };
    assert_eq!(
        setup("AAAA-BBBB-CCCC-DDDD", PASSWORD),
        StatusCode::FORBIDDEN
    );
    assert_eq!(setup(&code, "kort"), StatusCode::BAD_REQUEST);
    assert_eq!(setup(&code, PASSWORD), StatusCode::NO_CONTENT);
    assert_eq!(
        setup(&code, PASSWORD),
        StatusCode::FORBIDDEN,
        "a code works once"
    );

    // Signed out: nothing.
    let today = chrono::Utc::now().date_naive();
    let period = format!("from={}&to={today}", today - chrono::Duration::days(30));
    assert_eq!(
        web.report("contacts", &period).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        web.get("/dashboard/api/session").status(),
        StatusCode::UNAUTHORIZED
    );
    // A wrong password, then the right one.
    assert_eq!(
        web.sign_in("sara", "forkert kodeord!").status(),
        StatusCode::UNAUTHORIZED
    );
    let r = web.sign_in("SARA", PASSWORD);
    assert_eq!(r.status(), StatusCode::OK);
    let session = json(r);
    web.csrf = Some(session["csrf"].as_str().unwrap().to_owned());
    let mut teams: Vec<&str> = session["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    teams.sort();
    assert_eq!(
        teams,
        ["Team Nord", "Team Syd"],
        "her own team and the one she supervises"
    );

    // Scope: another team's report is refused; her teams' are the report module's figures.
    assert_eq!(
        web.report("contacts", &format!("{period}&team={vest}"))
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        web.report("nonsense", &period).status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        web.report("contacts", "from=2026-12-10&to=2026-12-01")
            .status(),
        StatusCode::BAD_REQUEST
    );
    let nord_contacts = json(web.report("contacts", &format!("{period}&team={nord}")));
    assert_eq!(nord_contacts["data"]["contacts"], 8);
    assert_eq!(nord_contacts["data"]["citizens"], 8);
    // Team Syd's three citizens: "<5", and no total reveals them.
    let syd_contacts = json(web.report("contacts", &format!("{period}&team={syd}")));
    for figure in ["contacts", "people", "citizens", "new_citizens"] {
        assert_eq!(syd_contacts["data"][figure], "<5", "{figure}");
    }
    for row in syd_contacts["data"]["by_kind"].as_array().unwrap() {
        assert_eq!(
            (&row["count"], &row["people"]),
            (&"<5".into(), &"<5".into())
        );
    }
    // Both teams together: Vest's contact is never counted.
    let both = json(web.report("contacts", &period));
    assert_eq!(both["data"]["contacts"], 11);
    assert_eq!(both["filter"]["teams"].as_array().unwrap().len(), 2);

    // Every report in every format; none holds a marker.
    let mut everything = String::new();
    for name in [
        "contacts",
        "referrals",
        "follow_ups",
        "housing",
        "wellbeing",
        "conflicts",
    ] {
        for format in ["json", "tables", "csv", "xlsx"] {
            let r = web.report(name, &format!("{period}&format={format}"));
            assert_eq!(r.status(), StatusCode::OK, "{name} {format}");
            let bytes = r.bytes().unwrap();
            match format {
                "csv" => {
                    assert!(bytes.starts_with("\u{feff}".as_bytes()), "a BOM for Excel");
                    let text = std::str::from_utf8(&bytes[3..]).unwrap();
                    assert!(text.lines().next().unwrap().contains(';'));
                    everything += text;
                }
                "xlsx" => {
                    assert!(bytes.starts_with(b"PK"), "a zip container");
                    // Sheet and chart parts are named in the zip's directory (uncompressed).
                    let raw = String::from_utf8_lossy(&bytes);
                    assert!(raw.contains("xl/worksheets/sheet1.xml"));
                    if name == "contacts" {
                        assert!(raw.contains("xl/charts/chart1.xml"), "a native chart");
                    }
                }
                _ => everything += std::str::from_utf8(&bytes).unwrap(),
            }
        }
    }
    for marker in [
        "Markørnavn",
        "010190",
        "88776655",
        "Markørnote",
        "Syd0",
        "Vest",
    ] {
        assert!(!everything.contains(marker), "a report holds {marker}");
    }
    let csv = web
        .report("contacts", &format!("{period}&team={nord}&format=csv"))
        .text()
        .unwrap();
    assert!(csv.contains("Overblik;Tal;Værdi"), "Danish headings: {csv}");
    assert!(csv.contains(";Kontakter;8"), "{csv}");
    let wellbeing = web
        .report("wellbeing", &format!("{period}&team={nord}&format=csv"))
        .text()
        .unwrap();
    assert!(
        wellbeing.contains(";Gennemsnit;6,0"),
        "a decimal comma: {wellbeing}"
    );

    // Every view and export is in the audit trail with its filter, and the chain holds.
    let rows: Vec<(String, String)> = server_all(
        &dir.path().join("server"),
        "SELECT action, detail FROM audit WHERE actor = 'web' AND action LIKE 'report_%'
         ORDER BY seq",
        &[],
    );
    assert_eq!(
        rows.len(),
        3 + 6 * 4 + 2,
        "one row per view or export; none for a refusal"
    );
    assert_eq!(rows[0].0, "report_view");
    let first: serde_json::Value = serde_json::from_str(&rows[0].1).unwrap();
    assert_eq!(first["report"], "contacts");
    assert_eq!(first["teams"], serde_json::json!([nord]));
    assert!(
        rows.iter()
            .any(|(a, d)| a == "report_export" && d.contains("\"xlsx\""))
    );
    server.admin(&["audit-verify"]);

    // Changes need the CSRF token, from this origin.
    let out = |b: &Browser, headers: &[(&str, &str)]| {
        b.post("/dashboard/api/sign-out", serde_json::json!({}), headers)
            .status()
    };
    assert_eq!(out(&web, &[]), StatusCode::FORBIDDEN, "no token");
    let csrf = web.csrf.clone().unwrap();
    assert_eq!(
        out(
            &web,
            &[("X-CSRF-Token", &csrf), ("Origin", "https://evil.example")]
        ),
        StatusCode::FORBIDDEN,
        "another site"
    );
    assert_eq!(
        out(&web, &[("X-CSRF-Token", &csrf)]),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        web.report("contacts", &period).status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn workers_caretakers_and_administrators_get_no_reports_and_a_role_change_ends_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    for role in ["outreach", "home_support", "caretaker", "admin"] {
        let w = worker(&server, &nord, role, role);
        let out = admin_output(
            &dir.path().join("server"),
            &["web-access", "--worker", &w, "--login", role],
        );
        assert!(!out.status.success(), "a {role} got dashboard access");
        assert!(String::from_utf8_lossy(&out.stderr).contains("only an active supervisor"));
    }
    let sara = worker(&server, &nord, "Sara", "supervisor");
    supervisor_with_password(&server, &sara, "sara");
    let mut web = Browser::new(&server);
    assert_eq!(web.sign_in("sara", PASSWORD).status(), StatusCode::OK);
    let today = chrono::Utc::now().date_naive();
    let q = format!("from={today}&to={today}");
    assert_eq!(web.report("contacts", &q).status(), StatusCode::OK);
    server.admin(&["set-role", "--worker", &sara, "--role", "outreach"]);
    assert_eq!(
        web.report("contacts", &q).status(),
        StatusCode::UNAUTHORIZED,
        "no longer a supervisor: the session is gone"
    );
    server.admin(&["set-role", "--worker", &sara, "--role", "supervisor"]);
    assert_eq!(
        web.report("contacts", &q).status(),
        StatusCode::UNAUTHORIZED,
        "it stays gone"
    );
}

#[test]
fn failed_sign_ins_back_off_and_a_new_code_lifts_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let sara = worker(&server, &nord, "Sara", "supervisor");
    supervisor_with_password(&server, &sara, "sara");
    let mut web = Browser::new(&server);
    for _ in 0..3 {
        assert_eq!(
            web.sign_in("sara", "forkert kodeord!").status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The third failure starts the back-off: even the right password must wait now.
    let r = web.sign_in("sara", PASSWORD);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body = json(r);
    assert_eq!(body["code"], "wait");
    // An unknown login is answered like a wrong password.
    assert_eq!(
        web.sign_in("nobody", PASSWORD).status(),
        StatusCode::UNAUTHORIZED
    );
    // The administrator's new code ends the wait (and the old password).
    supervisor_with_password(&server, &sara, "sara");
    assert_eq!(web.sign_in("sara", PASSWORD).status(), StatusCode::OK);
    let refused: i64 = server_value(
        &dir.path().join("server"),
        "SELECT count(*) FROM audit WHERE action = 'sign_in_refused'",
        &[],
    );
    assert_eq!(refused, 4, "each refusal is audited");
}

/// Point 5: a supervisor settles a conflict in the dashboard by the same server rule as from
/// her tablet; every device of the team converges on the text she wrote. A supervisor of
/// another team cannot, and a settled conflict cannot be settled again.
#[test]
fn a_conflict_settled_in_the_dashboard_reaches_every_device_of_the_team() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let sara = worker(&server, &nord, "Sara", "supervisor");
    let sofus = worker(&server, &syd, "Sofus", "supervisor");
    let (a1, _) = app_device(dir.path(), "a1", &server, &anna);
    let (a2, _) = app_device(dir.path(), "a2", &server, &anna);
    let jens = a1
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Jens"})), None)
        .unwrap();
    let visit = a1
        .save_visit(&visit_form(Some(jens), "Første udkast"))
        .unwrap();
    a1.sync_once(&|_| {}).unwrap();
    a2.sync_once(&|_| {}).unwrap();
    for (app, note) in [(&a1, "Talte om huslejen"), (&a2, "Talte om lægen")] {
        let shown = app.citizen(jens).unwrap().visits;
        let from = visit_edit_of(shown.iter().find(|v| v.id == visit).unwrap());
        let edit = feltbog_core::app::forms::VisitEdit {
            note: note.into(),
            ..from.clone()
        };
        app.edit_visit(visit, &edit, &from).unwrap();
    }
    for app in [&a1, &a2, &a1] {
        app.sync_once(&|_| {}).unwrap();
    }

    supervisor_with_password(&server, &sofus, "sofus");
    let mut other = Browser::new(&server);
    assert_eq!(other.sign_in("sofus", PASSWORD).status(), StatusCode::OK);
    assert_eq!(
        json(other.get("/dashboard/api/conflicts")),
        serde_json::json!([])
    );

    supervisor_with_password(&server, &sara, "sara");
    let mut web = Browser::new(&server);
    let session = json(web.sign_in("sara", PASSWORD));
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    let list = json(web.get("/dashboard/api/conflicts?lang=da"));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let c = &list[0];
    assert_eq!(c["what"], "Besøg – Notat");
    let mut versions = [c["current"].as_str().unwrap(), c["other"].as_str().unwrap()];
    versions.sort();
    assert_eq!(versions, ["Talte om huslejen", "Talte om lægen"]);
    assert_eq!(
        (&c["current_author"], &c["other_author"]),
        (&"Anna".into(), &"Anna".into())
    );
    assert_eq!(c["can_merge"], true);
    let id = c["id"].as_str().unwrap().to_owned();
    let path = format!("/dashboard/api/conflicts/{id}");
    let merged = serde_json::json!({"keep": "merged", "text": "Talte om huslejen og lægen"});

    // Another team's supervisor, and a request without the token, change nothing.
    let other_csrf = json(other.get("/dashboard/api/session"))["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        other
            .post(&path, merged.clone(), &[("X-CSRF-Token", &other_csrf)])
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        web.post(&path, merged.clone(), &[]).status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        web.post(&path, merged.clone(), &[("X-CSRF-Token", &csrf)])
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        web.post(
            &path,
            serde_json::json!({"keep": "other"}),
            &[("X-CSRF-Token", &csrf)]
        )
        .status(),
        StatusCode::CONFLICT,
        "settled already"
    );
    assert_eq!(
        json(web.get("/dashboard/api/conflicts")),
        serde_json::json!([])
    );

    for app in [&a1, &a2] {
        app.sync_once(&|_| {}).unwrap();
        let shown = app.citizen(jens).unwrap().visits;
        let v = shown.iter().find(|v| v.id == visit).unwrap();
        assert_eq!(v.note, "Talte om huslejen og lægen");
        assert!(
            app.conflicts()
                .unwrap()
                .iter()
                .all(|c| c.record_id != visit),
            "the conflict is settled on every device"
        );
    }
    // Audited as her write, with nothing refused.
    let writes: i64 = server_value(
        &dir.path().join("server"),
        "SELECT count(*) FROM audit WHERE actor = 'web' AND action = 'write' AND worker_id = ?1",
        feltbog_server::args![sara.parse::<uuid::Uuid>().unwrap()],
    );
    assert_eq!(writes, 2, "the field and the conflict's status");
    server.admin(&["audit-verify"]);
}
