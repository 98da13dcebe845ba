//! Applying a mutation pulled from the server to the local store.
//!
//! Field by field with the shared merge rules: a register keeps the higher stamp (the server
//! has already raised any conflict, so the device only needs last-writer-wins), a set applies
//! the add or the observed-remove to its hidden add-wins state. A local edit not yet pushed
//! keeps its cell if its stamp is higher; the server will see it when the outbox is pushed.
//!
//! The record is then re-sealed under the key its citizen implies — a visit moved to another
//! citizen on another device moves to that citizen's key here too, pending mutations included.

use super::keys::{self, KeyRing};
use super::records::{self, Cell};
use super::{StoreError, outbox};
use crate::crypto::NoncePool;
use crate::domain::{
    Citizen, CitizenId, ConflictRecord, EntityKind, KeyScope, Projection, Record, Site, SiteId,
    SiteLogEntry, SiteLogEntryId, Task, Visit, schema,
};
use crate::hlc::Stamp;
use crate::merge::{self, OrSet};
use crate::protocol::{FieldChange, Mutation};
use rusqlite::Connection;
use std::collections::BTreeMap;

type Fields = BTreeMap<String, (Stamp, serde_json::Value)>;

/// Applies one pulled mutation inside the caller's transaction.
pub(crate) fn apply(
    tx: &Connection,
    keys: &mut KeyRing,
    nonces: &mut NoncePool,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    let Some(first) = mutation.ops.first() else {
        return Ok(());
    };
    let (entity, id) = (first.entity, first.id);
    let old = records::load_row(tx, entity, &id)?;
    let mut fields: Fields = match &old {
        Some(row) => {
            let key = keys.by_id(tx, row.key_id)?;
            records::open_all(&key, row.key_id, entity, &id, &row.cells()?)?
        }
        None => BTreeMap::new(),
    };
    for op in &mutation.ops {
        if op.entity != entity || op.id != id {
            return Err(StoreError::Corrupt("pulled mutation spans records"));
        }
        let stamp = Stamp {
            hlc: op.hlc,
            device: mutation.device_id,
        };
        match &op.change {
            FieldChange::Assign { value } => {
                let current = fields.get(&op.field).map(|(s, v)| merge::Register {
                    value: v.clone(),
                    stamp: *s,
                });
                let kept = merge::lww(current.as_ref(), value, stamp);
                fields.insert(op.field.clone(), (kept.stamp, kept.value));
            }
            FieldChange::Add { value } | FieldChange::Remove { value, .. } => {
                let state_name = records::set_state_name(&op.field);
                let mut set: OrSet = match fields.get(&state_name) {
                    Some((_, v)) => serde_json::from_value(v.clone())
                        .map_err(|_| StoreError::Corrupt("set state"))?,
                    None => {
                        let mut set = OrSet::default();
                        if let Some((tag, serde_json::Value::Array(items))) = fields.get(&op.field)
                        {
                            for item in items {
                                set.add(item, *tag);
                            }
                        }
                        set
                    }
                };
                match &op.change {
                    FieldChange::Remove { observed, .. } => set.remove(value, observed),
                    _ => set.add(value, stamp),
                }
                let newest = fields
                    .get(&op.field)
                    .map_or(stamp, |(s, _)| (*s).max(stamp));
                let state =
                    serde_json::to_value(&set).map_err(|_| StoreError::Corrupt("set state"))?;
                fields.insert(
                    op.field.clone(),
                    (newest, serde_json::Value::Array(set.values())),
                );
                fields.insert(state_name, (newest, state));
            }
        }
    }

    let mut visible: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .filter(|(name, _)| !records::is_set_state(name))
        .map(|(name, (_, v))| (name.clone(), v.clone()))
        .collect();
    // Only the listing columns are read from it: an item that does not fit leaves the list out.
    if schema::join_items(entity, &mut visible).is_err() {
        for list in entity.item_fields() {
            visible.remove(*list);
        }
    }
    let projection = projection(entity, &visible);
    let scope = match entity {
        EntityKind::Citizen => KeyScope::Citizen(CitizenId(id)),
        EntityKind::Site => KeyScope::Site(SiteId(id)),
        EntityKind::SiteLogEntry => KeyScope::SiteEntry(SiteLogEntryId(id)),
        _ => projection
            .citizen_id
            .map_or(KeyScope::General, KeyScope::Citizen),
    };
    let (key_id, key) = keys.for_scope(tx, nonces, scope)?;
    if entity == EntityKind::SiteLogEntry {
        // As `Record::key_links` of a site-log entry: its site and every resident it names.
        let residents = visible
            .get("residents")
            .and_then(|v| serde_json::from_value::<Vec<CitizenId>>(v.clone()).ok())
            .unwrap_or_default();
        let links: Vec<KeyScope> = projection
            .site_id
            .map(KeyScope::Site)
            .into_iter()
            .chain(residents.into_iter().map(KeyScope::Citizen))
            .collect();
        keys::link(tx, key_id, &links)?;
    }
    let cells: Vec<Cell> = fields
        .iter()
        .map(|(name, (stamp, value))| {
            records::seal_cell(nonces, (&key, key_id), (entity, &id, name), *stamp, value)
        })
        .collect::<Result<_, _>>()?;
    records::write_row(tx, entity, &id, &projection, key_id, &cells)?;
    if let Some(row) = &old
        && row.key_id != key_id
    {
        let old_key = keys.by_id(tx, row.key_id)?;
        outbox::reseal_record(
            tx,
            nonces,
            entity,
            &id,
            (row.key_id, &old_key),
            (key_id, &key),
        )?;
    }
    Ok(())
}

/// The listing columns of a record that may be incomplete (fields arrive as they are pulled):
/// from the typed record when it parses, else from the raw fields.
fn projection(
    entity: EntityKind,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Projection {
    fn typed<R: Record>(fields: &serde_json::Map<String, serde_json::Value>) -> Option<Projection> {
        serde_json::from_value::<R>(serde_json::Value::Object(fields.clone()))
            .ok()
            .map(|r| r.projection())
    }
    let parsed = match entity {
        EntityKind::Citizen => typed::<Citizen>(fields),
        EntityKind::Visit => typed::<Visit>(fields),
        EntityKind::Task => typed::<Task>(fields),
        EntityKind::Site => typed::<Site>(fields),
        EntityKind::SiteLogEntry => typed::<SiteLogEntry>(fields),
        EntityKind::Conflict => typed::<ConflictRecord>(fields),
    };
    parsed.unwrap_or_else(|| Projection {
        citizen_id: fields
            .get("citizen_id")
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        site_id: fields
            .get("site_id")
            .and_then(|v| serde_json::from_value::<SiteId>(v.clone()).ok()),
        sort_key: 0,
        archived: fields
            .get("archived")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    })
}
