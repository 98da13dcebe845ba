//! What reports read from the database: every SQL statement of the reports lives here, and
//! each loader returns only the facts a report counts (ids stay in this module's callers and
//! never reach a report). Values are the merged state the server holds, except for the housing
//! history, which comes from the change log.

use super::ReportError;
use chrono::{DateTime, NaiveDate, Utc};
use feltbog_core::domain::{HousingSituation, Referral, Theme, VisitKind};
use feltbog_core::hlc::Hlc;
use feltbog_core::protocol::{FieldChange, Mutation};
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// One visit as the reports count it.
pub(super) struct Visit {
    pub citizen: Option<Uuid>,
    /// People met in an anonymous contact.
    pub anonymous: u64,
    pub started_at: DateTime<Utc>,
    pub kind: VisitKind,
    pub themes: Vec<Theme>,
    pub referrals: Vec<Referral>,
    pub author: Option<Uuid>,
    pub wellbeing: Option<u8>,
}

/// One follow-up task.
pub(super) struct Task {
    pub citizen: Uuid,
    pub due: NaiveDate,
    pub status: feltbog_core::domain::TaskStatus,
    /// When its status was last set (the writer's clock), for "done on time".
    pub status_at: DateTime<Utc>,
}

/// One conflict record.
pub(super) struct Conflict {
    pub open: bool,
    pub needs_person: bool,
    pub created_at: DateTime<Utc>,
}

/// The rows of `entity` records first written in `team`, field by field, in record order:
/// `(record_id, field, value JSON, hlc)`. `fields` limits what is read. `CROSS JOIN` keeps
/// SQLite on the team's records first (`records_by_team`), then each one's fields by key:
/// left to itself it scanned every field of every record of the kind, once per team.
fn each_record(
    conn: &Connection,
    entity: &str,
    team: &Uuid,
    fields: &[&str],
    mut each: impl FnMut(&[u8], &str, &str, u64) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let marks = vec!["?"; fields.len()].join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT f.record_id, f.field, f.value, f.hlc FROM records r
         CROSS JOIN fields f ON f.entity = r.entity AND f.record_id = r.record_id
         WHERE r.entity = ?1 AND r.team_id = ?2 AND f.field IN ({marks})
         ORDER BY r.record_id"
    ))?;
    let team = &team.as_bytes()[..];
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&entity, &team];
    args.extend(fields.iter().map(|f| f as &dyn rusqlite::ToSql));
    let mut rows = stmt.query(args.as_slice())?;
    while let Some(r) = rows.next()? {
        let id = r.get_ref(0)?.as_blob()?;
        let field = r.get_ref(1)?.as_str()?;
        let value = r.get_ref(2)?.as_str()?;
        let hlc: i64 = r.get(3)?;
        each(id, field, value, hlc as u64)?;
    }
    Ok(())
}

/// Parses one stored field value; a value the server stored is always valid, so a failure
/// means a damaged database.
fn parse<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, ReportError> {
    serde_json::from_str(value).map_err(|_| ReportError::Corrupt("a field value"))
}

/// Collects one record's fields, then hands it to `finish` when the next record begins.
struct Grouped<R> {
    id: Vec<u8>,
    current: Option<R>,
    out: Vec<R>,
}

impl<R: Default> Grouped<R> {
    fn new() -> Self {
        Grouped {
            id: Vec::new(),
            current: None,
            out: Vec::new(),
        }
    }

    fn record(&mut self, id: &[u8]) -> &mut R {
        if self.id != id {
            self.out.extend(self.current.take());
            self.id = id.to_vec();
        }
        self.current.get_or_insert_with(R::default)
    }

    fn finish(mut self) -> Vec<R> {
        self.out.extend(self.current.take());
        self.out
    }
}

#[derive(Default)]
struct VisitFields {
    archived: bool,
    citizen: Option<Uuid>,
    anonymous: u64,
    started_at: Option<DateTime<Utc>>,
    kind: Option<VisitKind>,
    themes: Vec<Theme>,
    referrals: Vec<Referral>,
    author: Option<Uuid>,
    wellbeing: Option<u8>,
}

