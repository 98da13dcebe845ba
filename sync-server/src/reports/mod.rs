//! Reports for supervisors (issue 15): one function per report, over the merged data the server
//! holds, for a [`Filter`] (a period and the teams the reader may see). The SQL they read
//! through lives in `data`; the CSV and Excel forms in [`export`]. See `docs/reports.md`.
//!
//! **Privacy by default.** A report holds counts only: no names of citizens, CPR, phone
//! numbers or notes, and no ids. A count of people under [`MIN_PEOPLE`] is shown as `"<5"`
//! (the discretion rule Danish statistics use), and the row's other count with it. Where a
//! breakdown hides exactly one row, the smallest other row is hidden too, so its total cannot
//! reveal the hidden one by subtraction (`suppress`). Totals under the rule are hidden
//! themselves. Sites and workers are named: they are places and staff, not the people served.

mod data;
pub mod export;

pub use data::refresh;
pub(crate) use data::worker_names;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use feltbog_core::domain::{Course, HousingChange, HousingSituation, ReferralCase, TaskStatus};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// People counts under this are not shown.
pub const MIN_PEOPLE: u64 = 5;

/// The longest period one report covers (about five years): bounds the work of one request.
pub const MAX_PERIOD_DAYS: i64 = 5 * 366;

/// Report failures. Messages name no value read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report database: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("the database holds a malformed {0}")]
    Corrupt(&'static str),
    #[error("{0}")]
    BadFilter(&'static str),
    #[error("the report could not be written as a file")]
    Export,
}

/// The days a report covers, both included (UTC dates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// A period of at most [`MAX_PERIOD_DAYS`], `from` not after `to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, ReportError> {
        if from > to {
            return Err(ReportError::BadFilter("the period ends before it starts"));
        }
        if (to - from).num_days() >= MAX_PERIOD_DAYS {
            return Err(ReportError::BadFilter(
                "the period is longer than five years",
            ));
        }
        Ok(Period { from, to })
    }

    fn holds(&self, at: DateTime<Utc>) -> bool {
        self.holds_day(at.date_naive())
    }

    fn holds_day(&self, day: NaiveDate) -> bool {
        (self.from..=self.to).contains(&day)
    }

    /// The first instant after the period.
    fn end(&self) -> DateTime<Utc> {
        (self.to + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    }

    fn start(&self) -> DateTime<Utc> {
        self.from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }
}

/// What a report covers: a period and teams the reader may read (checked by the caller,
/// `dashboard::reader_teams`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Filter {
    pub period: Period,
    pub teams: Vec<Uuid>,
}

/// The reports there are, by their stable names (routes, audit rows, exports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Contacts,
    Referrals,
    FollowUps,
    Housing,
    Wellbeing,
    Conflicts,
    Courses,
}

impl ReportKind {
    pub const ALL: [ReportKind; 7] = [
        ReportKind::Contacts,
        ReportKind::Referrals,
        ReportKind::FollowUps,
        ReportKind::Housing,
        ReportKind::Wellbeing,
        ReportKind::Conflicts,
        ReportKind::Courses,
    ];

    /// The stable name, as in routes and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Contacts => "contacts",
            ReportKind::Referrals => "referrals",
            ReportKind::FollowUps => "follow_ups",
            ReportKind::Housing => "housing",
            ReportKind::Wellbeing => "wellbeing",
            ReportKind::Conflicts => "conflicts",
            ReportKind::Courses => "courses",
        }
    }

    pub fn parse(name: &str) -> Option<ReportKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A count in a report: shown, or hidden under the discretion rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Shown(u64),
    /// Fewer than [`MIN_PEOPLE`] people, or hidden so that another such cell stays hidden.
    Hidden,
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Count::Shown(n) => s.serialize_u64(*n),
            Count::Hidden => s.serialize_str("<5"),
        }
    }
}

/// One row of a breakdown: how many entries (contacts, referrals, tasks, moves) and the people
/// behind them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row<K> {
    pub key: K,
    pub count: Count,
    /// Different citizens, plus the people met in anonymous contacts.
    pub people: Count,
}

