//! What reports read from the database: every SQL statement of the reports lives here, and
//! each loader returns only the facts a report counts (ids stay in this module's callers and
//! never reach a report). Values are the merged state the server holds, except for the housing
//! history, which comes from the change log.

use super::ReportError;
use crate::args;
use crate::storage::{Db, DbExt, Transact, Value, each_row};
use chrono::{DateTime, NaiveDate, Utc};
use feltbog_core::domain::{HousingSituation, Referral, Theme, VisitKind};
use feltbog_core::hlc::Hlc;
use feltbog_core::protocol::{FieldChange, Mutation};
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
    conn: &dyn Db,
    entity: &str,
    team: &Uuid,
    fields: &[&str],
    mut each: impl FnMut(&[u8], &str, &str, u64) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let marks: Vec<String> = (0..fields.len()).map(|i| format!("?{}", i + 3)).collect();
    let sql = format!(
        "SELECT f.record_id, f.field, f.value, f.hlc FROM records r
         {join} fields f ON f.entity = r.entity AND f.record_id = r.record_id
         WHERE r.entity = ?1 AND r.team_id = ?2 AND f.field IN ({marks})
         ORDER BY r.record_id",
        join = conn.join_in_order(),
        marks = marks.join(", "),
    );
    let mut params = args![entity, team].to_vec();
    params.extend(fields.iter().map(|f| Value::from(*f)));
    each_row(conn, &sql, &params, |r| {
        let id: Vec<u8> = r.get(0)?;
        let field: String = r.get(1)?;
        let value: String = r.get(2)?;
        let hlc: i64 = r.get(3)?;
        each(&id, &field, &value, hlc as u64)
    })
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

/// The fields of a visit reports count.
const VISIT_FIELDS: [&str; 9] = [
    "archived",
    "citizen_id",
    "anonymous",
    "started_at",
    "kind",
    "themes",
    "referrals",
    "author",
    "wellbeing",
];

