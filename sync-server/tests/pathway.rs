//! The citizen's pathway (issue 17): housing history, support courses and their reviews,
//! referrals followed to an outcome, network, consent per purpose, and the circumstances
//! (eviction risk, rent arrears, resources). Each list goes the full path against the real
//! server: saved offline, synced, merged with a concurrent edit on a colleague's tablet, shown
//! there, and erased with the citizen's key. Edits are made with the app's own form function
//! (`forms::apply_pathway_edit`, what the tablet's command calls).

mod common;

use chrono::{Duration, NaiveDate, Utc};
use common::*;
use feltbog_core::app::forms::{
    Author, FollowUpInput, PathwayEdit, PathwayItem, apply_pathway_edit,
};
use feltbog_core::domain::*;
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::merge::ConflictKind;
use feltbog_core::protocol::{FieldChange, FieldOp, RejectReason};
use feltbog_core::store::Store;
use std::collections::BTreeSet;
use uuid::Uuid;

fn author(store: &mut Store) -> Author {
    let e = store.enrolment().unwrap().unwrap();
    Author {
        worker: WorkerId(e.worker_id),
        team: TeamId(e.team_id),
    }
}

/// One pathway edit on `store`'s copy of the citizen, saved as the app saves it.
fn edit(store: &mut Store, citizen: CitizenId, e: PathwayEdit) {
    let current: Citizen = store.get(citizen.0).unwrap().expect("the citizen is here");
    let me = author(store);
    let (edited, task) = apply_pathway_edit(current, &e, me, Utc::now()).unwrap();
    match task {
        Some(task) => {
            store.save_pair(&task, &edited).unwrap();
        }
        None => {
            store.save(&edited).unwrap();
        }
    }
}

fn save(item: PathwayItem) -> PathwayEdit {
    PathwayEdit::Save {
        item,
        follow_up: None,
    }
}

fn day(days_ago: i64) -> NaiveDate {
    Utc::now().date_naive() - Duration::days(days_ago)
}

/// The pathway part of a citizen, for comparing two tablets' copies.
fn pathway(c: &Citizen) -> serde_json::Value {
    serde_json::json!({
        "housing": c.housing, "housing_history": c.housing_history, "courses": c.courses,
        "course_reviews": c.course_reviews, "referrals": c.referrals, "network": c.network,
        "consents": c.consents, "eviction_risk": c.eviction_risk,
        "rent_arrears": c.rent_arrears, "resources": c.resources,
    })
}

struct Items {
    housing: HousingChange,
    course: Course,
    review: CourseReview,
    referral: ReferralCase,
    person: NetworkPerson,
    consent: PurposeConsent,
}

fn items(goal: GoalId, me: WorkerId) -> Items {
    let course = CourseId::new();
    Items {
        housing: HousingChange {
            id: HousingChangeId::new(),
            from: day(200),
            situation: HousingSituation::OwnRental,
        },
        course: Course {
            id: course,
            kind: CourseKind::HousingFirst,
            started: day(190),
            planned_end: Some(day(190) + Duration::days(365)),
            ended: None,
            ending: None,
            goals: BTreeSet::from([goal]),
            note: "Holde lejligheden".into(),
        },
        review: CourseReview {
            id: CourseReviewId::new(),
            course_id: course,
            date: day(10),
            text: "Betaler husleje selv nu".into(),
        },
        referral: ReferralCase {
            id: ReferralCaseId::new(),
            target: Referral::DebtCounselling,
            made: day(30),
            visit_id: None,
            outcome: ReferralOutcome::Waiting,
            outcome_date: None,
            follow_up: None,
            note: "Gæld til boligselskabet".into(),
        },
        person: NetworkPerson {
            id: NetworkPersonId::new(),
            name: "Ida (søster)".into(),
            relation: Relation::Sibling,
            contact: Some("20 30 40 50".into()),
            may_involve: true,
        },
        consent: PurposeConsent {
            id: ConsentId::new(),
            purpose: ConsentPurpose::InvolvingNetwork,
            status: ConsentStatus::Given,
            date: day(5),
            method: ConsentMethod::Verbal,
            recorded_by: me,
            scope: "Søsteren må kontaktes".into(),
        },
    }
}