/// A move from one housing situation to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Move {
    pub from: HousingSituation,
    pub to: HousingSituation,
}

/// Contacts over a period: how many, whom they reached, and by week, month, kind, theme, site
/// and worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactsReport {
    pub contacts: Count,
    pub people: Count,
    /// Different citizens met.
    pub citizens: Count,
    /// People met in anonymous contacts (a contact with three people counts three).
    pub anonymous_people: Count,
    /// Citizens registered in the period.
    pub new_citizens: Count,
    /// ISO weeks, as `2026-W49`.
    pub by_week: Vec<Row<String>>,
    /// Months, as `2026-12`.
    pub by_month: Vec<Row<String>>,
    /// Wire names (`home_visit`).
    pub by_kind: Vec<Row<String>>,
    pub by_theme: Vec<Row<String>>,
    /// The site of the citizen met (by name); `null` for contacts without a site.
    pub by_site: Vec<Row<Option<String>>>,
    /// The worker who logged the contact (by name).
    pub by_worker: Vec<Row<Option<String>>>,
}

/// Where contacts referred people on to, and how the referrals that are followed up ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReferralsReport {
    /// Referrals made (a contact with two targets counts two).
    pub referrals: Count,
    pub people: Count,
    pub by_target: Vec<Row<String>>,
    /// Referrals followed to an outcome (the pathway's), made in the period.
    pub followed: Count,
    pub followed_people: Count,
    /// Keys: the outcome's wire name (`waiting`, `accepted`, `declined_by_citizen`, `done`).
    pub by_outcome: Vec<Row<String>>,
}

/// Support courses (indsatser): started and ended in the period, and how they ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CoursesReport {
    pub started: Count,
    pub started_people: Count,
    pub ended: Count,
    pub ended_people: Count,
    /// Courses started in the period, by kind (`housing_first`).
    pub started_by_kind: Vec<Row<String>>,
    /// Courses ended in the period, by how they ended (`goals_reached`).
    pub ended_by_ending: Vec<Row<String>>,
    /// Courses running on the last day of the period, by kind.
    pub running_by_kind: Vec<Row<String>>,
}

/// Follow-up tasks due in the period: done on time, done late, overdue now, still to come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollowUpsReport {
    pub due: Count,
    pub people: Count,
    /// Keys: `done_on_time`, `done_late`, `overdue`, `open` (due later than today),
    /// `cancelled`.
    pub by_outcome: Vec<Row<String>>,
}

/// Housing over the period, from the history of each citizen's housing field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HousingReport {
    /// Citizens whose situation changed at least once in the period.
    pub people_moved: Count,
    /// Each citizen's situation at the start of the period (those recorded by then).
    pub at_start: Vec<Row<HousingSituation>>,
    /// Each citizen's situation at the end of the period.
    pub at_end: Vec<Row<HousingSituation>>,
    /// Moves in the period: `count` moves by `people` citizens.
    pub moves: Vec<Row<Move>>,
    /// Whether a home was kept 3, 6 and 12 months after moving in, for every move-in whose
    /// measure fell in the period (and by today), from the dated pathway. Keys: `3_kept`,
    /// `3_lost`, `6_kept`, … .
    pub kept_home: Vec<Row<String>>,
}

/// Wellbeing scores (1–10) recorded at contacts, by month.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WellbeingReport {
    pub scores: Count,
    pub people: Count,
    /// The mean score, hidden with the people count.
    pub mean: Option<f64>,
    pub by_month: Vec<WellbeingRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WellbeingRow {
    /// `2026-12`.
    pub month: String,
    pub scores: Count,
    pub people: Count,
    pub mean: Option<f64>,
}

/// Conflicts still open now, by age. They count records, not people, so the discretion rule
/// does not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConflictsReport {
    pub open: u64,
    /// Of those, free-text conflicts that wait for a person to decide.
    pub awaiting_decision: u64,
    /// Keys: `under_1_day`, `1_to_7_days`, `8_to_30_days`, `over_30_days`.
    pub by_age: Vec<AgeRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgeRow {
    pub age: &'static str,
    pub open: u64,
    pub awaiting_decision: u64,
}

