//! The store's side of sync: enrolment, the pull cursor, applying a server response, the
//! set-aside queue, and conflicts. The network part lives in [`crate::sync`].
//!
//! Invariant: a response is applied in one transaction — acknowledged mutations leave the
//! outbox, refused ones move to `set_aside`, pulled changes are merged, and the cursor moves —
//! so a crash leaves either all of it or none, and a repeated pull is harmless.

use super::keys::{KeyRing, key_id_from};
use super::{Saved, Store, StoreError, outbox, remote};
use crate::crypto::Binding;
use crate::domain::{
    Citizen, ConflictId, ConflictRecord, ConflictStatus, EntityKind, KeyScope, Record, Sensitive,
    Site, SiteLogEntry, Task, Visit, schema,
};
use crate::hlc::{Hlc, HlcClock, Stamp};
use crate::protocol::{EnrolResponse, FieldChange, Mutation, Profile, RejectReason, SyncResponse};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

/// Where this device syncs to and as whom.
#[derive(Clone, Debug)]
pub struct Enrolment {
    pub server_url: String,
    pub worker_id: Uuid,
    pub team_id: Uuid,
    /// The bearer token: personal to this device, never logged.
    pub token: Sensitive<String>,
}

/// What the sync bar shows. Readable while locked: it holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    pub enrolled: bool,
    pub pending: u64,
    pub set_aside: u64,
    pub cursor: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// What applying one response did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub acked: usize,
    pub set_aside: usize,
    /// Mutations refused for a clock too far ahead: still in the outbox, to re-stamp.
    pub clock_rejected: Vec<u64>,
    pub pulled: usize,
    /// Citizens erased because they left this device's scope.
    pub erased: Vec<crate::domain::CitizenId>,
}

/// How a worker resolves a conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Keep this device's version (or, if neither version is from this device, the loser).
    KeepMine,
    /// Keep the other version.
    KeepTheirs,
    /// A merged value, e.g. both notes edited into one text.
    Merged(serde_json::Value),
}

/// `(entity, record id, key id, sealed mutation)` of an outbox row.
type OutboxRow = (String, Vec<u8>, Vec<u8>, Vec<u8>);

fn token_binding(key_id: crate::crypto::KeyId) -> Binding<'static> {
    Binding {
        key_id,
        table: "sync_state",
        record: b"token",
        field: "token",
    }
}

fn profile_binding(key_id: crate::crypto::KeyId) -> Binding<'static> {
    Binding {
        key_id,
        table: "sync_state",
        record: b"profile",
        field: "profile",
    }
}

