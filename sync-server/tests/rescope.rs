//! A change of a worker's scope loses nothing and leaves nothing behind (issue 16, point 1):
//! a device with 50 unsynced edits follows a role change, a team change, a site taken away and
//! a supervised team removed. After its next sync every edit is on the server or set aside on
//! the device, and the device holds nothing outside its new scope. Against the real server.

mod common;

use common::*;
use feltbog_core::domain::{
    Citizen, CitizenId, ConflictRecord, EntityKind, Site, SiteId, SiteKind, SiteLogEntry,
    SiteLogEntryId, SiteLogKind, Visit, VisitKind, WorkerId,
};
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::protocol::{FieldChange, FieldOp, RejectReason};
use feltbog_core::store::{ListQuery, Resolution, Store};
use std::collections::BTreeSet;
use std::path::Path;
use uuid::Uuid;

const EDITS: usize = 50;

/// Every edit the device numbered `from..=to` (at least 50: a settled conflict is two) is on
/// the server (applied) or set aside on the device (and shown there): none silently gone.
/// Returns how many were set aside.
fn every_edit_kept(dir: &Path, store: &mut Store, from: u64, to: u64) -> usize {
    assert!(to + 1 - from >= EDITS as u64, "the test made {EDITS} edits");
    assert_eq!(store.outbox_len().unwrap(), 0, "nothing left pending");
    let aside: BTreeSet<u64> = store
        .set_aside()
        .unwrap()
        .into_iter()
        .map(|(seq, _, _)| seq)
        .collect();
    for seq in from..=to {
        let applied: bool = server_value(
            &dir.join("server"),
            "SELECT count(*) > 0 FROM applied WHERE device_id = ?1 AND device_seq = ?2",
            feltbog_server::args![store.device_id().0, seq as i64],
        );
        assert!(
            applied || aside.contains(&seq),
            "edit {seq} is neither on the server nor set aside"
        );
    }
    aside.len()
}

/// Nothing of what left the scope is on the device: no record opens, no sealed byte of it is in
/// any of the store's files, and the left citizens' keys are gone.
fn nothing_left_of(store: &mut Store, tails: &[Vec<u8>], citizens: &[Uuid], records: &[Uuid]) {
    for tail in tails {
        assert!(!in_store_files(store, tail), "a sealed copy stayed behind");
    }
    let db = rusqlite::Connection::open(store.path()).unwrap();
    for c in citizens {
        let key: i64 = db
            .query_row(
                "SELECT count(*) FROM data_keys WHERE scope = ?1",
                [format!("citizen:{c}")],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(key, 0, "the key of a citizen who left stayed");
        assert!(store.get::<Citizen>(*c).unwrap().is_none());
    }
    for r in records {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM records WHERE id = ?1",
                [&r.as_bytes()[..]],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "a record outside the new scope stayed");
    }
}

fn citizens(n: usize, label: &str) -> Vec<Citizen> {
    (0..n)
        .map(|i| Citizen::with_alias(&format!("{label} {i}")))
        .collect()
}

/// Five citizens saved and synced, then 50 edits offline: each citizen's phone changed five
/// times, and five visits to each. Returns the citizens, the visits and the edits' numbers.
fn fifty_edits_on_citizens(store: &mut Store, label: &str) -> (Vec<Citizen>, Vec<Uuid>, u64, u64) {
    let mut people = citizens(5, label);
    for c in &people {
        store.save(c).unwrap();
    }
    sync(store);
    let from = store.last_device_seq().unwrap() + 1;
    let mut visits = Vec::new();
    for round in 0..5 {
        for c in people.iter_mut() {
            c.phone = Some(format!("+45 20 {round}0 00 0{round}").into());
            store.save(c).unwrap();
            let mut v = Visit::with_citizen(c.id, WorkerId::new(), VisitKind::HomeVisit);
            v.note = format!("{label}: besøg {round}").into();
            store.save(&v).unwrap();
            visits.push(v.id.0);
        }
    }
    let to = store.last_device_seq().unwrap();
    (people, visits, from, to)
}

fn ids(people: &[Citizen]) -> Vec<Uuid> {
    people.iter().map(|c| c.id.0).collect()
}