/// The entries and people of one cell.
#[derive(Default)]
struct Tally {
    count: u64,
    citizens: BTreeSet<Uuid>,
    anonymous: u64,
}

impl Tally {
    fn add(&mut self, citizen: Option<Uuid>, anonymous: u64) {
        self.count += 1;
        if let Some(c) = citizen {
            self.citizens.insert(c);
        }
        self.anonymous += anonymous;
    }

    fn people(&self) -> u64 {
        self.citizens.len() as u64 + self.anonymous
    }
}

fn week_of(at: DateTime<Utc>) -> String {
    let week = at.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

fn month_of(at: DateTime<Utc>) -> String {
    format!("{}-{:02}", at.year(), at.month())
}

/// An enum's wire name (`home_visit`).
fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Contacts logged in the filter's teams during its period (archived visits left out).
pub fn contacts(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
) -> Result<ContactsReport, ReportError> {
    let visits = data::visits(conn, &filter.teams, &filter.period)?;
    let sites = data::citizen_sites(conn)?;
    let site_names = data::site_names(conn)?;
    let workers = data::worker_names(conn)?;
    let mut all = Tally::default();
    let mut by_week: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_theme: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_site: BTreeMap<Option<String>, Tally> = BTreeMap::new();
    let mut by_worker: BTreeMap<Option<String>, Tally> = BTreeMap::new();
    for v in visits.iter().filter(|v| filter.period.holds(v.started_at)) {
        let site = v
            .citizen
            .and_then(|c| sites.get(&c))
            .map(|s| site_names.get(s).cloned().unwrap_or_default());
        let worker = v.author.and_then(|a| workers.get(&a).cloned());
        for tally in [
            &mut all,
            by_week.entry(week_of(v.started_at)).or_default(),
            by_month.entry(month_of(v.started_at)).or_default(),
            by_kind.entry(wire(&v.kind)).or_default(),
            by_site.entry(site).or_default(),
            by_worker.entry(worker).or_default(),
        ] {
            tally.add(v.citizen, v.anonymous);
        }
        for theme in &v.themes {
            by_theme
                .entry(wire(theme))
                .or_default()
                .add(v.citizen, v.anonymous);
        }
    }
    let new = data::citizens_created(conn, &filter.teams)?
        .into_iter()
        .filter(|at| filter.period.holds(*at))
        .count() as u64;
    let people = all.people();
    let citizens = all.citizens.len() as u64;
    Ok(ContactsReport {
        contacts: shown_if(all.count, people),
        people: shown_if(people, people),
        citizens: shown_if(citizens, citizens),
        anonymous_people: shown_if(all.anonymous, all.anonymous),
        new_citizens: shown_if(new, new),
        by_week: suppress(by_week, people),
        by_month: suppress(by_month, people),
        by_kind: suppress(by_kind, people),
        by_theme: suppress(by_theme, people),
        by_site: suppress(by_site, people),
        by_worker: suppress(by_worker, people),
    })
}

/// Referrals made at contacts in the period, by target.
pub fn referrals(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
) -> Result<ReferralsReport, ReportError> {
    let mut all = Tally::default();
    let mut by_target: BTreeMap<String, Tally> = BTreeMap::new();
    for v in data::visits(conn, &filter.teams, &filter.period)?
        .iter()
        .filter(|v| filter.period.holds(v.started_at))
    {
        for target in &v.referrals {
            all.add(v.citizen, v.anonymous);
            by_target
                .entry(wire(target))
                .or_default()
                .add(v.citizen, v.anonymous);
        }
    }
    let people = all.people();
    let mut followed = Tally::default();
    let mut by_outcome: BTreeMap<String, Tally> = BTreeMap::new();
    for (i, referrals) in data::citizen_items::<ReferralCase>(conn, &filter.teams, "referrals")?
        .into_iter()
        .enumerate()
    {
        let who = Some(stand_in(i));
        for r in referrals.iter().filter(|r| filter.period.holds_day(r.made)) {
            followed.add(who, 0);
            by_outcome.entry(wire(&r.outcome)).or_default().add(who, 0);
        }
    }
    let followed_people = followed.people();
    Ok(ReferralsReport {
        referrals: shown_if(all.count, people),
        people: shown_if(people, people),
        by_target: suppress(by_target, people),
        followed: shown_if(followed.count, followed_people),
        followed_people: shown_if(followed_people, followed_people),
        by_outcome: suppress(by_outcome, followed_people),
    })
}

/// A stand-in id for the `i`th citizen a loader returned: a report needs only to tell citizens
/// apart, and no id reaches it.
fn stand_in(i: usize) -> Uuid {
    Uuid::from_u128(i as u128 + 1)
}

/// Courses started and ended in the period, by kind and by how they ended, and those running
/// on its last day.
pub fn courses(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
) -> Result<CoursesReport, ReportError> {
    let (mut started, mut ended) = (Tally::default(), Tally::default());
    let mut started_by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut ended_by_ending: BTreeMap<String, Tally> = BTreeMap::new();
    let mut running_by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let mut running = Tally::default();
    for (i, courses) in data::citizen_items::<Course>(conn, &filter.teams, "courses")?
        .into_iter()
        .enumerate()
    {
        let who = Some(stand_in(i));
        for c in &courses {
            if filter.period.holds_day(c.started) {
                started.add(who, 0);
                started_by_kind
                    .entry(wire(&c.kind))
                    .or_default()
                    .add(who, 0);
            }
            if let (Some(day), Some(ending)) = (c.ended, c.ending)
                && filter.period.holds_day(day)
            {
                ended.add(who, 0);
                ended_by_ending
                    .entry(wire(&ending))
                    .or_default()
                    .add(who, 0);
            }
            let last = filter.period.to;
            if c.started <= last && c.ended.is_none_or(|end| end > last) {
                running.add(who, 0);
                running_by_kind
                    .entry(wire(&c.kind))
                    .or_default()
                    .add(who, 0);
            }
        }
    }
    let (started_people, ended_people) = (started.people(), ended.people());
    Ok(CoursesReport {
        started: shown_if(started.count, started_people),
        started_people: shown_if(started_people, started_people),
        ended: shown_if(ended.count, ended_people),
        ended_people: shown_if(ended_people, ended_people),
        started_by_kind: suppress(started_by_kind, started_people),
        ended_by_ending: suppress(ended_by_ending, ended_people),
        running_by_kind: suppress(running_by_kind, running.people()),
    })
}

/// Whether homes were kept 3, 6 and 12 months after moving in (core's
/// [`feltbog_core::domain::pathway::kept_home`]), for each move-in whose measure day is in the
/// period and not after `today`.
fn kept_home(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
    today: NaiveDate,
) -> Result<Vec<Row<String>>, ReportError> {
    use feltbog_core::domain::pathway;
    let mut rows: BTreeMap<String, Tally> = BTreeMap::new();
    let mut measured = Tally::default();
    for (i, history) in
        data::citizen_items::<HousingChange>(conn, &filter.teams, "housing_history")?
            .into_iter()
            .enumerate()
    {
        let who = Some(stand_in(i));
        for moved_in in pathway::move_ins(&history) {
            for months in [3u32, 6, 12] {
                let Some(due) = moved_in.checked_add_months(chrono::Months::new(months)) else {
                    continue;
                };
                if !filter.period.holds_day(due) {
                    continue;
                }
                if let Some(kept) = pathway::kept_home(&history, moved_in, months, today) {
                    let key = format!("{months}_{}", if kept { "kept" } else { "lost" });
                    rows.entry(key).or_default().add(who, 0);
                    measured.add(who, 0);
                }
            }
        }
    }
    // Keys in the order a reader expects: 3, 6, 12 months; kept before lost.
    let mut out = suppress(rows, measured.people());
    out.sort_by_key(|r| {
        let (months, outcome) = r.key.split_once('_').unwrap_or_default();
        (months.parse::<u32>().unwrap_or(0), outcome != "kept")
    });
    Ok(out)
}

/// Follow-ups due in the period, by outcome as of `today`. A task done on or before its due
/// day (by the clock of the device that marked it) is on time.
pub fn follow_ups(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
    today: NaiveDate,
) -> Result<FollowUpsReport, ReportError> {
    let mut all = Tally::default();
    let mut by_outcome: BTreeMap<String, Tally> = BTreeMap::new();
    for t in data::tasks(conn, &filter.teams)?
        .iter()
        .filter(|t| filter.period.holds_day(t.due))
    {
        let outcome = outcome(t.status, t.status_at, t.due, today);
        all.add(Some(t.citizen), 0);
        by_outcome
            .entry(outcome.to_owned())
            .or_default()
            .add(Some(t.citizen), 0);
    }
    let people = all.people();
    Ok(FollowUpsReport {
        due: shown_if(all.count, people),
        people: shown_if(people, people),
        by_outcome: suppress(by_outcome, people),
    })
}

/// Where one follow-up stands: done on or before its due day (by the clock of the device that
/// marked it) is on time; open past its due day is overdue.
fn outcome(
    status: TaskStatus,
    status_at: DateTime<Utc>,
    due: NaiveDate,
    today: NaiveDate,
) -> &'static str {
    match status {
        TaskStatus::Done if status_at.date_naive() <= due => "done_on_time",
        TaskStatus::Done => "done_late",
        TaskStatus::Cancelled => "cancelled",
        TaskStatus::Open if due < today => "overdue",
        TaskStatus::Open => "open",
    }
}

