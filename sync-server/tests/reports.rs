//! Supervisors' reports (issue 15): each report's figures against a generated dataset synced
//! through the real server, with the expected values computed here from the dataset itself,
//! not by the report's code; the housing report from a scripted history of moves.

mod common;

use chrono::{Datelike, Duration, Utc};
use common::*;
use feltbog_core::app::forms::VisitInput;
use feltbog_core::domain::{Referral, Theme, VisitKind};
use feltbog_server::reports::{self, Count, Filter, Period};
use feltbog_server::storage::Transact;
use std::collections::{BTreeMap, BTreeSet};

/// One generated visit, as the test knows it.
struct Made {
    citizen: Option<uuid::Uuid>,
    anonymous: u64,
    day: chrono::NaiveDate,
    kind: VisitKind,
    themes: Vec<Theme>,
    referrals: Vec<Referral>,
    wellbeing: Option<u8>,
}

/// A small deterministic generator (the dataset must be the same on every run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn the_contacts_report_counts_what_was_logged_in_the_period_and_the_teams_and_hides_small_cells() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let bo = worker(&server, &syd, "Bo", "outreach");
    let (a, _) = app_device(dir.path(), "anna", &server, &anna);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let citizens: Vec<uuid::Uuid> = (0..14)
        .map(|i| {
            a.save_citizen(
                &citizen_form(serde_json::json!({"alias": format!("Borger {i}")})),
                None,
            )
            .unwrap()
        })
        .collect();
    let syd_citizen = b
        .save_citizen(&citizen_form(serde_json::json!({"alias": "Syd"})), None)
        .unwrap();

    let kinds = [
        VisitKind::HomeVisit,
        VisitKind::StreetContact,
        VisitKind::Phone,
        VisitKind::EscortToAppointment,
    ];
    let themes = [
        Theme::Housing,
        Theme::MentalHealth,
        Theme::SubstanceUse,
        Theme::Crisis,
    ];
    let referrals = [
        Referral::Doctor,
        Referral::HousingSupport,
        Referral::Shelter,
    ];
    let today = Utc::now().date_naive();
    let first = today - Duration::days(48);
    let mut rng = Lcg(14);
    let mut made = Vec::new();
    for _ in 0..90 {
        let anonymous = rng.below(4) == 0;
        // The first citizens are met often, the last ones rarely.
        let often = rng.below(14) + 1;
        let who = citizens[rng.below(often) as usize];
        let visit = Made {
            citizen: (!anonymous).then_some(who),
            anonymous: if anonymous { rng.below(3) + 1 } else { 0 },
            day: first + Duration::days(rng.below(48) as i64),
            kind: kinds[rng.below(kinds.len() as u64) as usize],
            themes: themes
                .iter()
                .filter(|_| rng.below(3) == 0)
                .copied()
                .collect(),
            referrals: referrals
                .iter()
                .filter(|_| rng.below(6) == 0)
                .copied()
                .collect(),
            wellbeing: (rng.below(2) == 0).then(|| rng.below(10) as u8 + 1),
        };
        let at = visit.day.and_hms_opt(10, 0, 0).unwrap().and_utc();
        a.save_visit(&VisitInput {
            citizen_id: visit.citizen,
            anonymous_count: anonymous.then_some(visit.anonymous as u16),
            kind: visit.kind,
            started_at_ms: Some(at.timestamp_millis()),
            themes: visit.themes.clone(),
            referrals: visit.referrals.clone(),
            wellbeing: visit.wellbeing,
            ..visit_form(visit.citizen, "Notat med CPR 010190-1234 og navn")
        })
        .unwrap();
        made.push(visit);
    }
    // Another team's contact in the period: never in Team Nord's report.
    b.save_visit(&visit_form(Some(syd_citizen), "Syd")).unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();

    let period = Period::new(first + Duration::days(7), today).unwrap();
    let mut conn = server_db(&dir.path().join("server"));
    reports::refresh(&mut conn).unwrap();
    let team = nord.parse().unwrap();
    let filter = Filter {
        period,
        teams: vec![team],
    };
    let report = conn.read(|db| reports::contacts(db, &filter)).unwrap();

    // The expected figures, from the dataset.
    let inside: Vec<&Made> = made
        .iter()
        .filter(|m| (period.from..=period.to).contains(&m.day))
        .collect();
    let people = |ms: &[&Made]| -> u64 {
        let citizens: BTreeSet<_> = ms.iter().filter_map(|m| m.citizen).collect();
        citizens.len() as u64 + ms.iter().map(|m| m.anonymous).sum::<u64>()
    };
    let total_people = people(&inside);
    assert!(
        total_people >= 5,
        "the dataset reaches enough people to show totals"
    );
    assert_eq!(report.contacts, Count::Shown(inside.len() as u64));
    assert_eq!(report.people, Count::Shown(total_people));
    let citizens_met: BTreeSet<_> = inside.iter().filter_map(|m| m.citizen).collect();
    assert_eq!(report.citizens, Count::Shown(citizens_met.len() as u64));
    // Every citizen was registered today, inside the period.
    assert_eq!(report.new_citizens, Count::Shown(citizens.len() as u64));
    let anonymous: u64 = inside.iter().map(|m| m.anonymous).sum();
    assert_eq!(
        report.anonymous_people,
        if anonymous >= 5 {
            Count::Shown(anonymous)
        } else {
            Count::Hidden
        }
    );

    /// A breakdown's keys by their wire names (`home_visit`, `2026-W49`).
    fn named<K: serde::Serialize>(rows: &[reports::Row<K>]) -> Vec<reports::Row<String>> {
        rows.iter()
            .map(|r| reports::Row {
                key: name(&r.key),
                count: r.count,
                people: r.people,
            })
            .collect()
    }
    let tally = |key: &dyn Fn(&Made) -> Vec<String>| -> BTreeMap<String, (u64, u64)> {
        let mut groups: BTreeMap<String, Vec<&Made>> = BTreeMap::new();
        for m in &inside {
            for k in key(m) {
                groups.entry(k).or_default().push(m);
            }
        }
        groups
            .into_iter()
            .map(|(k, ms)| (k, (ms.len() as u64, people(&ms))))
            .collect()
    };
    check(
        named(&report.by_week),
        tally(&|m| {
            let w = m.day.iso_week();
            vec![format!("{}-W{:02}", w.year(), w.week())]
        }),
    );
    check(
        named(&report.by_month),
        tally(&|m| vec![format!("{}-{:02}", m.day.year(), m.day.month())]),
    );
    check(named(&report.by_kind), tally(&|m| vec![name(&m.kind)]));
    // One worker logged every contact; no citizen has a site.
    let by_worker: Vec<_> = report
        .by_worker
        .iter()
        .map(|r| (r.key.clone(), r.count))
        .collect();
    assert_eq!(
        by_worker,
        [(Some("Anna".to_owned()), Count::Shown(inside.len() as u64))]
    );
    let by_site: Vec<_> = report
        .by_site
        .iter()
        .map(|r| (r.key.clone(), r.count))
        .collect();
    assert_eq!(by_site, [(None, Count::Shown(inside.len() as u64))]);
    check(
        named(&report.by_theme),
        tally(&|m| m.themes.iter().map(name).collect()),
    );
    let referred = conn.read(|db| reports::referrals(db, &filter)).unwrap();
    check(
        named(&referred.by_target),
        tally(&|m| m.referrals.iter().map(name).collect()),
    );
    let with_referral: Vec<&Made> = inside
        .iter()
        .copied()
        .filter(|m| !m.referrals.is_empty())
        .collect();
    let referral_count: usize = with_referral.iter().map(|m| m.referrals.len()).sum();
    assert_eq!(
        (referred.referrals, referred.people),
        (
            Count::Shown(referral_count as u64),
            Count::Shown(people(&with_referral))
        )
    );

    // Wellbeing: the mean of the scores by month, where five or more people are behind it.
    let wellbeing = conn.read(|db| reports::wellbeing(db, &filter)).unwrap();
    let scored: Vec<&Made> = inside
        .iter()
        .copied()
        .filter(|m| m.wellbeing.is_some())
        .collect();
    let mean = |ms: &[&Made]| {
        let sum: u64 = ms.iter().map(|m| u64::from(m.wellbeing.unwrap())).sum();
        (sum as f64 / ms.len() as f64 * 10.0).round() / 10.0
    };
    assert_eq!(wellbeing.scores, Count::Shown(scored.len() as u64));
    assert_eq!(wellbeing.mean, Some(mean(&scored)));
    let mut months: BTreeMap<String, Vec<&Made>> = BTreeMap::new();
    for m in &scored {
        months
            .entry(format!("{}-{:02}", m.day.year(), m.day.month()))
            .or_default()
            .push(m);
    }
    assert_eq!(
        wellbeing
            .by_month
            .iter()
            .map(|r| r.month.clone())
            .collect::<Vec<_>>(),
        months.keys().cloned().collect::<Vec<_>>()
    );
    for row in &wellbeing.by_month {
        let ms = &months[&row.month];
        match row.people {
            Count::Shown(p) => {
                assert_eq!(p, people(ms));
                assert_eq!(row.scores, Count::Shown(ms.len() as u64));
                assert_eq!(row.mean, Some(mean(ms)), "{}", row.month);
            }
            Count::Hidden => assert_eq!(row.mean, None, "a hidden month shows no mean"),
        }
    }

    // The report rows follow the change log: a contact logged since the last report, then
    // corrected to a day before the period (the incremental path of `refresh`).
    let extra = a
        .save_visit(&visit_form(Some(citizens[0]), "Senere"))
        .unwrap();
    a.sync_once(&|_| {}).unwrap();
    reports::refresh(&mut conn).unwrap();
    let later = conn.read(|db| reports::contacts(db, &filter)).unwrap();
    assert_eq!(later.contacts, Count::Shown(inside.len() as u64 + 1));
    let shown = a.citizen(citizens[0]).unwrap().visits;
    let from = visit_edit_of(shown.iter().find(|v| v.id == extra).unwrap());
    let before_period = (period.from - Duration::days(1))
        .and_hms_opt(9, 0, 0)
        .unwrap();
    let moved = feltbog_core::app::forms::VisitEdit {
        started_at_ms: before_period.and_utc().timestamp_millis(),
        ..from.clone()
    };
    a.edit_visit(extra, &moved, &from).unwrap();
    a.sync_once(&|_| {}).unwrap();
    reports::refresh(&mut conn).unwrap();
    let corrected = conn.read(|db| reports::contacts(db, &filter)).unwrap();
    assert_eq!(corrected.contacts, Count::Shown(inside.len() as u64));

    // A team that met one citizen: every figure is hidden, totals included.
    let small_team = Filter {
        period,
        teams: vec![syd.parse().unwrap()],
    };
    let small = conn.read(|db| reports::contacts(db, &small_team)).unwrap();
    assert_eq!(
        (small.contacts, small.people, small.citizens),
        (Count::Hidden, Count::Hidden, Count::Hidden)
    );
    assert!(
        small
            .by_kind
            .iter()
            .all(|r| r.people == Count::Hidden && r.count == Count::Hidden)
    );

    // Counts only: nothing personal in the report.
    let mut text = serde_json::to_string(&report).unwrap();
    for kind in reports::ReportKind::ALL {
        text += &serde_json::to_string(
            &conn
                .read(|db| reports::run(db, kind, &filter, Utc::now()))
                .unwrap(),
        )
        .unwrap();
    }
    for marker in ["Borger", "010190", "CPR", "Notat", "Syd"] {
        assert!(!text.contains(marker), "the report holds {marker}");
    }
    for c in &citizens {
        assert!(
            !text.contains(&c.to_string()),
            "the report names a citizen's id"
        );
    }
}