impl VisitFields {
    fn set(&mut self, field: &str, value: &str) -> Result<(), ReportError> {
        match field {
            "archived" => self.archived = parse(value)?,
            "citizen_id" => self.citizen = parse(value)?,
            "anonymous" => {
                let a: Option<serde_json::Value> = parse(value)?;
                self.anonymous = a
                    .and_then(|a| a.get("count").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
            }
            "started_at" => self.started_at = Some(parse(value)?),
            "kind" => self.kind = Some(parse(value)?),
            "themes" => self.themes = parse(value)?,
            "referrals" => self.referrals = parse(value)?,
            "author" => self.author = parse(value)?,
            "wellbeing" => self.wellbeing = parse(value)?,
            _ => {}
        }
        Ok(())
    }

    /// The visit as reports count it; `None` if archived or emptied by a purge.
    fn visit(self) -> Option<Visit> {
        Some(Visit {
            citizen: self.citizen,
            anonymous: self.anonymous,
            started_at: self.started_at?,
            kind: self.kind?,
            themes: self.themes,
            referrals: self.referrals,
            author: self.author,
            wellbeing: self.wellbeing,
        })
        .filter(|_| !self.archived)
    }
}

/// Brings `report_visits` (one compact row per countable visit, migration 8) up to the change
/// log: the visits written since the last refresh are read again from their fields. The first
/// refresh reads every visit. Reports read visits from this table, so a report over 400,000
/// visits reads 400,000 rows instead of 3.6 million field rows. Runs on the write connection,
/// before a report runs on the reading one.
pub fn refresh(conn: &mut impl Transact) -> Result<(), ReportError> {
    conn.write_if(|tx| {
        let changed = refresh_in(tx)?;
        Ok(((), changed))
    })
}

/// [`refresh`] in its transaction: whether it changed anything.
fn refresh_in(tx: &dyn Db) -> Result<bool, ReportError> {
    let (done, last): (i64, i64) = tx.value(
        "SELECT report_seq, (SELECT coalesce(max(seq), 0) FROM changes) FROM server_state",
        &[],
    )?;
    if last == done {
        return Ok(false);
    }
    let store = |id: &[u8], team: &[u8], fields: VisitFields| -> Result<(), ReportError> {
        match fields.visit() {
            None => tx.execute("DELETE FROM report_visits WHERE visit_id = ?1", args![id])?,
            Some(v) => tx.execute(
                "INSERT INTO report_visits (visit_id, team_id, citizen_id, anonymous,
                     started_ms, kind, themes, referrals, author, wellbeing)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (visit_id) DO UPDATE SET team_id = ?2, citizen_id = ?3,
                     anonymous = ?4, started_ms = ?5, kind = ?6, themes = ?7, referrals = ?8,
                     author = ?9, wellbeing = ?10",
                args![
                    id,
                    team,
                    v.citizen,
                    v.anonymous as i64,
                    v.started_at.timestamp_millis(),
                    super::wire(&v.kind),
                    serde_json::to_string(&v.themes).unwrap_or_default(),
                    serde_json::to_string(&v.referrals).unwrap_or_default(),
                    v.author,
                    v.wellbeing.map(i64::from),
                ],
            )?,
        };
        Ok(())
    };
    if done == 0 {
        tx.execute("DELETE FROM report_visits", &[])?;
        let teams: Vec<Uuid> = tx.all("SELECT id FROM teams", &[])?;
        for team in teams {
            let mut current: Option<(Vec<u8>, VisitFields)> = None;
            let mut pending = Vec::new();
            each_record(tx, "visit", &team, &VISIT_FIELDS, |id, field, value, _| {
                if current.as_ref().is_none_or(|(c, _)| c != id) {
                    pending.extend(current.take());
                    current = Some((id.to_vec(), VisitFields::default()));
                }
                if let Some((_, v)) = current.as_mut() {
                    v.set(field, value)?;
                }
                Ok(())
            })?;
            pending.extend(current.take());
            for (id, fields) in pending {
                store(&id, &team.as_bytes()[..], fields)?;
            }
        }
    } else {
        // The visits the change log touched since: their ids, then their fields now.
        let mut ids = std::collections::BTreeSet::new();
        each_row(
            tx,
            "SELECT mutation FROM changes WHERE seq > ?1 AND kind = 'mutation'
               AND mutation LIKE '%\"visit\"%'",
            args![done],
            |r| {
                let m: Mutation = parse(&r.get::<String>(0)?)?;
                ids.extend(
                    m.ops
                        .iter()
                        .filter(|op| op.entity == feltbog_core::domain::EntityKind::Visit)
                        .map(|op| op.id),
                );
                Ok::<_, ReportError>(())
            },
        )?;
        let sql = format!(
            "SELECT f.field, f.value, r.team_id FROM records r
             {} fields f ON f.entity = r.entity AND f.record_id = r.record_id
             WHERE r.entity = 'visit' AND r.record_id = ?1",
            tx.join_in_order()
        );
        for id in ids {
            let mut v = VisitFields::default();
            let mut team = Vec::new();
            let rows: Vec<(String, String, Vec<u8>)> = tx.all(&sql, args![id])?;
            for (field, value, t) in rows {
                v.set(&field, &value)?;
                team = t;
            }
            store(&id.as_bytes()[..], &team, v)?;
        }
    }
    tx.execute("UPDATE server_state SET report_seq = ?1", args![last])?;
    Ok(true)
}