/// Housing over the period from each citizen's history of the field: where they stood at its
/// start and end, and every move inside it.
pub fn housing(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
    today: NaiveDate,
) -> Result<HousingReport, ReportError> {
    let (start, end) = (filter.period.start(), filter.period.end());
    let mut at_start: BTreeMap<HousingSituation, Tally> = BTreeMap::new();
    let mut at_end: BTreeMap<HousingSituation, Tally> = BTreeMap::new();
    let mut moves: BTreeMap<Move, Tally> = BTreeMap::new();
    let mut moved = Tally::default();
    for (i, history) in data::housing_histories(conn, &filter.teams)?
        .into_iter()
        .enumerate()
    {
        // A stand-in id: the report needs only to tell citizens apart.
        let who = Some(stand_in(i));
        let before = |limit: DateTime<Utc>| history.iter().rev().find(|(at, _)| *at < limit);
        if let Some((_, s)) = before(start) {
            at_start.entry(*s).or_default().add(who, 0);
        }
        if let Some((_, s)) = before(end) {
            at_end.entry(*s).or_default().add(who, 0);
        }
        let mut moved_here = false;
        for pair in history.windows(2) {
            let ((_, from), (at, to)) = (pair[0], pair[1]);
            if from != to && at >= start && at < end {
                moves.entry(Move { from, to }).or_default().add(who, 0);
                moved_here = true;
            }
        }
        if moved_here {
            moved.add(who, 0);
        }
    }
    let start_people = at_start.values().map(Tally::people).sum();
    let end_people = at_end.values().map(Tally::people).sum();
    let people_moved = moved.people();
    Ok(HousingReport {
        people_moved: shown_if(people_moved, people_moved),
        at_start: suppress(at_start, start_people),
        at_end: suppress(at_end, end_people),
        moves: suppress(moves, people_moved),
        kept_home: kept_home(conn, filter, today)?,
    })
}

