//! Applying pushes and serving pulls: the server's side of DESIGN §5.
//!
//! One push is one IMMEDIATE transaction. For each mutation, in the device's order:
//! 1. a `(device, seq)` pair already applied is acknowledged again and changes nothing
//!    (idempotence: a retried push cannot duplicate anything);
//! 2. the mutation is checked — the authenticated device, one record, well-formed fields, sizes,
//!    the skew bound on its HLC, the record's team — and rejected with a reason if it fails;
//! 3. each op is merged with [`feltbog_core::merge`]; a concurrent edit that loses becomes a
//!    [`ConflictRecord`] written by the server as its own mutation;
//! 4. the mutation as applied (author taken from authentication) is appended to the change log.
//!
//! The log's `seq` is the commit order; a device pulls by cursor and gets whole mutations only.

use crate::identity::Caller;
use feltbog_core::domain::{
    Citizen, CitizenId, ConflictId, ConflictRecord, ConflictStatus, EntityKind, Record, Site,
    SiteLogEntry, Task, Visit,
};
use feltbog_core::hlc::{DeviceId, Hlc, HlcClock, Stamp};
use feltbog_core::merge::{self, ConflictKind, OrSet, Register, RegisterOutcome};
use feltbog_core::protocol::{
    FieldChange, FieldOp, Mutation, PullPage, RejectReason, Rejection, SyncRequest, SyncResponse,
    limits,
};
use feltbog_core::sim::{FailPoint, PlantedBug, fail_here, planted};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use uuid::Uuid;

/// The device id the server writes its own mutations (conflict records) under.
pub const SERVER_DEVICE: DeviceId = DeviceId(Uuid::nil());

