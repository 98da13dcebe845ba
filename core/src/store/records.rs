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
use crate::domain::{EntityKind, Record};
use crate::hlc::{DeviceId, Hlc, Stamp};
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
    json.clear();
    json.push(b'{');
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
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
    json.push(b'}');
    serde_json::from_slice(json).map_err(|_| StoreError::Corrupt("record fields"))
}

/// What saving a record produced.
pub(crate) struct Staged {
    pub cells: Vec<Cell>,
    pub ops: Vec<FieldOp>,
}

/// Compares the new record with the stored one and seals the result. Unchanged fields keep
/// their stamp (re-sealed only if the key changed); changed fields get `stamp` and an op whose
/// base is the version they replace. Set fields produce one `Add`/`Remove` per element.
pub(crate) fn stage<R: Record>(
    nonces: &mut NoncePool,
    record: &R,
    old: Option<(&SecretKey, KeyId, &[CellRef<'_>])>,
    key: &SecretKey,
    key_id: KeyId,
    stamp: Stamp,
) -> Result<Staged, StoreError> {
    let id = record.record_id();
    let serde_json::Value::Object(fields) =
        serde_json::to_value(record).map_err(|_| StoreError::Corrupt("record form"))?
    else {
        return Err(StoreError::Corrupt("record is not an object"));
    };
    let mut cells = Vec::with_capacity(fields.len());
    let mut ops = Vec::new();
    for (field, value) in &fields {
        let previous = match old {
            Some((old_key, old_key_id, old_cells)) => {
                match old_cells.iter().find(|c| c.field == field) {
                    Some(cell) => {
                        let text = zeroize::Zeroizing::new(
                            old_key.open(&binding(old_key_id, R::KIND, &id, field), cell.sealed)?,
                        );
                        let old_value: serde_json::Value = serde_json::from_slice(&text)
                            .map_err(|_| StoreError::Corrupt("stored field"))?;
                        Some((cell, old_value))
                    }
                    None => None,
                }
            }
            None => None,
        };
        // Compared as JSON values, not bytes: a change in how serde writes a value must not
        // look like an edit (it would get a new stamp and win over real concurrent edits).
        let (cell_stamp, changed) = match &previous {
            Some((cell, old_value)) if old_value == value => (cell.stamp(), false),
            _ => (stamp, true),
        };
        if changed {
            let base = previous.as_ref().map(|(cell, _)| cell.stamp());
            let old_value = previous.as_ref().map(|(_, v)| v);
            for change in changes(R::SET_FIELDS.contains(&field.as_str()), old_value, value) {
                ops.push(FieldOp {
                    entity: R::KIND,
                    id,
                    field: field.clone(),
                    change,
                    hlc: stamp.hlc,
                    base,
                });
            }
        }
        let text = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|_| StoreError::Corrupt("field value"))?,
        );
        let sealed = key.seal(nonces, &binding(key_id, R::KIND, &id, field), &text)?;
        cells.push(Cell {
            field: field.clone(),
            hlc: cell_stamp.hlc.as_u64(),
            device: *cell_stamp.device.0.as_bytes(),
            sealed,
        });
    }
    // Fields this build does not know (written by a newer app, or arrived by sync) are kept
    // as they are, re-sealed only if the record moved to another key.
    if let Some((old_key, old_key_id, old_cells)) = old {
        for cell in old_cells.iter().filter(|c| !fields.contains_key(c.field)) {
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

fn changes(
    is_set: bool,
    old: Option<&serde_json::Value>,
    new: &serde_json::Value,
) -> Vec<FieldChange> {
    let (true, serde_json::Value::Array(new_items)) = (is_set, new) else {
        return vec![FieldChange::Assign(new.clone())];
    };
    let empty = Vec::new();
    let old_items = match old {
        Some(serde_json::Value::Array(items)) => items,
        _ => &empty,
    };
    let mut out: Vec<FieldChange> = new_items
        .iter()
        .filter(|v| !old_items.contains(v))
        .map(|v| FieldChange::Add(v.clone()))
        .collect();
    out.extend(
        old_items
            .iter()
            .filter(|v| !new_items.contains(v))
            .map(|v| FieldChange::Remove(v.clone())),
    );
    out
}

pub(crate) fn write_row<R: Record>(
    conn: &Connection,
    record: &R,
    key_id: KeyId,
    cells: &[Cell],
) -> Result<(), StoreError> {
    let p = record.projection();
    let blob = postcard::to_allocvec(cells).map_err(|_| StoreError::Corrupt("encode cells"))?;
    conn.execute(
        "INSERT INTO records (entity, id, citizen_id, site_id, sort_key, archived, key_id, cells)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (entity, id) DO UPDATE SET citizen_id = excluded.citizen_id,
             site_id = excluded.site_id, sort_key = excluded.sort_key, archived = excluded.archived,
             key_id = excluded.key_id, cells = excluded.cells",
        params![
            R::KIND.as_str(),
            &record.record_id().as_bytes()[..],
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