/// Wellbeing scores recorded at contacts in the period, by month; a mean only where at least
/// [`MIN_PEOPLE`] people are behind it.
pub fn wellbeing(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
) -> Result<WellbeingReport, ReportError> {
    #[derive(Default)]
    struct Scores {
        tally: Tally,
        sum: u64,
    }
    let mut all = Scores::default();
    let mut by_month: BTreeMap<String, Scores> = BTreeMap::new();
    for v in data::visits(conn, &filter.teams, &filter.period)?
        .iter()
        .filter(|v| filter.period.holds(v.started_at))
    {
        let Some(score) = v.wellbeing else { continue };
        for s in [
            &mut all,
            by_month.entry(month_of(v.started_at)).or_default(),
        ] {
            s.tally.add(v.citizen, v.anonymous);
            s.sum += u64::from(score);
        }
    }
    let mean = |s: &Scores| {
        (s.tally.people() >= MIN_PEOPLE && s.tally.count > 0)
            .then(|| (s.sum as f64 / s.tally.count as f64 * 10.0).round() / 10.0)
    };
    let people = all.tally.people();
    let months: BTreeMap<String, Tally> = by_month
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Tally {
                    count: s.tally.count,
                    citizens: s.tally.citizens.clone(),
                    anonymous: s.tally.anonymous,
                },
            )
        })
        .collect();
    let rows = suppress(months, people);
    Ok(WellbeingReport {
        scores: shown_if(all.tally.count, people),
        people: shown_if(people, people),
        mean: mean(&all),
        by_month: rows
            .into_iter()
            .map(|r| WellbeingRow {
                mean: match r.people {
                    Count::Shown(_) => mean(&by_month[&r.key]),
                    Count::Hidden => None,
                },
                month: r.key,
                scores: r.count,
                people: r.people,
            })
            .collect(),
    })
}