/// A colleague's device sees the 50 edits: the last phone of each citizen, all 25 visits.
fn colleague_sees(colleague: &mut Store, people: &[Citizen], visits: &[Uuid]) {
    sync(colleague);
    for c in people {
        let got = colleague.get::<Citizen>(c.id.0).unwrap().expect("citizen");
        assert_eq!(got.phone, c.phone, "the last phone edit reached the team");
    }
    for v in visits {
        assert!(
            colleague.get::<Visit>(*v).unwrap().is_some(),
            "visit reached the team"
        );
    }
}

#[test]
fn rescope_role_change_keeps_every_edit_and_leaves_no_citizen_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, anne) = team_and_worker(&server);
    let bo = worker(&server, &team, "Bo", "outreach");
    let mut tablet = device(dir.path(), "anne", &server, &anne);
    let mut colleague = device(dir.path(), "bo", &server, &bo);
    let (people, visits, from, to) = fifty_edits_on_citizens(&mut tablet, "Rolle");
    let mut left = ids(&people);
    left.extend(&visits);
    let tails = sealed_tails(&tablet, &left);

    // Anne becomes a caretaker (no sites yet): citizens are no longer hers to see.
    let out = server.admin(&["set-role", "--worker", &anne, "--role", "caretaker"]);
    assert!(out.contains("role changed"), "{out}");
    let report = sync(&mut tablet);
    assert!(report.rescoped, "{report:?}");
    assert_eq!(every_edit_kept(dir.path(), &mut tablet, from, to), 0);
    assert_eq!(
        tablet.profile().unwrap().unwrap().role.as_str(),
        "caretaker"
    );
    nothing_left_of(&mut tablet, &tails, &ids(&people), &visits);
    colleague_sees(&mut colleague, &people, &visits);
}

#[test]
fn rescope_team_change_keeps_every_edit_and_brings_the_new_team() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (nord, anne) = team_and_worker(&server);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let bo = worker(&server, &nord, "Bo", "outreach");
    let sif = worker(&server, &syd, "Sif", "outreach");
    let mut tablet = device(dir.path(), "anne", &server, &anne);
    let mut colleague = device(dir.path(), "bo", &server, &bo);
    let mut syd_tablet = device(dir.path(), "sif", &server, &sif);
    let syd_citizen = Citizen::with_alias("Borger i Syd");
    syd_tablet.save(&syd_citizen).unwrap();
    sync(&mut syd_tablet);
    let (people, visits, from, to) = fifty_edits_on_citizens(&mut tablet, "Team");
    let mut left = ids(&people);
    left.extend(&visits);
    let tails = sealed_tails(&tablet, &left);

    let out = server.admin(&["move-worker", "--worker", &anne, "--team", &syd]);
    assert!(out.contains("worker moved"), "{out}");
    let report = sync(&mut tablet);
    assert!(report.rescoped, "{report:?}");
    assert_eq!(every_edit_kept(dir.path(), &mut tablet, from, to), 0);
    nothing_left_of(&mut tablet, &tails, &ids(&people), &visits);
    assert!(
        tablet.get::<Citizen>(syd_citizen.id.0).unwrap().is_some(),
        "the new team's citizen was pulled"
    );
    colleague_sees(&mut colleague, &people, &visits);
}

fn log_entry(site: SiteId, note: &str, residents: BTreeSet<CitizenId>) -> SiteLogEntry {
    SiteLogEntry {
        id: SiteLogEntryId::new(),
        site_id: site,
        at: chrono::Utc::now(),
        kind: SiteLogKind::ResidentContact,
        note: note.to_owned().into(),
        residents,
        author: WorkerId::new(),
        archived: false,
    }
}

fn site(name: &str) -> Site {
    Site {
        id: SiteId::new(),
        kind: SiteKind::AlternativeHousing,
        name: name.to_owned().into(),
        address: "Vej 1".into(),
        archived: false,
        created_at: chrono::Utc::now(),
    }
}

