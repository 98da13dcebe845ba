//! Edits the server refused for good (DESIGN §5 property 7). They stay sealed on the device until
//! the worker decides what happens to them: sent again as a new edit of the record as it is now,
//! copied into a new record, or discarded after the worker has confirmed. Nothing here drops a
//! refused edit on its own.

use super::records::Forced;
use super::{Saved, Store, StoreError, outbox};
use crate::domain::{
    Citizen, ConflictRecord, EntityKind, Record, Site, SiteLogEntry, Task, Visit, schema,
};
use crate::protocol::{FieldChange, Mutation, RejectReason};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

/// One refused edit, opened.
#[derive(Clone, Debug)]
pub struct SetAsideEdit {
    pub device_seq: u64,
    pub entity: EntityKind,
    pub record_id: Uuid,
    /// Why the server refused it (`None`: a reason this build does not know).
    pub reason: Option<RejectReason>,
    /// The server's words for people (never a value).
    pub detail: String,
    /// When it was set aside (device clock, ms).
    pub at_ms: u64,
    pub mutation: Mutation,
}

impl SetAsideEdit {
    /// The edit's values as a record of its kind would hold them: assigned values, and the
    /// elements it added to sets. A creation gives a whole record; an edit, the fields it wrote.
    pub fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for op in self
            .mutation
            .ops
            .iter()
            .filter(|op| op.id == self.record_id)
        {
            match &op.change {
                FieldChange::Assign { value } => {
                    out.insert(op.field.clone(), value.clone());
                }
                FieldChange::Add { value } => {
                    let list = out
                        .entry(op.field.clone())
                        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                    if let serde_json::Value::Array(items) = list {
                        items.push(value.clone());
                    }
                }
                FieldChange::Remove { .. } => {}
            }
        }
        out
    }
}

type Row = (i64, String, Vec<u8>, Vec<u8>, Vec<u8>, String, String, i64);

/// Records by kind and id.
pub type RecordKeys = std::collections::HashSet<(EntityKind, Uuid)>;

impl Store {
    /// The records with edits still in the outbox, and those with refused edits set aside
    /// (from the plain columns: no key needed, nothing decrypted).
    pub fn unsent_records(&self) -> Result<(RecordKeys, RecordKeys), StoreError> {
        let read = |table: &str| -> Result<RecordKeys, StoreError> {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT DISTINCT entity, record_id FROM {table}"))?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = RecordKeys::new();
            for row in rows {
                let (entity, id) = row?;
                if let (Some(entity), Ok(id)) = (EntityKind::parse(&entity), Uuid::from_slice(&id))
                {
                    out.insert((entity, id));
                }
            }
            Ok(out)
        };
        Ok((read("outbox")?, read("set_aside")?))
    }

    /// Every refused edit on this device, oldest first, opened.
    pub fn set_aside_edits(&mut self) -> Result<Vec<SetAsideEdit>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let rows: Vec<Row> = {
            let mut stmt = self.conn.prepare(
                "SELECT device_seq, entity, record_id, key_id, sealed, reason, detail, at_ms
                 FROM set_aside ORDER BY device_seq",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (seq, entity, record_id, key_id, sealed, reason, detail, at_ms) in rows {
            let mutation = outbox::open_row(&self.conn, keys, seq as u64, &key_id, &sealed)?;
            out.push(SetAsideEdit {
                device_seq: seq as u64,
                entity: EntityKind::parse(&entity)
                    .ok_or(StoreError::Corrupt("set-aside entity"))?,
                record_id: Uuid::from_slice(&record_id)
                    .map_err(|_| StoreError::Corrupt("set-aside record id"))?,
                reason: serde_json::from_value(serde_json::Value::String(reason)).ok(),
                detail,
                at_ms: at_ms as u64,
                mutation,
            });
        }
        Ok(out)
    }

    /// One refused edit.
    pub fn set_aside_edit(&mut self, device_seq: u64) -> Result<SetAsideEdit, StoreError> {
        self.set_aside_edits()?
            .into_iter()
            .find(|e| e.device_seq == device_seq)
            .ok_or(StoreError::SetAsideNotFound)
    }

    /// Sends a refused edit again as a new edit of the record as it is now on this device: its
    /// values are written over the current record and sent with fresh versions, even where the
    /// device already shows them (it did since the first save). The refused copy is removed in
    /// the same transaction; if the server refuses again, the new edit is set aside in turn.
    pub fn resend_set_aside(&mut self, device_seq: u64) -> Result<Saved, StoreError> {
        let edit = self.set_aside_edit(device_seq)?;
        match edit.entity {
            EntityKind::Citizen => self.resend_typed::<Citizen>(&edit),
            EntityKind::Visit => self.resend_typed::<Visit>(&edit),
            EntityKind::Task => self.resend_typed::<Task>(&edit),
            EntityKind::Site => self.resend_typed::<Site>(&edit),
            EntityKind::SiteLogEntry => self.resend_typed::<SiteLogEntry>(&edit),
            EntityKind::Conflict => self.resend_typed::<ConflictRecord>(&edit),
        }
    }

