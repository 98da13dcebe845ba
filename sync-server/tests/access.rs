//! Access control end to end (DESIGN §6): the authorization matrix, revocation, a citizen moving
//! between teams, the audit chain, forged identities, rate limits — against the real server
//! binary on loopback, administered through its own CLI.

mod common;

use common::*;
use feltbog_core::domain::{
    Citizen, EntityKind, Site, SiteId, SiteKind, SiteLogEntry, SiteLogEntryId, SiteLogKind, Visit,
    VisitKind, WorkerId,
};
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::protocol::{FieldChange, FieldOp, RejectReason, SyncRequest};
use feltbog_core::store::Store;
use feltbog_core::sync::{Transport, TransportError, http::HttpTransport};
use feltbog_server::args;
use feltbog_server::storage::{DbExt, Transact, Value};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The record classes of the access model, as the matrix names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// A citizen who lives at one of the team's sites.
    Resident,
    /// A citizen without a site.
    Citizen,
    /// A visit about a citizen.
    Case,
    /// An anonymous street contact.
    Anon,
    Site,
    SiteLog,
}

const CLASSES: [Class; 6] = [
    Class::Resident,
    Class::Citizen,
    Class::Case,
    Class::Anon,
    Class::Site,
    Class::SiteLog,
];

const ROLES: [&str; 5] = [
    "outreach",
    "home_support",
    "caretaker",
    "supervisor",
    "admin",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Own,
    SameTeam,
    OtherTeam,
    Nonexistent,
}

/// The expected answers, written out by hand from the access model's table (not computed by
/// the server's own functions): may `role` read / change a record of `class` in its own team?
fn expect_read(role: &str, class: Class) -> bool {
    match role {
        "outreach" | "home_support" | "supervisor" => true,
        "caretaker" => matches!(class, Class::Resident | Class::Site | Class::SiteLog),
        _ => false,
    }
}

fn expect_write(role: &str, class: Class) -> bool {
    match role {
        "outreach" | "home_support" => true,
        "caretaker" => matches!(class, Class::Site | Class::SiteLog),
        _ => false,
    }
}

/// A repair noted in a site's log now, naming no resident.
fn log_entry(site: SiteId, note: &str) -> SiteLogEntry {
    SiteLogEntry {
        id: SiteLogEntryId::new(),
        site_id: site,
        at: chrono::Utc::now(),
        kind: SiteLogKind::Repair,
        note: note.into(),
        residents: BTreeSet::new(),
        author: WorkerId::new(),
        archived: false,
    }
}

/// One record of each class, made on `store` (not yet synced).
fn bundle(store: &mut Store, label: &str) -> BTreeMap<Class, (EntityKind, Uuid)> {
    let now = chrono::Utc::now();
    let site = Site {
        id: SiteId::new(),
        kind: SiteKind::AlternativeHousing,
        name: format!("Skæve hus {label}").into(),
        address: "Vej 1".into(),
        archived: false,
        created_at: now,
    };
    let mut resident = Citizen::with_alias(&format!("Beboer {label}"));
    resident.site_id = Some(site.id);
    let citizen = Citizen::with_alias(&format!("Borger {label}"));
    let mut case = Visit::with_citizen(citizen.id, WorkerId::new(), VisitKind::HomeVisit);
    case.note = "hjemmebesøg".into();
    let anon = Visit::anonymous(2, "to personer ved stationen", WorkerId::new());
    let log = SiteLogEntry {
        residents: BTreeSet::from([resident.id]),
        ..log_entry(site.id, "dør repareret")
    };
    store.save(&site).unwrap();
    store.save(&resident).unwrap();
    store.save(&citizen).unwrap();
    store.save(&case).unwrap();
    store.save(&anon).unwrap();
    store.save(&log).unwrap();
    BTreeMap::from([
        (Class::Resident, (EntityKind::Citizen, resident.id.0)),
        (Class::Citizen, (EntityKind::Citizen, citizen.id.0)),
        (Class::Case, (EntityKind::Visit, case.id.0)),
        (Class::Anon, (EntityKind::Visit, anon.id.0)),
        (Class::Site, (EntityKind::Site, site.id.0)),
        (Class::SiteLog, (EntityKind::SiteLogEntry, log.id.0)),
    ])
}

/// A field each class has, for an update.
fn field_of(class: Class) -> (&'static str, serde_json::Value) {
    match class {
        Class::Resident | Class::Citizen => ("phone", "12 34 56 78".into()),
        Class::Case | Class::Anon => ("duration_minutes", 25.into()),
        Class::Site => ("address", "Vej 2".into()),
        // Not the note: these writes carry no base, so they leave open free-text conflicts,
        // and a supervisor may write a field under such a conflict (the conflict review,
        // tests/review.rs). The matrix checks the role table, so it writes a field that is not
        // free text.
        Class::SiteLog => ("kind", "incident".into()),
    }
}

fn update_op(entity: EntityKind, id: Uuid, class: Class) -> FieldOp {
    let (field, value) = field_of(class);
    FieldOp {
        entity,
        id,
        field: field.into(),
        change: FieldChange::Assign { value },
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        base: None,
    }
}

/// Every record id a fresh pull from cursor 0 gives `store`'s device.
fn pulled_ids(raw: &Raw) -> BTreeSet<Uuid> {
    let mut ids = BTreeSet::new();
    let mut cursor = 0;
    loop {
        let (r, _) = raw
            .transport
            .sync(
                &raw.token,
                &SyncRequest {
                    mutations: vec![],
                    cursor,
                    access_log: vec![],
                    profile_digest: None,
                    ..Default::default()
                },
            )
            .unwrap();
        for (_, m) in &r.pull.changes {
            ids.insert(m.ops[0].id);
        }
        cursor = r.pull.next_cursor;
        if !r.pull.more {
            return ids;
        }
    }
}

