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
                    ..Default::default()
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

#[test]
fn a_caretakers_device_receives_a_residents_name_and_place_but_not_cpr_goals_or_consent() {
    use feltbog_core::domain::{
        Citizen, ConsentId, ConsentMethod, ConsentPurpose, ConsentStatus, Course, CourseId,
        CourseKind, Cpr, Goal, GoalId, GoalStatus, HousingChange, HousingChangeId,
        HousingSituation, NetworkPerson, NetworkPersonId, PurposeConsent, Referral, ReferralCase,
        ReferralCaseId, ReferralOutcome, Relation, Site, SiteId, SiteKind, WorkerId,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = server.admin(&["create-worker", "--team", &nord, "--name", "Anne"]);
    let carl = server.admin(&[
        "create-worker",
        "--team",
        &nord,
        "--name",
        "Carl",
        "--role",
        "caretaker",
    ]);
    let mut outreach = device(dir.path(), "anne", &server, &anne);
    let site = Site {
        id: SiteId::new(),
        kind: SiteKind::AlternativeHousing,
        name: "Toftegården".into(),
        address: "Toftevej 14".into(),
        archived: false,
        created_at: chrono::Utc::now(),
    };
    let mut resident = Citizen::with_alias("Lille Mette");
    resident.full_name = Some("Mette Hansen".into());
    resident.cpr = Some(Cpr::parse("010190-1234").unwrap());
    resident.birth_year = Some(1990);
    resident.phone = Some("22 33 44 55".into());
    resident.site_id = Some(site.id);
    resident.goals = vec![Goal {
        id: GoalId::new(),
        text: "Egen bolig".into(),
        status: GoalStatus::Active,
        created: chrono::Utc::now().date_naive(),
    }];
    let today = chrono::Utc::now().date_naive();
    resident.consents = vec![PurposeConsent {
        id: ConsentId::new(),
        purpose: ConsentPurpose::Recording,
        status: ConsentStatus::Given,
        date: today,
        scope: "alt".into(),
        method: ConsentMethod::Verbal,
        recorded_by: WorkerId(anne.parse().unwrap()),
    }];
    // The pathway is case work: none of it is a caretaker's.
    resident.housing_history = vec![HousingChange {
        id: HousingChangeId::new(),
        from: today,
        situation: HousingSituation::AlternativeHousing,
    }];
    resident.eviction_risk = true;
    resident.resources = Some("God til at tegne".into());
    resident.network = vec![NetworkPerson {
        id: NetworkPersonId::new(),
        name: "Søsteren Ida".into(),
        relation: Relation::Sibling,
        contact: None,
        may_involve: true,
    }];
    resident.referrals = vec![ReferralCase {
        id: ReferralCaseId::new(),
        target: Referral::SocialNurse,
        made: today,
        visit_id: None,
        outcome: ReferralOutcome::Waiting,
        outcome_date: None,
        follow_up: None,
        note: "".into(),
    }];
    resident.courses = vec![Course {
        id: CourseId::new(),
        kind: CourseKind::HousingFirst,
        started: today,
        planned_end: None,
        ended: None,
        ending: None,
        goals: resident.goals.iter().map(|g| g.id).collect(),
        note: "".into(),
    }];
    outreach.save(&site).unwrap();
    outreach.save(&resident).unwrap();
    sync(&mut outreach);
    server.admin(&[
        "assign-site",
        "--worker",
        &carl,
        "--site",
        &site.id.to_string(),
    ]);

    let mut caretaker = device(dir.path(), "carl", &server, &carl);
    sync(&mut caretaker);
    let seen: Citizen = caretaker
        .get(resident.id.0)
        .unwrap()
        .expect("a resident of their site");
    assert_eq!(
        seen.alias.as_ref().map(|a| a.expose().as_str()),
        Some("Lille Mette")
    );
    assert_eq!(
        seen.full_name.as_ref().map(|a| a.expose().as_str()),
        Some("Mette Hansen")
    );
    assert_eq!(seen.site_id, Some(site.id));
    assert!(seen.cpr.is_none() && seen.phone.is_none() && seen.birth_year.is_none());
    assert!(seen.goals.is_empty() && seen.consents.is_empty());
    assert!(
        seen.housing_history.is_empty()
            && !seen.eviction_risk
            && seen.resources.is_none()
            && seen.network.is_empty()
            && seen.referrals.is_empty()
            && seen.courses.is_empty()
    );
    // The outreach worker's own device and the server keep everything.
    let full: Citizen = outreach.get(resident.id.0).unwrap().unwrap();
    assert!(full.cpr.is_some() && !full.consents.is_empty() && !full.goals.is_empty());
    assert_eq!(
        (
            &full.housing_history,
            &full.network,
            &full.referrals,
            &full.courses
        ),
        (
            &resident.housing_history,
            &resident.network,
            &resident.referrals,
            &resident.courses
        )
    );
}

#[test]
fn a_caretakers_site_entry_naming_a_resident_reaches_the_team_and_both_resident_pages_list_it() {
    use feltbog_core::app::forms::{SiteInput, SiteLogInput};
    use feltbog_core::domain::{SiteKind, SiteLogKind};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anne = server.admin(&["create-worker", "--team", &nord, "--name", "Anne"]);
    let carl = server.admin(&[
        "create-worker",
        "--team",
        &nord,
        "--name",
        "Carl",
        "--role",
        "caretaker",
    ]);
    let (outreach, _) = app_device(dir.path(), "anne", &server, &anne);
    let site = outreach
        .save_site(&SiteInput {
            kind: SiteKind::AlternativeHousing,
            name: "Toftegården".into(),
            address: "Toftevej 14".into(),
        })
        .unwrap();
    let mette = outreach
        .save_citizen(
            &citizen_form(serde_json::json!({"alias": "Lille Mette", "site_id": site})),
            None,
        )
        .unwrap();
    outreach.sync_once(&|_| {}).unwrap();
    server.admin(&[
        "assign-site",
        "--worker",
        &carl,
        "--site",
        &site.to_string(),
    ]);

    let (caretaker, _) = app_device(dir.path(), "carl", &server, &carl);
    caretaker.sync_once(&|_| {}).unwrap();
    assert_eq!(caretaker.sites().unwrap()[0].name, "Toftegården");
    let entry = caretaker
        .save_site_log(&SiteLogInput {
            site_id: site,
            kind: SiteLogKind::ResidentContact,
            note: "Kaffe med Mette på bænken".into(),
            residents: vec![mette],
        })
        .unwrap();
    caretaker.sync_once(&|_| {}).unwrap();
    assert!(
        caretaker.set_aside().unwrap().is_empty(),
        "the server took it"
    );
    let own = caretaker.citizen(mette).unwrap();
    assert_eq!(own.site_log.len(), 1);
    assert_eq!(own.site_log[0].id, entry);
    assert_eq!(own.site_log[0].mark, None, "accepted: no mark");

    outreach.sync_once(&|_| {}).unwrap();
    let page = outreach.citizen(mette).unwrap();
    assert_eq!(
        page.site_log.len(),
        1,
        "the entry reached a colleague's device"
    );
    assert_eq!(page.site_log[0].note, "Kaffe med Mette på bænken");
    assert!(!page.site_log[0].mine);
}
