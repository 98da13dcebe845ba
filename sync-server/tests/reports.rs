//! Supervisors' reports (issue 15, first slice): the contacts report's figures against a
//! generated dataset synced through the real server, with the expected values computed here
//! from the dataset itself, not by the report's code.

mod common;

use chrono::{Datelike, Duration, Utc};
use common::*;
use feltbog_core::app::forms::VisitInput;
use feltbog_core::domain::{Referral, Theme, VisitKind};
use feltbog_server::reports::{self, Count, Period};
use std::collections::{BTreeMap, BTreeSet};

/// One generated visit, as the test knows it.
struct Made {
    citizen: Option<uuid::Uuid>,
    anonymous: u64,
    day: chrono::NaiveDate,
    kind: VisitKind,
    themes: Vec<Theme>,
    referrals: Vec<Referral>,
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
        };
        let at = visit.day.and_hms_opt(10, 0, 0).unwrap().and_utc();
        a.save_visit(&VisitInput {
            citizen_id: visit.citizen,
            anonymous_count: anonymous.then_some(visit.anonymous as u16),
            kind: visit.kind,
            started_at_ms: Some(at.timestamp_millis()),
            themes: visit.themes.clone(),
            referrals: visit.referrals.clone(),
            ..visit_form(visit.citizen, "Notat med CPR 010190-1234 og navn")
        })
        .unwrap();
        made.push(visit);
    }
    // Another team's contact in the period: never in Team Nord's report.
    b.save_visit(&visit_form(Some(syd_citizen), "Syd")).unwrap();
    a.sync_once(&|_| {}).unwrap();
    b.sync_once(&|_| {}).unwrap();

    let period = Period {
        from: first + Duration::days(7),
        to: today,
    };
    let conn = rusqlite::Connection::open(dir.path().join("server/feltbog-server.sqlite")).unwrap();
    let team = nord.parse().unwrap();
    let report = reports::contacts(&conn, &[team], period).unwrap();

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
    let anonymous: u64 = inside.iter().map(|m| m.anonymous).sum();
    assert_eq!(
        report.anonymous_people,
        if anonymous >= 5 {
            Count::Shown(anonymous)
        } else {
            Count::Hidden
        }
    );

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
                    assert_eq!((row.contacts, p), (Count::Shown(contacts), people));
                }
                Count::Hidden => {
                    assert_eq!(row.contacts, Count::Hidden);
                    assert!(people < 5 || small == 1, "{} hidden with {people}", row.key);
                }
            }
        }
    }
    /// A breakdown's keys by their wire names (`home_visit`, `2026-W49`).
    fn named<K: serde::Serialize>(rows: &[reports::Row<K>]) -> Vec<reports::Row<String>> {
        rows.iter()
            .map(|r| reports::Row {
                key: name(&r.key),
                contacts: r.contacts,
                people: r.people,
            })
            .collect()
    }
    fn name<K: serde::Serialize>(k: &K) -> String {
        serde_json::to_value(k)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
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
    check(named(&report.by_kind), tally(&|m| vec![name(&m.kind)]));
    check(
        named(&report.by_theme),
        tally(&|m| m.themes.iter().map(name).collect()),
    );
    check(
        named(&report.by_referral),
        tally(&|m| m.referrals.iter().map(name).collect()),
    );

    // A team that met one citizen: every figure is hidden, totals included.
    let small = reports::contacts(&conn, &[syd.parse().unwrap()], period).unwrap();
    assert_eq!(
        (small.contacts, small.people, small.citizens),
        (Count::Hidden, Count::Hidden, Count::Hidden)
    );
    assert!(
        small
            .by_kind
            .iter()
            .all(|r| r.people == Count::Hidden && r.contacts == Count::Hidden)
    );

    // Counts only: nothing personal in the report.
    let text = serde_json::to_string(&report).unwrap();
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