#[test]
fn rescope_site_unassigned_keeps_every_log_entry_and_leaves_nothing_of_the_site() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, anne) = team_and_worker(&server);
    let kim = worker(&server, &team, "Kim", "caretaker");
    let mut outreach = device(dir.path(), "anne", &server, &anne);
    let (one, two) = (site("Skæve hus Ét"), site("Skæve hus To"));
    let mut r1 = Citizen::with_alias("Beboer Ét");
    r1.site_id = Some(one.id);
    let mut r2 = Citizen::with_alias("Beboer To");
    r2.site_id = Some(two.id);
    for s in [&one, &two] {
        outreach.save(s).unwrap();
    }
    outreach.save(&r1).unwrap();
    outreach.save(&r2).unwrap();
    sync(&mut outreach);
    for s in [&one, &two] {
        server.admin(&[
            "assign-site",
            "--worker",
            &kim,
            "--site",
            &s.id.0.to_string(),
        ]);
    }
    let mut tablet = device(dir.path(), "kim", &server, &kim);
    sync(&mut tablet);
    assert!(tablet.get::<Citizen>(r1.id.0).unwrap().is_some());

    // 50 log entries offline, half at each site, naming its resident.
    let from = tablet.last_device_seq().unwrap() + 1;
    let mut at_one = Vec::new();
    for i in 0..EDITS {
        let (s, r) = if i % 2 == 0 { (&one, &r1) } else { (&two, &r2) };
        let entry = log_entry(s.id, &format!("vagt {i}"), BTreeSet::from([r.id]));
        tablet.save(&entry).unwrap();
        if s.id == one.id {
            at_one.push(entry.id.0);
        }
    }
    let to = tablet.last_device_seq().unwrap();
    let mut left = vec![one.id.0, r1.id.0];
    left.extend(&at_one);
    let tails = sealed_tails(&tablet, &left);

    let out = server.admin(&[
        "unassign-site",
        "--worker",
        &kim,
        "--site",
        &one.id.0.to_string(),
    ]);
    assert!(out.contains("site taken"), "{out}");
    let report = sync(&mut tablet);
    assert!(report.rescoped, "{report:?}");
    assert_eq!(every_edit_kept(dir.path(), &mut tablet, from, to), 0);
    let mut gone = vec![one.id.0];
    gone.extend(&at_one);
    nothing_left_of(&mut tablet, &tails, &[r1.id.0], &gone);
    // The other site, its resident and its log stay.
    assert!(tablet.get::<Site>(two.id.0).unwrap().is_some());
    assert!(tablet.get::<Citizen>(r2.id.0).unwrap().is_some());
    let logs: Vec<SiteLogEntry> = tablet.list(&ListQuery::default()).unwrap();
    assert_eq!(logs.len(), EDITS / 2, "the kept site's log is whole");
    assert!(logs.iter().all(|l| l.site_id == two.id));
    // The team sees all 50.
    sync(&mut outreach);
    let all: Vec<SiteLogEntry> = outreach.list(&ListQuery::default()).unwrap();
    assert_eq!(all.len(), EDITS);
}

#[test]
fn rescope_supervised_team_removed_keeps_every_review_and_leaves_nothing_of_the_team() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (nord, anne) = team_and_worker(&server);
    let ledelse = server.admin(&["create-team", "Ledelse"]);
    let sofie = worker(&server, &ledelse, "Sofie", "supervisor");
    server.admin(&["supervise", "--worker", &sofie, "--team", &nord]);
    // 50 visits whose notes two tablets of Anne's correct offline: 50 open conflicts.
    let mut a = device(dir.path(), "anne-a", &server, &anne);
    let mut b = device(dir.path(), "anne-b", &server, &anne);
    let person = Citizen::with_alias("Jens");
    a.save(&person).unwrap();
    let mut visits: Vec<Visit> = (0..EDITS)
        .map(|i| {
            let mut v = Visit::with_citizen(person.id, WorkerId::new(), VisitKind::HomeVisit);
            v.note = format!("udkast {i}").into();
            v
        })
        .collect();
    a.save_all(&visits).unwrap();
    sync(&mut a);
    sync(&mut b);
    for (store, word) in [(&mut a, "bolig"), (&mut b, "gæld")] {
        for v in visits.iter_mut() {
            let mut mine: Visit = store.get(v.id.0).unwrap().unwrap();
            mine.note = format!("talte om {word}").into();
            store.save(&mine).unwrap();
        }
    }
    sync(&mut a);
    sync(&mut b);
    let mut tablet = device(dir.path(), "sofie", &server, &sofie);
    sync(&mut tablet);
    let open: Vec<ConflictRecord> = tablet.conflicts(false).unwrap();
    assert_eq!(open.len(), EDITS);
    let from = tablet.last_device_seq().unwrap() + 1;
    for c in &open {
        tablet
            .resolve_conflict(c.id, Resolution::Merged("talte om bolig og gæld".into()))
            .unwrap();
    }
    let to = tablet.last_device_seq().unwrap();
    let mut left = vec![person.id.0];
    left.extend(visits.iter().map(|v| v.id.0));
    let tails = sealed_tails(&tablet, &left);

    let out = server.admin(&["unsupervise", "--worker", &sofie, "--team", &nord]);
    assert!(out.contains("done"), "{out}");
    let report = sync(&mut tablet);
    assert!(report.rescoped, "{report:?}");
    assert_eq!(every_edit_kept(dir.path(), &mut tablet, from, to), 0);
    let visit_ids: Vec<Uuid> = visits.iter().map(|v| v.id.0).collect();
    nothing_left_of(&mut tablet, &tails, &[person.id.0], &visit_ids);
    assert!(
        tablet.conflicts(true).unwrap().is_empty(),
        "no conflict of Nord's"
    );
    // Nord's tablets carry every settled note.
    sync(&mut a);
    for v in &visits {
        let got: Visit = a.get(v.id.0).unwrap().unwrap();
        assert_eq!(got.note.0, "talte om bolig og gæld");
    }
    assert!(a.conflicts(false).unwrap().is_empty());
}