#[test]
fn authorization_matrix_roles_by_endpoints_by_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let team = server.admin(&["create-team", "Team Nord"]);
    let other_team = server.admin(&["create-team", "Team Syd"]);
    let colleague = server.admin(&["create-worker", "--team", &team, "--name", "Kollega"]);
    let outsider = server.admin(&["create-worker", "--team", &other_team, "--name", "Ude"]);
    let mut c = device(dir.path(), "colleague", &server, &colleague);
    let same = bundle(&mut c, "kollega");
    sync(&mut c);
    let mut o = device(dir.path(), "outsider", &server, &outsider);
    let other = bundle(&mut o, "ude");
    sync(&mut o);

    let mut cells = 0;
    let mut refusals = BTreeSet::new();
    for role in ROLES {
        // The worker did case work first ("own" records: outreach, or home support before
        // becoming an outreach worker), then took this role: a role change does not revoke
        // (issue 16); the old device follows the new scope on its next sync.
        let before = if role == "outreach" {
            "home_support"
        } else {
            "outreach"
        };
        let worker = server.admin(&[
            "create-worker",
            "--team",
            &team,
            "--name",
            role,
            "--role",
            before,
        ]);
        let mut first = device(dir.path(), &format!("{role}-1"), &server, &worker);
        let own = bundle(&mut first, role);
        sync(&mut first);
        server.admin(&["set-role", "--worker", &worker, "--role", role]);
        let followed = try_sync(&mut first).expect("not revoked by the role change");
        assert!(
            followed.rescoped,
            "{role}: the old device follows the new scope"
        );
        if role == "caretaker" {
            // A caretaker sees the sites an administrator assigns them: here the two sites of
            // the team (`site_scope_is_per_caretaker` covers a site of the team not assigned).
            for site in [own[&Class::Site].1, same[&Class::Site].1] {
                server.admin(&[
                    "assign-site",
                    "--worker",
                    &worker,
                    "--site",
                    &site.to_string(),
                ]);
            }
        }
        let mut now = device(dir.path(), &format!("{role}-2"), &server, &worker);
        let mut raw = Raw::of(&mut now);

        // Reads (the pull endpoint): own, same team, other team.
        let seen = pulled_ids(&raw);
        for (owner, records) in [
            (Owner::Own, &own),
            (Owner::SameTeam, &same),
            (Owner::OtherTeam, &other),
        ] {
            for class in CLASSES {
                let expected = owner != Owner::OtherTeam && expect_read(role, class);
                assert_eq!(
                    seen.contains(&records[&class].1),
                    expected,
                    "read: {role} × {owner:?} × {class:?}"
                );
                cells += 1;
            }
        }

        // The device's access log (the push endpoint's reads): a read the worker may make is
        // filed as a device read, any other as denied, whoever owns the record.
        let (mut events, mut access) = (Vec::new(), Vec::new());
        for (k, (owner, class)) in [
            Owner::Own,
            Owner::SameTeam,
            Owner::OtherTeam,
            Owner::Nonexistent,
        ]
        .into_iter()
        .flat_map(|o| CLASSES.map(|c| (o, c)))
        .enumerate()
        {
            let (entity, id) = match owner {
                Owner::Own => own[&class],
                Owner::SameTeam => same[&class],
                Owner::OtherTeam => other[&class],
                Owner::Nonexistent => (own[&class].0, Uuid::now_v7()),
            };
            events.push((owner, class, id));
            let request_event = feltbog_core::protocol::AccessEvent {
                seq: k as u64 + 1,
                at_ms: system_time_ms(),
                entity,
                record_id: id,
                citizen_id: None,
            };
            access.push(request_event);
        }
        let (answer, _) = raw
            .transport
            .sync(
                &raw.token,
                &SyncRequest {
                    mutations: vec![],
                    cursor: u64::MAX / 2,
                    access_log: std::mem::take(&mut access),
                    profile_digest: None,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(answer.access_acked, events.len() as u64);
        for (owner, class, id) in events {
            let action: String = server_value(
                &dir.path().join("server"),
                "SELECT action FROM audit WHERE device_id = ?1 AND record_id = ?2
                 AND action IN ('device_read', 'denied')",
                args![raw.device.0, id],
            );
            let expected =
                matches!(owner, Owner::Own | Owner::SameTeam) && expect_read(role, class);
            assert_eq!(
                action == "device_read",
                expected,
                "device read: {role} × {owner:?} × {class:?}: {action}"
            );
            cells += 1;
        }

        // Writes (the push endpoint): own, same team, other team, nonexistent.
        for owner in [
            Owner::Own,
            Owner::SameTeam,
            Owner::OtherTeam,
            Owner::Nonexistent,
        ] {
            for class in CLASSES {
                let (entity, id) = match owner {
                    Owner::Own => own[&class],
                    Owner::SameTeam => same[&class],
                    Owner::OtherTeam => other[&class],
                    Owner::Nonexistent => (own[&class].0, Uuid::now_v7()),
                };
                let expected =
                    matches!(owner, Owner::Own | Owner::SameTeam) && expect_write(role, class);
                let got = raw.write(vec![update_op(entity, id, class)]);
                assert_eq!(
                    got.is_ok(),
                    expected,
                    "write: {role} × {owner:?} × {class:?}: {got:?}"
                );
                if let Err((reason, detail)) = got {
                    refusals.insert((format!("{reason:?}"), detail));
                }
                cells += 1;
            }
        }

        // Creation (the push endpoint, a new record) of each class in the worker's own team.
        let mut scratch = Store::create(
            &dir.path().join(format!("{role}-scratch.feltbog")),
            &pass(),
            &feltbog_core::store::CreateOptions::with_kdf(feltbog_core::crypto::KdfParams::MINIMUM),
        )
        .unwrap();
        let fresh = bundle(&mut scratch, "ny");
        let mutations = scratch.pending(100).unwrap();
        // The site first: a resident must live at one of the team's sites.
        for class in [
            Class::Site,
            Class::SiteLog,
            Class::Resident,
            Class::Citizen,
            Class::Case,
            Class::Anon,
        ] {
            let (_, id) = fresh[&class];
            let mut m = mutations
                .iter()
                .find(|m| m.ops[0].id == id)
                .unwrap()
                .clone();
            if class == Class::SiteLog {
                // Naming nobody: the fresh resident is not on the server (references are the
                // business of tests/hostile.rs).
                m.ops.retain(|op| op.field != "residents");
            }
            if class == Class::Case {
                // About a citizen of the worker's own team.
                for op in &mut m.ops {
                    if op.field == "citizen_id" {
                        op.change = FieldChange::Assign {
                            value: serde_json::to_value(same[&Class::Citizen].1).unwrap(),
                        };
                    }
                }
            }
            let got = raw.write(m.ops);
            assert_eq!(
                got.is_ok(),
                expect_write(role, class),
                "create: {role} × {class:?}: {got:?}"
            );
            cells += 1;
        }

        // Creation across teams: a visit about another team's citizen, a citizen placed at
        // another team's site, a new record that takes an id another team's record has. All
        // refused, for every role; the site gives the answer a nonexistent site gives.
        let across = bundle(&mut scratch, "tvers");
        let mutations = scratch.pending(100).unwrap();
        let creation = |class: Class| -> Vec<FieldOp> {
            let id = across[&class].1;
            mutations
                .iter()
                .find(|m| m.ops[0].id == id)
                .unwrap()
                .ops
                .clone()
        };
        let relink = |mut ops: Vec<FieldOp>, field: &str, to: Uuid| {
            for op in &mut ops {
                if op.field == field {
                    op.change = FieldChange::Assign {
                        value: serde_json::to_value(to).unwrap(),
                    };
                }
            }
            ops
        };
        let case_about_other = relink(
            creation(Class::Case),
            "citizen_id",
            other[&Class::Citizen].1,
        );
        let resident_elsewhere =
            relink(creation(Class::Resident), "site_id", other[&Class::Site].1);
        let mut taken_id = relink(creation(Class::Site), "id", other[&Class::Site].1);
        for op in &mut taken_id {
            op.id = other[&Class::Site].1;
        }
        for (what, ops) in [
            ("a visit about another team's citizen", case_about_other),
            ("a citizen at another team's site", resident_elsewhere),
            ("a record with another team's record's id", taken_id),
        ] {
            let got = raw.write(ops);
            assert!(
                got.is_err(),
                "create across teams: {role} × {what}: {got:?}"
            );
            cells += 1;
        }
        let (_, nowhere) = raw
            .write(relink(creation(Class::Resident), "site_id", Uuid::now_v7()))
            .unwrap_err();
        let (_, elsewhere) = raw
            .write(relink(
                creation(Class::Resident),
                "site_id",
                other[&Class::Site].1,
            ))
            .unwrap_err();
        assert_eq!(
            nowhere, elsewhere,
            "{role}: another team's site looks like no site"
        );

        // Token rotation: every role may rotate its own token; the old one stops working.
        let rotated = raw.transport.rotate(&raw.token).unwrap();
        let old = std::mem::replace(&mut raw.token, rotated.token);
        let empty = SyncRequest {
            mutations: vec![],
            cursor: u64::MAX / 2,
            access_log: vec![],
            profile_digest: None,
            ..Default::default()
        };
        // The old token works until the new one is first used, so a lost answer locks nobody out.
        assert!(raw.transport.sync(&old, &empty).is_ok());
        assert!(raw.transport.sync(&raw.token, &empty).is_ok());
        assert!(matches!(
            raw.transport.sync(&old, &empty),
            Err(TransportError::Refused {
                status: 401,
                wipe: false,
                ..
            })
        ));
        assert!(raw.transport.sync(&raw.token, &empty).is_ok());
        cells += 1;
    }
    // "Not yours" and "does not exist" are the same answer, word for word.
    assert_eq!(
        refusals,
        BTreeSet::from([(
            format!("{:?}", RejectReason::OutOfScope),
            "record not available to this worker".to_owned()
        )])
    );
    println!("authorization matrix: {cells} cells");
    assert_eq!(cells, 5 * (6 * 3 + 6 * 4 + 6 * 4 + 6 + 3 + 1));
}

#[test]
fn a_revoked_device_and_a_disabled_workers_devices_get_401_and_erase_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let team = server.admin(&["create-team", "Team Nord"]);
    let lost = server.admin(&["create-worker", "--team", &team, "--name", "Tabt"]);
    let leaver = server.admin(&["create-worker", "--team", &team, "--name", "Stopper"]);
    let stays = server.admin(&["create-worker", "--team", &team, "--name", "Bliver"]);
    let (tablet, tablet_dir) = app_device(dir.path(), "tablet", &server, &lost);
    let (l1, l1_dir) = app_device(dir.path(), "leaver-1", &server, &leaver);
    let (l2, l2_dir) = app_device(dir.path(), "leaver-2", &server, &leaver);
    let mut colleague = device(dir.path(), "colleague", &server, &stays);
    for app in [&tablet, &l1, &l2] {
        app.save_citizen(&citizen_form(serde_json::json!({"alias": "Fie"})), None)
            .unwrap();
        app.sync_once(&|_| {}).unwrap();
        assert!(!store_files(&tablet_dir).is_empty());
    }
    // Unsynced work on the lost tablet: gone with it, by design.
    tablet
        .save_citizen(
            &citizen_form(serde_json::json!({"alias": "Ikke sendt"})),
            None,
        )
        .unwrap();

    let [device] = &devices_of(&server, &lost)[..] else {
        panic!("one device")
    };
    server.admin(&["revoke-device", "--device", device]);
    let e = tablet.sync_once(&|_| {}).unwrap_err();
    assert_eq!(e.code, feltbog_core::app::ErrorCode::Revoked);
    assert_eq!(tablet.state().phase, feltbog_core::app::Phase::FirstRun);
    assert_eq!(
        tablet.state().sync.state,
        feltbog_core::app::SyncState::Revoked
    );
    assert_eq!(
        store_files(&tablet_dir),
        Vec::<String>::new(),
        "store, WAL and keys gone"
    );

    server.admin(&["disable-worker", "--worker", &leaver]);
    for (app, data) in [(&l1, &l1_dir), (&l2, &l2_dir)] {
        assert_eq!(
            app.sync_once(&|_| {}).unwrap_err().code,
            feltbog_core::app::ErrorCode::Revoked
        );
        assert_eq!(store_files(data), Vec::<String>::new());
    }
    // Colleagues are not affected, and keep what the revoked devices had synced.
    sync(&mut colleague);
    assert_eq!(colleague.count(EntityKind::Citizen).unwrap(), 3);
}