#[test]
fn every_pathway_list_goes_the_full_path_offline_synced_merged_shown_and_erased() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let team = server.admin(&["create-team", "Team Nord"]);
    let anne_id = worker(&server, &team, "Anne", "outreach");
    let bo_id = worker(&server, &team, "Bo", "outreach");
    let mut anne = device(dir.path(), "anne", &server, &anne_id);
    let mut bo = device(dir.path(), "bo", &server, &bo_id);

    let goal = Goal {
        id: GoalId::new(),
        text: "Beholde min lejlighed".into(),
        status: GoalStatus::Active,
        created: day(200),
    };
    let mut person = Citizen::with_alias("Kaj");
    person.goals = vec![goal.clone()];
    anne.save(&person).unwrap();
    sync(&mut anne);
    sync(&mut bo);
    let id = person.id;

    // Offline: the server is down while Anne records the pathway; every save stays on the
    // tablet, and the sync that fails loses nothing.
    let addr = server.addr();
    server.kill();
    let it = items(goal.id, author(&mut anne).worker);
    edit(
        &mut anne,
        id,
        save(PathwayItem::HousingHistory(it.housing.clone())),
    );
    edit(&mut anne, id, save(PathwayItem::Courses(it.course.clone())));
    edit(
        &mut anne,
        id,
        save(PathwayItem::CourseReviews(it.review.clone())),
    );
    edit(
        &mut anne,
        id,
        PathwayEdit::Save {
            item: PathwayItem::Referrals(it.referral.clone()),
            follow_up: Some(FollowUpInput {
                title: "Ring til gældsrådgivningen".into(),
                due: day(-7).to_string(),
            }),
        },
    );
    edit(&mut anne, id, save(PathwayItem::Network(it.person.clone())));
    edit(
        &mut anne,
        id,
        save(PathwayItem::Consents(it.consent.clone())),
    );
    edit(
        &mut anne,
        id,
        PathwayEdit::Circumstances {
            eviction_risk: true,
            rent_arrears: true,
            resources: "Tegner, fisker, god til naboerne".into(),
        },
    );
    assert!(try_sync(&mut anne).is_err(), "the server is down");
    let saved: Citizen = anne.get(id.0).unwrap().unwrap();
    assert_eq!(
        saved.housing,
        HousingSituation::Other,
        "a first, backdated entry is history: the situation now stays"
    );
    let follow_up = saved.referrals[0]
        .follow_up
        .expect("the referral's follow-up task");
    assert!(anne.get::<Task>(follow_up.0).unwrap().is_some());
    assert_eq!(
        anne.sync_status().unwrap().pending,
        8,
        "7 saves and the task, all kept"
    );

    let server = Server::start_on(&data, &addr);
    let report = sync(&mut anne);
    assert_eq!((report.acked, report.set_aside), (8, 0), "{report:?}");
    // Audited like every write about the citizen: the seven pathway saves and the task.
    let audited = |action: &str| -> i64 {
        server_value(
            &data,
            "SELECT count(*) FROM audit WHERE citizen_id = ?1 AND action = ?2",
            feltbog_server::args![id.0, action],
        )
    };
    assert_eq!(
        audited("write"),
        1 + 8,
        "the citizen's creation and the eight writes"
    );

    // Shown on a colleague's tablet, as the citizen page shows it.
    let reads = audited("read");
    sync(&mut bo);
    assert!(
        audited("read") > reads,
        "what the colleague's tablet was sent is audited"
    );
    let seen: Citizen = bo.get(id.0).unwrap().unwrap();
    assert_eq!(pathway(&seen), pathway(&saved));
    let me = author(&mut bo).worker.0;
    let page =
        feltbog_core::app::views::citizen(&mut bo, id.0, me, Utc::now().date_naive()).unwrap();
    let p = &page.pathway;
    assert_eq!(p.housing_history, vec![it.housing.clone()]);
    assert_eq!(p.kept.len(), 1, "one move into a home");
    assert_eq!(
        (p.kept[0].months_3, p.kept[0].months_6, p.kept[0].months_12),
        (Some(true), Some(true), None),
        "200 days in: kept at 3 and 6 months, 12 not yet due"
    );
    assert_eq!((p.courses.len(), p.course_reviews.len()), (1, 1));
    assert_eq!(p.referrals[0].follow_up, Some(follow_up));
    assert!(page.tasks.iter().any(|t| t.id == follow_up.0));
    assert_eq!(p.network, vec![it.person.clone()]);
    assert_eq!(p.consents[0].consent, it.consent);
    assert_eq!(p.consents[0].recorded_by_name.as_deref(), Some("Anne"));
    assert!(p.eviction_risk && p.rent_arrears);

    // Concurrent edits, both tablets offline from each other: the same item of every list on
    // both, and a new item on each.
    let mut housing = it.housing.clone();
    housing.from = day(210);
    edit(&mut anne, id, save(PathwayItem::HousingHistory(housing)));
    let mut housing = it.housing.clone();
    housing.situation = HousingSituation::SupportedHousing;
    edit(&mut bo, id, save(PathwayItem::HousingHistory(housing)));
    let texts = |who: &str| {
        let mut course = it.course.clone();
        course.note = format!("Holde lejligheden ({who})").into();
        let mut review = it.review.clone();
        review.text = format!("Betaler husleje selv ({who})").into();
        let mut referral = it.referral.clone();
        referral.note = format!("Gæld ({who})").into();
        let mut person = it.person.clone();
        person.contact = Some(format!("tlf. ({who})").into());
        let mut consent = it.consent.clone();
        consent.scope = format!("Søsteren må kontaktes ({who})").into();
        [
            PathwayItem::Courses(course),
            PathwayItem::CourseReviews(review),
            PathwayItem::Referrals(referral),
            PathwayItem::Network(person),
            PathwayItem::Consents(consent),
        ]
    };
    for item in texts("Anne") {
        edit(&mut anne, id, save(item));
    }
    for item in texts("Bo") {
        edit(&mut bo, id, save(item));
    }
    let mut second = it.referral.clone();
    second.id = ReferralCaseId::new();
    second.target = Referral::SocialNurse;
    edit(&mut anne, id, save(PathwayItem::Referrals(second.clone())));
    let mut cousin = it.person.clone();
    cousin.id = NetworkPersonId::new();
    cousin.name = "Morten (fætter)".into();
    edit(&mut bo, id, save(PathwayItem::Network(cousin.clone())));
    sync(&mut anne);
    sync(&mut bo);
    sync(&mut anne);

    let a: Citizen = anne.get(id.0).unwrap().unwrap();
    let b: Citizen = bo.get(id.0).unwrap().unwrap();
    assert_eq!(
        pathway(&a),
        pathway(&b),
        "both tablets hold the same pathway"
    );
    assert!(
        a.referrals.iter().any(|r| r.id == second.id),
        "Anne's new referral kept"
    );
    assert!(
        a.network.iter().any(|n| n.id == cousin.id),
        "Bo's new network person kept"
    );
    // The same item edited on both: one version stands on both tablets and the other is kept
    // in a conflict: open for the lists with free text, a notice for the housing change.
    let conflicts = anne.conflicts(false).unwrap();
    let about = |list: &str, item: Uuid| {
        conflicts
            .iter()
            .find(|c| c.record_id == id.0 && c.field == schema::item_field(list, item))
            .unwrap_or_else(|| panic!("no conflict about the {list} item"))
    };
    let housing = about("housing_history", it.housing.id.0);
    assert_eq!(housing.kind, ConflictKind::Notice);
    for (list, item) in [
        ("courses", it.course.id.0),
        ("course_reviews", it.review.id.0),
        ("referrals", it.referral.id.0),
        ("network", it.person.id.0),
        ("consents", it.consent.id.0),
    ] {
        let c = about(list, item);
        assert_eq!(c.kind, ConflictKind::Open, "{list}");
        let versions = format!("{} {}", c.winner, c.loser);
        assert!(
            versions.contains("(Anne)") && versions.contains("(Bo)"),
            "{list}: both versions kept: {versions}"
        );
    }
    assert_eq!(bo.conflicts(false).unwrap().len(), conflicts.len());

    // Erased with the citizen's key: nothing of the pathway opens or stays in the files.
    let tails = sealed_tails(&bo, &[id.0, follow_up.0]);
    bo.erase_citizen(id).unwrap();
    for tail in &tails {
        assert!(!in_store_files(&bo, tail), "a sealed copy stayed behind");
    }
    assert!(bo.get::<Citizen>(id.0).unwrap().is_none());
    assert!(bo.get::<Task>(follow_up.0).unwrap().is_none());
    let db = rusqlite::Connection::open(bo.path()).unwrap();
    let keys: i64 = db
        .query_row(
            "SELECT count(*) FROM data_keys WHERE scope = ?1",
            [format!("citizen:{}", id.0)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, 0, "the citizen's key is destroyed");
    drop(server);
}

