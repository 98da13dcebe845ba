//! Reports for supervisors (issue 15): one function per report, over the merged data the server
//! holds, for a period and the teams the reader may see. The first report is built: contacts,
//! the people they reached, and what they were about. The HTTP routes, the dashboard and the
//! exports are still to come; see `docs/reports.md`.
//!
//! **Privacy by default.** A report holds counts only: no names, CPR, phone numbers or notes,
//! and no ids. A count of people under [`MIN_PEOPLE`] is shown as `"<5"` (the discretion rule
//! Danish statistics use), and the row's contact count with it. Where a breakdown hides exactly
//! one row, the smallest other row is hidden too, so its total cannot reveal the hidden one by
//! subtraction (`suppress`). Totals under the rule are hidden themselves.

use crate::sync::SyncError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use feltbog_core::domain::{Referral, Theme, VisitKind};
use rusqlite::{Connection, params};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// People counts under this are not shown.
pub const MIN_PEOPLE: u64 = 5;

/// The days a report covers, both included (UTC dates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    fn holds(&self, at: DateTime<Utc>) -> bool {
        (self.from..=self.to).contains(&at.date_naive())
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

/// One row of a breakdown: the contacts in it and the people they reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row<K> {
    pub key: K,
    pub contacts: Count,
    /// Different citizens, plus the people met in anonymous contacts.
    pub people: Count,
}

/// Contacts over a period: how many, whom they reached, and by week, kind, theme and referral.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactsReport {
    pub contacts: Count,
    pub people: Count,
    /// Different citizens met.
    pub citizens: Count,
    /// People met in anonymous contacts (a contact with three people counts three).
    pub anonymous_people: Count,
    /// ISO weeks, as `2026-W49`.
    pub by_week: Vec<Row<String>>,
    pub by_kind: Vec<Row<VisitKind>>,
    pub by_theme: Vec<Row<Theme>>,
    pub by_referral: Vec<Row<Referral>>,
}

/// What a report reads of one visit: no personal data beyond the citizen's id, which never
/// leaves this module.
struct VisitFacts {
    citizen: Option<Uuid>,
    anonymous: u64,
    started_at: DateTime<Utc>,
    kind: VisitKind,
    themes: Vec<Theme>,
    referrals: Vec<Referral>,
}

/// Contacts logged in `teams` during `period` (archived visits left out).
pub fn contacts(
    conn: &Connection,
    teams: &[Uuid],
    period: Period,
) -> Result<ContactsReport, SyncError> {
    let visits: Vec<VisitFacts> = visits(conn, teams)?
        .into_iter()
        .filter(|v| period.holds(v.started_at))
        .collect();
    let mut by_week: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_kind: BTreeMap<VisitKind, Tally> = BTreeMap::new();
    let mut by_theme: BTreeMap<Theme, Tally> = BTreeMap::new();
    let mut by_referral: BTreeMap<Referral, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for v in &visits {
        let week = v.started_at.iso_week();
        let key = format!("{}-W{:02}", week.year(), week.week());
        for tally in [
            &mut all,
            by_week.entry(key).or_default(),
            by_kind.entry(v.kind).or_default(),
        ] {
            tally.add(v);
        }
        for theme in &v.themes {
            by_theme.entry(*theme).or_default().add(v);
        }
        for referral in &v.referrals {
            by_referral.entry(*referral).or_default().add(v);
        }
    }
    let people = all.people();
    Ok(ContactsReport {
        contacts: shown_if(all.contacts, people),
        people: shown_if(people, people),
        citizens: shown_if(all.citizens.len() as u64, all.citizens.len() as u64),
        anonymous_people: shown_if(all.anonymous, all.anonymous),
        by_week: suppress(by_week, people),
        by_kind: suppress(by_kind, people),
        by_theme: suppress(by_theme, people),
        by_referral: suppress(by_referral, people),
    })
}

/// The contacts and people of one cell.
#[derive(Default)]
struct Tally {
    contacts: u64,
    citizens: BTreeSet<Uuid>,
    anonymous: u64,
}

impl Tally {
    fn add(&mut self, v: &VisitFacts) {
        self.contacts += 1;
        if let Some(c) = v.citizen {
            self.citizens.insert(c);
        }
        self.anonymous += v.anonymous;
    }

    fn people(&self) -> u64 {
        self.citizens.len() as u64 + self.anonymous
    }
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
            let (contacts, people) = if hidden.contains(&i) {
                (Count::Hidden, Count::Hidden)
            } else {
                (Count::Shown(t.contacts), Count::Shown(t.people()))
            };
            Row {
                key,
                contacts,
                people,
            }
        })
        .collect()
}

/// The visits of `teams`, as reports read them: one query per team over the merged fields.
fn visits(conn: &Connection, teams: &[Uuid]) -> Result<Vec<VisitFacts>, SyncError> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.record_id, f.field, f.value FROM records r
         JOIN fields f ON f.entity = r.entity AND f.record_id = r.record_id
         WHERE r.entity = 'visit' AND r.team_id = ?1
           AND f.field IN ('citizen_id', 'anonymous', 'started_at', 'kind', 'themes',
                           'referrals', 'archived')
         ORDER BY f.record_id",
    )?;
    let mut out = Vec::new();
    for team in teams {
        let mut records: BTreeMap<Vec<u8>, serde_json::Map<String, serde_json::Value>> =
            BTreeMap::new();
        let rows = stmt.query_map(params![&team.as_bytes()[..]], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, field, value) = row?;
            let value =
                serde_json::from_str(&value).map_err(|_| SyncError::Corrupt("field value"))?;
            records.entry(id).or_default().insert(field, value);
        }
        for fields in records.into_values() {
            if let Some(v) = facts(fields) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// A visit's facts from its fields; `None` for an archived visit or one a purge emptied.
fn facts(fields: serde_json::Map<String, serde_json::Value>) -> Option<VisitFacts> {
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    if get("archived").as_bool() == Some(true) {
        return None;
    }
    Some(VisitFacts {
        citizen: serde_json::from_value(get("citizen_id")).ok().flatten(),
        anonymous: get("anonymous")
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        started_at: serde_json::from_value(get("started_at")).ok()?,
        kind: serde_json::from_value(get("kind")).ok()?,
        themes: serde_json::from_value(get("themes")).unwrap_or_default(),
        referrals: serde_json::from_value(get("referrals")).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(citizens: u64, anonymous: u64) -> Tally {
        Tally {
            contacts: citizens + anonymous,
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
        assert_eq!(
            out[0].contacts,
            Count::Hidden,
            "its contacts are hidden with it"
        );
        // Two small rows already hide each other.
        let rows: BTreeMap<&str, Tally> =
            [("a", tally(3, 0)), ("b", tally(0, 2)), ("c", tally(9, 0))]
                .into_iter()
                .collect();
        let people: Vec<Count> = suppress(rows, 14).iter().map(|r| r.people).collect();
        assert_eq!(people, [Count::Hidden, Count::Hidden, Count::Shown(9)]);
        assert_eq!(serde_json::to_string(&Count::Hidden).unwrap(), "\"<5\"");
    }
}