#[test]
fn a_citizen_moved_to_another_team_leaves_the_old_teams_devices_and_reaches_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let worker = |team: &str, name: &str, role: &str| common::worker(&server, team, name, role);
    let mut n1 = device(dir.path(), "n1", &server, &worker(&nord, "N1", "outreach"));
    let mut n2 = device(
        dir.path(),
        "n2",
        &server,
        &worker(&nord, "N2", "home_support"),
    );
    let k = worker(&nord, "K", "caretaker");
    let mut care = device(dir.path(), "care", &server, &k);
    let mut s1 = device(dir.path(), "s1", &server, &worker(&syd, "S1", "outreach"));
    let mut s_care = device(
        dir.path(),
        "s-care",
        &server,
        &worker(&syd, "SK", "caretaker"),
    );
    let records = bundle(&mut n1, "flytter");
    let assign = |n1: &mut Store, site: Uuid| {
        sync(n1);
        server.admin(&["assign-site", "--worker", &k, "--site", &site.to_string()]);
    };
    assign(&mut n1, records[&Class::Site].1);
    let (_, x) = records[&Class::Resident];
    let mut visit = Visit::with_citizen(
        feltbog_core::domain::CitizenId(x),
        WorkerId::new(),
        VisitKind::HomeVisit,
    );
    visit.note = "besøg før flytning".into();
    n1.save(&visit).unwrap();
    for d in [&mut n1, &mut n2, &mut care, &mut s1] {
        sync(d);
    }
    assert!(n2.get::<Citizen>(x).unwrap().is_some());
    assert!(n2.get::<Visit>(visit.id.0).unwrap().is_some());
    assert!(care.get::<Citizen>(x).unwrap().is_some(), "a resident");
    assert!(
        care.get::<Visit>(visit.id.0).unwrap().is_none(),
        "no case work"
    );
    assert!(s1.get::<Citizen>(x).unwrap().is_none());

    server.admin(&["move-citizen", "--citizen", &x.to_string(), "--team", &syd]);
    for d in [&mut n1, &mut n2, &mut care] {
        sync(d);
        assert!(
            d.get::<Citizen>(x).unwrap().is_none(),
            "erased from the old team"
        );
        assert!(d.get::<Visit>(visit.id.0).unwrap().is_none());
    }
    sync(&mut s1);
    let moved = s1.get::<Citizen>(x).unwrap().expect("reached the new team");
    assert_eq!(moved.team_id.map(|t| t.0.to_string()), Some(syd.clone()));
    // The old team's site is not the new team's: the citizen no longer lives at one of its
    // sites, so the new team's caretakers do not receive them.
    assert_eq!(moved.site_id, None, "the old team's site is cleared");
    sync(&mut s_care);
    assert!(
        s_care.get::<Citizen>(x).unwrap().is_none(),
        "not a resident of the new team's sites"
    );
    assert_eq!(
        s1.get::<Visit>(visit.id.0).unwrap().map(|v| v.note),
        Some(visit.note.clone()),
        "with their history"
    );
    // A device enrolled in the old team afterwards never receives the citizen.
    let mut late = device(
        dir.path(),
        "late",
        &server,
        &worker(&nord, "N3", "outreach"),
    );
    sync(&mut late);
    assert!(late.get::<Citizen>(x).unwrap().is_none());
    assert!(late.get::<Visit>(visit.id.0).unwrap().is_none());

    // A resident who moves out of the team's site leaves the caretaker's device only.
    let beboer = bundle(&mut n1, "beboer");
    let (_, y) = beboer[&Class::Resident];
    assign(&mut n1, beboer[&Class::Site].1);
    for d in [&mut n1, &mut n2, &mut care] {
        sync(d);
    }
    assert!(care.get::<Citizen>(y).unwrap().is_some());
    let mut moved_out = n1.get::<Citizen>(y).unwrap().unwrap();
    moved_out.site_id = None;
    n1.save(&moved_out).unwrap();
    for d in [&mut n1, &mut n2, &mut care] {
        sync(d);
    }
    assert!(
        care.get::<Citizen>(y).unwrap().is_none(),
        "the caretaker erased them"
    );
    assert!(
        n2.get::<Citizen>(y).unwrap().is_some(),
        "the case team keeps them"
    );
    // Moving back in brings them back to the caretaker.
    let mut back = n1.get::<Citizen>(y).unwrap().unwrap();
    back.site_id = Some(SiteId(records[&Class::Site].1));
    n1.save(&back).unwrap();
    sync(&mut n1);
    sync(&mut care);
    assert!(care.get::<Citizen>(y).unwrap().is_some());
}