/// The visits logged in `teams` (archived ones and ones a purge emptied left out).
pub(super) fn visits(conn: &Connection, teams: &[Uuid]) -> Result<Vec<Visit>, ReportError> {
    let mut out = Vec::new();
    for team in teams {
        let mut grouped = Grouped::<VisitFields>::new();
        each_record(
            conn,
            "visit",
            team,
            &[
                "archived",
                "citizen_id",
                "anonymous",
                "started_at",
                "kind",
                "themes",
                "referrals",
                "author",
                "wellbeing",
            ],
            |id, field, value, _| {
                let v = grouped.record(id);
                match field {
                    "archived" => v.archived = parse(value)?,
                    "citizen_id" => v.citizen = parse(value)?,
                    "anonymous" => {
                        let a: Option<serde_json::Value> = parse(value)?;
                        v.anonymous = a
                            .and_then(|a| a.get("count").and_then(serde_json::Value::as_u64))
                            .unwrap_or(0);
                    }
                    "started_at" => v.started_at = Some(parse(value)?),
                    "kind" => v.kind = Some(parse(value)?),
                    "themes" => v.themes = parse(value)?,
                    "referrals" => v.referrals = parse(value)?,
                    "author" => v.author = parse(value)?,
                    "wellbeing" => v.wellbeing = parse(value)?,
                    _ => {}
                }
                Ok(())
            },
        )?;
        out.extend(grouped.finish().into_iter().filter_map(|v| {
            Some(Visit {
                citizen: v.citizen,
                anonymous: v.anonymous,
                started_at: v.started_at?,
                kind: v.kind?,
                themes: v.themes,
                referrals: v.referrals,
                author: v.author,
                wellbeing: v.wellbeing,
            })
            .filter(|_| !v.archived)
        }));
    }
    Ok(out)
}

#[derive(Default)]
struct TaskFields {
    archived: bool,
    citizen: Option<Uuid>,
    due: Option<NaiveDate>,
    status: Option<(feltbog_core::domain::TaskStatus, u64)>,
}

/// The follow-up tasks of `teams` (archived ones left out).
pub(super) fn tasks(conn: &Connection, teams: &[Uuid]) -> Result<Vec<Task>, ReportError> {
    let mut out = Vec::new();
    for team in teams {
        let mut grouped = Grouped::<TaskFields>::new();
        each_record(
            conn,
            "task",
            team,
            &["archived", "citizen_id", "due", "status"],
            |id, field, value, hlc| {
                let t = grouped.record(id);
                match field {
                    "archived" => t.archived = parse(value)?,
                    "citizen_id" => t.citizen = parse(value)?,
                    "due" => t.due = Some(parse(value)?),
                    "status" => t.status = Some((parse(value)?, hlc)),
                    _ => {}
                }
                Ok(())
            },
        )?;
        out.extend(grouped.finish().into_iter().filter_map(|t| {
            let (status, hlc) = t.status?;
            Some(Task {
                citizen: t.citizen?,
                due: t.due?,
                status,
                status_at: at_hlc(hlc),
            })
            .filter(|_| !t.archived)
        }));
    }
    Ok(out)
}

/// The wall-clock time of a stamp (the writer's clock, within the server's drift bound).
fn at_hlc(hlc: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Hlc::from_u64(hlc).wall_ms() as i64).unwrap_or_default()
}