/// A raw field op on a citizen.
fn op(entity: EntityKind, id: Uuid, field: &str, value: serde_json::Value) -> FieldOp {
    FieldOp {
        entity,
        id,
        field: field.to_owned(),
        change: FieldChange::Assign { value },
        hlc: Hlc::new(system_time_ms(), 0).unwrap(),
        base: None,
    }
}

#[test]
fn the_server_refuses_pathway_items_that_break_the_records_rules_or_reach_out_of_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let anne_id = worker(&server, &nord, "Anne", "outreach");
    let sara_id = worker(&server, &syd, "Sara", "outreach");
    let mut anne = device(dir.path(), "anne", &server, &anne_id);
    let mut sara = device(dir.path(), "sara", &server, &sara_id);
    let mut person = Citizen::with_alias("Kaj");
    let goal = GoalId::new();
    person.goals = vec![Goal {
        id: goal,
        text: "Bolig".into(),
        status: GoalStatus::Active,
        created: day(1),
    }];
    anne.save(&person).unwrap();
    let other = Citizen::with_alias("Syd-borger");
    sara.save(&other).unwrap();
    let syd_task = Task {
        id: TaskId::new(),
        citizen_id: other.id,
        title: "Syd".into(),
        created_at: Utc::now(),
        due: day(0),
        assignee: None,
        status: TaskStatus::Open,
        archived: false,
    };
    sara.save(&syd_task).unwrap();
    sync(&mut anne);
    sync(&mut sara);
    let mut raw = Raw::of(&mut anne);
    let it = items(goal, author(&mut anne).worker);
    let item = |list: &str, id: Uuid, value: serde_json::Value| {
        op(
            EntityKind::Citizen,
            person.id.0,
            &schema::item_field(list, id),
            value,
        )
    };

    // A review of a course the citizen does not have.
    let (reason, detail) = raw
        .write(vec![item(
            "course_reviews",
            it.review.id.0,
            serde_json::to_value(&it.review).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid, "{detail}");
    assert!(detail.contains("does not hold"), "{detail}");
    // A course ending before it starts.
    let mut backwards = it.course.clone();
    backwards.ended = Some(backwards.started - Duration::days(1));
    backwards.ending = Some(CourseEnding::GoalsReached);
    let (reason, _) = raw
        .write(vec![item(
            "courses",
            backwards.id.0,
            serde_json::to_value(&backwards).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    // A referral whose follow-up is another team's task.
    let mut reaching = it.referral.clone();
    reaching.follow_up = Some(syd_task.id);
    let (reason, _) = raw
        .write(vec![item(
            "referrals",
            reaching.id.0,
            serde_json::to_value(&reaching).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::OutOfScope);
    // A consent recorded by a worker of another team.
    let mut forged = it.consent.clone();
    forged.recorded_by = WorkerId(sara_id.parse().unwrap());
    let (reason, _) = raw
        .write(vec![item(
            "consents",
            forged.id.0,
            serde_json::to_value(&forged).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::OutOfScope);
    // An item stored under another item's id.
    let (reason, _) = raw
        .write(vec![item(
            "network",
            Uuid::now_v7(),
            serde_json::to_value(&it.person).unwrap(),
        )])
        .unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    // The valid course is taken; a visit naming it and the goal is taken, one naming a course
    // the citizen does not have is not.
    raw.write(vec![item(
        "courses",
        it.course.id.0,
        serde_json::to_value(&it.course).unwrap(),
    )])
    .unwrap();
    let mut visit = Visit::with_citizen(person.id, author(&mut anne).worker, VisitKind::HomeVisit);
    visit.course_id = Some(CourseId::new());
    let ops = |v: &Visit| -> Vec<FieldOp> {
        let json = serde_json::to_value(v).unwrap();
        json.as_object()
            .unwrap()
            .iter()
            .flat_map(|(k, val)| match val {
                serde_json::Value::Array(set) if Visit::SET_FIELDS.contains(&k.as_str()) => set
                    .iter()
                    .map(|e| FieldOp {
                        change: FieldChange::Add { value: e.clone() },
                        ..op(EntityKind::Visit, v.id.0, k, serde_json::Value::Null)
                    })
                    .collect::<Vec<_>>(),
                _ => vec![op(EntityKind::Visit, v.id.0, k, val.clone())],
            })
            .collect()
    };
    let (reason, detail) = raw.write(ops(&visit)).unwrap_err();
    assert_eq!(reason, RejectReason::Invalid);
    assert!(detail.contains("not one of the citizen's"), "{detail}");
    visit.course_id = Some(it.course.id);
    visit.goals = BTreeSet::from([goal]);
    raw.write(ops(&visit)).unwrap();
    let mut stray = visit.clone();
    stray.id = VisitId::new();
    stray.goals = BTreeSet::from([GoalId::new()]);
    assert_eq!(raw.write(ops(&stray)).unwrap_err().0, RejectReason::Invalid);
}

#[test]
fn a_consent_from_before_consent_per_purpose_is_read_as_one_purpose_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = Server::start(&data);
    let team = server.admin(&["create-team", "Team Nord"]);
    let anne_id = worker(&server, &team, "Anne", "outreach");
    let mut anne = device(dir.path(), "anne", &server, &anne_id);
    let person = Citizen::with_alias("Kaj");
    anne.save(&person).unwrap();
    sync(&mut anne);
    let addr = server.addr();
    server.kill();

    // The server as an older version left it: the citizen's single consent in its fields and
    // in its change log (so a device that pulls the log gets the old field), at schema 11.
    let consent = serde_json::json!({"status": "given", "date": "2026-03-04",
        "scope": "deling i teamet", "method": "written", "recorded_by": anne_id});
    {
        let db = rusqlite::Connection::open(data.join("feltbog-server.sqlite")).unwrap();
        let (seq, mutation): (i64, String) = db
            .query_row(
                "SELECT seq, mutation FROM changes ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let mut old: feltbog_core::protocol::Mutation = serde_json::from_str(&mutation).unwrap();
        old.device_seq += 1;
        let mut legacy = op(EntityKind::Citizen, person.id.0, "consent", consent.clone());
        legacy.hlc = Hlc::new(system_time_ms(), 0).unwrap();
        old.ops = vec![legacy.clone()];
        let copy_row = db
            .prepare("SELECT group_concat(name, ', ') FROM pragma_table_info('changes') WHERE name NOT IN ('seq', 'mutation')")
            .unwrap()
            .query_row([], |r| r.get::<_, String>(0))
            .unwrap();
        db.execute(
            &format!(
                "INSERT INTO changes ({copy_row}, mutation) SELECT {copy_row}, ?1 FROM changes WHERE seq = ?2"
            ),
            rusqlite::params![serde_json::to_string(&old).unwrap(), seq],
        )
        .unwrap();
        db.execute(
            "INSERT INTO fields (entity, record_id, field, value, hlc, device)
             VALUES ('citizen', ?1, 'consent', ?2, ?3, ?4)",
            rusqlite::params![
                &person.id.0.as_bytes()[..],
                consent.to_string(),
                legacy.hlc.as_u64() as i64,
                &old.device_id.0.as_bytes()[..]
            ],
        )
        .unwrap();
        // As a server of the previous build left it: schema 11, by `user_version` alone.
        db.execute_batch(
            "DROP TABLE refinery_schema_history; DROP TABLE rate_limits;
             PRAGMA user_version = 11;",
        )
        .unwrap();
    }
    let server = Server::start_on(&data, &addr);

    // A device synced before pulls the old field; a fresh one pulls the whole log. Both read
    // the one consent as the consent to recording, under the citizen's own id.
    sync(&mut anne);
    let mut fresh = device(dir.path(), "fresh", &server, &anne_id);
    sync(&mut fresh);
    let expected = PurposeConsent {
        id: ConsentId(person.id.0),
        purpose: ConsentPurpose::Recording,
        status: ConsentStatus::Given,
        date: "2026-03-04".parse().unwrap(),
        method: ConsentMethod::Written,
        recorded_by: WorkerId(anne_id.parse().unwrap()),
        scope: "deling i teamet".into(),
    };
    for tablet in [&mut anne, &mut fresh] {
        let c: Citizen = tablet.get(person.id.0).unwrap().unwrap();
        assert_eq!(c.consents, vec![expected.clone()]);
        assert_eq!(c.alias, person.alias, "every other field kept");
    }
    // Edited as a purpose on one tablet, it reaches the other and the server takes it.
    let mut withdrawn = expected.clone();
    withdrawn.status = ConsentStatus::Withdrawn;
    edit(
        &mut anne,
        person.id,
        save(PathwayItem::Consents(withdrawn.clone())),
    );
    let report = sync(&mut anne);
    assert_eq!((report.acked, report.set_aside), (1, 0), "{report:?}");
    sync(&mut fresh);
    let c: Citizen = fresh.get(person.id.0).unwrap().unwrap();
    assert_eq!(c.consents, vec![withdrawn]);
    drop(server);
    let db = rusqlite::Connection::open(data.join("feltbog-server.sqlite")).unwrap();
    let fields: Vec<String> = db
        .prepare("SELECT field FROM fields WHERE record_id = ?1 AND field LIKE 'consent%'")
        .unwrap()
        .query_map([&person.id.0.as_bytes()[..]], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(fields, vec![schema::item_field("consents", person.id.0)]);
}

#[test]
fn a_referral_made_at_a_visit_is_followed_on_the_citizens_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let team = server.admin(&["create-team", "Team Nord"]);
    let anne = worker(&server, &team, "Anne", "outreach");
    let bo = worker(&server, &team, "Bo", "outreach");
    let (a, _) = app_device(dir.path(), "anne", &server, &anne);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let citizen = a
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Kaj"})), None)
        .unwrap();
    // The visit form's referral chips and a follow-up task: task, visit and citizen saved as one.
    let visit = a
        .save_visit(&feltbog_core::app::forms::VisitInput {
            referrals: vec![Referral::Doctor, Referral::DebtCounselling],
            follow_up: Some(FollowUpInput {
                title: "Ring til lægen".into(),
                due: day(-3).to_string(),
            }),
            ..visit_form(Some(citizen), "Ondt i ryggen, gæld til boligselskabet")
        })
        .unwrap();
    let page = a.citizen(citizen).unwrap();
    let mut made: Vec<(Referral, Option<uuid::Uuid>, ReferralOutcome)> = page
        .pathway
        .referrals
        .iter()
        .map(|r| (r.target, r.visit_id.map(|v| v.0), r.outcome))
        .collect();
    made.sort();
    assert_eq!(
        made,
        vec![
            (
                Referral::DebtCounselling,
                Some(visit),
                ReferralOutcome::Waiting
            ),
            (Referral::Doctor, Some(visit), ReferralOutcome::Waiting),
        ]
    );
    // The server takes all three in order; a colleague follows one up to its outcome.
    a.sync_once(&|_| {}).unwrap();
    assert_eq!(a.sync_bar().only_here, 0, "nothing unsent or refused");
    b.sync_once(&|_| {}).unwrap();
    let seen = b.citizen(citizen).unwrap();
    let mut doctor = seen
        .pathway
        .referrals
        .iter()
        .find(|r| r.target == Referral::Doctor)
        .expect("the colleague sees the referral")
        .clone();
    doctor.outcome = ReferralOutcome::Accepted;
    doctor.outcome_date = Some(day(0));
    b.save_pathway(citizen, &save(PathwayItem::Referrals(doctor.clone())))
        .unwrap();
    b.sync_once(&|_| {}).unwrap();
    a.sync_once(&|_| {}).unwrap();
    let page = a.citizen(citizen).unwrap();
    assert!(
        page.pathway.referrals.contains(&doctor),
        "the outcome reached Anne"
    );
    // A visit without referrals leaves the citizen's record alone.
    let before = a.sync_bar().unsynced;
    a.save_visit(&visit_form(Some(citizen), "Kaffe")).unwrap();
    assert_eq!(a.sync_bar().unsynced, before + 1, "the visit only");
}