#[test]
fn the_audit_chain_verifies_and_names_an_edited_or_deleted_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let (team, worker) = team_and_worker(&server);
    let reader = server.admin(&["create-worker", "--team", &team, "--name", "Læser"]);
    let (writer_app, _) = app_device(dir.path(), "writer", &server, &worker);
    let (reader_app, _) = app_device(dir.path(), "reader", &server, &reader);
    let x = writer_app
        .save_citizen(
            &citizen_form(serde_json::json!({"alias": "Revisor-Rut"})),
            None,
        )
        .unwrap();
    writer_app.sync_once(&|_| {}).unwrap();
    reader_app.sync_once(&|_| {}).unwrap();
    reader_app.citizen(x).unwrap(); // opened on the device: logged there, synced up next
    reader_app.sync_once(&|_| {}).unwrap();
    // A day offline: more saves than one push carries, then a new citizen, opened at once.
    let contact: feltbog_core::app::forms::VisitInput = serde_json::from_value(serde_json::json!({
        "citizen_id": null, "anonymous_count": 2, "anonymous_description": "ved stationen",
        "kind": "street_contact", "started_at_ms": null, "duration_minutes": 5, "place": "",
        "themes": [], "referrals": [], "note": "", "wellbeing": null, "follow_up": null
    }))
    .unwrap();
    for _ in 0..feltbog_core::sync::MAX_PUSH + 5 {
        writer_app.save_visit(&contact).unwrap();
    }
    let other = writer_app
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Anden"})), None)
        .unwrap();
    // Opened before the server has ever heard of the citizen (made offline): the read is
    // still filed under them once both reach the server.
    writer_app.citizen(other).unwrap();
    writer_app.sync_once(&|_| {}).unwrap();
    drop(server);

    assert!(admin(&data, &["audit-verify"]).starts_with("audit chain intact"));
    let offline = admin(&data, &["audit-export", "--citizen", &other.to_string()]);
    assert!(
        offline.lines().any(|l| l.contains("\"device_read\"")),
        "{offline}"
    );
    assert!(!offline.contains("\"denied\""), "{offline}");
    // The Art. 15 export: who did what to this citizen, from which device, and nothing about
    // anyone else, and no values.
    let export = admin(
        &data,
        &[
            "--operator",
            "DPO Dorthe",
            "audit-export",
            "--citizen",
            &x.to_string(),
        ],
    );
    let rows: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: BTreeSet<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(
        actions.is_superset(&BTreeSet::from(["write", "read", "device_read"])),
        "{actions:?}"
    );
    assert!(rows.iter().all(|r| r["citizen_id"] == x.to_string()));
    assert!(!export.contains("Revisor-Rut") && !export.contains(&other.to_string()));
    // The export itself was audited, with who ran it; the chain still holds.
    let again = admin(&data, &["audit-export", "--citizen", &x.to_string()]);
    assert!(
        again.lines().any(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            row["action"] == "export" && row["actor"] == "admin" && row["operator"] == "DPO Dorthe"
        }),
        "{again}"
    );
    assert!(admin(&data, &["audit-verify"]).starts_with("audit chain intact"));

    // An attacker with the database: the triggers stop casual edits...
    let mut conn = server_db(&data);
    let edit = |conn: &mut feltbog_server::storage::Database, sql: &str, params: &[Value]| {
        conn.write(|db| db.execute(sql, params))
    };
    assert!(
        edit(
            &mut conn,
            "UPDATE audit SET action = 'read' WHERE seq = 3",
            &[]
        )
        .is_err()
    );
    // ...and with them dropped, an edit or a deletion is found and named.
    let verify = |data: &std::path::Path| admin_output(data, &["audit-verify"]);
    drop_audit_triggers(&mut conn);
    let original: String = conn
        .read(|db| db.value("SELECT action FROM audit WHERE seq = 3", &[]))
        .unwrap();
    edit(
        &mut conn,
        "UPDATE audit SET action = 'enrol' WHERE seq = 3",
        &[],
    )
    .unwrap();
    let out = verify(&data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit row 3"),
        "{out:?}"
    );
    edit(
        &mut conn,
        "UPDATE audit SET action = ?1 WHERE seq = 3",
        args![original],
    )
    .unwrap();
    assert!(verify(&data).status.success(), "restored");
    edit(&mut conn, "DELETE FROM audit WHERE seq = 4", &[]).unwrap();
    let out = verify(&data);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("audit row 5"),
        "{out:?}"
    );
}

