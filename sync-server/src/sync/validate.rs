//! Whether records are valid: a creation as a whole, an edit's written values, a stored record
//! after a merge; the same domain rules the device runs before saving.

use super::SyncError;
use super::apply::{Check, fresh_server_value};
use crate::args;
use crate::identity::Caller;
use crate::storage::{Db, DbExt};
use feltbog_core::domain::schema;
use feltbog_core::domain::{
    Citizen, ConflictRecord, EntityKind, Record, Site, SiteLogEntry, Task, Visit,
};
use feltbog_core::protocol::{FieldChange, Mutation, RejectReason};
use uuid::Uuid;

/// Whether a field name is one the schema could hold (lower-case ASCII, digits, underscores).
pub(super) fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with("__set")
}

/// Checks that a creating mutation describes a complete record that passes the domain rules
/// (the same [`feltbog_core::domain::Validate`] the device runs before saving). Messages name the rule, not values.
pub(super) fn validate_creation(caller: &Caller, m: &Mutation) -> Check {
    let entity = m.ops[0].entity;
    if m.ops
        .iter()
        .any(|op| matches!(op.change, FieldChange::Remove { .. }))
    {
        return Err((
            RejectReason::Invalid,
            "a new record cannot remove from a set".into(),
        ));
    }
    let mut record = serde_json::Map::new();
    write_into(&mut record, m);
    // The server sets its own fields (`Ctx::apply`); check the record as it will be stored.
    for field in entity.server_fields() {
        record.insert((*field).into(), fresh_server_value(caller, field));
    }
    let result = match entity {
        EntityKind::Conflict => Err("conflicts are created by the server".to_owned()),
        _ => check_record(entity, record),
    };
    result.map_err(|why| {
        (
            RejectReason::Invalid,
            format!("a new {entity} is not valid: {why}"),
        )
    })
}

/// Whether a stored record, as merged now, is a valid record of its kind: every device of the
/// team reads it, and one that no longer parses or breaks a domain rule (a wrong type, a note
/// past its length, a citizen left with neither alias nor name) would break their lists.
pub(super) fn validate_stored(
    tx: &dyn Db,
    entity: EntityKind,
    id: Uuid,
) -> Result<Check, SyncError> {
    let record = stored_record(tx, entity, id)?;
    Ok(check_record(entity, record).map_err(|why| {
        (
            RejectReason::Invalid,
            format!("the {entity} would not be valid: {why}"),
        )
    }))
}

/// Whether every value an edit writes is one a valid record could hold: the stored record with
/// each written value in place parses and passes the rules. A write that loses the merge is
/// kept as a conflict's version and reaches every device of the team, so it is checked too,
/// not only the merged record.
pub(super) fn validate_written(tx: &dyn Db, m: &Mutation) -> Result<Check, SyncError> {
    let (entity, id) = (m.ops[0].entity, m.ops[0].id);
    let mut record = stored_record(tx, entity, id)?;
    write_into(&mut record, m);
    Ok(check_record(entity, record).map_err(|why| {
        (
            RejectReason::Invalid,
            format!("a value written to the {entity} is not valid: {why}"),
        )
    }))
}

/// Puts what a mutation writes into a record's fields: assigned values in place, added set
/// elements appended. Removals are left out (they can only make a set smaller).
fn write_into(record: &mut serde_json::Map<String, serde_json::Value>, m: &Mutation) {
    for op in &m.ops {
        match &op.change {
            FieldChange::Assign { value } => {
                record.insert(op.field.clone(), value.clone());
            }
            FieldChange::Add { value } => {
                let slot = record
                    .entry(op.field.clone())
                    .or_insert_with(|| serde_json::Value::Array(vec![]));
                if let serde_json::Value::Array(items) = slot {
                    items.push(value.clone());
                }
            }
            FieldChange::Remove { .. } => {}
        }
    }
}

/// The citizen's item list a visit's field names an item of: its course, its goals.
pub(super) fn citizen_item_list(entity: EntityKind, field: &str) -> Option<&'static str> {
    match (entity, field) {
        (EntityKind::Visit, "course_id") => Some("courses"),
        (EntityKind::Visit, "goals") => Some("goals"),
        _ => None,
    }
}

/// A stored record's fields as one JSON object.
fn stored_record(
    conn: &dyn Db,
    entity: EntityKind,
    id: Uuid,
) -> Result<serde_json::Map<String, serde_json::Value>, SyncError> {
    let mut record = serde_json::Map::new();
    let rows: Vec<(String, String)> = conn.all(
        "SELECT field, value FROM fields WHERE entity = ?1 AND record_id = ?2",
        args![entity.as_str(), id],
    )?;
    for (field, value) in rows {
        let value = serde_json::from_str(&value).map_err(|_| SyncError::Corrupt("field value"))?;
        record.insert(field, value);
    }
    Ok(record)
}

/// Every stored record that is not a valid record of its kind, with the reason: a field its
/// kind does not have, or fields that do not parse as the domain type or break a domain rule.
/// Empty on a healthy server; the adversarial push test checks it after every push. Purged
/// records (no fields left) are skipped.
pub fn invalid_records(conn: &dyn Db) -> Result<Vec<(EntityKind, Uuid, String)>, SyncError> {
    let rows: Vec<(String, Uuid)> = conn.all(
        "SELECT entity, record_id FROM records ORDER BY entity, record_id",
        &[],
    )?;
    let mut out = Vec::new();
    for (entity, id) in rows {
        let entity = EntityKind::parse(&entity).ok_or(SyncError::Corrupt("entity"))?;
        let record = stored_record(conn, entity, id)?;
        for field in record.keys() {
            if !schema::is_stored_field(entity, field) {
                out.push((entity, id, format!("unknown field {field}")));
            }
        }
        if record.is_empty() {
            continue;
        }
        if let Err(why) = check_record(entity, record) {
            out.push((entity, id, why));
        }
    }
    Ok(out)
}

/// Parses a record's fields as its domain type and applies the domain's rules.
fn check_record(
    entity: EntityKind,
    mut record: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    // Removed items stay as `null` marks (a removal may arrive before the item it removes,
    // when that item's push was sent back for a clock re-stamp): bound each list with them.
    for list in entity.item_fields() {
        let items = record
            .keys()
            .filter(|k| schema::item_of(entity, k).is_some_and(|(l, _)| l == *list))
            .count();
        if items > feltbog_core::domain::limits::items_ever(list) {
            return Err(format!("too many {list}, removed ones included"));
        }
    }
    schema::join_items(entity, &mut record).map_err(|e| e.to_string())?;
    let json = serde_json::Value::Object(record);
    fn check<R: Record>(json: serde_json::Value) -> Result<(), String> {
        let r: R = serde_json::from_value(json)
            .map_err(|_| "fields are missing or malformed".to_owned())?;
        r.validate().map_err(|e| e.to_string())
    }
    match entity {
        EntityKind::Citizen => check::<Citizen>(json),
        EntityKind::Visit => check::<Visit>(json),
        EntityKind::Task => check::<Task>(json),
        EntityKind::Site => check::<Site>(json),
        EntityKind::SiteLogEntry => check::<SiteLogEntry>(json),
        EntityKind::Conflict => check::<ConflictRecord>(json),
    }
}