/// The visits logged in `teams` during `period`, from `report_visits` as of the last
/// [`refresh`] (archived visits and those of purged citizens left out).
pub(super) fn visits(
    conn: &dyn Db,
    teams: &[Uuid],
    period: &super::Period,
) -> Result<Vec<Visit>, ReportError> {
    // A purge empties a citizen's records without a change-log row: their rows stay here and
    // are left out by this list (usually empty).
    let purged: std::collections::HashSet<Vec<u8>> = conn
        .all::<Vec<u8>>(
            "SELECT citizen_id FROM citizens WHERE purged_ms IS NOT NULL",
            &[],
        )?
        .into_iter()
        .collect();
    let (from, to) = (
        period.start().timestamp_millis(),
        period.end().timestamp_millis(),
    );
    let kinds: HashMap<String, VisitKind> = VisitKind::ALL
        .into_iter()
        .map(|k| (super::wire(&k), k))
        .collect();
    let mut out = Vec::new();
    for team in teams {
        each_row(
            conn,
            "SELECT v.citizen_id, v.anonymous, v.started_ms, v.kind, v.themes, v.referrals,
                    v.author, v.wellbeing
             FROM report_visits v
             WHERE v.team_id = ?1 AND v.started_ms >= ?2 AND v.started_ms < ?3",
            args![team, from, to],
            |r| -> Result<(), ReportError> {
                let citizen: Option<Vec<u8>> = r.get(0)?;
                if citizen.as_ref().is_some_and(|c| purged.contains(c)) {
                    return Ok(());
                }
                let list = |i: usize| -> Result<Option<String>, ReportError> {
                    Ok(r.get::<Option<String>>(i)?.filter(|t| t != "[]"))
                };
                let wellbeing: Option<i64> = r.get(7)?;
                out.push(Visit {
                    citizen: citizen.as_deref().map(uuid).transpose()?,
                    anonymous: r.get::<i64>(1)? as u64,
                    started_at: DateTime::from_timestamp_millis(r.get(2)?).unwrap_or_default(),
                    kind: *kinds
                        .get(&r.get::<String>(3)?)
                        .ok_or(ReportError::Corrupt("a visit's kind"))?,
                    themes: list(4)?
                        .as_deref()
                        .map(parse)
                        .transpose()?
                        .unwrap_or_default(),
                    referrals: list(5)?
                        .as_deref()
                        .map(parse)
                        .transpose()?
                        .unwrap_or_default(),
                    author: r
                        .get::<Option<Vec<u8>>>(6)?
                        .as_deref()
                        .map(uuid)
                        .transpose()?,
                    wellbeing: wellbeing
                        .map(u8::try_from)
                        .transpose()
                        .map_err(|_| ReportError::Corrupt("a wellbeing score"))?,
                });
                Ok(())
            },
        )?;
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
pub(super) fn tasks(conn: &dyn Db, teams: &[Uuid]) -> Result<Vec<Task>, ReportError> {
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
pub(super) fn conflicts(conn: &dyn Db, teams: &[Uuid]) -> Result<Vec<Conflict>, ReportError> {
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
    conn: &dyn Db,
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
pub(super) fn citizen_sites(conn: &dyn Db) -> Result<HashMap<Uuid, Uuid>, ReportError> {
    Ok(conn
        .all::<(Uuid, Uuid)>(
            "SELECT citizen_id, site_id FROM citizens WHERE site_id IS NOT NULL",
            &[],
        )?
        .into_iter()
        .collect())
}

/// Site names by id (a site is a place, not a person: its name may be shown).
pub(super) fn site_names(conn: &dyn Db) -> Result<HashMap<Uuid, String>, ReportError> {
    conn.all::<(Uuid, String)>(
        "SELECT record_id, value FROM fields WHERE entity = 'site' AND field = 'name'",
        &[],
    )?
    .into_iter()
    .map(|(id, name)| Ok((id, parse(&name)?)))
    .collect()
}

/// Worker names by id (staff, shown in "contacts by worker").
pub(crate) fn worker_names(conn: &dyn Db) -> Result<HashMap<Uuid, String>, ReportError> {
    Ok(conn
        .all::<(Uuid, String)>("SELECT id, name FROM workers", &[])?
        .into_iter()
        .collect())
}

/// One citizen's recorded housing situations, oldest first, with when each was set.
pub(super) type HousingHistory = Vec<(DateTime<Utc>, HousingSituation)>;

/// Every recorded housing situation of each citizen now in `teams` (not purged), oldest
/// first: the values of every write the change log holds, concurrent ones included, ordered
/// by their stamps.
pub(super) fn housing_histories(
    conn: &dyn Db,
    teams: &[Uuid],
) -> Result<Vec<HousingHistory>, ReportError> {
    let mut out = Vec::new();
    for team in teams {
        // Stamps dedupe the copies of one write (a change re-delivered to another role).
        let mut by_citizen: BTreeMap<Vec<u8>, BTreeMap<(u64, Uuid), HousingSituation>> =
            BTreeMap::new();
        each_row(
            conn,
            "SELECT ch.citizen_id, ch.mutation FROM citizens c
             JOIN changes ch ON ch.citizen_id = c.citizen_id
             WHERE c.team_id = ?1 AND c.purged_ms IS NULL AND ch.kind = 'mutation'
               AND ch.class = 'citizen'",
            args![team],
            |r| {
                let citizen: Vec<u8> = r.get(0)?;
                let text: String = r.get(1)?;
                if !text.contains("\"housing\"") {
                    return Ok(());
                }
                let m: Mutation = parse(&text)?;
                for op in &m.ops {
                    if op.field != "housing" || op.id.as_bytes()[..] != citizen[..] {
                        continue;
                    }
                    if let FieldChange::Assign { value } = &op.change {
                        let situation = serde_json::from_value(value.clone())
                            .map_err(|_| ReportError::Corrupt("a housing value"))?;
                        by_citizen
                            .entry(citizen.clone())
                            .or_default()
                            .insert((op.hlc.as_u64(), m.device_id.0), situation);
                    }
                }
                Ok::<_, ReportError>(())
            },
        )?;
        out.extend(by_citizen.into_values().map(|h| {
            h.into_iter()
                .map(|((hlc, _), s)| (at_hlc(hlc), s))
                .collect::<Vec<_>>()
        }));
    }
    Ok(out)
}

/// Every item of the citizens' item list `list` (`courses`, `referrals`, …; removed ones left
/// out), per citizen now in `teams` and not purged: the pathway of issue 17. Items are read
/// by the field-name range of the list, so each citizen's rows come from the primary key.
pub(super) fn citizen_items<T: serde::de::DeserializeOwned>(
    conn: &dyn Db,
    teams: &[Uuid],
    list: &str,
) -> Result<Vec<Vec<T>>, ReportError> {
    let sql = format!(
        "SELECT f.record_id, f.value FROM citizens c
         {} fields f ON f.entity = 'citizen' AND f.record_id = c.citizen_id
         WHERE c.team_id = ?1 AND c.purged_ms IS NULL AND f.field > ?2 AND f.field < ?3
         ORDER BY f.record_id",
        conn.join_in_order()
    );
    // `list__` then 32 hex digits: every such name sorts between these two.
    let (low, high) = (format!("{list}__"), format!("{list}__g"));
    let mut out = Vec::new();
    for team in teams {
        let mut current: Option<(Vec<u8>, Vec<T>)> = None;
        each_row(conn, &sql, args![team, &low, &high], |r| {
            let citizen: Vec<u8> = r.get(0)?;
            let value: String = r.get(1)?;
            if current.as_ref().is_none_or(|(c, _)| c[..] != citizen[..]) {
                out.extend(current.take().map(|(_, items)| items));
                current = Some((citizen, Vec::new()));
            }
            if value != "null"
                && let Some((_, items)) = current.as_mut()
            {
                items.push(parse(&value)?);
            }
            Ok::<_, ReportError>(())
        })?;
        out.extend(current.map(|(_, items)| items));
    }
    Ok(out)
}

fn uuid(bytes: &[u8]) -> Result<Uuid, ReportError> {
    Uuid::from_slice(bytes).map_err(|_| ReportError::Corrupt("an id"))
}
