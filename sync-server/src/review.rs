//! The open free-text conflicts a supervisor may settle, as the dashboard lists them (issue 15
//! point 5). Settling one is [`crate::sync::review_from_dashboard`]: the same rule and write
//! path as a review from the supervisor's tablet.
//!
//! A listing shows what the decision needs: the kind of record and field, the two versions'
//! words, who wrote each and when the conflict arose. Not whom the record is about: the
//! decision is about the words. Every listed conflict is audited as read by the supervisor.

use crate::args;
use crate::audit::{self, Action, Entry};
use crate::reports::export::{Lang, label};
use crate::storage::{Db, DbExt};
use crate::sync::SyncError;
use chrono::{DateTime, Utc};
use feltbog_core::domain::EntityKind;
use feltbog_core::domain::schema;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A conflict record as stored: the citizen it is about, and its fields by name.
type Stored = (Option<Vec<u8>>, serde_json::Map<String, serde_json::Value>);

/// One field of a conflict record: its id, its citizen, the field's name and value.
type ConflictField = (Vec<u8>, Option<Vec<u8>>, String, String);

/// One conflict waiting for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpenConflict {
    pub id: Uuid,
    /// The record kind and field in words (`Besøg – Notat`).
    pub what: String,
    /// The version that holds now, and the other one, in words.
    pub current: String,
    pub other: String,
    pub current_author: Option<String>,
    pub other_author: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Whether the two can be written together as text (else keep one).
    pub can_merge: bool,
}

/// The open free-text conflicts about records of `teams`, oldest first, audited as read by
/// `worker`.
pub fn open_conflicts(
    conn: &dyn Db,
    worker: Uuid,
    teams: &[Uuid],
    lang: Lang,
    now_ms: u64,
) -> Result<Vec<OpenConflict>, SyncError> {
    let sql = "SELECT r.record_id, r.citizen_id, f.field, f.value FROM records r
         JOIN fields f ON f.entity = 'conflict' AND f.record_id = r.record_id
         WHERE r.entity = 'conflict' AND r.team_id = ?1
           AND EXISTS (SELECT 1 FROM fields s WHERE s.entity = 'conflict'
                 AND s.record_id = r.record_id AND s.field = 'status' AND s.value = '\"open\"')
           AND EXISTS (SELECT 1 FROM fields k WHERE k.entity = 'conflict'
                 AND k.record_id = r.record_id AND k.field = 'kind' AND k.value = '\"open\"')";
    let names =
        crate::reports::worker_names(conn).map_err(|_| SyncError::Corrupt("worker names"))?;
    let mut out = Vec::new();
    let mut trail = Vec::new();
    for team in teams {
        let mut records: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
        let rows: Vec<ConflictField> = conn.all(sql, args![team])?;
        for (id, citizen, field, value) in rows {
            let value = serde_json::from_str(&value).map_err(|_| SyncError::Corrupt("conflict"))?;
            let entry = records
                .entry(id)
                .or_insert((citizen, serde_json::Map::new()));
            entry.1.insert(field, value);
        }
        for (id, (citizen, f)) in records {
            let id = Uuid::from_slice(&id).map_err(|_| SyncError::Corrupt("conflict"))?;
            let get = |k: &str| f.get(k).cloned().unwrap_or_default();
            let entity: EntityKind = serde_json::from_value(get("entity"))
                .map_err(|_| SyncError::Corrupt("conflict"))?;
            let field = get("field").as_str().unwrap_or_default().to_owned();
            let rule = schema::rule_field(entity, &field);
            let author = |k: &str| {
                serde_json::from_value::<Uuid>(get(k))
                    .ok()
                    .and_then(|w| names.get(&w).cloned())
            };
            let current = get("winner");
            out.push(OpenConflict {
                id,
                what: format!(
                    "{} – {}",
                    label(lang, &format!("entity.{}", entity.as_str())),
                    label(lang, &format!("field.{rule}"))
                ),
                can_merge: current.is_string() || schema::text_part(entity, &field).is_some(),
                current: words(entity, &field, &current),
                other: words(entity, &field, &get("loser")),
                current_author: author("winner_author"),
                other_author: author("loser_author"),
                created_at: serde_json::from_value(get("created_at")).unwrap_or_default(),
            });
            let citizen = citizen.and_then(|c| Uuid::from_slice(&c).ok());
            trail.push(Entry::by_web(worker, Action::Read).record("conflict", id, citizen));
        }
    }
    out.sort_by_key(|c| c.created_at);
    audit::append_many(conn, now_ms, &trail)?;
    Ok(out)
}

/// A version in words: a text as it is, a structured value by its text part (a goal's words),
/// anything else as compact JSON.
fn words(entity: EntityKind, field: &str, value: &serde_json::Value) -> String {
    match (value, schema::text_part(entity, field)) {
        (serde_json::Value::String(s), _) => s.clone(),
        (serde_json::Value::Object(parts), Some(part)) => parts
            .get(part)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        (other, _) => other.to_string(),
    }
}