#[derive(Default)]
struct ConflictFields {
    status: Option<String>,
    kind: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

/// The conflict records of `teams`.
pub(super) fn conflicts(conn: &Connection, teams: &[Uuid]) -> Result<Vec<Conflict>, ReportError> {
    let mut out = Vec::new();
    for team in teams {
        let mut grouped = Grouped::<ConflictFields>::new();
        each_record(
            conn,
            "conflict",
            team,
            &["status", "kind", "created_at"],
            |id, field, value, _| {
                let c = grouped.record(id);
                match field {
                    "status" => c.status = Some(parse(value)?),
                    "kind" => c.kind = Some(parse(value)?),
                    "created_at" => c.created_at = Some(parse(value)?),
                    _ => {}
                }
                Ok(())
            },
        )?;
        out.extend(grouped.finish().into_iter().filter_map(|c| {
            Some(Conflict {
                open: c.status.as_deref() == Some("open"),
                needs_person: c.kind.as_deref() == Some("open"),
                created_at: c.created_at?,
            })
        }));
    }
    Ok(out)
}

/// When each citizen registered in `teams` was created (archived citizens included: they
/// were new then).
pub(super) fn citizens_created(
    conn: &Connection,
    teams: &[Uuid],
) -> Result<Vec<DateTime<Utc>>, ReportError> {
    let mut out = Vec::new();
    for team in teams {
        each_record(conn, "citizen", team, &["created_at"], |_, _, value, _| {
            out.push(parse(value)?);
            Ok(())
        })?;
    }
    Ok(out)
}

/// Each citizen's current site, for contacts by site.
pub(super) fn citizen_sites(conn: &Connection) -> Result<HashMap<Uuid, Uuid>, ReportError> {
    let mut stmt =
        conn.prepare_cached("SELECT citizen_id, site_id FROM citizens WHERE site_id IS NOT NULL")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (c, s) = row?;
        out.insert(uuid(&c)?, uuid(&s)?);
    }
    Ok(out)
}

/// Site names by id (a site is a place, not a person: its name may be shown).
pub(super) fn site_names(conn: &Connection) -> Result<HashMap<Uuid, String>, ReportError> {
    let mut stmt = conn.prepare_cached(
        "SELECT record_id, value FROM fields WHERE entity = 'site' AND field = 'name'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, name) = row?;
        out.insert(uuid(&id)?, parse(&name)?);
    }
    Ok(out)
}

/// Worker names by id (staff, shown in "contacts by worker").
pub(crate) fn worker_names(conn: &Connection) -> Result<HashMap<Uuid, String>, ReportError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM workers")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, name) = row?;
        out.insert(uuid(&id)?, name);
    }
    Ok(out)
}

/// One citizen's recorded housing situations, oldest first, with when each was set.
pub(super) type HousingHistory = Vec<(DateTime<Utc>, HousingSituation)>;

/// Every recorded housing situation of each citizen now in `teams` (not purged), oldest
/// first: the values of every write the change log holds, concurrent ones included, ordered
/// by their stamps.
pub(super) fn housing_histories(
    conn: &Connection,
    teams: &[Uuid],
) -> Result<Vec<HousingHistory>, ReportError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ch.citizen_id, ch.mutation FROM citizens c
         JOIN changes ch ON ch.citizen_id = c.citizen_id
         WHERE c.team_id = ?1 AND c.purged_ms IS NULL AND ch.kind = 'mutation'
           AND ch.class = 'citizen'",
    )?;
    let mut out = Vec::new();
    for team in teams {
        // Stamps dedupe the copies of one write (a change re-delivered to another role).
        let mut by_citizen: BTreeMap<Vec<u8>, BTreeMap<(u64, Uuid), HousingSituation>> =
            BTreeMap::new();
        let mut rows = stmt.query(params![&team.as_bytes()[..]])?;
        while let Some(r) = rows.next()? {
            let citizen = r.get_ref(0)?.as_blob()?;
            let text = r.get_ref(1)?.as_str()?;
            if !text.contains("\"housing\"") {
                continue;
            }
            let m: Mutation = parse(text)?;
            for op in &m.ops {
                if op.field != "housing" || op.id.as_bytes()[..] != citizen[..] {
                    continue;
                }
                if let FieldChange::Assign { value } = &op.change {
                    let situation = serde_json::from_value(value.clone())
                        .map_err(|_| ReportError::Corrupt("a housing value"))?;
                    by_citizen
                        .entry(citizen.to_vec())
                        .or_default()
                        .insert((op.hlc.as_u64(), m.device_id.0), situation);
                }
            }
        }
        out.extend(by_citizen.into_values().map(|h| {
            h.into_iter()
                .map(|((hlc, _), s)| (at_hlc(hlc), s))
                .collect::<Vec<_>>()
        }));
    }
    Ok(out)
}

fn uuid(bytes: &[u8]) -> Result<Uuid, ReportError> {
    Uuid::from_slice(bytes).map_err(|_| ReportError::Corrupt("an id"))
}
