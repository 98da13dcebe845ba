//! Sealed records: one row per record, each field sealed on its own.
//!
//! A row keeps plain listing columns ([`crate::domain::Projection`]) and `cells`: for every
//! top-level field of the record's JSON form, the field name, the [`Stamp`] of the write that
//! set it, and the value sealed with the record's data key, bound to `(key id, entity, record id,
//! field)`. Per-field stamps are what sync merges on (DESIGN §5).
//!
//! Reading opens each cell and splices the plaintext JSON values into one object, which serde
//! then parses into the typed record — no intermediate `serde_json::Value` per field.

use super::StoreError;
use crate::crypto::{Binding, KeyId, NoncePool, SecretKey};
use crate::domain::{EntityKind, Projection, Record, schema};
use crate::hlc::{DeviceId, Hlc, Stamp};
use crate::merge::OrSet;
use crate::protocol::{FieldChange, FieldOp};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One field of a stored record, as written.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct Cell {
    pub field: String,
    pub hlc: u64,
    pub device: [u8; 16],
    pub sealed: Vec<u8>,
}

impl CellRef<'_> {
    fn stamp(&self) -> Stamp {
        Stamp {
            hlc: Hlc::from_u64(self.hlc),
            device: DeviceId(Uuid::from_bytes(self.device)),
        }
    }
}

/// A stored row, cells still sealed and still encoded.
pub(crate) struct SealedRow {
    pub key_id: KeyId,
    pub blob: Vec<u8>,
}

impl SealedRow {
    pub(crate) fn cells(&self) -> Result<Vec<CellRef<'_>>, StoreError> {
        decode_cell_refs(&self.blob)
    }
}

pub(crate) fn binding<'a>(
    key_id: KeyId,
    entity: EntityKind,
    id: &'a Uuid,
    field: &'a str,
) -> Binding<'a> {
    Binding {
        key_id,
        table: entity.as_str(),
        record: id.as_bytes(),
        field,
    }
}

/// A cell borrowed from the row's bytes: listing thousands of records allocates nothing per field.
/// Same encoding as [`Cell`] (postcard writes a `Vec<u8>` and a `&[u8]` alike).
#[derive(Deserialize, Debug)]
pub(crate) struct CellRef<'a> {
    pub field: &'a str,
    pub hlc: u64,
    pub device: [u8; 16],
    pub sealed: &'a [u8],
}

pub(crate) fn decode_cell_refs(blob: &[u8]) -> Result<Vec<CellRef<'_>>, StoreError> {
    postcard::from_bytes(blob).map_err(|_| StoreError::Corrupt("record cells"))
}

pub(crate) fn load_row(
    conn: &Connection,
    entity: EntityKind,
    id: &Uuid,
) -> Result<Option<SealedRow>, StoreError> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT key_id, cells FROM records WHERE entity = ?1 AND id = ?2",
            params![entity.as_str(), &id.as_bytes()[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(k, blob)| {
        Ok(SealedRow {
            key_id: super::keys::key_id_from(&k)?,
            blob,
        })
    })
    .transpose()
}