/// Conflicts open `now` in the filter's teams, by age (the period does not apply: an open
/// conflict is work waiting today).
pub fn conflicts(
    conn: &dyn crate::storage::Db,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<ConflictsReport, ReportError> {
    const AGES: [(&str, i64); 4] = [
        ("under_1_day", 1),
        ("1_to_7_days", 8),
        ("8_to_30_days", 31),
        ("over_30_days", i64::MAX),
    ];
    let mut by_age: Vec<AgeRow> = AGES
        .iter()
        .map(|(age, _)| AgeRow {
            age,
            open: 0,
            awaiting_decision: 0,
        })
        .collect();
    for c in data::conflicts(conn, &filter.teams)?
        .iter()
        .filter(|c| c.open)
    {
        let days = (now - c.created_at).num_days();
        let i = AGES
            .iter()
            .position(|(_, below)| days < *below)
            .unwrap_or(3);
        by_age[i].open += 1;
        by_age[i].awaiting_decision += u64::from(c.needs_person);
    }
    Ok(ConflictsReport {
        open: by_age.iter().map(|r| r.open).sum(),
        awaiting_decision: by_age.iter().map(|r| r.awaiting_decision).sum(),
        by_age,
    })
}

/// Any one report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Report {
    Contacts(ContactsReport),
    Referrals(ReferralsReport),
    FollowUps(FollowUpsReport),
    Housing(HousingReport),
    Wellbeing(WellbeingReport),
    Conflicts(ConflictsReport),
    Courses(CoursesReport),
}