/// Housing transitions come from the history of the field, not its current value: six
/// citizens move street → shelter, five of them on to alternative housing and one of those on
/// to an own rental, all today; yesterday nothing happened. Follow-ups and open conflicts are
/// counted from the same team.
#[test]
fn housing_moves_follow_ups_and_open_conflicts_are_counted_from_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let (a, _) = app_device(dir.path(), "anna", &server, &anna);
    let (a2, _) = app_device(dir.path(), "anna2", &server, &anna);
    let form = |i: usize, housing: &str, id: Option<uuid::Uuid>| {
        citizen_form(
            serde_json::json!({"id": id, "alias": format!("Borger {i}"), "housing": housing}),
        )
    };
    let script: [&[&str]; 6] = [
        &["street", "shelter", "alternative_housing", "own_rental"],
        &["street", "shelter", "alternative_housing"],
        &["street", "shelter", "alternative_housing"],
        &["street", "shelter", "alternative_housing"],
        &["street", "shelter", "alternative_housing"],
        &["street", "shelter"],
    ];
    let mut ids = Vec::new();
    for (i, moves) in script.iter().enumerate() {
        let id = a.save_citizen(&form(i, moves[0], None), None).unwrap();
        for pair in moves.windows(2) {
            a.save_citizen(
                &form(i, pair[1], Some(id)),
                Some(&form(i, pair[0], Some(id))),
            )
            .unwrap();
        }
        ids.push(id);
    }
    // Follow-ups: each citizen has one due in a week; the first three are done now.
    let today = Utc::now().date_naive();
    let due = today + Duration::days(7);
    let tasks: Vec<uuid::Uuid> = ids
        .iter()
        .map(|c| {
            a.save_task(&feltbog_core::app::forms::TaskInput {
                citizen_id: *c,
                title: "Ring til udlejer".into(),
                due: due.to_string(),
            })
            .unwrap()
        })
        .collect();
    for t in &tasks[..3] {
        a.set_task_status(*t, feltbog_core::domain::TaskStatus::Done)
            .unwrap();
    }
    // One open free-text conflict: the same note edited on two tablets.
    let visit = a.save_visit(&visit_form(Some(ids[0]), "Første")).unwrap();
    a.sync_once(&|_| {}).unwrap();
    a2.sync_once(&|_| {}).unwrap();
    for (app, note) in [(&a, "Version A"), (&a2, "Version B")] {
        let shown = app.citizen(ids[0]).unwrap().visits;
        let mut edit = visit_edit_of(shown.iter().find(|v| v.id == visit).unwrap());
        let before = edit.clone();
        edit.note = note.into();
        app.edit_visit(visit, &edit, &before).unwrap();
    }
    a.sync_once(&|_| {}).unwrap();
    a2.sync_once(&|_| {}).unwrap();

    let mut conn = server_db(&dir.path().join("server"));
    reports::refresh(&mut conn).unwrap();
    let team = vec![nord.parse().unwrap()];
    let on = |from, to| Filter {
        period: Period::new(from, to).unwrap(),
        teams: team.clone(),
    };
    let housing = conn
        .read(|db| reports::housing(db, &on(today, today), today))
        .unwrap();
    // The expected moves, from the script.
    let mut moves: BTreeMap<(String, String), (u64, BTreeSet<usize>)> = BTreeMap::new();
    for (i, m) in script.iter().enumerate() {
        for pair in m.windows(2) {
            let e = moves.entry((pair[0].into(), pair[1].into())).or_default();
            e.0 += 1;
            e.1.insert(i);
        }
    }
    let shown: BTreeMap<(String, String), (Count, Count)> = housing
        .moves
        .iter()
        .map(|r| ((name(&r.key.from), name(&r.key.to)), (r.count, r.people)))
        .collect();
    assert_eq!(
        shown.keys().collect::<Vec<_>>(),
        moves.keys().collect::<Vec<_>>()
    );
    // One move is made by a single citizen, so the next smallest (shelter → alternative
    // housing, five citizens) is hidden with it; street → shelter (six) shows.
    let smallest_other = moves
        .iter()
        .filter(|(_, (_, p))| p.len() >= 5)
        .min_by_key(|(_, (_, p))| p.len())
        .map(|(k, _)| k.clone());
    for (k, (count, people)) in &moves {
        let hidden = people.len() < 5 || Some(k) == smallest_other.as_ref();
        let expected = if hidden {
            (Count::Hidden, Count::Hidden)
        } else {
            (Count::Shown(*count), Count::Shown(people.len() as u64))
        };
        assert_eq!(shown[k], expected, "{k:?}");
    }
    assert_eq!(
        shown[&("street".into(), "shelter".into())],
        (Count::Shown(6), Count::Shown(6)),
        "a move read from the history: nobody is in a shelter now"
    );
    assert_eq!(housing.people_moved, Count::Shown(6));
    assert!(
        housing.at_start.is_empty(),
        "nobody was recorded before today"
    );
    let at_end: BTreeMap<String, Count> = housing
        .at_end
        .iter()
        .map(|r| (name(&r.key), r.people))
        .collect();
    assert_eq!(
        at_end["alternative_housing"],
        Count::Hidden,
        "four, and one own rental beside"
    );
    assert_eq!(at_end.len(), 3);
    // Yesterday: no history yet.
    let yesterday = today - Duration::days(1);
    let before = conn
        .read(|db| reports::housing(db, &on(yesterday, yesterday), today))
        .unwrap();
    assert!(before.moves.is_empty() && before.at_end.is_empty());
    assert_eq!(before.people_moved, Count::Hidden);

    // Follow-ups due in the period: three done on time, three still open; a week on, those
    // three are overdue.
    let follow = |conn: &mut feltbog_server::storage::Database, as_of| {
        let r = conn
            .read(|db| reports::follow_ups(db, &on(today, due), as_of))
            .unwrap();
        r.by_outcome
            .iter()
            .map(|r| (r.key.clone(), r.count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        follow(&mut conn, today),
        [
            ("done_on_time".to_owned(), Count::Hidden),
            ("open".to_owned(), Count::Hidden)
        ],
        "three citizens each: hidden"
    );
    let r = conn
        .read(|db| reports::follow_ups(db, &on(today, due), today))
        .unwrap();
    assert_eq!((r.due, r.people), (Count::Shown(6), Count::Shown(6)));
    let late = due + Duration::days(1);
    let keys: Vec<String> = follow(&mut conn, late)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["done_on_time", "overdue"]);

    // The conflict: open, waiting for a person, under a day old.
    let conflicts = conn
        .read(|db| reports::conflicts(db, &on(today, today), Utc::now()))
        .unwrap();
    assert_eq!((conflicts.open, conflicts.awaiting_decision), (1, 1));
    assert_eq!(conflicts.by_age[0].age, "under_1_day");
    assert_eq!(conflicts.by_age[0].open, 1);
}