#[test]
fn rescope_an_edit_backdated_into_the_old_scope_after_the_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (nord, anne) = team_and_worker(&server);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let mut tablet = device(dir.path(), "anne", &server, &anne);
    let person = Citizen::with_alias("Jens");
    tablet.save(&person).unwrap();
    sync(&mut tablet);
    let before_change = system_time_ms();
    // One edit made before the change, pushed after it: accepted (the old scope held).
    let mut edited = person.clone();
    edited.phone = Some("+45 11 11 11 11".into());
    tablet.save(&edited).unwrap();
    server.admin(&["move-worker", "--worker", &anne, "--team", &syd]);
    let report = sync(&mut tablet);
    assert_eq!((report.acked, report.set_aside), (1, 0), "{report:?}");
    let _ = nord;

    // Now the device knows. An edit stamped before the change, with the next number, is judged
    // under the new scope whatever its stamp says.
    let mut raw = Raw::of(&mut tablet);
    raw.seq = tablet.last_device_seq().unwrap();
    let backdated = FieldOp {
        entity: EntityKind::Citizen,
        id: person.id.0,
        field: "phone".into(),
        change: FieldChange::Assign {
            value: "+45 99 99 99 99".into(),
        },
        hlc: Hlc::new(before_change - 60_000, 0).unwrap(),
        base: None,
    };
    let refused = raw.write(vec![backdated]).unwrap_err();
    assert_eq!(refused.0, RejectReason::OutOfScope, "{refused:?}");
}

/// The key scopes the device holds, by name (`citizen:…`, `site:…`, `entry:…`, `general`).
fn key_scopes(store: &Store) -> BTreeSet<String> {
    let db = rusqlite::Connection::open(store.path()).unwrap();
    let mut stmt = db.prepare("SELECT scope FROM data_keys").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn site_keys_a_resident_moving_out_or_a_site_taken_away_leaves_no_readable_entry_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (team, anne) = team_and_worker(&server);
    let kim = worker(&server, &team, "Kim", "caretaker");
    let mut outreach = device(dir.path(), "anne", &server, &anne);
    let home = site("Skæve hus");
    let mut r1 = Citizen::with_alias("Beboer Ét");
    r1.site_id = Some(home.id);
    let mut r2 = Citizen::with_alias("Beboer To");
    r2.site_id = Some(home.id);
    outreach.save(&home).unwrap();
    outreach.save(&r1).unwrap();
    outreach.save(&r2).unwrap();
    sync(&mut outreach);
    server.admin(&[
        "assign-site",
        "--worker",
        &kim,
        "--site",
        &home.id.0.to_string(),
    ]);
    let mut tablet = device(dir.path(), "kim", &server, &kim);
    sync(&mut tablet);
    let e1 = log_entry(home.id, "talte med beboer ét", BTreeSet::from([r1.id]));
    let e2 = log_entry(home.id, "talte med beboer to", BTreeSet::from([r2.id]));
    let e3 = log_entry(home.id, "dør repareret", BTreeSet::new());
    for e in [&e1, &e2, &e3] {
        tablet.save(e).unwrap();
    }
    sync(&mut tablet);
    let scopes = key_scopes(&tablet);
    for want in [
        format!("site:{}", home.id),
        format!("entry:{}", e1.id),
        format!("citizen:{}", r1.id),
    ] {
        assert!(scopes.contains(&want), "{want} in {scopes:?}");
    }
    let tails = sealed_tails(&tablet, &[e1.id.0, r1.id.0]);

    // Resident one moves out: the entry naming them goes with their key; the others stay.
    let mut moved = outreach.get::<Citizen>(r1.id.0).unwrap().unwrap();
    moved.site_id = None;
    outreach.save(&moved).unwrap();
    sync(&mut outreach);
    let report = sync(&mut tablet);
    assert_eq!(report.erased, 1, "{report:?}");
    nothing_left_of(&mut tablet, &tails, &[r1.id.0], &[e1.id.0]);
    assert!(!key_scopes(&tablet).contains(&format!("entry:{}", e1.id)));
    for e in [&e2, &e3] {
        assert!(
            tablet.get::<SiteLogEntry>(e.id.0).unwrap().is_some(),
            "kept"
        );
    }

    // The site is taken away: its key goes, and with it every entry and the other resident.
    let tails = sealed_tails(&tablet, &[home.id.0, e2.id.0, e3.id.0, r2.id.0]);
    server.admin(&[
        "unassign-site",
        "--worker",
        &kim,
        "--site",
        &home.id.0.to_string(),
    ]);
    assert!(sync(&mut tablet).rescoped);
    nothing_left_of(
        &mut tablet,
        &tails,
        &[r2.id.0],
        &[home.id.0, e2.id.0, e3.id.0],
    );
    let left = key_scopes(&tablet);
    assert!(
        left.iter().all(|s| s == "general"),
        "only the general key is left: {left:?}"
    );
}