#[test]
fn forged_author_device_and_team_are_ignored_or_rejected_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let me = server.admin(&["create-worker", "--team", &nord, "--name", "Mig"]);
    let victim = server.admin(&["create-worker", "--team", &nord, "--name", "Offer"]);
    let stranger = server.admin(&["create-worker", "--team", &syd, "--name", "Fremmed"]);
    let mut mine = device(dir.path(), "mine", &server, &me);
    let mut colleague = device(dir.path(), "colleague", &server, &victim);
    let mut outsider = device(dir.path(), "outsider", &server, &stranger);
    let syd_id = feltbog_core::domain::TeamId(syd.parse().unwrap());

    // A citizen "for Team Syd" and a visit "by a colleague, for Team Syd".
    let mut c = Citizen::with_alias("Forfalsket");
    c.team_id = Some(syd_id);
    let mut v = Visit::with_citizen(
        c.id,
        WorkerId(victim.parse().unwrap()),
        VisitKind::HomeVisit,
    );
    v.team_id = Some(syd_id);
    mine.save(&c).unwrap();
    mine.save(&v).unwrap();
    sync(&mut mine);
    sync(&mut colleague);
    sync(&mut outsider);
    let stored = colleague.get::<Citizen>(c.id.0).unwrap().unwrap();
    assert_eq!(
        stored.team_id.unwrap().0.to_string(),
        nord,
        "the creator's team"
    );
    let stored = colleague.get::<Visit>(v.id.0).unwrap().unwrap();
    assert_eq!(stored.author.0.to_string(), me, "the signed-in worker");
    assert_eq!(stored.team_id.unwrap().0.to_string(), nord);
    assert!(outsider.get::<Citizen>(c.id.0).unwrap().is_none());
    // The author's own device took the server's truth too.
    assert_eq!(
        mine.get::<Visit>(v.id.0)
            .unwrap()
            .unwrap()
            .author
            .0
            .to_string(),
        me
    );

    // Moving a citizen by an edit of its team is ignored: the server keeps (and echoes) its own.
    let mut raw = Raw::of(&mut mine);
    let team_edit = FieldOp {
        entity: EntityKind::Citizen,
        id: c.id.0,
        field: "team_id".into(),
        change: FieldChange::Assign {
            value: serde_json::to_value(&syd).unwrap(),
        },
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        base: None,
    };
    raw.write(vec![team_edit]).unwrap();
    sync(&mut outsider);
    assert!(outsider.get::<Citizen>(c.id.0).unwrap().is_none());
    // Re-linking a visit to another citizen is refused.
    let relink = FieldOp {
        entity: EntityKind::Visit,
        id: v.id.0,
        field: "citizen_id".into(),
        change: FieldChange::Assign {
            value: serde_json::to_value(Uuid::now_v7()).unwrap(),
        },
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        base: None,
    };
    let (reason, _) = raw.write(vec![relink]).unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);

    // A mutation naming another device is refused and leaves nothing.
    let colleague_device = colleague.device_id();
    raw.device = colleague_device;
    let (reason, _) = raw
        .write(vec![update_op(EntityKind::Citizen, c.id.0, Class::Citizen)])
        .unwrap_err();
    assert_eq!(reason, RejectReason::ForgedDevice);
    sync(&mut colleague);
    let stored = colleague.get::<Citizen>(c.id.0).unwrap().unwrap();
    assert_eq!(stored.team_id.unwrap().0.to_string(), nord);
    assert_eq!(stored.phone, None, "the forged edit did not land");
}