/// Whether a record has arrived whole: its creation (which writes the `id` field) is here, not
/// only later edits. A pull can bring an edit before the record's history — a citizen who
/// left the device's scope and came back gets their history after the edit that brought them
/// back — and until then the record is not shown.
pub(crate) fn is_complete(cells: &[CellRef<'_>]) -> bool {
    cells.iter().any(|c| c.field == "id")
}

/// Opens every cell and parses the record. `json` is scratch space reused across records; it
/// is zeroized before returning, on success and on error alike, since it held plaintext.
pub(crate) fn open_record<R: Record>(
    key: &SecretKey,
    key_id: KeyId,
    id: &Uuid,
    cells: &[CellRef<'_>],
    json: &mut Vec<u8>,
) -> Result<R, StoreError> {
    let parsed = splice_and_parse(key, key_id, id, cells, json);
    zeroize::Zeroize::zeroize(json);
    parsed
}

fn splice_and_parse<R: Record>(
    key: &SecretKey,
    key_id: KeyId,
    id: &Uuid,
    cells: &[CellRef<'_>],
    json: &mut Vec<u8>,
) -> Result<R, StoreError> {
    let lists = R::KIND.item_fields();
    // A whole item list stored before lists travelled item by item, or a field from before a
    // change of shape (a citizen's single consent): read the slow way.
    if cells
        .iter()
        .any(|c| lists.contains(&c.field) || schema::is_legacy_field(R::KIND, c.field))
    {
        return parse_with_items(key, key_id, id, cells);
    }
    json.clear();
    json.push(b'{');
    let mut first = true;
    let is_item = |c: &&CellRef<'_>| schema::item_of(R::KIND, c.field).is_some();
    for cell in cells
        .iter()
        .filter(|c| !is_set_state(c.field) && !is_item(c))
    {
        if !first {
            json.push(b',');
        }
        first = false;
        // Field names are the record's own serde names: plain identifiers, no escaping needed.
        if !cell
            .field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(StoreError::Corrupt("field name"));
        }
        json.push(b'"');
        json.extend_from_slice(cell.field.as_bytes());
        json.extend_from_slice(b"\":");
        key.open_append(&binding(key_id, R::KIND, id, cell.field), cell.sealed, json)?;
    }
    // Each item list from its items, in id order (the order they were made in); a removed
    // item (`null`) is left out.
    for list in lists {
        let mut items: Vec<&CellRef<'_>> = cells
            .iter()
            .filter(|c| schema::item_of(R::KIND, c.field).is_some_and(|(l, _)| l == *list))
            .collect();
        items.sort_by_key(|c| c.field);
        if !first {
            json.push(b',');
        }
        first = false;
        json.push(b'"');
        json.extend_from_slice(list.as_bytes());
        json.extend_from_slice(b"\":[");
        let mut empty = true;
        for cell in items {
            let mark = json.len();
            if !empty {
                json.push(b',');
            }
            let start = json.len();
            key.open_append(&binding(key_id, R::KIND, id, cell.field), cell.sealed, json)?;
            if &json[start..] == b"null" {
                json.truncate(mark);
            } else {
                empty = false;
            }
        }
        json.push(b']');
    }
    json.push(b'}');
    serde_json::from_slice(json).map_err(|_| StoreError::Corrupt("record fields"))
}

/// Parses a record that still holds a whole item list from before lists travelled item by
/// item: its fields opened into one JSON object, the items joined back into their lists
/// ([`schema::join_items`]). Slower than splicing, and only until the record is next saved.
fn parse_with_items<R: Record>(
    key: &SecretKey,
    key_id: KeyId,
    id: &Uuid,
    cells: &[CellRef<'_>],
) -> Result<R, StoreError> {
    let mut record: serde_json::Map<String, serde_json::Value> =
        open_all(key, key_id, R::KIND, id, cells)?
            .into_iter()
            .filter(|(name, _)| !is_set_state(name))
            .map(|(name, (_, value))| (name, value))
            .collect();
    schema::join_items(R::KIND, &mut record).map_err(|_| StoreError::Corrupt("item list"))?;
    serde_json::from_value(serde_json::Value::Object(record))
        .map_err(|_| StoreError::Corrupt("record fields"))
}

/// Writes a save must send even where the value did not change: sending a set-aside edit
/// again, whose values the device already holds but the server never accepted.
#[derive(Default)]
pub(crate) struct Forced {
    /// Assigned fields to send as they are now: `(field, the refused write's stamp, the
    /// version it had seen)`. Where the device still holds that refused write, the new one
    /// replaces the version the refused one had seen (the server never saw the refused one).
    pub assign: Vec<(String, Stamp, Option<Stamp>)>,
    /// Set elements to add again, with this save's tag: `(field, element)`.
    pub adds: Vec<(String, serde_json::Value)>,
    /// Set removals to send again as they were observed: `(field, element, observed tags)`.
    pub removes: Vec<(String, serde_json::Value, Vec<Stamp>)>,
}

/// What saving a record produced.
pub(crate) struct Staged {
    pub cells: Vec<Cell>,
    pub ops: Vec<FieldOp>,
}

/// Compares the new record with the stored one and seals the result. Unchanged fields keep
/// their stamp (re-sealed only if the key changed); changed fields get `stamp` and an op whose
/// base is the version they replace. Set fields produce one `Add`/`Remove` per element.
/// `forced` names writes to send even though the value is unchanged.
pub(crate) fn stage<R: Record>(
    nonces: &mut NoncePool,
    record: &R,
    forced: &Forced,
    old: Option<(&SecretKey, KeyId, &[CellRef<'_>])>,
    key: &SecretKey,
    key_id: KeyId,
    stamp: Stamp,
) -> Result<Staged, StoreError> {
    let id = record.record_id();
    let serde_json::Value::Object(mut fields) =
        serde_json::to_value(record).map_err(|_| StoreError::Corrupt("record form"))?
    else {
        return Err(StoreError::Corrupt("record is not an object"));
    };
    schema::split_items(R::KIND, &mut fields).map_err(|_| StoreError::Corrupt("item list"))?;
    let open_cell = |name: &str| -> Result<Option<(Stamp, serde_json::Value)>, StoreError> {
        let Some((old_key, old_key_id, old_cells)) = old else {
            return Ok(None);
        };
        let Some(cell) = old_cells.iter().find(|c| c.field == name) else {
            return Ok(None);
        };
        let text = zeroize::Zeroizing::new(
            old_key.open(&binding(old_key_id, R::KIND, &id, name), cell.sealed)?,
        );
        let value =
            serde_json::from_slice(&text).map_err(|_| StoreError::Corrupt("stored field"))?;
        Ok(Some((cell.stamp(), value)))
    };
    // The items held now, each with the stamp of its write: item cells, and the items of a
    // whole list stored before lists travelled item by item (under that list's stamp).
    let mut old_items: std::collections::BTreeMap<String, (Stamp, serde_json::Value)> =
        Default::default();
    for list in R::KIND.item_fields() {
        if let Some((stamp, serde_json::Value::Array(whole))) = open_cell(list)? {
            let mut one = serde_json::Map::new();
            one.insert((*list).to_owned(), serde_json::Value::Array(whole));
            schema::split_items(R::KIND, &mut one).map_err(|_| StoreError::Corrupt("item list"))?;
            old_items.extend(one.into_iter().map(|(name, item)| (name, (stamp, item))));
        }
    }
    // A field from before a change of shape, as the item it became (under its own stamp), unless
    // that item was written since (its cell is read below and replaces it).
    for cell in old.map(|(_, _, cells)| cells).unwrap_or_default() {
        if schema::is_legacy_field(R::KIND, cell.field) {
            let (stamp, value) = open_cell(cell.field)?.expect("the cell is there");
            if let Some((name, item)) = schema::upcast_legacy(R::KIND, id, cell.field, &value) {
                old_items.insert(name, (stamp, item));
            }
        }
    }
    for cell in old.map(|(_, _, cells)| cells).unwrap_or_default() {
        if schema::item_of(R::KIND, cell.field).is_some() {
            let held = open_cell(cell.field)?.expect("the cell is there");
            old_items.insert(cell.field.to_owned(), held);
        }
    }
    // An item the record no longer has is removed: written as `null`, merged like any edit.
    for (name, (_, held)) in &old_items {
        if !held.is_null() && !fields.contains_key(name) {
            fields.insert(name.clone(), serde_json::Value::Null);
        }
    }
    // A removed item sent again (a refused removal): its field is written, as `null`.
    for (name, _, _) in &forced.assign {
        if schema::item_of(R::KIND, name).is_some() && !fields.contains_key(name) {
            fields.insert(name.clone(), serde_json::Value::Null);
        }
    }
    let open_old = |name: &str| -> Result<Option<(Stamp, serde_json::Value)>, StoreError> {
        match old_items.get(name) {
            Some(held) => Ok(Some(held.clone())),
            None => open_cell(name),
        }
    };
    let mut seal =
        |name: &str, cell_stamp: Stamp, value: &serde_json::Value| -> Result<Cell, StoreError> {
            let text = zeroize::Zeroizing::new(
                serde_json::to_vec(value).map_err(|_| StoreError::Corrupt("field value"))?,
            );
            let sealed = key.seal(nonces, &binding(key_id, R::KIND, &id, name), &text)?;
            Ok(Cell {
                field: name.to_owned(),
                hlc: cell_stamp.hlc.as_u64(),
                device: *cell_stamp.device.0.as_bytes(),
                sealed,
            })
        };
    let mut cells = Vec::with_capacity(fields.len() + R::SET_FIELDS.len());
    let mut ops = Vec::new();
    for (field, value) in &fields {
        let previous = open_old(field)?;
        let is_set = R::SET_FIELDS.contains(&field.as_str());
        let refused = forced.assign.iter().find(|(f, _, _)| f == field);
        let mut op = |change| {
            let base = match (&previous, refused) {
                (Some((held, _)), Some((_, stamp, base))) if held == stamp => *base,
                _ => previous.as_ref().map(|(s, _)| *s),
            };
            ops.push(FieldOp {
                entity: R::KIND,
                id,
                field: field.clone(),
                change,
                hlc: stamp.hlc,
                base,
            });
        };
        if is_set {
            // Add-wins set: diff against the set's state and tag adds with this save's stamp.
            let state_name = set_state_name(field);
            let mut set: OrSet = match open_old(&state_name)? {
                Some((_, v)) => {
                    serde_json::from_value(v).map_err(|_| StoreError::Corrupt("set state"))?
                }
                None => {
                    let mut set = OrSet::default();
                    if let Some((tag, serde_json::Value::Array(items))) = &previous {
                        for item in items {
                            set.add(item, *tag);
                        }
                    }
                    set
                }
            };
            let serde_json::Value::Array(wanted) = value else {
                return Err(StoreError::Corrupt("set field is not an array"));
            };
            let mut changed = false;
            let to_add: Vec<_> = wanted
                .iter()
                .filter(|v| !set.contains(v))
                .cloned()
                .collect();
            for item in &to_add {
                set.add(item, stamp);
                op(FieldChange::Add {
                    value: item.clone(),
                });
                changed = true;
            }
            for item in set.values().into_iter().filter(|v| !wanted.contains(v)) {
                let observed = set.observed(&item);
                set.remove(&item, &observed);
                op(FieldChange::Remove {
                    value: item,
                    observed,
                });
                changed = true;
            }
            for (_, item) in forced
                .adds
                .iter()
                .filter(|(f, v)| f == field && wanted.contains(v) && !to_add.contains(v))
            {
                set.add(item, stamp);
                op(FieldChange::Add {
                    value: item.clone(),
                });
                changed = true;
            }
            for (_, item, observed) in forced
                .removes
                .iter()
                .filter(|(f, v, _)| f == field && !wanted.contains(v))
            {
                op(FieldChange::Remove {
                    value: item.clone(),
                    observed: observed.clone(),
                });
                changed = true;
            }
            let cell_stamp = match (&previous, changed) {
                (Some((old_stamp, _)), false) => *old_stamp,
                // An empty set no one ever added to has no cell, here as on the server: a cell
                // stamped now, with no op behind it, would out-stamp the first add pulled later
                // and leave this replica's stamp differing from everyone else's.
                (None, false) => continue,
                _ => stamp,
            };
            let state = serde_json::to_value(&set).map_err(|_| StoreError::Corrupt("set state"))?;
            // The set's canonical order, as every replica that pulls it writes it.
            let canonical = serde_json::Value::Array(set.values());
            cells.push(seal(field, cell_stamp, &canonical)?);
            cells.push(seal(&state_name, cell_stamp, &state)?);
            continue;
        }
        // Compared as JSON values, not bytes: a change in how serde writes a value must not
        // look like an edit (it would get a new stamp and win over real concurrent edits).
        let cell_stamp = match &previous {
            Some((old_stamp, old_value)) if old_value == value && refused.is_none() => *old_stamp,
            _ => {
                op(FieldChange::Assign {
                    value: value.clone(),
                });
                stamp
            }
        };
        cells.push(seal(field, cell_stamp, value)?);
    }
    // Fields this build does not know (written by a newer app, or arrived by sync) are kept
    // as they are, re-sealed only if the record moved to another key.
    if let Some((old_key, old_key_id, old_cells)) = old {
        // A whole item list is replaced by its items (read into `old_items` above).
        let known = |name: &str| {
            fields.contains_key(name)
                || R::SET_FIELDS.iter().any(|f| set_state_name(f) == name)
                || R::KIND.item_fields().contains(&name)
                || schema::is_legacy_field(R::KIND, name)
        };
        for cell in old_cells.iter().filter(|c| !known(c.field)) {
            let sealed = if old_key_id == key_id {
                cell.sealed.to_vec()
            } else {
                let text = zeroize::Zeroizing::new(
                    old_key.open(&binding(old_key_id, R::KIND, &id, cell.field), cell.sealed)?,
                );
                key.seal(nonces, &binding(key_id, R::KIND, &id, cell.field), &text)?
            };
            cells.push(Cell {
                field: cell.field.to_owned(),
                hlc: cell.hlc,
                device: cell.device,
                sealed,
            });
        }
    }
    Ok(Staged { cells, ops })
}

/// The hidden cell beside a set field that holds its add-wins state (element tags).
pub(crate) fn set_state_name(field: &str) -> String {
    format!("{field}__set")
}

pub(crate) fn is_set_state(name: &str) -> bool {
    name.ends_with("__set")
}

pub(crate) fn write_row(
    conn: &Connection,
    entity: EntityKind,
    id: &Uuid,
    p: &Projection,
    key_id: KeyId,
    cells: &[Cell],
) -> Result<(), StoreError> {
    let blob = postcard::to_allocvec(cells).map_err(|_| StoreError::Corrupt("encode cells"))?;
    conn.execute(
        "INSERT INTO records (entity, id, citizen_id, site_id, sort_key, archived, key_id, cells)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (entity, id) DO UPDATE SET citizen_id = excluded.citizen_id,
             site_id = excluded.site_id, sort_key = excluded.sort_key, archived = excluded.archived,
             key_id = excluded.key_id, cells = excluded.cells",
        params![
            entity.as_str(),
            &id.as_bytes()[..],
            p.citizen_id.map(|c| c.0.as_bytes().to_vec()),
            p.site_id.map(|s| s.0.as_bytes().to_vec()),
            p.sort_key,
            p.archived,
            &key_id.0[..],
            blob
        ],
    )?;
    Ok(())
}

/// Seals a field value into a cell.
pub(crate) fn seal_cell(
    nonces: &mut NoncePool,
    (key, key_id): (&SecretKey, KeyId),
    (entity, id, field): (EntityKind, &Uuid, &str),
    stamp: Stamp,
    value: &serde_json::Value,
) -> Result<Cell, StoreError> {
    let text = zeroize::Zeroizing::new(
        serde_json::to_vec(value).map_err(|_| StoreError::Corrupt("field value"))?,
    );
    let sealed = key.seal(nonces, &binding(key_id, entity, id, field), &text)?;
    Ok(Cell {
        field: field.to_owned(),
        hlc: stamp.hlc.as_u64(),
        device: *stamp.device.0.as_bytes(),
        sealed,
    })
}

/// Opens every cell of a row into `field → (stamp, value)`, hidden set-state cells included.
pub(crate) fn open_all(
    key: &SecretKey,
    key_id: KeyId,
    entity: EntityKind,
    id: &Uuid,
    cells: &[CellRef<'_>],
) -> Result<std::collections::BTreeMap<String, (Stamp, serde_json::Value)>, StoreError> {
    let mut out = std::collections::BTreeMap::new();
    for cell in cells {
        let text = zeroize::Zeroizing::new(
            key.open(&binding(key_id, entity, id, cell.field), cell.sealed)?,
        );
        let value =
            serde_json::from_slice(&text).map_err(|_| StoreError::Corrupt("stored field"))?;
        out.insert(cell.field.to_owned(), (cell.stamp(), value));
    }
    Ok(out)
}

/// Renames stamps in a record's cells — the cells' own stamps and the tags inside add-wins set
/// state — after this device re-stamped edits its clock had put in the future.
pub(crate) fn rename_stamps(
    conn: &Connection,
    nonces: &mut NoncePool,
    keys: &mut super::keys::KeyRing,
    entity: EntityKind,
    id: &Uuid,
    map: &std::collections::BTreeMap<Stamp, Stamp>,
) -> Result<(), StoreError> {
    let Some(row) = load_row(conn, entity, id)? else {
        return Ok(());
    };
    let key = keys.by_id(conn, row.key_id)?;
    let fields = open_all(&key, row.key_id, entity, id, &row.cells()?)?;
    let mut cells = Vec::with_capacity(fields.len());
    for (name, (stamp, mut value)) in fields {
        let stamp = *map.get(&stamp).unwrap_or(&stamp);
        if is_set_state(&name) {
            let mut set: OrSet =
                serde_json::from_value(value).map_err(|_| StoreError::Corrupt("set state"))?;
            set.restamp(map);
            value = serde_json::to_value(&set).map_err(|_| StoreError::Corrupt("set state"))?;
        }
        cells.push(seal_cell(
            nonces,
            (&key, row.key_id),
            (entity, id, &name),
            stamp,
            &value,
        )?);
    }
    let blob = postcard::to_allocvec(&cells).map_err(|_| StoreError::Corrupt("encode cells"))?;
    conn.execute(
        "UPDATE records SET cells = ?1 WHERE entity = ?2 AND id = ?3",
        params![blob, entity.as_str(), &id.as_bytes()[..]],
    )?;
    Ok(())
}