/// Runs the report `kind` for `filter` as of `now`.
pub fn run(
    conn: &dyn crate::storage::Db,
    kind: ReportKind,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Report, ReportError> {
    Ok(match kind {
        ReportKind::Contacts => Report::Contacts(contacts(conn, filter)?),
        ReportKind::Referrals => Report::Referrals(referrals(conn, filter)?),
        ReportKind::FollowUps => Report::FollowUps(follow_ups(conn, filter, now.date_naive())?),
        ReportKind::Housing => Report::Housing(housing(conn, filter, now.date_naive())?),
        ReportKind::Wellbeing => Report::Wellbeing(wellbeing(conn, filter)?),
        ReportKind::Conflicts => Report::Conflicts(conflicts(conn, filter, now)?),
        ReportKind::Courses => Report::Courses(courses(conn, filter)?),
    })
}

/// `value` when the people behind it are at least [`MIN_PEOPLE`].
fn shown_if(value: u64, people: u64) -> Count {
    if people >= MIN_PEOPLE {
        Count::Shown(value)
    } else {
        Count::Hidden
    }
}

/// A breakdown with the discretion rule applied: rows of fewer than [`MIN_PEOPLE`] people are
/// hidden; where that hides exactly one row and the total is shown, the next smallest row is
/// hidden too, so the total minus the shown rows reveals no single hidden row. (Rows of a
/// breakdown by theme or referral overlap, a contact being in several, so there the total
/// cannot be subtracted anyway; the same rule keeps it simple.)
fn suppress<K: Clone>(rows: BTreeMap<K, Tally>, total_people: u64) -> Vec<Row<K>> {
    let mut hidden: BTreeSet<usize> = rows
        .values()
        .enumerate()
        .filter(|(_, t)| t.people() < MIN_PEOPLE)
        .map(|(i, _)| i)
        .collect();
    if hidden.len() == 1
        && total_people >= MIN_PEOPLE
        && let Some((i, _)) = rows
            .values()
            .enumerate()
            .filter(|(i, _)| !hidden.contains(i))
            .min_by_key(|(_, t)| t.people())
    {
        hidden.insert(i);
    }
    rows.into_iter()
        .enumerate()
        .map(|(i, (key, t))| {
            let (count, people) = if hidden.contains(&i) {
                (Count::Hidden, Count::Hidden)
            } else {
                (Count::Shown(t.count), Count::Shown(t.people()))
            };
            Row { key, count, people }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(citizens: u64, anonymous: u64) -> Tally {
        Tally {
            count: citizens + anonymous,
            citizens: (0..citizens)
                .map(|i| Uuid::from_u128(i as u128 + 1))
                .collect(),
            anonymous,
        }
    }

    #[test]
    fn one_small_row_hides_the_next_smallest_so_the_total_cannot_reveal_it() {
        let rows: BTreeMap<&str, Tally> =
            [("a", tally(3, 0)), ("b", tally(6, 0)), ("c", tally(9, 1))]
                .into_iter()
                .collect();
        let out = suppress(rows, 19);
        let people: Vec<Count> = out.iter().map(|r| r.people).collect();
        assert_eq!(people, [Count::Hidden, Count::Hidden, Count::Shown(10)]);
        assert_eq!(out[0].count, Count::Hidden, "its count is hidden with it");
        // Two small rows already hide each other.
        let rows: BTreeMap<&str, Tally> =
            [("a", tally(3, 0)), ("b", tally(0, 2)), ("c", tally(9, 0))]
                .into_iter()
                .collect();
        let people: Vec<Count> = suppress(rows, 14).iter().map(|r| r.people).collect();
        assert_eq!(people, [Count::Hidden, Count::Hidden, Count::Shown(9)]);
        assert_eq!(serde_json::to_string(&Count::Hidden).unwrap(), "\"<5\"");
    }

    #[test]
    fn a_follow_up_is_on_time_late_overdue_or_open_by_its_due_day() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let at = |s: &str| day(s).and_hms_opt(23, 59, 0).unwrap().and_utc();
        let due = day("2026-12-10");
        let today = day("2026-12-12");
        assert_eq!(
            outcome(TaskStatus::Done, at("2026-12-10"), due, today),
            "done_on_time"
        );
        assert_eq!(
            outcome(TaskStatus::Done, at("2026-12-11"), due, today),
            "done_late"
        );
        assert_eq!(
            outcome(TaskStatus::Open, at("2026-12-01"), due, today),
            "overdue"
        );
        assert_eq!(
            outcome(TaskStatus::Open, at("2026-12-01"), due, day("2026-12-10")),
            "open"
        );
        assert_eq!(
            outcome(TaskStatus::Cancelled, at("2026-12-01"), due, today),
            "cancelled"
        );
    }

    #[test]
    fn a_period_is_ordered_and_bounded() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(Period::new(day("2026-12-01"), day("2026-11-30")).is_err());
        assert!(Period::new(day("2020-01-01"), day("2026-01-01")).is_err());
        let p = Period::new(day("2026-12-01"), day("2026-12-01")).unwrap();
        assert!(p.holds(p.start()) && !p.holds(p.end()));
    }
}