#[test]
fn request_rates_and_batch_sizes_have_clear_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--device-rate-per-minute", "60", "--device-burst", "3"],
    );
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "d", &server, &worker);
    let raw = Raw::of(&mut store);
    let empty = |access_log| SyncRequest {
        mutations: vec![],
        cursor: 0,
        access_log,
        profile_digest: None,
        ..Default::default()
    };
    for _ in 0..3 {
        raw.transport.sync(&raw.token, &empty(vec![])).unwrap();
    }
    match raw.transport.sync(&raw.token, &empty(vec![])) {
        Err(TransportError::Refused {
            status: 429,
            retry_after_ms: Some(ms),
            message,
            ..
        }) => {
            assert!((1..=1_000).contains(&ms), "one token a second: {ms} ms");
            assert!(message.contains("too many requests"), "{message}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // Another device is not slowed down by this one.
    let mut other = device(dir.path(), "e", &server, &worker);
    sync(&mut other);

    // Guessing tokens: unknown tokens count against the address's allowance.
    let guarded = Server::start_with(
        &dir.path().join("server3"),
        "127.0.0.1:0",
        &["--enrol-rate-per-minute", "3"],
    );
    let guess = HttpTransport::new(&guarded.url).unwrap();
    let statuses: Vec<u16> = (0..4)
        .map(
            |i| match guess.sync(&format!("guess-{i}"), &empty(vec![])) {
                Err(TransportError::Refused { status, .. }) => status,
                other => panic!("expected a refusal, got {other:?}"),
            },
        )
        .collect();
    assert_eq!(statuses, vec![401, 401, 401, 429]);

    // Batches: too many access-log events in one push is refused with a reason.
    let server = Server::start(&dir.path().join("server2"));
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "f", &server, &worker);
    let raw = Raw::of(&mut store);
    let event = feltbog_core::protocol::AccessEvent {
        seq: 1,
        at_ms: 0,
        entity: EntityKind::Citizen,
        record_id: Uuid::now_v7(),
        citizen_id: None,
    };
    let too_many = vec![event; feltbog_core::protocol::limits::MAX_ACCESS_EVENTS_PER_PUSH + 1];
    match raw.transport.sync(&raw.token, &empty(too_many)) {
        Err(TransportError::Refused {
            status: 400,
            message,
            ..
        }) => assert!(message.contains("access-log events"), "{message}"),
        other => panic!("expected 400, got {other:?}"),
    }

    // One mutation's size: each value under its own limit, together past the mutation's, so
    // no device can push a change the rest of its team could not pull.
    let citizen = Citizen::with_alias("Stor");
    store.save(&citizen).unwrap();
    sync(&mut store);
    let mut raw = Raw::of(&mut store);
    let op = |field: &str, value: serde_json::Value| FieldOp {
        entity: EntityKind::Citizen,
        id: citizen.id.0,
        field: field.into(),
        change: FieldChange::Assign { value },
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        base: None,
    };
    let big = "a".repeat(120 * 1024);
    let fields = [
        "alias",
        "full_name",
        "cpr",
        "birth_year",
        "phone",
        "housing",
        "site_id",
        "primary_worker",
        "resources",
    ];
    let huge: Vec<FieldOp> = fields.iter().map(|f| op(f, big.clone().into())).collect();
    assert_eq!(
        raw.write(huge),
        Err((RejectReason::Invalid, "the mutation is too large".into()))
    );
    // An edit must write values a valid record can hold, or every device of the team would
    // fail to list it (or its conflict version).
    let (reason, detail) = raw
        .write(vec![op("created_at", "not a time".into())])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    assert!(detail.contains("is not valid"), "{detail}");
    let (_, detail) = raw
        .write(vec![op("alias", "x".repeat(100_000).into())])
        .unwrap_err();
    assert!(detail.contains("is not valid"), "{detail}");
    // A record's id field is its own, never another's.
    assert_eq!(
        raw.write(vec![op(
            "id",
            serde_json::to_value(Uuid::now_v7()).unwrap()
        )]),
        Err((
            RejectReason::Invalid,
            "a record's id field must be its own id".into()
        ))
    );
    assert_eq!(raw.write(vec![op("phone", "22 33 44 55".into())]), Ok(()));
    // Fields merge one by one: an edit whose values would each be fine over the stored record
    // can still leave an invalid one. Here a stale edit's alias loses to a newer removal of the
    // alias while its removal of the full name wins: neither would be left. Refused.
    let at = |field: &str, value: serde_json::Value, ms: u64| FieldOp {
        hlc: Hlc::new(ms, 0).unwrap(),
        ..op(field, value)
    };
    let t = system_time_ms();
    assert_eq!(
        raw.write(vec![at("full_name", "Fuldt Navn".into(), t)]),
        Ok(())
    );
    assert_eq!(
        raw.write(vec![at("alias", serde_json::Value::Null, t + 100)]),
        Ok(())
    );
    let (_, detail) = raw
        .write(vec![
            at("alias", "Ny".into(), t + 50),
            at("full_name", serde_json::Value::Null, t + 50),
        ])
        .unwrap_err();
    assert!(detail.contains("would not be valid"), "{detail}");
    // Nothing of the refused edit stayed on the server: the record keeps its full name.
    let stored = |field: &str| -> String {
        server_value(
            &dir.path().join("server2"),
            "SELECT value FROM fields WHERE entity = 'citizen' AND record_id = ?1 AND field = ?2",
            args![citizen.id.0, field],
        )
    };
    assert_eq!(stored("full_name"), "\"Fuldt Navn\"");
    assert_eq!(stored("alias"), "null");
}

#[test]
fn a_reopened_case_comes_back_to_the_devices_in_scope_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let (team, worker) = team_and_worker(&server);
    let other = server.admin(&["create-worker", "--team", &team, "--name", "B"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let stranger = server.admin(&["create-worker", "--team", &syd, "--name", "C"]);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &other);
    let mut c = device(dir.path(), "c", &server, &stranger);
    let person = Citizen::with_alias("Vendt tilbage");
    a.save(&person).unwrap();
    let visits: Vec<Visit> = (0..3)
        .map(|i| {
            let mut v = Visit::with_citizen(person.id, WorkerId::new(), VisitKind::HomeVisit);
            v.note = format!("besøg {i}").into();
            v
        })
        .collect();
    a.save_all(&visits).unwrap();
    sync(&mut a);
    a.set_archived::<Citizen>(person.id.0, true).unwrap();
    sync(&mut a);
    sync(&mut b);
    admin(&data, &["retention", "--device-days", "0"]);
    for d in [&mut a, &mut b] {
        sync(d);
        assert!(
            d.get::<Citizen>(person.id.0).unwrap().is_none(),
            "off devices"
        );
    }
    let id = person.id.0.to_string();
    assert!(admin(&data, &["reopen-case", "--citizen", &id]).contains("case reopened"));
    assert!(admin(&data, &["reopen-case", "--citizen", &id]).contains("already"));
    // Both devices of the team, and one enrolled after, get the citizen with their history,
    // no longer archived.
    let mut late = device(dir.path(), "late", &server, &other);
    for d in [&mut a, &mut b, &mut late] {
        sync(d);
        let back = d
            .get::<Citizen>(person.id.0)
            .unwrap()
            .expect("citizen back");
        assert!(!back.archived);
        for v in &visits {
            let got: Visit = d.get(v.id.0).unwrap().expect("history back");
            assert_eq!(got.note, v.note);
        }
    }
    // Another team's device gets nothing of it.
    sync(&mut c);
    assert!(c.get::<Citizen>(person.id.0).unwrap().is_none());
    // Audited as the administrator's, filed under the citizen.
    let rows: i64 = server_value(
        &data,
        "SELECT count(*) FROM audit WHERE action = 'reopen_case' AND citizen_id = ?1
         AND actor = 'admin'",
        args![person.id.0],
    );
    assert_eq!(rows, 1);
    // A purged case has nothing left to bring back: a clear refusal.
    a.set_archived::<Citizen>(person.id.0, true).unwrap();
    sync(&mut a);
    admin(
        &data,
        &["retention", "--device-days", "0", "--purge-days", "0"],
    );
    let out = admin_output(&data, &["reopen-case", "--citizen", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("purged"));
}

#[test]
fn closed_cases_leave_devices_and_are_purged_from_the_server_by_the_retention_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let (team, worker) = team_and_worker(&server);
    let other = server.admin(&["create-worker", "--team", &team, "--name", "B"]);
    let mut a = device(dir.path(), "a", &server, &worker);
    let mut b = device(dir.path(), "b", &server, &other);
    let closed = Citizen::with_alias("Afsluttet");
    let open = Citizen::with_alias("Aktiv");
    a.save(&closed).unwrap();
    a.save(&open).unwrap();
    let mut visit = Visit::with_citizen(closed.id, WorkerId::new(), VisitKind::HomeVisit);
    visit.note = "sidste besøg".into();
    a.save(&visit).unwrap();
    sync(&mut a);
    a.set_archived::<Citizen>(closed.id.0, true).unwrap();
    sync(&mut a);
    sync(&mut b);
    assert!(b.get::<Citizen>(closed.id.0).unwrap().is_some());

    // Rules in days after closing; 0 makes the case due at once.
    assert_eq!(
        admin(&data, &["retention", "--device-days", "0"]),
        "1 closed case(s) taken off devices, 0 purged"
    );
    for d in [&mut a, &mut b] {
        sync(d);
        assert!(d.get::<Citizen>(closed.id.0).unwrap().is_none());
        assert!(d.get::<Visit>(visit.id.0).unwrap().is_none());
        assert!(
            d.get::<Citizen>(open.id.0).unwrap().is_some(),
            "open cases stay"
        );
    }
    let fields = |id: Uuid| -> i64 {
        server_value(
            &data,
            "SELECT count(*) FROM fields WHERE record_id = ?1",
            args![id],
        )
    };
    assert!(
        fields(closed.id.0) > 0,
        "the server keeps the case until it is purged"
    );
    assert_eq!(
        admin(
            &data,
            &["retention", "--device-days", "0", "--purge-days", "0"]
        ),
        "0 closed case(s) taken off devices, 1 purged"
    );
    assert_eq!(fields(closed.id.0), 0);
    assert_eq!(fields(visit.id.0), 0);
    assert!(fields(open.id.0) > 0);
    let log: i64 = server_value(
        &data,
        "SELECT count(*) FROM changes WHERE mutation LIKE '%Afsluttet%'",
        &[],
    );
    assert_eq!(log, 0, "no copy of the content is left in the change log");
    let mut late = device(dir.path(), "late", &server, &worker);
    sync(&mut late);
    assert!(late.get::<Citizen>(closed.id.0).unwrap().is_none());
    assert!(late.get::<Citizen>(open.id.0).unwrap().is_some());
    assert!(admin(&data, &["audit-verify"]).starts_with("audit chain intact"));
}

#[test]
fn a_citizen_who_moves_away_and_back_while_a_device_is_offline_keeps_its_pending_edit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let w1 = server.admin(&["create-worker", "--team", &nord, "--name", "A"]);
    let w2 = server.admin(&["create-worker", "--team", &nord, "--name", "B"]);
    let mut offline = device(dir.path(), "offline", &server, &w1);
    let mut other = device(dir.path(), "other", &server, &w2);
    let c = Citizen::with_alias("Tilbage");
    offline.save(&c).unwrap();
    sync(&mut offline);
    let mut edited = offline.get::<Citizen>(c.id.0).unwrap().unwrap();
    edited.phone = Some("22 33 44 55".into());
    offline.save(&edited).unwrap(); // not synced yet
    let id = c.id.0.to_string();
    server.admin(&["move-citizen", "--citizen", &id, "--team", &syd]);
    server.admin(&["move-citizen", "--citizen", &id, "--team", &nord]);
    let report = sync(&mut offline);
    assert_eq!(report.set_aside, 0);
    assert_eq!(
        offline
            .get::<Citizen>(c.id.0)
            .unwrap()
            .and_then(|c| c.phone),
        Some("22 33 44 55".into()),
        "not erased: the citizen is back in scope"
    );
    sync(&mut other);
    assert_eq!(
        other.get::<Citizen>(c.id.0).unwrap().and_then(|c| c.phone),
        Some("22 33 44 55".into()),
        "the edit reached the server"
    );
}