impl Store {
    /// Keeps who the device serves, as the server said at enrolment or in a sync answer.
    pub fn set_profile(&mut self, profile: &Profile) -> Result<(), StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let json = serde_json::to_vec(profile).map_err(|_| StoreError::Corrupt("profile"))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (key_id, key) = keys.for_scope(&tx, &mut self.nonces, KeyScope::General)?;
        let sealed = key.seal(&mut self.nonces, &profile_binding(key_id), &json)?;
        tx.execute(
            "UPDATE sync_state SET profile_key_id = ?1, profile_sealed = ?2 WHERE id = 1",
            params![&key_id.0[..], sealed],
        )?;
        tx.commit()?;
        keys.commit_new_keys();
        Ok(())
    }

    /// Who the device serves, if the server has said (a server that predates profiles has not).
    pub fn profile(&mut self) -> Result<Option<Profile>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let (key_id, sealed): (Option<Vec<u8>>, Option<Vec<u8>>) = self.conn.query_row(
            "SELECT profile_key_id, profile_sealed FROM sync_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(key_id), Some(sealed)) = (key_id, sealed) else {
            return Ok(None);
        };
        let key_id = key_id_from(&key_id)?;
        let key = keys.by_id(&self.conn, key_id)?;
        let json = key.open(&profile_binding(key_id), &sealed)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("profile"))
    }

    /// Records the enrolment: server address, worker, team, and the device token (sealed).
    pub fn set_enrolment(
        &mut self,
        server_url: &str,
        response: &EnrolResponse,
    ) -> Result<(), StoreError> {
        self.store_enrolment(&Enrolment {
            server_url: server_url.to_owned(),
            worker_id: response.worker_id,
            team_id: response.team_id,
            token: Sensitive(response.token.clone()),
        })?;
        // A new enrolment pulls everything from the start.
        self.conn.execute(
            "UPDATE sync_state SET cursor = 0, standing_token = ?1 WHERE id = 1",
            [&response.standing_token],
        )?;
        if let Some(profile) = &response.profile {
            self.set_profile(profile)?;
        }
        Ok(())
    }

    /// Keeps the lock-state credential the server issued (in the clear: it can learn
    /// "revoked" and nothing else, and must be usable while the store is locked).
    pub fn set_standing_token(&self, token: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_state SET standing_token = ?1 WHERE id = 1",
            [token],
        )?;
        Ok(())
    }

    /// The server address and the lock-state credential, if the device has one. Readable
    /// while locked.
    pub fn standing(&self) -> Result<Option<(String, Sensitive<String>)>, StoreError> {
        let (url, token): (Option<String>, Option<String>) = self.conn.query_row(
            "SELECT server_url, standing_token FROM sync_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(url.zip(token).map(|(u, t)| (u, Sensitive(t))))
    }

    /// Stores a rotated token (the cursor and everything else stay).
    pub fn replace_token(&mut self, enrolment: &Enrolment) -> Result<(), StoreError> {
        self.store_enrolment(enrolment)
    }

    fn store_enrolment(&mut self, e: &Enrolment) -> Result<(), StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (key_id, key) = keys.for_scope(&tx, &mut self.nonces, KeyScope::General)?;
        let sealed = key.seal(
            &mut self.nonces,
            &token_binding(key_id),
            e.token.expose().as_bytes(),
        )?;
        tx.execute(
            "UPDATE sync_state SET server_url = ?1, worker_id = ?2, team_id = ?3, token_key_id = ?4,
                 token_sealed = ?5, last_error = NULL WHERE id = 1",
            params![
                e.server_url,
                &e.worker_id.as_bytes()[..],
                &e.team_id.as_bytes()[..],
                &key_id.0[..],
                sealed
            ],
        )?;
        tx.commit()?;
        keys.commit_new_keys();
        Ok(())
    }

    /// The enrolment, with the token unsealed; `None` before enrolment.
    pub fn enrolment(&mut self) -> Result<Option<Enrolment>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        type Row = (
            Option<String>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let (url, worker, team, key_id, sealed): Row = self.conn.query_row(
            "SELECT server_url, worker_id, team_id, token_key_id, token_sealed FROM sync_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let (Some(server_url), Some(worker), Some(team), Some(key_id), Some(sealed)) =
            (url, worker, team, key_id, sealed)
        else {
            return Ok(None);
        };
        let key_id = key_id_from(&key_id)?;
        let key = keys.by_id(&self.conn, key_id)?;
        let token = String::from_utf8(key.open(&token_binding(key_id), &sealed)?)
            .map_err(|_| StoreError::Corrupt("token"))?;
        let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("enrolment id"));
        Ok(Some(Enrolment {
            server_url,
            worker_id: uuid(&worker)?,
            team_id: uuid(&team)?,
            token: Sensitive(token),
        }))
    }

    /// The sync bar's facts.
    pub fn sync_status(&self) -> Result<SyncStatus, StoreError> {
        let (enrolled, cursor, last_success, last_error): (bool, i64, Option<i64>, Option<String>) = self.conn.query_row(
            "SELECT token_sealed IS NOT NULL, cursor, last_success_ms, last_error FROM sync_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let set_aside: i64 = self
            .conn
            .query_row("SELECT count(*) FROM set_aside", [], |r| r.get(0))?;
        Ok(SyncStatus {
            enrolled,
            pending: self.outbox_len()?,
            set_aside: set_aside as u64,
            cursor: cursor as u64,
            last_success_ms: last_success.map(|v| v as u64),
            last_error,
        })
    }

    /// The oldest pending mutations, at most `max`.
    pub fn pending(&mut self, max: usize) -> Result<Vec<Mutation>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        outbox::list_limited(&self.conn, keys, max)
    }

    /// Applies a server response in one transaction (see the module docs).
    pub fn apply_sync_response(&mut self, response: &SyncResponse) -> Result<Applied, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let now = self.wall.now_ms();
        if crate::sim::planted(crate::sim::PlantedBug::CursorBeforeApply) {
            self.conn.execute(
                "UPDATE sync_state SET cursor = max(cursor, ?1) WHERE id = 1",
                [response.pull.next_cursor as i64],
            )?;
        }
        let result = apply_in_transaction(
            &mut self.conn,
            keys,
            &mut self.nonces,
            (&self.clock, now),
            response,
        );
        match result {
            Ok((applied, clock, offset)) => {
                keys.commit_new_keys();
                self.clock = clock;
                self.clock_offset_ms = offset;
                self.forget_erased(&applied.erased)?;
                Ok(applied)
            }
            Err(e) => {
                keys.discard_new_keys();
                if crate::sim::planted(crate::sim::PlantedBug::PullSkipsPageAfterCrash)
                    && matches!(&e, StoreError::Io(io) if io.to_string() == "simulated crash")
                {
                    self.conn.execute(
                        "UPDATE sync_state SET cursor = max(cursor, ?1) WHERE id = 1",
                        [response.pull.next_cursor as i64],
                    )?;
                }
                Err(e)
            }
        }
    }

    /// Re-stamps the edits this device made while its clock ran ahead (DESIGN §5, property 6),
    /// after the server refused them. The device's clock is corrected by the server's wall clock
    /// (`server_time_ms`, not the server's HLC, which may itself run ahead by up to the bound);
    /// every pending mutation stamped beyond the skew bound of the corrected clock — exactly
    /// what the server refuses — gets a fresh stamp, in outbox order (so the worker's own edits
    /// keep their order), and the old→new renaming is applied everywhere those stamps live: the ops, the `base` and
    /// remove tags of later pending ops, the record cells and the add-wins set state. Those
    /// future stamps were never accepted anywhere, so nothing else refers to them.
    pub fn restamp(&mut self, response: &SyncResponse) -> Result<usize, StoreError> {
        let server_hlc = response.server_hlc;
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let local = self.wall.now_ms() as i64;
        let offset = response.server_now_ms() as i64 - local;
        let corrected_now = (local + offset).max(0) as u64;
        let bound = corrected_now + self.clock.max_drift_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending = outbox::list(&tx, keys)?;
        // The clock restarts from the server's, but never below a pending stamp that stays:
        // the next edit must still order after everything this device has written.
        let kept = pending
            .iter()
            .flat_map(|m| &m.ops)
            .map(|op| op.hlc)
            .filter(|hlc| hlc.wall_ms() <= bound)
            .max()
            .unwrap_or(Hlc::ZERO);
        let start = server_hlc.max(kept);
        if start.wall_ms() >= bound {
            // Every fresh stamp would itself be beyond the bound (the server's HLC ran ahead and
            // its wall clock then stepped back): re-stamping now would loop. Wait for time to
            // pass; the next sync tries again.
            return Ok(0);
        }
        let mut clock = HlcClock::new(start, self.clock.max_drift_ms());
        let mut map = std::collections::BTreeMap::new();
        for m in &pending {
            for op in &m.ops {
                let old = Stamp {
                    hlc: op.hlc,
                    device: self.device_id,
                };
                if op.hlc.wall_ms() > bound && !map.contains_key(&old) {
                    map.insert(
                        old,
                        Stamp {
                            hlc: clock.now(corrected_now)?,
                            device: self.device_id,
                        },
                    );
                }
            }
        }
        if !map.is_empty() {
            let rename = |s: Stamp| *map.get(&s).unwrap_or(&s);
            let mut touched = std::collections::BTreeSet::new();
            for m in &pending {
                let mut renamed = m.clone();
                for op in &mut renamed.ops {
                    op.hlc = rename(Stamp {
                        hlc: op.hlc,
                        device: self.device_id,
                    })
                    .hlc;
                    op.base = op.base.map(rename);
                    if let FieldChange::Remove { observed, .. } = &mut op.change {
                        for tag in observed.iter_mut() {
                            *tag = rename(*tag);
                        }
                    }
                }
                if renamed != *m {
                    outbox::rewrite(&tx, &mut self.nonces, keys, &renamed)?;
                    if let Some(op) = renamed.ops.first() {
                        touched.insert((op.entity, op.id));
                    }
                }
            }
            for (entity, id) in touched {
                super::records::rename_stamps(&tx, &mut self.nonces, keys, entity, &id, &map)?;
            }
        }
        tx.execute(
            "UPDATE sync_state SET clock_offset_ms = ?1 WHERE id = 1",
            [offset],
        )?;
        tx.execute(
            "UPDATE header SET hlc_last = ?1 WHERE id = 1",
            [clock.last().as_u64() as i64],
        )?;
        if crate::sim::fail_here(crate::sim::FailPoint::DeviceRestampBeforeCommit) {
            // Dropping the transaction rolls it back, as a crash before the commit would.
            drop(tx);
            keys.discard_new_keys();
            return Err(StoreError::Io(std::io::Error::other("simulated crash")));
        }
        tx.commit()?;
        keys.commit_new_keys();
        self.clock = clock;
        self.clock_offset_ms = offset;
        Ok(map.len())
    }

    /// Makes this device's clock run `ms` ahead of (or behind) the system clock, as a tablet with
    /// a wrong clock would. For tests of the skew bound; the next re-stamp corrects it.
    #[doc(hidden)]
    pub fn set_clock_offset_ms(&mut self, ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_state SET clock_offset_ms = ?1 WHERE id = 1",
            [ms],
        )?;
        self.clock_offset_ms = ms;
        Ok(())
    }

    /// Notes a failed sync for the sync bar (a message for people, never personal data).
    pub fn record_sync_error(&self, message: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE sync_state SET last_error = ?1 WHERE id = 1",
            [message],
        )?;
        Ok(())
    }

    /// Mutations the server refused for good: `(device_seq, reason, detail)`.
    pub fn set_aside(&self) -> Result<Vec<(u64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT device_seq, reason, detail FROM set_aside ORDER BY device_seq")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Conflicts on this device, open ones only unless `include_closed`.
    pub fn conflicts(&mut self, include_closed: bool) -> Result<Vec<ConflictRecord>, StoreError> {
        self.list::<ConflictRecord>(&super::ListQuery {
            include_archived: include_closed,
            ..Default::default()
        })
    }

    /// Resolves a conflict: the chosen value becomes an ordinary edit of the field (so it syncs
    /// and wins over both versions), and the conflict is marked resolved.
    pub fn resolve_conflict(
        &mut self,
        id: ConflictId,
        resolution: Resolution,
    ) -> Result<(), StoreError> {
        let conflict: ConflictRecord = self.get(id.0)?.ok_or(StoreError::RecordNotFound {
            entity: EntityKind::Conflict,
        })?;
        // A whole goal list has no one text to write together: keep one version.
        if conflict
            .entity
            .item_fields()
            .contains(&conflict.field.as_str())
            && matches!(resolution, Resolution::Merged(_))
        {
            return Err(StoreError::InvalidValue {
                field: conflict.field.clone(),
            });
        }
        let mine_is_loser = conflict.loser_stamp.device == self.device_id
            || conflict.winner_stamp.device != self.device_id;
        let (mine, theirs) = if mine_is_loser {
            (conflict.loser.clone(), conflict.winner.clone())
        } else {
            (conflict.winner.clone(), conflict.loser.clone())
        };
        let value = match resolution {
            Resolution::KeepMine => mine,
            Resolution::KeepTheirs => theirs,
            // Text written together into a structured field (a goal, a consent) replaces its
            // words; its status and dates stay as the current version has them.
            Resolution::Merged(v) => match schema::text_part(conflict.entity, &conflict.field) {
                Some(part) if v.is_string() => {
                    let mut base = if conflict.winner.is_object() {
                        conflict.winner.clone()
                    } else {
                        conflict.loser.clone()
                    };
                    match &mut base {
                        serde_json::Value::Object(m) => {
                            m.insert(part.to_owned(), v);
                            base
                        }
                        _ => v,
                    }
                }
                _ => v,
            },
        };
        self.edit_field(conflict.entity, conflict.record_id, &conflict.field, value)?;
        self.edit_typed::<ConflictRecord>(
            id.0,
            "status",
            serde_json::to_value(ConflictStatus::Resolved).unwrap_or_default(),
        )?;
        Ok(())
    }

    /// Dismisses a notice (a scalar conflict whose winner stands).
    pub fn dismiss_conflict(&mut self, id: ConflictId) -> Result<(), StoreError> {
        self.edit_typed::<ConflictRecord>(
            id.0,
            "status",
            serde_json::to_value(ConflictStatus::Dismissed).unwrap_or_default(),
        )
        .map(|_| ())
    }

    /// Sets one field of a record of any kind, as an ordinary validated save.
    pub fn edit_field(
        &mut self,
        entity: EntityKind,
        id: Uuid,
        field: &str,
        value: serde_json::Value,
    ) -> Result<Saved, StoreError> {
        match entity {
            EntityKind::Citizen => self.edit_typed::<Citizen>(id, field, value),
            EntityKind::Visit => self.edit_typed::<Visit>(id, field, value),
            EntityKind::Task => self.edit_typed::<Task>(id, field, value),
            EntityKind::Site => self.edit_typed::<Site>(id, field, value),
            EntityKind::SiteLogEntry => self.edit_typed::<SiteLogEntry>(id, field, value),
            EntityKind::Conflict => self.edit_typed::<ConflictRecord>(id, field, value),
        }
    }

    pub(crate) fn edit_typed<R: Record>(
        &mut self,
        id: Uuid,
        field: &str,
        value: serde_json::Value,
    ) -> Result<Saved, StoreError> {
        let record: R = self
            .get(id)?
            .ok_or(StoreError::RecordNotFound { entity: R::KIND })?;
        let serde_json::Value::Object(mut json) =
            serde_json::to_value(&record).map_err(|_| StoreError::Corrupt("record form"))?
        else {
            return Err(StoreError::Corrupt("record form"));
        };
        // One item of an item list (a goal) is set within its list; `null` removes it.
        let invalid = || StoreError::InvalidValue {
            field: schema::rule_field(R::KIND, field).to_owned(),
        };
        schema::split_items(R::KIND, &mut json).map_err(|_| invalid())?;
        if R::KIND.item_fields().contains(&field) {
            // A whole list (a conflict raised before lists travelled item by item): it replaces
            // the items, and the items it does not hold are removed.
            schema::replace_list(R::KIND, &mut json, field, value).map_err(|_| invalid())?;
        } else {
            json.insert(field.to_owned(), value);
        }
        schema::join_items(R::KIND, &mut json).map_err(|_| invalid())?;
        let updated: R =
            serde_json::from_value(serde_json::Value::Object(json)).map_err(|_| invalid())?;
        self.save(&updated)
    }
}