// Each breakdown: every shown row exact; a hidden row has fewer than 5 people, or is the
// one row hidden with a single small row; never exactly one hidden row.
fn check(mut rows: Vec<reports::Row<String>>, expected: BTreeMap<String, (u64, u64)>) {
    rows.sort_by(|x, y| x.key.cmp(&y.key));
    let keys: Vec<&String> = rows.iter().map(|r| &r.key).collect();
    assert_eq!(keys, expected.keys().collect::<Vec<_>>());
    let small = expected.values().filter(|(_, p)| *p < 5).count();
    let hidden = rows.iter().filter(|r| r.people == Count::Hidden).count();
    assert_ne!(hidden, 1, "a single hidden row could be read off the total");
    for row in &rows {
        let (contacts, people) = expected[&row.key];
        match row.people {
            Count::Shown(p) => {
                assert!(people >= 5, "{} shows {p} people", row.key);
                assert_eq!((row.count, p), (Count::Shown(contacts), people));
            }
            Count::Hidden => {
                assert_eq!(row.count, Count::Hidden);
                assert!(people < 5 || small == 1, "{} hidden with {people}", row.key);
            }
        }
    }
}

/// A value's wire name (`street`).
fn name<K: serde::Serialize>(k: &K) -> String {
    serde_json::to_value(k)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// The pathway's reports (issue 17), against a generated dataset saved through the app's own
/// pathway form and synced: homes kept at 3, 6 and 12 months from the dated housing history,
/// courses started, ended (by how) and running, and followed referrals by outcome. The
/// expected values are computed here from what was generated; another team's citizens never
/// count.
#[test]
fn pathway_reports_count_kept_homes_courses_and_referral_outcomes_from_what_was_recorded() {
    use feltbog_core::app::forms::{PathwayEdit, PathwayItem};
    use feltbog_core::domain::*;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"));
    let nord = server.admin(&["create-team", "Team Nord"]);
    let syd = server.admin(&["create-team", "Team Syd"]);
    let anna = worker(&server, &nord, "Anna", "outreach");
    let bo = worker(&server, &syd, "Bo", "outreach");
    let (a, _) = app_device(dir.path(), "anna", &server, &anna);
    let (b, _) = app_device(dir.path(), "bo", &server, &bo);
    let today = Utc::now().date_naive();
    let ago = |days: u64| today - Duration::days(days as i64);
    let save = |app: &feltbog_core::app::App, c: uuid::Uuid, item: PathwayItem| {
        app.save_pathway(
            c,
            &PathwayEdit::Save {
                item,
                follow_up: None,
            },
        )
        .unwrap();
    };
    let situations = HousingSituation::OFFERED;
    let mut rng = Lcg(17);
    let mut histories: Vec<Vec<HousingChange>> = Vec::new();
    let mut courses: Vec<Vec<Course>> = Vec::new();
    let mut referrals: Vec<Vec<ReferralCase>> = Vec::new();
    for i in 0..40 {
        let (app, mine) = if i < 34 { (&a, true) } else { (&b, false) };
        let c = app
            .save_citizen(
                &citizen_form(serde_json::json!({"alias": format!("B{i}")})),
                None,
            )
            .unwrap();
        let mut history = Vec::new();
        let mut day = ago(700);
        for _ in 0..rng.below(5) + 1 {
            day += Duration::days(rng.below(200) as i64 + 1);
            if day > today {
                break;
            }
            // Homes are likely, so there are move-ins to measure.
            let situation = if rng.below(2) == 0 {
                [
                    HousingSituation::OwnRental,
                    HousingSituation::SupportedHousing,
                    HousingSituation::AlternativeHousing,
                ][rng.below(3) as usize]
            } else {
                situations[rng.below(situations.len() as u64) as usize]
            };
            let change = HousingChange {
                id: HousingChangeId::new(),
                from: day,
                situation,
            };
            save(app, c, PathwayItem::HousingHistory(change.clone()));
            history.push(change);
        }
        let mut kept_courses = Vec::new();
        for _ in 0..rng.below(3) {
            let started = ago(rng.below(500));
            let ended = (rng.below(2) == 0)
                .then(|| started + Duration::days(rng.below(300) as i64))
                .filter(|end| *end <= today);
            let course = Course {
                id: CourseId::new(),
                kind: CourseKind::ALL[rng.below(3) as usize],
                started,
                planned_end: None,
                ended,
                ending: ended.map(|_| CourseEnding::ALL[rng.below(3) as usize]),
                goals: BTreeSet::new(),
                note: "".into(),
            };
            save(app, c, PathwayItem::Courses(course.clone()));
            kept_courses.push(course);
        }
        let mut kept_referrals = Vec::new();
        for _ in 0..rng.below(4) {
            let made = ago(rng.below(500));
            let outcome = ReferralOutcome::ALL[rng.below(4) as usize];
            let referral = ReferralCase {
                id: ReferralCaseId::new(),
                target: Referral::CaseWorker,
                made,
                visit_id: None,
                outcome,
                outcome_date: (outcome != ReferralOutcome::Waiting).then_some(made),
                follow_up: None,
                note: "".into(),
            };
            save(app, c, PathwayItem::Referrals(referral.clone()));
            kept_referrals.push(referral);
        }
        if mine {
            histories.push(history);
            courses.push(kept_courses);
            referrals.push(kept_referrals);
        }
    }
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();

    let mut conn = server_db(&dir.path().join("server"));
    reports::refresh(&mut conn).unwrap();
    let period = Period::new(ago(365), today).unwrap();
    let filter = Filter {
        period,
        teams: vec![nord.parse().unwrap()],
    };
    let inside = |d: chrono::NaiveDate| d >= period.from && d <= period.to;
    // Entries and the citizens behind them, per key.
    let mut groups: BTreeMap<&str, BTreeMap<String, (u64, BTreeSet<usize>)>> = BTreeMap::new();
    let mut add = |table: &'static str, key: String, who: usize| {
        let e = groups.entry(table).or_default().entry(key).or_default();
        e.0 += 1;
        e.1.insert(who);
    };
    let home = |s: HousingSituation| {
        matches!(
            s,
            HousingSituation::OwnRental
                | HousingSituation::SupportedHousing
                | HousingSituation::AlternativeHousing
        )
    };
    for (who, history) in histories.iter().enumerate() {
        // The history was generated in date order; a move-in is a home after no home.
        let mut housed = false;
        for (i, change) in history.iter().enumerate() {
            if home(change.situation) && !housed {
                for months in [3u32, 6, 12] {
                    let due = change
                        .from
                        .checked_add_months(chrono::Months::new(months))
                        .unwrap();
                    if !inside(due) || due > today {
                        continue;
                    }
                    let lost = history[i + 1..]
                        .iter()
                        .any(|later| later.from <= due && !home(later.situation));
                    add(
                        "kept",
                        format!("{months}_{}", if lost { "lost" } else { "kept" }),
                        who,
                    );
                }
            }
            housed = home(change.situation);
        }
    }
    for (who, list) in courses.iter().enumerate() {
        for c in list {
            if inside(c.started) {
                add("started", name(&c.kind), who);
            }
            if let (Some(end), Some(ending)) = (c.ended, c.ending)
                && inside(end)
            {
                add("ended", name(&ending), who);
            }
            if c.started <= today && c.ended.is_none_or(|e| e > today) {
                add("running", name(&c.kind), who);
            }
        }
    }
    for (who, list) in referrals.iter().enumerate() {
        for r in list.iter().filter(|r| inside(r.made)) {
            add("outcome", name(&r.outcome), who);
        }
    }
    let expected = |table: &str| -> BTreeMap<String, (u64, u64)> {
        groups
            .get(table)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, (n, people))| (k, (n, people.len() as u64)))
            .collect()
    };
    let housing = conn
        .read(|db| reports::housing(db, &filter, today))
        .unwrap();
    assert!(
        !housing.kept_home.is_empty(),
        "the dataset measures some homes"
    );
    check(housing.kept_home, expected("kept"));
    let report = conn.read(|db| reports::courses(db, &filter)).unwrap();
    check(report.started_by_kind, expected("started"));
    check(report.ended_by_ending, expected("ended"));
    check(report.running_by_kind, expected("running"));
    let total = |table: &str| {
        let e = expected(table);
        let people: BTreeSet<usize> = groups
            .get(table)
            .map(|g| g.values().flat_map(|(_, p)| p.iter().copied()).collect())
            .unwrap_or_default();
        (e.values().map(|(n, _)| n).sum::<u64>(), people.len() as u64)
    };
    let (started, started_people) = total("started");
    assert_eq!(report.started, Count::Shown(started));
    assert_eq!(report.started_people, Count::Shown(started_people));
    let refs = conn.read(|db| reports::referrals(db, &filter)).unwrap();
    check(refs.by_outcome, expected("outcome"));
    let (followed, followed_people) = total("outcome");
    assert_eq!(
        (refs.followed, refs.followed_people),
        (Count::Shown(followed), Count::Shown(followed_people))
    );
}