/// A failing admin command's error text.
fn admin_fails(server: &Server, args: &[&str]) -> String {
    let out = admin_output(&server.data_dir, args);
    assert!(!out.status.success(), "admin {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The creation mutation of a new site-log entry at `site`, made on a scratch store.
fn new_log_at(dir: &std::path::Path, name: &str, site: Uuid) -> Vec<FieldOp> {
    let mut scratch = Store::create(
        &dir.join(format!("{name}.feltbog")),
        &pass(),
        &feltbog_core::store::CreateOptions::with_kdf(feltbog_core::crypto::KdfParams::MINIMUM),
    )
    .unwrap();
    let entry = log_entry(SiteId(site), "vandhane skiftet");
    scratch.save(&entry).unwrap();
    scratch.pending(10).unwrap().remove(0).ops
}

#[test]
fn site_scope_is_per_caretaker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let worker = |team: &str, name: &str, role: &str| common::worker(&server, team, name, role);
    let outreach = worker(&nord, "O", "outreach");
    let (k1, k2) = (
        worker(&nord, "K1", "caretaker"),
        worker(&nord, "K2", "caretaker"),
    );
    let mut o = device(dir.path(), "o", &server, &outreach);
    let one = bundle(&mut o, "et");
    let two = bundle(&mut o, "to");
    sync(&mut o);
    let mut s = device(dir.path(), "s", &server, &worker(&syd, "S", "outreach"));
    let elsewhere = bundle(&mut s, "syd");
    sync(&mut s);
    let id = |b: &BTreeMap<Class, (EntityKind, Uuid)>, c: Class| b[&c].1;
    let assign = |k: &str, site: Uuid| {
        server.admin(&["assign-site", "--worker", k, "--site", &site.to_string()])
    };

    // Only caretakers are assigned sites, and only sites of their own team; another team's
    // site gets the answer a site that does not exist gets.
    let err = admin_fails(
        &server,
        &[
            "assign-site",
            "--worker",
            &outreach,
            "--site",
            &id(&one, Class::Site).to_string(),
        ],
    );
    assert!(err.contains("only caretakers"), "{err}");
    let other = admin_fails(
        &server,
        &[
            "assign-site",
            "--worker",
            &k1,
            "--site",
            &id(&elsewhere, Class::Site).to_string(),
        ],
    );
    let none = admin_fails(
        &server,
        &[
            "assign-site",
            "--worker",
            &k1,
            "--site",
            &Uuid::now_v7().to_string(),
        ],
    );
    assert_eq!(other, none);

    assign(&k1, id(&one, Class::Site));
    let mut c1 = device(dir.path(), "k1", &server, &k1);
    let mut c2 = device(dir.path(), "k2", &server, &k2);
    sync(&mut c1);
    sync(&mut c2);
    let seen = |store: &mut Store, b: &BTreeMap<Class, (EntityKind, Uuid)>| {
        (
            store.get::<Site>(id(b, Class::Site)).unwrap().is_some(),
            store
                .get::<SiteLogEntry>(id(b, Class::SiteLog))
                .unwrap()
                .is_some(),
            store
                .get::<Citizen>(id(b, Class::Resident))
                .unwrap()
                .is_some(),
        )
    };
    assert_eq!(seen(&mut c1, &one), (true, true, true), "K1: their site");
    assert_eq!(
        seen(&mut c1, &two),
        (false, false, false),
        "K1: not the other site"
    );
    assert_eq!(
        seen(&mut c2, &one),
        (false, false, false),
        "K2: no sites yet"
    );
    // The site log entry names its resident: its reads are in the resident's Art. 15 export.
    let export = server.admin(&[
        "audit-export",
        "--citizen",
        &id(&one, Class::Resident).to_string(),
    ]);
    let log_reads = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["entity"] == "site_log_entry" && r["action"] == "read")
        .count();
    assert!(log_reads >= 1, "{export}");

    // Writes: a log at their site, not at the team's other site; no edit of that site.
    let mut raw = Raw::of(&mut c1);
    assert_eq!(
        raw.write(new_log_at(dir.path(), "a", id(&one, Class::Site))),
        Ok(())
    );
    assert_eq!(
        raw.write(new_log_at(dir.path(), "b", id(&two, Class::Site))),
        Err((
            RejectReason::OutOfScope,
            "record not available to this worker".into()
        ))
    );
    assert!(
        raw.write(vec![update_op(
            EntityKind::Site,
            id(&two, Class::Site),
            Class::Site
        )])
        .is_err()
    );
    // A site K1 creates is K1's; K2 does not see it.
    let own = Site {
        id: SiteId::new(),
        kind: SiteKind::StairwellCommunity,
        name: "Opgangen".into(),
        address: "Trappen 3".into(),
        archived: false,
        created_at: chrono::Utc::now(),
    };
    c1.save(&own).unwrap();
    // Its first log entry and a correction of its address go up in the same push as the site.
    let first_entry = log_entry(own.id, "lys i opgangen");
    c1.save(&first_entry).unwrap();
    let corrected = Site {
        address: "Trappen 5".into(),
        ..own.clone()
    };
    c1.save(&corrected).unwrap();
    let report = sync(&mut c1);
    assert_eq!((report.acked, report.set_aside), (3, 0), "{report:?}");
    sync(&mut o);
    assert!(o.get::<SiteLogEntry>(first_entry.id.0).unwrap().is_some());
    assert_eq!(
        o.get::<Site>(own.id.0).unwrap().unwrap().address.expose(),
        "Trappen 5"
    );
    sync(&mut c2);
    assert!(c2.get::<Site>(own.id.0).unwrap().is_none());
    let listed = server.admin(&["sites"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&own.id.0.to_string()))
        .expect("the new site is listed");
    assert!(row.contains(&k1) && !row.contains(&k2), "{row}");

    // Assigned the other site, K2 receives it with its log and its residents.
    assign(&k2, id(&two, Class::Site));
    sync(&mut c2);
    assert_eq!(
        seen(&mut c2, &two),
        (true, true, true),
        "K2: history delivered"
    );
    assert_eq!(seen(&mut c2, &one), (false, false, false));

    // A resident moving from K1's site to K2's leaves K1's device and reaches K2's.
    let r = id(&one, Class::Resident);
    sync(&mut o);
    let mut moving = o.get::<Citizen>(r).unwrap().unwrap();
    moving.site_id = Some(SiteId(id(&two, Class::Site)));
    o.save(&moving).unwrap();
    sync(&mut o);
    sync(&mut c1);
    sync(&mut c2);
    assert!(c1.get::<Citizen>(r).unwrap().is_none(), "K1 erased them");
    assert!(c2.get::<Citizen>(r).unwrap().is_some(), "K2 received them");

    // Taking a site away: the caretaker's device erases it on its next sync (issue 16).
    let out = server.admin(&[
        "unassign-site",
        "--worker",
        &k1,
        "--site",
        &id(&one, Class::Site).to_string(),
    ]);
    assert!(out.contains("site taken"), "{out}");
    assert!(sync(&mut c1).rescoped);
    assert_eq!(seen(&mut c1, &one), (false, false, false));
    assert!(
        c1.get::<Site>(own.id.0).unwrap().is_some(),
        "still their own site"
    );
}