    fn resend_typed<R: Record>(&mut self, edit: &SetAsideEdit) -> Result<Saved, StoreError> {
        let current: R = self
            .get(edit.record_id)?
            .ok_or(StoreError::RecordNotFound { entity: R::KIND })?;
        let serde_json::Value::Object(mut json) =
            serde_json::to_value(&current).map_err(|_| StoreError::Corrupt("record form"))?
        else {
            return Err(StoreError::Corrupt("record form"));
        };
        let invalid = || StoreError::InvalidValue {
            field: "set_aside".into(),
        };
        // Item lists (goals) as their items, as they travel: a refused edit of one goal is
        // written back into its own field.
        schema::split_items(R::KIND, &mut json).map_err(|_| invalid())?;
        let mut forced = Forced::default();
        for op in edit
            .mutation
            .ops
            .iter()
            .filter(|op| op.id == edit.record_id)
        {
            let field = op.field.clone();
            let stamp = edit.mutation.stamp_of(op);
            match &op.change {
                // A whole list, refused because it was written before lists travelled item by
                // item: each of its items is written again, and the items it no longer had are
                // removed, all on top of the version the refused write had seen.
                FieldChange::Assign { value }
                    if R::KIND.item_fields().contains(&field.as_str()) =>
                {
                    let written = schema::replace_list(R::KIND, &mut json, &field, value.clone())
                        .map_err(|_| invalid())?;
                    for name in written {
                        forced.assign.push((name, stamp, op.base));
                    }
                }
                FieldChange::Assign { value } => {
                    json.insert(field.clone(), value.clone());
                    forced.assign.push((field, stamp, op.base));
                }
                FieldChange::Add { value } => {
                    if let Some(serde_json::Value::Array(items)) = json.get_mut(&field)
                        && !items.contains(value)
                    {
                        items.push(value.clone());
                    }
                    forced.adds.push((field, value.clone()));
                }
                FieldChange::Remove { value, observed } => {
                    if let Some(serde_json::Value::Array(items)) = json.get_mut(&field) {
                        items.retain(|v| v != value);
                    }
                    forced
                        .removes
                        .push((field, value.clone(), observed.clone()));
                }
            }
        }
        schema::join_items(R::KIND, &mut json).map_err(|_| invalid())?;
        let updated: R =
            serde_json::from_value(serde_json::Value::Object(json)).map_err(|_| invalid())?;
        updated.validate()?;
        let seq = edit.device_seq;
        self.in_save_tx(|save, keys, nonces| {
            let saved = save.save_forced(keys, nonces, &updated, &forced)?;
            forget_set_aside(&save.tx, seq)?;
            Ok(saved)
        })
    }

    /// Saves `record` (made from a refused edit's values by the caller, e.g. a visit copied to
    /// another citizen) and removes the refused edit, in one transaction: both or neither.
    pub fn replace_set_aside<R: Record>(
        &mut self,
        device_seq: u64,
        record: &R,
    ) -> Result<Saved, StoreError> {
        record.validate()?;
        self.set_aside_edit(device_seq)?;
        let saved = self.in_save_tx(|save, keys, nonces| {
            let saved = save.save(keys, nonces, record)?;
            forget_set_aside(&save.tx, device_seq)?;
            Ok(saved)
        })?;
        self.drop_orphan_keys()?;
        Ok(saved)
    }

    /// Deletes a refused edit for good: the worker has confirmed that its values are lost.
    pub fn discard_set_aside(&mut self, device_seq: u64) -> Result<(), StoreError> {
        self.keys.as_ref().ok_or(StoreError::Locked)?;
        let tx = self.conn.transaction()?;
        if !forget_set_aside(&tx, device_seq)? {
            return Err(StoreError::SetAsideNotFound);
        }
        tx.commit()?;
        self.drop_orphan_keys()
    }

    /// A citizen erased by a sync keeps their key while refused edits sealed under it wait for
    /// the worker; once the last one is gone, so is the key (and with it every old copy).
    fn drop_orphan_keys(&mut self) -> Result<(), StoreError> {
        let orphans: Vec<Vec<u8>> = {
            let mut stmt = self.conn.prepare(
                "SELECT key_id FROM data_keys k WHERE scope LIKE 'citizen:%'
                   AND NOT EXISTS (SELECT 1 FROM records r WHERE r.key_id = k.key_id)
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.key_id = k.key_id)
                   AND NOT EXISTS (SELECT 1 FROM set_aside s WHERE s.key_id = k.key_id)
                   AND NOT EXISTS (SELECT 1 FROM drafts d WHERE d.key_id = k.key_id)",
            )?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        if orphans.is_empty() {
            return Ok(());
        }
        for key_id in &orphans {
            self.conn
                .execute("DELETE FROM data_keys WHERE key_id = ?1", [key_id])?;
            if let Some(keys) = self.keys.as_mut() {
                keys.forget_id(super::keys::key_id_from(key_id)?);
            }
        }
        self.checkpoint()
    }
}

/// Removes one set-aside row inside `tx`; whether there was one.
fn forget_set_aside(tx: &rusqlite::Transaction<'_>, device_seq: u64) -> Result<bool, StoreError> {
    let found: Option<i64> = tx
        .query_row(
            "SELECT device_seq FROM set_aside WHERE device_seq = ?1",
            params![device_seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        "DELETE FROM set_aside WHERE device_seq = ?1",
        params![device_seq as i64],
    )?;
    Ok(found.is_some())
}