/// Storage failures while syncing (everything else is a per-mutation rejection).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt ({0})")]
    Corrupt(&'static str),
    #[error("server clock: {0}")]
    Clock(#[from] feltbog_core::hlc::ClockError),
}

/// Handles one sync round trip for `caller`.
pub fn sync(
    conn: &mut Connection,
    caller: &Caller,
    request: &SyncRequest,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<SyncResponse, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (hlc_last, server_seq): (i64, i64) = tx.query_row(
        "SELECT hlc_last, server_seq FROM server_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut ctx = Ctx {
        tx: &tx,
        clock: HlcClock::new(Hlc::from_u64(hlc_last as u64), max_drift_ms),
        server_seq: server_seq as u64,
        now_ms,
    };
    let mut acked = Vec::new();
    let mut rejected = Vec::new();
    for mutation in &request.mutations {
        let seq = mutation.device_seq;
        let done: Option<(Option<Vec<u8>>, Option<i64>)> = ctx
            .tx
            .query_row(
                "SELECT digest, change_seq FROM applied WHERE device_id = ?1 AND device_seq = ?2",
                params![&mutation.device_id.0.as_bytes()[..], seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((digest, change_seq)) = done
            && mutation.device_id == caller.device_id
            && !planted(PlantedBug::PushNotIdempotent)
        {
            // A replay. If it differs from what was applied (the device re-stamped a mutation
            // the server had refused, and an older copy of it got through later), the device
            // holds stamps nobody else has: send it the applied version to adopt.
            let received = mutation_digest(mutation);
            if let (Some(digest), Some(change_seq)) = (digest, change_seq)
                && digest != received
            {
                ctx.echo_again(caller.team_id, change_seq)?;
                // Remember this version: more copies of it need no second echo.
                ctx.tx.execute(
                    "UPDATE applied SET digest = ?1 WHERE device_id = ?2 AND device_seq = ?3",
                    params![received, &mutation.device_id.0.as_bytes()[..], seq as i64],
                )?;
            }
            acked.push(seq);
            continue;
        }
        match ctx.check(caller, mutation)? {
            Err((reason, detail)) => rejected.push(Rejection {
                device_seq: seq,
                reason,
                detail,
            }),
            Ok(()) => {
                ctx.apply(caller, mutation)?;
                acked.push(seq);
            }
        }
    }
    let server_hlc = ctx.clock.now(now_ms)?;
    tx.execute(
        "UPDATE server_state SET hlc_last = ?1, server_seq = ?2 WHERE id = 1",
        params![server_hlc.as_u64() as i64, ctx.server_seq as i64],
    )?;
    let pull = pull_page(&tx, caller, request.cursor)?;
    if fail_here(FailPoint::ServerSyncBeforeCommit) {
        // Dropping the transaction rolls it back, as a crash before the commit would.
        return Err(SyncError::Corrupt("simulated crash"));
    }
    tx.commit()?;
    Ok(SyncResponse {
        acked,
        rejected,
        pull,
        server_hlc,
        server_time_ms: now_ms,
    })
}

/// The next page of changes for `caller` after `cursor`: its team's mutations, except the ones
/// its own device sent (it has them), whole mutations only.
pub fn pull_page(conn: &Connection, caller: &Caller, cursor: u64) -> Result<PullPage, SyncError> {
    let mut stmt = conn.prepare_cached(if planted(PlantedBug::ScopeLeak) {
        "SELECT seq, device_id, echo, mutation FROM changes WHERE (team_id = ?1 OR 1) AND seq > ?2 ORDER BY seq LIMIT ?3"
    } else {
        "SELECT seq, device_id, echo, mutation FROM changes WHERE team_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    })?;
    let mut rows = stmt.query(params![
        &caller.team_id.as_bytes()[..],
        cursor as i64,
        limits::PULL_PAGE_MUTATIONS as i64
    ])?;
    let (mut changes, mut next_cursor, mut scanned, mut bytes) =
        (Vec::new(), cursor, 0usize, 0usize);
    let mut full = false;
    while let Some(row) = rows.next()? {
        if bytes >= limits::PAGE_BYTES {
            full = true;
            break;
        }
        scanned += 1;
        let seq = row.get::<_, i64>(0)? as u64;
        next_cursor = seq;
        let device: Vec<u8> = row.get(1)?;
        let echo: bool = row.get(2)?;
        if device == caller.device_id.0.as_bytes() && !echo {
            continue;
        }
        let text: String = row.get(3)?;
        bytes += text.len();
        let mutation: Mutation =
            serde_json::from_str(&text).map_err(|_| SyncError::Corrupt("change log"))?;
        changes.push((seq, mutation));
    }
    Ok(PullPage {
        changes,
        next_cursor,
        more: full || scanned == limits::PULL_PAGE_MUTATIONS,
    })
}

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    clock: HlcClock,
    server_seq: u64,
    now_ms: u64,
}

type Check = Result<(), (RejectReason, String)>;

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with("__set")
}

impl Ctx<'_> {
    /// Every rule a mutation must meet before anything of it is applied.
    fn check(&self, caller: &Caller, m: &Mutation) -> Result<Check, SyncError> {
        let invalid = |detail: &str| Ok(Err((RejectReason::Invalid, detail.to_owned())));
        if m.device_id != caller.device_id {
            return Ok(Err((
                RejectReason::ForgedDevice,
                "mutation names another device".into(),
            )));
        }
        let Some(first) = m.ops.first() else {
            return invalid("a mutation needs at least one op");
        };
        if m.ops.len() > limits::MAX_OPS_PER_MUTATION {
            return invalid("too many ops in one mutation");
        }
        for op in &m.ops {
            if (op.entity, op.id) != (first.entity, first.id) {
                return invalid("a mutation changes exactly one record");
            }
            if !valid_field_name(&op.field) {
                return invalid("field names are lower-case identifiers");
            }
            let is_set = op.entity.set_fields().contains(&op.field.as_str());
            if is_set == matches!(op.change, FieldChange::Assign { .. }) {
                return invalid("set fields take add/remove, other fields take assign");
            }
            if op.change.value().to_string().len() > limits::MAX_VALUE_BYTES {
                return invalid("a field value is too large");
            }
            let ahead = op.hlc.wall_ms().saturating_sub(self.now_ms);
            if ahead > self.clock.max_drift_ms() && !planted(PlantedBug::SkewUnchecked) {
                return Ok(Err((
                    RejectReason::ClockAhead,
                    format!("timestamp {ahead} ms ahead of the server clock; re-stamp and retry"),
                )));
            }
        }
        if first.entity == EntityKind::Conflict
            && m.ops
                .iter()
                .any(|op| op.field != "status" && op.field != "winner")
        {
            return invalid("devices may only resolve or dismiss a conflict");
        }
        let team: Option<Vec<u8>> = self
            .tx
            .query_row(
                "SELECT team_id FROM records WHERE entity = ?1 AND record_id = ?2",
                params![first.entity.as_str(), &first.id.as_bytes()[..]],
                |r| r.get(0),
            )
            .optional()?;
        match team {
            Some(t) if t != caller.team_id.as_bytes() => {
                // "Not yours" reads like any other rejection: no hint that the record exists.
                Ok(Err((
                    RejectReason::OutOfScope,
                    "record not available to this worker".into(),
                )))
            }
            None if first.entity == EntityKind::Conflict => Ok(Err((
                RejectReason::OutOfScope,
                "record not available to this worker".into(),
            ))),
            // A record's first mutation must create a whole, valid record: a partial one would
            // reach every device of the team and break their lists.
            None => Ok(validate_creation(caller, m)),
            _ => Ok(Ok(())),
        }
    }

    fn apply(&mut self, caller: &Caller, m: &Mutation) -> Result<(), SyncError> {
        let first = &m.ops[0];
        self.tx.execute(
            "INSERT OR IGNORE INTO records (entity, record_id, team_id) VALUES (?1, ?2, ?3)",
            params![
                first.entity.as_str(),
                &first.id.as_bytes()[..],
                &caller.team_id.as_bytes()[..]
            ],
        )?;
        let mut applied = m.clone();
        let mut altered = false;
        for op in &mut applied.ops {
            // The author is whoever is signed in on the device, never what the payload says.
            // Once set, it stays: a later author op keeps the stored author (no taking over a
            // colleague's visit).
            if op.entity.author_field() == Some(op.field.as_str()) {
                let author = match field_value(self.tx, op.entity, op.id, &op.field)? {
                    Some(stored) => stored,
                    None => serde_json::to_value(caller.worker_id).unwrap_or_default(),
                };
                let truth = FieldChange::Assign { value: author };
                altered |= op.change != truth;
                op.change = truth;
            }
            if planted(PlantedBug::SkewUnchecked) {
                self.clock.witness(op.hlc);
            } else {
                self.clock.observe(op.hlc, self.now_ms)?;
            }
        }
        for op in &applied.ops {
            let stamp = Stamp {
                hlc: op.hlc,
                device: m.device_id,
            };
            if let Some(conflict) = self.merge_op(op, stamp)?
                && !planted(PlantedBug::ConflictLoserDropped)
            {
                self.raise_conflict(caller, op, conflict)?;
            }
        }
        let change_seq = self.log(caller.team_id, &applied, altered)?;
        self.tx.execute(
            if planted(PlantedBug::PushNotIdempotent) {
                "INSERT OR IGNORE INTO applied (device_id, device_seq, digest, change_seq)
                 VALUES (?1, ?2, ?3, ?4)"
            } else {
                "INSERT INTO applied (device_id, device_seq, digest, change_seq)
                 VALUES (?1, ?2, ?3, ?4)"
            },
            params![
                &m.device_id.0.as_bytes()[..],
                m.device_seq as i64,
                mutation_digest(m),
                change_seq
            ],
        )?;
        Ok(())
    }

    /// Merges one op into the field state; returns a conflict if it was concurrent and lost or
    /// displaced a value.
    fn merge_op(&self, op: &FieldOp, stamp: Stamp) -> Result<Option<merge::Conflict>, SyncError> {
        let row: Option<(String, i64, Vec<u8>, Option<String>)> = self
            .tx
            .query_row(
                "SELECT value, hlc, device, set_state FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
                params![op.entity.as_str(), &op.id.as_bytes()[..], &op.field],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let current = row
            .as_ref()
            .map(|(value, hlc, device, _)| -> Result<Register, SyncError> {
                Ok(Register {
                    value: serde_json::from_str(value)
                        .map_err(|_| SyncError::Corrupt("field value"))?,
                    stamp: Stamp {
                        hlc: Hlc::from_u64(*hlc as u64),
                        device: DeviceId(
                            Uuid::from_slice(device)
                                .map_err(|_| SyncError::Corrupt("device id"))?,
                        ),
                    },
                })
            })
            .transpose()?;
        let (state, set_state, conflict) = match &op.change {
            FieldChange::Assign { value } => {
                let kind = if op.entity.text_fields().contains(&op.field.as_str()) {
                    ConflictKind::Open
                } else {
                    ConflictKind::Notice
                };
                match merge::apply_register(current.as_ref(), value, stamp, op.base, kind) {
                    RegisterOutcome::Applied(r) => (r, None, None),
                    RegisterOutcome::Duplicate => return Ok(None),
                    RegisterOutcome::Concurrent { state, conflict } => {
                        (state, None, Some(conflict))
                    }
                }
            }
            FieldChange::Add { value } | FieldChange::Remove { value, .. } => {
                let mut set: OrSet = match row.as_ref().and_then(|r| r.3.as_ref()) {
                    Some(text) => {
                        serde_json::from_str(text).map_err(|_| SyncError::Corrupt("set state"))?
                    }
                    None => OrSet::default(),
                };
                match &op.change {
                    FieldChange::Remove { observed, .. } => set.remove(value, observed),
                    _ => set.add(value, stamp),
                }
                let newest = current.as_ref().map_or(stamp, |c| c.stamp.max(stamp));
                let state = Register {
                    value: serde_json::Value::Array(set.values()),
                    stamp: newest,
                };
                (
                    state,
                    Some(serde_json::to_string(&set).map_err(|_| SyncError::Corrupt("set state"))?),
                    None,
                )
            }
        };
        self.tx.execute(
            "INSERT INTO fields (entity, record_id, field, value, hlc, device, set_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (entity, record_id, field) DO UPDATE SET value = excluded.value,
                 hlc = excluded.hlc, device = excluded.device, set_state = excluded.set_state",
            params![
                op.entity.as_str(),
                &op.id.as_bytes()[..],
                &op.field,
                state.value.to_string(),
                state.stamp.hlc.as_u64() as i64,
                &state.stamp.device.0.as_bytes()[..],
                set_state
            ],
        )?;
        Ok(conflict)
    }

    /// Writes a conflict record as a server mutation (merged, logged and pulled like any other).
    fn raise_conflict(
        &mut self,
        caller: &Caller,
        op: &FieldOp,
        c: merge::Conflict,
    ) -> Result<(), SyncError> {
        let citizen_id = if op.entity == EntityKind::Citizen {
            Some(CitizenId(op.id))
        } else {
            let v: Option<String> = self
                .tx
                .query_row(
                    "SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = 'citizen_id'",
                    params![op.entity.as_str(), &op.id.as_bytes()[..]],
                    |r| r.get(0),
                )
                .optional()?;
            v.and_then(|text| serde_json::from_str(&text).ok())
        };
        let record = ConflictRecord {
            id: conflict_id(op, &c),
            citizen_id,
            entity: op.entity,
            record_id: op.id,
            field: op.field.clone(),
            kind: c.kind,
            winner: c.winner.value,
            winner_stamp: c.winner.stamp,
            loser: c.loser.value,
            loser_stamp: c.loser.stamp,
            status: ConflictStatus::Open,
            created_at: chrono::DateTime::from_timestamp_millis(self.now_ms as i64)
                .unwrap_or_default(),
        };
        let serde_json::Value::Object(fields) =
            serde_json::to_value(&record).map_err(|_| SyncError::Corrupt("conflict"))?
        else {
            return Err(SyncError::Corrupt("conflict"));
        };
        let hlc = self.clock.now(self.now_ms)?;
        self.server_seq += 1;
        let mutation = Mutation {
            device_id: SERVER_DEVICE,
            device_seq: self.server_seq,
            ops: fields
                .into_iter()
                .map(|(field, value)| FieldOp {
                    entity: EntityKind::Conflict,
                    id: record.id.0,
                    field,
                    change: FieldChange::Assign { value },
                    hlc,
                    base: None,
                })
                .collect(),
        };
        let new = self.tx.execute(
            "INSERT OR IGNORE INTO records (entity, record_id, team_id) VALUES ('conflict', ?1, ?2)",
            params![&record.id.0.as_bytes()[..], &caller.team_id.as_bytes()[..]],
        )?;
        if new == 0 {
            // The same loser against the same winner: raised already (only a replay that was
            // not recognised as one could get here). Never fail the push over it.
            return Ok(());
        }
        for op in &mutation.ops {
            self.merge_op(
                op,
                Stamp {
                    hlc,
                    device: SERVER_DEVICE,
                },
            )?;
        }
        self.log(caller.team_id, &mutation, false).map(|_| ())
    }

    /// Appends to the change log. `echo`: the server altered the mutation, so its author
    /// device must pull it too, or it would keep the value it sent.
    fn log(&self, team: Uuid, m: &Mutation, echo: bool) -> Result<i64, SyncError> {
        let text = serde_json::to_string(m).map_err(|_| SyncError::Corrupt("mutation"))?;
        self.tx.execute(
            "INSERT INTO changes (team_id, device_id, echo, mutation) VALUES (?1, ?2, ?3, ?4)",
            params![
                &team.as_bytes()[..],
                &m.device_id.0.as_bytes()[..],
                echo,
                text
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Appends the change-log row `change_seq` once more, echoed to its own device too.
    /// Pulling a mutation again is harmless for every other device (merging is idempotent).
    fn echo_again(&self, team: Uuid, change_seq: i64) -> Result<(), SyncError> {
        self.tx.execute(
            "INSERT INTO changes (team_id, device_id, echo, mutation, copy_of)
             SELECT team_id, device_id, 1, mutation, seq FROM changes WHERE seq = ?1 AND team_id = ?2",
            params![change_seq, &team.as_bytes()[..]],
        )?;
        Ok(())
    }
}

/// SHA-256 of a mutation as received: tells an exact replay from a re-stamped one.
fn mutation_digest(m: &Mutation) -> Vec<u8> {
    let text = serde_json::to_vec(m).unwrap_or_default();
    ring::digest::digest(&ring::digest::SHA256, &text)
        .as_ref()
        .to_vec()
}

/// A conflict's id, derived from what it is about — the field and the two writes — so that the
/// same push applied to the same state names the same conflict (and a seed replays exactly).
/// A given write loses or is displaced at most once, so the pair never repeats.
fn conflict_id(op: &FieldOp, c: &merge::Conflict) -> ConflictId {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"feltbog-conflict-v1\0");
    for part in [
        op.entity.as_str().as_bytes(),
        op.id.as_bytes(),
        op.field.as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    for stamp in [c.winner.stamp, c.loser.stamp] {
        ctx.update(&stamp.hlc.as_u64().to_be_bytes());
        ctx.update(stamp.device.0.as_bytes());
    }
    let digest = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    ConflictId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Checks that a creating mutation describes a complete record that passes the domain rules
/// (the same [`feltbog_core::domain::Validate`] the device runs before saving). Messages name the rule, not values.
fn validate_creation(caller: &Caller, m: &Mutation) -> Check {
    let entity = m.ops[0].entity;
    let mut record = serde_json::Map::new();
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
            FieldChange::Remove { .. } => {
                return Err((
                    RejectReason::Invalid,
                    "a new record cannot remove from a set".into(),
                ));
            }
        }
    }
    if let Some(field) = entity.author_field() {
        record.insert(
            field.into(),
            serde_json::to_value(caller.worker_id).unwrap_or_default(),
        );
    }
    let json = serde_json::Value::Object(record);
    fn check<R: Record>(json: serde_json::Value) -> Result<(), String> {
        let r: R = serde_json::from_value(json)
            .map_err(|_| "fields are missing or malformed".to_owned())?;
        r.validate().map_err(|e| e.to_string())
    }
    let result = match entity {
        EntityKind::Citizen => check::<Citizen>(json),
        EntityKind::Visit => check::<Visit>(json),
        EntityKind::Task => check::<Task>(json),
        EntityKind::Site => check::<Site>(json),
        EntityKind::SiteLogEntry => check::<SiteLogEntry>(json),
        EntityKind::Conflict => Err("conflicts are created by the server".to_owned()),
    };
    result.map_err(|why| {
        (
            RejectReason::Invalid,
            format!("a new {entity} is not valid: {why}"),
        )
    })
}

/// One field's merged value on the server, for tests and reports.
pub fn field_value(
    conn: &Connection,
    entity: EntityKind,
    id: Uuid,
    field: &str,
) -> Result<Option<serde_json::Value>, SyncError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
            params![entity.as_str(), &id.as_bytes()[..], field],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| SyncError::Corrupt("field value")))
        .transpose()
}

/// The merged state of every record of `team`, field by field with stamps. For the simulation's
/// convergence check (devices must hold exactly this).
pub fn replica_state(conn: &Connection, team: Uuid) -> Result<merge::ReplicaState, SyncError> {
    let mut stmt = conn.prepare(
        "SELECT f.entity, f.record_id, f.field, f.value, f.hlc, f.device FROM fields f
         JOIN records r ON r.entity = f.entity AND r.record_id = f.record_id WHERE r.team_id = ?1",
    )?;
    let mut rows = stmt.query([&team.as_bytes()[..]])?;
    let mut out = merge::ReplicaState::new();
    while let Some(row) = rows.next()? {
        let entity =
            EntityKind::parse(&row.get::<_, String>(0)?).ok_or(SyncError::Corrupt("entity"))?;
        let uuid = |b: Vec<u8>| Uuid::from_slice(&b).map_err(|_| SyncError::Corrupt("id"));
        let id = uuid(row.get(1)?)?;
        let value = serde_json::from_str(&row.get::<_, String>(3)?)
            .map_err(|_| SyncError::Corrupt("field value"))?;
        let stamp = Stamp {
            hlc: Hlc::from_u64(row.get::<_, i64>(4)? as u64),
            device: DeviceId(uuid(row.get(5)?)?),
        };
        out.entry((entity, id))
            .or_default()
            .insert(row.get(2)?, Register { value, stamp });
    }
    Ok(out)
}

/// One row of the change log.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub seq: u64,
    pub team: Uuid,
    /// The mutation as applied.
    pub mutation: Mutation,
    /// `Some(seq)`: a copy of an earlier row, re-sent to its device (not a second application).
    pub copy_of: Option<u64>,
}

/// The whole change log in commit order. For the simulation's checks (every acknowledged edit
/// applied once, causality, idempotence) and for audits of sync itself.
pub fn change_log(conn: &Connection) -> Result<Vec<Change>, SyncError> {
    let mut stmt =
        conn.prepare("SELECT seq, team_id, mutation, copy_of FROM changes ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let team = Uuid::from_slice(&row.get::<_, Vec<u8>>(1)?)
            .map_err(|_| SyncError::Corrupt("team id"))?;
        let mutation = serde_json::from_str(&row.get::<_, String>(2)?)
            .map_err(|_| SyncError::Corrupt("change log"))?;
        out.push(Change {
            seq: row.get::<_, i64>(0)? as u64,
            team,
            mutation,
            copy_of: row.get::<_, Option<i64>>(3)?.map(|s| s as u64),
        });
    }
    Ok(out)
}