#[test]
fn site_keys_an_upgraded_device_holding_sites_pulls_its_scope_afresh_under_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, anne) = team_and_worker(&server);
    let mut tablet = device(dir.path(), "anne", &server, &anne);
    let home = site("Skæve hus");
    tablet.save(&home).unwrap();
    let mut plain = Citizen::with_alias("Ingen site");
    plain.phone = Some("+45 12 12 12 12".into());
    tablet.save(&plain).unwrap();
    sync(&mut tablet);
    let path = tablet.path().to_owned();
    drop(tablet);
    // Back to schema 8, as a device of the previous build left it.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DROP TABLE key_links; PRAGMA user_version = 8;")
        .unwrap();
    drop(db);
    let mut tablet = Store::open(
        &path,
        std::sync::Arc::new(feltbog_core::keystore::NoPlatformSecret),
    )
    .unwrap();
    tablet.unlock(&pass()).unwrap();
    assert_eq!(
        tablet.rescope_state().unwrap(),
        feltbog_core::store::Rescope::Draining,
        "the upgrade asks for a fresh pull"
    );
    let report = sync(&mut tablet);
    assert!(report.rescoped, "{report:?}");
    assert!(key_scopes(&tablet).contains(&format!("site:{}", home.id)));
    assert_eq!(tablet.get::<Site>(home.id.0).unwrap().unwrap(), home);
    // As saved, with the team the server set (the fresh pull brings the server's value).
    let got = tablet.get::<Citizen>(plain.id.0).unwrap().unwrap();
    assert!(got.team_id.is_some());
    assert_eq!(
        got,
        Citizen {
            team_id: got.team_id,
            ..plain
        }
    );
}

#[test]
fn rescope_a_device_that_held_no_profile_follows_the_change_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let (_, anne) = team_and_worker(&server);
    let mut tablet = device(dir.path(), "anne", &server, &anne);
    let person = Citizen::with_alias("Jens");
    tablet.save(&person).unwrap();
    sync(&mut tablet);
    // As a device enrolled before profiles existed, that has not synced since.
    rusqlite::Connection::open(tablet.path())
        .unwrap()
        .execute(
            "UPDATE sync_state SET profile_key_id = NULL, profile_sealed = NULL",
            [],
        )
        .unwrap();
    assert!(tablet.profile().unwrap().is_none());
    let mut edited = person.clone();
    edited.phone = Some("+45 22 22 22 22".into());
    tablet.save(&edited).unwrap();
    let tails = sealed_tails(&tablet, &[person.id.0]);
    server.admin(&["set-role", "--worker", &anne, "--role", "caretaker"]);
    let report = sync(&mut tablet);
    // The server said so: the profile alone could not (there was none to compare).
    assert!(report.rescoped, "{report:?}");
    assert_eq!((report.acked, report.set_aside), (1, 0), "{report:?}");
    nothing_left_of(&mut tablet, &tails, &[person.id.0], &[]);
}