fn apply_in_transaction(
    conn: &mut rusqlite::Connection,
    keys: &mut KeyRing,
    nonces: &mut crate::crypto::NoncePool,
    (clock, now): (&HlcClock, u64),
    response: &SyncResponse,
) -> Result<(Applied, HlcClock, i64), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let hlc_last: i64 =
        tx.query_row("SELECT hlc_last FROM header WHERE id = 1", [], |r| r.get(0))?;
    let mut clock = HlcClock::new(
        clock.last().max(Hlc::from_u64(hlc_last as u64)),
        clock.max_drift_ms(),
    );
    let mut applied = Applied::default();
    // Whether each record an acknowledged edit is about was on the device before this response.
    let mut held: std::collections::HashMap<(EntityKind, Uuid), bool> = Default::default();
    for seq in &response.acked {
        // The edit of a record this device no longer holds (its citizen left the device's
        // scope while the edit was pending, and came back before it was pushed): the server
        // never sends a device its own edits, so it goes into the record here, which the
        // citizen's history then completes.
        let row: Option<OutboxRow> = tx
            .query_row(
                "SELECT entity, record_id, key_id, sealed FROM outbox WHERE device_seq = ?1",
                [*seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((entity, record, key_id, sealed)) = row {
            let entity = EntityKind::parse(&entity).ok_or(StoreError::Corrupt("outbox entity"))?;
            let record =
                Uuid::from_slice(&record).map_err(|_| StoreError::Corrupt("outbox record"))?;
            let was_held = match held.get(&(entity, record)) {
                Some(h) => *h,
                None => {
                    let h = super::records::load_row(&tx, entity, &record)?.is_some();
                    held.insert((entity, record), h);
                    h
                }
            };
            if !was_held {
                let mutation = outbox::open_row(&tx, keys, *seq, &key_id, &sealed)?;
                remote::apply(&tx, keys, nonces, &mutation)?;
            }
        }
        applied.acked += tx.execute("DELETE FROM outbox WHERE device_seq = ?1", [*seq as i64])?;
    }
    for rejection in &response.rejected {
        if !rejection.reason.is_permanent() {
            if rejection.reason == RejectReason::ClockAhead {
                applied.clock_rejected.push(rejection.device_seq);
            }
            continue;
        }
        let row: Option<OutboxRow> = tx
            .query_row(
                "SELECT entity, record_id, key_id, sealed FROM outbox WHERE device_seq = ?1",
                [rejection.device_seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((entity, record_id, key_id, sealed)) = row {
            let reason = serde_json::to_value(rejection.reason).unwrap_or_default();
            tx.execute(
                "INSERT OR REPLACE INTO set_aside (device_seq, entity, record_id, key_id, sealed, reason, detail, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    rejection.device_seq as i64,
                    entity,
                    record_id,
                    key_id,
                    sealed,
                    reason.as_str().unwrap_or("rejected"),
                    rejection.detail.chars().take(500).collect::<String>(),
                    now as i64
                ],
            )?;
            tx.execute(
                "DELETE FROM outbox WHERE device_seq = ?1",
                [rejection.device_seq as i64],
            )?;
            applied.set_aside += 1;
        }
    }
    // A change at or below the cursor is applied already: a late or repeated copy of an old
    // page is not applied again — it could bring back a citizen erased since, or erase one who
    // came back.
    let (cursor, rescope): (i64, i64) = tx.query_row(
        "SELECT cursor, rescope FROM sync_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // While pulling afresh after a scope change only pages of that pull count, and only then.
    let foreign = response.pull.resync != (rescope == 2);
    // Records this page brings back that the device still has pending edits of (a citizen who
    // left its scope and came back): the pending edits go on top again once the page is in,
    // as they were when the worker saved them.
    let mut returning = std::collections::BTreeSet::new();
    for (seq, mutation) in &response.pull.changes {
        for op in &mutation.ops {
            clock.witness(op.hlc);
        }
        if *seq as i64 <= cursor || foreign {
            continue;
        }
        if let Some(op) = mutation.ops.first()
            && super::records::load_row(&tx, op.entity, &op.id)?.is_none()
        {
            returning.insert((op.entity, op.id));
        }
        remote::apply(&tx, keys, nonces, mutation)?;
        applied.pulled += 1;
    }
    for (entity, id) in returning {
        for pending in outbox::for_record(&tx, keys, entity, &id)? {
            remote::apply(&tx, keys, nonces, &pending)?;
        }
    }
    let stale = response.pull.next_cursor as i64 <= cursor || foreign;
    // After the page's changes (a page ends at an erasure): the citizen left this device's
    // scope. Their key goes, and with it every sealed copy.
    for citizen in response.pull.erase.iter().filter(|_| !stale) {
        super::erase_citizen_in(&tx, *citizen, super::keys::Leaving::LeftScope)?;
        applied.erased.push(*citizen);
    }
    if response.access_acked > 0 {
        tx.execute(
            "DELETE FROM access_log WHERE seq <= ?1",
            [response.access_acked as i64],
        )?;
    }
    clock.witness(response.server_hlc);
    // Keep the clock correction current: a tablet whose clock was fixed since must not keep
    // an old offset (it would stamp its edits in the past and lose every concurrent edit).
    let skew = response.server_now_ms() as i64 - now as i64;
    let offset = if skew.abs() > CLOCK_TOLERANCE_MS {
        skew
    } else {
        0
    };
    let rewind = crate::sim::planted(crate::sim::PlantedBug::CursorRewind);
    tx.execute(
        if rewind {
            "UPDATE sync_state SET cursor = ?1, last_success_ms = ?2, last_error = NULL,
             clock_offset_ms = ?3 WHERE id = 1"
        } else {
            "UPDATE sync_state SET cursor = max(cursor, ?1), last_success_ms = ?2, last_error = NULL,
             clock_offset_ms = ?3 WHERE id = 1"
        },
        params![
            if foreign { cursor } else { response.pull.next_cursor as i64 },
            now as i64,
            offset
        ],
    )?;
    tx.execute(
        "UPDATE header SET hlc_last = max(hlc_last, ?1) WHERE id = 1",
        [clock.last().as_u64() as i64],
    )?;
    if crate::sim::fail_here(crate::sim::FailPoint::DeviceApplyBeforeCommit) {
        // Dropping the transaction rolls it back, as a crash before the commit would.
        return Err(StoreError::Io(std::io::Error::other("simulated crash")));
    }
    tx.commit()?;
    Ok((applied, clock, offset))
}

/// A device clock within this of the server's is left alone.
const CLOCK_TOLERANCE_MS: i64 = 60_000;