#[test]
fn a_long_access_log_goes_up_in_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, worker) = team_and_worker(&server);
    let mut store = device(dir.path(), "d", &server, &worker);
    let citizen = Citizen::with_alias("Læst ofte");
    store.save(&citizen).unwrap();
    // A caseload opened many times between syncs: more reads than one push carries.
    let reads = 2 * feltbog_core::protocol::limits::MAX_ACCESS_EVENTS_PER_PUSH + 500;
    store
        .record_access(std::iter::repeat_n(
            (EntityKind::Citizen, citizen.id.0),
            reads,
        ))
        .unwrap();
    let report = sync(&mut store);
    assert!(store.pending_access(1).unwrap().is_empty(), "{report:?}");
    let filed: i64 = server_value(
        &dir.path().join("server"),
        "SELECT count(*) FROM audit WHERE action = 'device_read' AND citizen_id = ?1",
        args![citizen.id.0],
    );
    assert_eq!(filed as usize, reads);
}

#[test]
fn supervisors_read_the_teams_they_supervise() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let [nord, syd, ost] =
        ["Team Nord", "Team Syd", "Team Øst"].map(|t| server.admin(&["create-team", t]));
    let boss = common::worker(&server, &nord, "Leder", "supervisor");
    let mut n = device(
        dir.path(),
        "n",
        &server,
        &common::worker(&server, &nord, "N", "outreach"),
    );
    let mut s = device(
        dir.path(),
        "s",
        &server,
        &common::worker(&server, &syd, "S", "outreach"),
    );
    let ours = bundle(&mut n, "nord");
    let theirs = bundle(&mut s, "syd");
    sync(&mut n);
    sync(&mut s);
    let sees = |store: &mut Store, b: &BTreeMap<Class, (EntityKind, Uuid)>| {
        (
            store
                .get::<Citizen>(b[&Class::Citizen].1)
                .unwrap()
                .is_some(),
            store.get::<Visit>(b[&Class::Case].1).unwrap().is_some(),
            store
                .get::<SiteLogEntry>(b[&Class::SiteLog].1)
                .unwrap()
                .is_some(),
        )
    };
    let mut first = device(dir.path(), "boss-1", &server, &boss);
    sync(&mut first);
    assert_eq!(sees(&mut first, &ours), (true, true, true));
    assert_eq!(sees(&mut first, &theirs), (false, false, false));

    // Only supervisors, and never their own team.
    let err = admin_fails(&server, &["supervise", "--worker", &boss, "--team", &nord]);
    assert!(err.contains("own team"), "{err}");
    let outreach = common::worker(&server, &nord, "M", "outreach");
    let err = admin_fails(
        &server,
        &["supervise", "--worker", &outreach, "--team", &syd],
    );
    assert!(err.contains("only supervisors"), "{err}");

    // Supervising Syd revokes the old device; the new one reads both teams from the start.
    let out = server.admin(&["supervise", "--worker", &boss, "--team", &syd]);
    assert!(out.contains("done"), "{out}");
    // The device follows the wider scope on its next sync (issue 16), as a new one would.
    assert!(sync(&mut first).rescoped);
    assert_eq!(sees(&mut first, &theirs), (true, true, true));
    let mut wide = device(dir.path(), "boss-2", &server, &boss);
    sync(&mut wide);
    assert_eq!(sees(&mut wide, &ours), (true, true, true));
    assert_eq!(sees(&mut wide, &theirs), (true, true, true), "Syd too");
    // Opening a Syd record on the tablet is a device read, not a denied one.
    let syd_site = theirs[&Class::Site].1;
    wide.record_access([(EntityKind::Site, syd_site)]).unwrap();
    sync(&mut wide);
    let action: String = server_value(
        &dir.path().join("server"),
        "SELECT action FROM audit WHERE device_id = ?1 AND record_id = ?2
         AND action IN ('device_read', 'denied')",
        args![wide.device_id().0, syd_site],
    );
    assert_eq!(action, "device_read");
    // Reading is all: no edit of Syd's (or Nord's) records.
    let mut raw = Raw::of(&mut wide);
    for b in [&ours, &theirs] {
        let (entity, id) = b[&Class::Citizen];
        assert!(
            raw.write(vec![update_op(entity, id, Class::Citizen)])
                .is_err()
        );
    }
    // A Syd citizen moved to a team the supervisor does not read leaves their device.
    let moved = theirs[&Class::Citizen].1;
    server.admin(&[
        "move-citizen",
        "--citizen",
        &moved.to_string(),
        "--team",
        &ost,
    ]);
    sync(&mut wide);
    assert!(wide.get::<Citizen>(moved).unwrap().is_none(), "erased");
    assert!(wide.get::<Site>(theirs[&Class::Site].1).unwrap().is_some());

    // No longer supervising Syd: the device erases Syd on its next sync, and a new device
    // reads Nord only.
    server.admin(&["unsupervise", "--worker", &boss, "--team", &syd]);
    assert!(sync(&mut wide).rescoped);
    assert_eq!(sees(&mut wide, &theirs), (false, false, false));
    assert_eq!(sees(&mut wide, &ours), (true, true, true));
    let mut narrow = device(dir.path(), "boss-3", &server, &boss);
    sync(&mut narrow);
    assert_eq!(sees(&mut narrow, &ours), (true, true, true));
    assert_eq!(sees(&mut narrow, &theirs), (false, false, false));
}
