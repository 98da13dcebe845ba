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
//! The log's `seq` is the commit order; a device pulls by cursor and gets whole mutations only,
//! and only those in its worker's scope ([`crate::scope`]), checked in the same transaction.
//! Every mutation applied or refused and every change served is written to the audit trail in
//! that transaction too ([`crate::audit`]).

use crate::audit::{self, Action, Entry};
use crate::identity::{Caller, Role};
use crate::scope::{self, Class};
use feltbog_core::domain::schema::{self, SchemaError};
use feltbog_core::domain::{
    Citizen, CitizenId, ConflictId, ConflictRecord, ConflictStatus, EntityKind, Record, Site,
    SiteLogEntry, Task, Visit, WorkerId,
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
    #[error("audit: {0}")]
    Audit(#[from] audit::AuditError),
    /// The device or its worker was revoked between authentication and this transaction.
    #[error("the device was revoked")]
    Revoked,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// An administrator's request that the rules do not allow.
    #[error("{0}")]
    Refused(&'static str),
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
    // Authentication ran before this transaction; a revocation committed since must still stop
    // this request, so check once more under the write lock. A scope change committed since is
    // taken as it is now.
    let still: Option<(String, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT w.role, w.team_id FROM devices d JOIN workers w ON w.id = d.worker_id
             WHERE d.id = ?1 AND d.active = 1 AND w.active = 1",
        )?
        .query_row([&caller.device_id.0.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((role, team)) = still else {
        return Err(SyncError::Revoked);
    };
    let caller = &Caller {
        role: Role::parse(&role).ok_or(SyncError::Corrupt("role"))?,
        team_id: Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?,
        ..*caller
    };
    let mut reach = scope::reach(&tx, caller)?;
    // Edits made before the device learned of a change of its worker's scope are judged under
    // the scope that held then (`epochs.rs`).
    let learned = crate::epochs::on_sync(
        &tx,
        caller,
        request.last_device_seq,
        request.mutations.iter().map(|m| m.device_seq),
        now_ms,
    )?;
    let mut grace = learned.grace;
    let mut ctx = Ctx::new(&tx, max_drift_ms, now_ms)?;
    let who = |action| Entry::device(caller.worker_id, caller.device_id.0, action);
    let mut trail: Vec<Entry> = Vec::new();
    let mut acked = Vec::new();
    let mut rejected = Vec::new();
    for mutation in &request.mutations {
        let seq = mutation.device_seq;
        let done: Option<(Option<Vec<u8>>, Option<i64>)> = ctx
            .tx
            .prepare_cached(
                "SELECT digest, change_seq FROM applied WHERE device_id = ?1 AND device_seq = ?2",
            )?
            .query_row(
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
                && !ctx.echoed(change_seq)?
            {
                ctx.echo_again(caller.device_id, change_seq)?;
                // Remember this version: more copies of it need no second echo.
                ctx.tx
                    .prepare_cached(
                        "UPDATE applied SET digest = ?1 WHERE device_id = ?2 AND device_seq = ?3",
                    )?
                    .execute(params![
                        received,
                        &mutation.device_id.0.as_bytes()[..],
                        seq as i64
                    ])?;
            }
            acked.push(seq);
            continue;
        }
        if mutation.device_id == caller.device_id
            && let Some(again) = ctx.refused_before(mutation.device_id, seq)?
        {
            // Refused for good before: the same answer, whatever changed since.
            rejected.push(again);
            continue;
        }
        let first = mutation.ops.first();
        let (entity, record) =
            first.map_or(("none", Uuid::nil()), |op| (op.entity.as_str(), op.id));
        let (as_caller, as_reach) = match grace.as_mut() {
            Some(g) if g.covers(seq, now_ms) => (g.caller, &mut g.reach),
            _ => (*caller, &mut reach),
        };
        let verdict = ctx.judge(&as_caller, as_reach, mutation)?;
        if verdict.is_ok()
            && entity == EntityKind::Site.as_str()
            && as_caller.role == Role::Caretaker
        {
            // Theirs from now on, for the rest of this push too (its first log entry).
            as_reach.sites.insert(record);
        }
        match verdict {
            Err((reason, detail)) => {
                // Refusals are audited by record id, and filed under the record's citizen when
                // the record exists (an attempt on a citizen's data belongs in their export).
                let citizens = match first {
                    Some(op) => {
                        let scope = scope::record_scope(ctx.tx, op.entity, op.id)?;
                        filed_under(ctx.tx, op.entity, op.id, scope.and_then(|s| s.citizen))?
                    }
                    None => vec![None],
                };
                for citizen in citizens {
                    trail.push(who(Action::Denied).record(entity, record, citizen));
                }
                if reason.is_permanent() && mutation.device_id == caller.device_id {
                    ctx.remember_refusal(mutation.device_id, seq, reason, &detail)?;
                }
                rejected.push(Rejection {
                    device_seq: seq,
                    reason,
                    detail,
                })
            }
            Ok(citizen) => {
                for citizen in filed_under(ctx.tx, mutation.ops[0].entity, record, citizen)? {
                    trail.push(who(Action::Write).record(entity, record, citizen));
                }
                acked.push(seq);
            }
        }
    }
    let mut access_acked = 0;
    // After the mutations: a device reads records it made offline, and their creating
    // mutations come in this same push (the device sends its access log only with the push
    // that empties its outbox), so the server knows them by now.
    for event in &request.access_log {
        // The citizen is the server's to say: a device cannot file its reads under another
        // citizen, or under none. A read of a record it may not see is recorded as denied.
        let scope = scope::record_scope(&tx, event.entity, event.record_id)?;
        let action = match scope {
            Some(s) if scope::readable(caller, &reach, &s) => Action::DeviceRead,
            _ => Action::Denied,
        };
        let citizens = filed_under(
            &tx,
            event.entity,
            event.record_id,
            scope.and_then(|s| s.citizen),
        )?;
        for citizen in citizens {
            let mut entry = who(action).record(event.entity.as_str(), event.record_id, citizen);
            // The device's clock, within reason (it is shown as a date in exports).
            entry.device_at_ms = Some(event.at_ms.min(now_ms + 366 * DAY_MS as u64));
            trail.push(entry);
        }
        access_acked = access_acked.max(event.seq);
    }
    let server_hlc = ctx.finish()?;
    let pull = pull_page(&tx, caller, request.cursor, request.resync)?;
    for (_, m) in &pull.changes {
        if let Some(op) = m.ops.first() {
            let citizen = scope::record_scope(&tx, op.entity, op.id)?.and_then(|s| s.citizen);
            for citizen in filed_under(&tx, op.entity, op.id, citizen)? {
                trail.push(who(Action::Read).record(op.entity.as_str(), op.id, citizen));
            }
        }
    }
    for citizen in &pull.erase {
        trail.push(who(Action::Erase).record("citizen", citizen.0, Some(citizen.0)));
    }
    audit::append_many(&tx, now_ms, &trail)?;
    let profile = crate::identity::profile(&tx, caller, &reach)?;
    let profile =
        (request.profile_digest.as_deref() != Some(profile.digest().as_str())).then_some(profile);
    let standing_token = if request.want_standing {
        Some(feltbog_core::domain::Sensitive(
            crate::identity::issue_standing(&tx, caller.device_id)?,
        ))
    } else {
        None
    };
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
        access_acked,
        profile,
        standing_token,
        rescope: learned.now,
    })
}

/// The citizens an audit row about a record is filed under, for their Art. 15 export: the
/// record's own citizen, or for a site-log entry every resident it names (one row each); a
/// record about nobody gets one row under no citizen.
fn filed_under(
    tx: &Transaction,
    entity: EntityKind,
    id: Uuid,
    citizen: Option<Uuid>,
) -> Result<Vec<Option<Uuid>>, SyncError> {
    if entity == EntityKind::SiteLogEntry
        && let Some(serde_json::Value::Array(named)) = field_value(tx, entity, id, "residents")?
    {
        let residents: Vec<Option<Uuid>> = named
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Uuid>(v).ok())
            .map(Some)
            .collect();
        if !residents.is_empty() {
            return Ok(residents);
        }
    }
    Ok(vec![citizen])
}

/// The next page of changes for `caller` after `cursor`: the mutations in its worker's scope
/// ([`crate::scope`]), except the ones its own device sent (it has them) unless `resync` (it
/// erased them to pull its new scope afresh), whole mutations only; and the erasures meant for
/// it. A page ends at an erasure, which the device applies after the page's changes.
pub fn pull_page(
    conn: &Connection,
    caller: &Caller,
    cursor: u64,
    resync: bool,
) -> Result<PullPage, SyncError> {
    // An erasure is served only while the citizen is still out of the caller's scope: one who
    // came back before the device synced stays, with any edits the device has pending.
    let readable = format!(
        "{} AND coalesce(z.off_devices = 0 AND z.purged_ms IS NULL, 1) AND {}",
        scope::team_condition(
            caller.role,
            "(CASE WHEN c.citizen_id IS NULL THEN c.team_id ELSE z.team_id END)"
        ),
        scope::read_condition(caller.role)
    );
    let row_team = scope::team_condition(caller.role, "c.team_id");
    let scoped = format!(
        "CASE WHEN c.kind = 'erase' THEN {row_team} AND (c.roles & ?4) != 0
              AND NOT coalesce({readable}, 0)
         ELSE (c.roles IS NULL OR ({row_team} AND (c.roles & ?4) != 0)) AND {readable} END"
    );
    let leak = if planted(PlantedBug::ScopeLeak) {
        " OR 1"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c.seq, c.device_id, c.echo, c.mutation, c.kind, c.citizen_id
         FROM changes c LEFT JOIN citizens z ON z.citizen_id = c.citizen_id
         WHERE c.seq > ?2 AND (({scoped}){leak}) ORDER BY c.seq LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let (team, cursor_arg, limit, bit, worker) = (
        &caller.team_id.as_bytes()[..],
        cursor as i64,
        limits::PULL_PAGE_MUTATIONS as i64,
        caller.role.bit(),
        &caller.worker_id.as_bytes()[..],
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&team, &cursor_arg, &limit, &bit];
    if sql.contains("?5") {
        // Only a caretaker's or a supervisor's condition names the worker (sites, teams).
        args.push(&worker);
    }
    let mut rows = stmt.query(&args[..])?;
    let (mut changes, mut next_cursor, mut scanned, mut bytes) =
        (Vec::new(), cursor, 0usize, 0usize);
    let mut erase = Vec::new();
    let mut full = false;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let text: String = row.get(3)?;
        // The page stops before a change that would take it past its byte budget, unless the
        // page is still empty: with mutations bounded too, an answer always fits the client's
        // limits, and a page always moves the cursor.
        if !changes.is_empty() && bytes + text.len() > limits::PAGE_BYTES {
            full = true;
            break;
        }
        scanned += 1;
        next_cursor = seq;
        if row.get::<_, String>(4)? == "erase" {
            let citizen: Vec<u8> = row.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default();
            let citizen = Uuid::from_slice(&citizen).map_err(|_| SyncError::Corrupt("erasure"))?;
            erase.push(CitizenId(citizen));
            full = true;
            break;
        }
        let device: Vec<u8> = row.get(1)?;
        let echo: bool = row.get(2)?;
        if device == caller.device_id.0.as_bytes() && !echo && !resync {
            continue;
        }
        bytes += text.len();
        let mut mutation: Mutation =
            serde_json::from_str(&text).map_err(|_| SyncError::Corrupt("change log"))?;
        // Only the fields the caller's role is served (a caretaker: a resident's name and
        // place, not their CPR, goals or consent).
        mutation
            .ops
            .retain(|op| feltbog_core::access::served_field(caller.role, op.entity, &op.field));
        if mutation.ops.is_empty() {
            continue;
        }
        changes.push((seq, mutation));
    }
    drop(rows);
    let more = full || scanned == limits::PULL_PAGE_MUTATIONS;
    if !more {
        // Nothing further is the caller's: its cursor goes to the head of the log. (Otherwise a
        // device that pulled a new scope afresh would stop at that scope's last change, below
        // pages it had applied before the change — and could take a late copy of one again.)
        let head: i64 = conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM changes")?
            .query_row([], |r| r.get(0))?;
        next_cursor = next_cursor.max(head as u64);
    }
    Ok(PullPage {
        changes,
        next_cursor,
        more,
        erase,
        resync,
    })
}

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    clock: HlcClock,
    server_seq: u64,
    now_ms: u64,
}

impl<'a> Ctx<'a> {
    fn new(tx: &'a Transaction<'a>, max_drift_ms: u64, now_ms: u64) -> Result<Self, SyncError> {
        let (hlc_last, server_seq): (i64, i64) = tx
            .prepare_cached("SELECT hlc_last, server_seq FROM server_state WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Ctx {
            tx,
            clock: HlcClock::new(Hlc::from_u64(hlc_last as u64), max_drift_ms),
            server_seq: server_seq as u64,
            now_ms,
        })
    }

    /// Saves the server clock and its own sequence; returns the clock's reading now.
    fn finish(&mut self) -> Result<Hlc, SyncError> {
        let server_hlc = self.clock.now(self.now_ms)?;
        self.tx
            .prepare_cached("UPDATE server_state SET hlc_last = ?1, server_seq = ?2 WHERE id = 1")?
            .execute(params![server_hlc.as_u64() as i64, self.server_seq as i64])?;
        Ok(server_hlc)
    }
}

impl Ctx<'_> {
    /// Checks one mutation and applies it if it passes: a creation as it is, an edit only if
    /// the record it leaves is valid (else it is undone). The verdict names the citizen the
    /// record is about, or the refusal. One path for a device's push and a supervisor's review
    /// from the dashboard.
    fn judge(
        &mut self,
        caller: &Caller,
        reach: &scope::Reach,
        mutation: &Mutation,
    ) -> Result<Result<Option<Uuid>, (RejectReason, String)>, SyncError> {
        let record = mutation.ops.first().map_or(Uuid::nil(), |op| op.id);
        Ok(match self.check(caller, reach, mutation)? {
            Err(refused) => Err(refused),
            Ok(Made::Created) => Ok(self.apply(caller, mutation)?),
            Ok(Made::Edited) => {
                let written = if planted(PlantedBug::FieldsUnchecked) {
                    Ok(())
                } else {
                    validate_written(self.tx, mutation)?
                };
                match written {
                    Err(refused) => Err(refused),
                    Ok(()) => {
                        // An edit must leave a valid record, or every device of the team would
                        // fail to list it. Fields merge one by one, so the record that results
                        // is only known after the merge: apply, check, and undo it all if it is
                        // not valid.
                        self.tx.execute_batch("SAVEPOINT edit")?;
                        let server_seq = self.server_seq;
                        let citizen = self.apply(caller, mutation)?;
                        match validate_stored(self.tx, mutation.ops[0].entity, record)? {
                            Ok(()) => {
                                self.tx.execute_batch("RELEASE edit")?;
                                Ok(citizen)
                            }
                            Err(refused) => {
                                self.tx.execute_batch("ROLLBACK TO edit; RELEASE edit")?;
                                self.server_seq = server_seq;
                                Err(refused)
                            }
                        }
                    }
                }
            }
        })
    }
}

type Check = Result<(), (RejectReason, String)>;

/// What a mutation that passed [`Ctx::check`] does.
enum Made {
    Created,
    /// Changes a stored record: checked once more after merging ([`validate_stored`]).
    Edited,
}

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with("__set")
}

impl Ctx<'_> {
    /// Whether `m` is a conflict review `caller` may make ([`scope::can_review_conflicts`]):
    /// the record is in a team the caller reads, and either it is an open free-text conflict
    /// whose status alone is written, or every op writes the field of an open free-text
    /// conflict about this record. No new reference can be written this way: a structured
    /// value (a consent) may only name a worker one of the conflict's versions named.
    fn is_conflict_review(
        &self,
        caller: &Caller,
        reach: &scope::Reach,
        m: &Mutation,
        existing: &scope::RecordScope,
    ) -> Result<bool, SyncError> {
        if !scope::can_review_conflicts(caller.role) || !scope::readable(caller, reach, existing) {
            return Ok(false);
        }
        let first = &m.ops[0];
        let open = serde_json::json!("open");
        if first.entity == EntityKind::Conflict {
            return Ok(m.ops.iter().all(|op| op.field == "status")
                && field_value(self.tx, EntityKind::Conflict, first.id, "kind")?.as_ref()
                    == Some(&open)
                && field_value(self.tx, EntityKind::Conflict, first.id, "status")?.as_ref()
                    == Some(&open));
        }
        let json = |v: serde_json::Value| v.to_string();
        let mut fields = self.tx.prepare_cached(
            "SELECT count(*) > 0 FROM fields r
             JOIN fields e ON e.entity = 'conflict' AND e.record_id = r.record_id AND e.field = 'entity'
             JOIN fields f ON f.entity = 'conflict' AND f.record_id = r.record_id AND f.field = 'field'
             JOIN fields k ON k.entity = 'conflict' AND k.record_id = r.record_id AND k.field = 'kind'
             JOIN fields s ON s.entity = 'conflict' AND s.record_id = r.record_id AND s.field = 'status'
             WHERE r.entity = 'conflict' AND r.field = 'record_id' AND r.value = ?1
               AND e.value = ?2 AND f.value = ?3 AND k.value = ?4 AND s.value = ?4",
        )?;
        for op in &m.ops {
            let under_review: bool = fields.query_row(
                params![
                    json(serde_json::json!(first.id)),
                    json(serde_json::json!(first.entity)),
                    json(serde_json::json!(op.field)),
                    json(open.clone()),
                ],
                |r| r.get(0),
            )?;
            if !under_review || !matches!(op.change, FieldChange::Assign { .. }) {
                return Ok(false);
            }
            // A structured value (a consent) may name a worker: a review keeps a version's,
            // it names no one new.
            let Ok(references) = schema::references(op.entity, &op.field, op.change.value()) else {
                return Ok(false);
            };
            if !references.is_empty() {
                let mut known = self.held_references(op)?;
                known.extend(self.versions_references(op)?);
                if references.iter().any(|r| !known.contains(r)) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The references the two versions of the open conflicts about `op`'s field hold.
    fn versions_references(&self, op: &FieldOp) -> Result<Vec<schema::Reference>, SyncError> {
        let json = |v: serde_json::Value| v.to_string();
        let mut stmt = self.tx.prepare_cached(
            "SELECT w.value, l.value FROM fields r
             JOIN fields f ON f.entity = 'conflict' AND f.record_id = r.record_id AND f.field = 'field'
             JOIN fields s ON s.entity = 'conflict' AND s.record_id = r.record_id AND s.field = 'status'
             JOIN fields w ON w.entity = 'conflict' AND w.record_id = r.record_id AND w.field = 'winner'
             JOIN fields l ON l.entity = 'conflict' AND l.record_id = r.record_id AND l.field = 'loser'
             WHERE r.entity = 'conflict' AND r.field = 'record_id' AND r.value = ?1
               AND f.value = ?2 AND s.value = ?3",
        )?;
        let rows = stmt.query_map(
            params![
                json(serde_json::json!(op.id)),
                json(serde_json::json!(op.field)),
                json(serde_json::json!("open")),
            ],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (winner, loser) = row?;
            for text in [winner, loser] {
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|_| SyncError::Corrupt("conflict"))?;
                out.extend(schema::references(op.entity, &op.field, &value).unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// Every rule a mutation must meet before anything of it is applied.
    fn check(
        &self,
        caller: &Caller,
        reach: &scope::Reach,
        m: &Mutation,
    ) -> Result<Result<Made, (RejectReason, String)>, SyncError> {
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
        // One value per field: a record must not be placed by one op and stored by another.
        let mut assigned = std::collections::BTreeSet::new();
        if m.ops.iter().any(|op| {
            matches!(op.change, FieldChange::Assign { .. }) && !assigned.insert(op.field.as_str())
        }) {
            return invalid("a field is assigned twice in one mutation");
        }
        if m.ops.len() > limits::MAX_OPS_PER_MUTATION {
            return invalid("too many ops in one mutation");
        }
        let mut total_bytes = 0;
        for op in &m.ops {
            if (op.entity, op.id) != (first.entity, first.id) {
                return invalid("a mutation changes exactly one record");
            }
            if !valid_field_name(&op.field) {
                return invalid("field names are lower-case identifiers");
            }
            // Only the fields the record kind has, and of a conflict only its status: anything
            // else would be stored and sent to every device of the team (core's one list).
            if !planted(PlantedBug::FieldsUnchecked)
                && let Err(e) = schema::check_field(op.entity, &op.field)
            {
                return invalid(match e {
                    SchemaError::NotWritable { .. } => "a device cannot write this field",
                    _ => "the record has no such field",
                });
            }
            // A record's `id` field is its own id, at creation and ever after: devices find a
            // citizen's records by it when they erase the citizen.
            if op.field == "id"
                && serde_json::from_value::<Uuid>(op.change.value().clone()).ok() != Some(op.id)
            {
                return invalid("a record's id field must be its own id");
            }
            let is_set = op.entity.set_fields().contains(&op.field.as_str());
            if is_set == matches!(op.change, FieldChange::Assign { .. }) {
                return invalid("set fields take add/remove, other fields take assign");
            }
            if let FieldChange::Remove { observed, .. } = &op.change
                && observed.len() > limits::MAX_OBSERVED_TAGS
            {
                return invalid("a removal names too many observed adds");
            }
            let value_bytes = crate::op_bytes(op);
            if value_bytes > limits::MAX_VALUE_BYTES {
                return invalid("a field value is too large");
            }
            total_bytes += value_bytes + op.field.len();
            if total_bytes > limits::MAX_MUTATION_BYTES {
                return invalid("the mutation is too large");
            }
            let ahead = op.hlc.wall_ms().saturating_sub(self.now_ms);
            if ahead > self.clock.max_drift_ms() && !planted(PlantedBug::SkewUnchecked) {
                return Ok(Err((
                    RejectReason::ClockAhead,
                    format!("timestamp {ahead} ms ahead of the server clock; re-stamp and retry"),
                )));
            }
        }
        if first.id.is_nil() {
            return invalid("the nil id is no record's id");
        }
        // "Not yours" and "does not exist" give this same answer: no hint that a record exists.
        let unavailable = || {
            Ok(Err((
                RejectReason::OutOfScope,
                "record not available to this worker".to_owned(),
            )))
        };
        match scope::record_scope(self.tx, first.entity, first.id)? {
            Some(existing) => {
                if !scope::writable(caller, reach, &existing) {
                    // A supervisor's conflict review: the status of an open free-text conflict
                    // and the one field it is about, in a team they read; nothing else.
                    if self.is_conflict_review(caller, reach, m, &existing)? {
                        return Ok(Ok(Made::Edited));
                    }
                    return unavailable();
                }
                // The links that place a record (its citizen, its site) never change by an edit;
                // repeating them is harmless. A team is the server's to set (see `apply`).
                for op in &m.ops {
                    if scope::is_scope_field(op.entity, &op.field)
                        && op.field != "team_id"
                        && field_value(self.tx, op.entity, op.id, &op.field)?.as_ref()
                            != Some(op.change.value())
                    {
                        return invalid("a record's citizen or site cannot change by an edit");
                    }
                }
                Ok(self
                    .check_references(caller, reach, m)?
                    .map(|()| Made::Edited))
            }
            None => {
                // An update to a record this server does not have (no `id` op: not a
                // creation) looks exactly like one to a record of another team.
                if first.entity == EntityKind::Conflict || !m.ops.iter().any(|op| op.field == "id")
                {
                    return unavailable();
                }
                let (class, citizen) = scope::classify_new(m);
                // A caretaker keeps the logs of their own sites, and a site they create is theirs.
                let at_own_site = class == Class::Site
                    || scope::site_of_new(m).is_some_and(|site| reach.sites.contains(&site));
                if !scope::can_write(caller.role, class, at_own_site) {
                    return unavailable();
                }
                if class == Class::Case {
                    // A visit or task about a citizen: the citizen must be the caller's to write.
                    let of = citizen.unwrap_or_default();
                    match scope::record_scope(self.tx, EntityKind::Citizen, of)? {
                        Some(c) if scope::writable(caller, reach, &c) => {}
                        _ => return unavailable(),
                    }
                }
                // A record's first mutation must create a whole, valid record: a partial one
                // would reach every device of the team and break their lists.
                if let Err(refused) = validate_creation(caller, m) {
                    return Ok(Err(refused));
                }
                Ok(self
                    .check_references(caller, reach, m)?
                    .map(|()| Made::Created))
            }
        }
    }

    /// Every record a value refers to must be the writer's business now, in the writer's team
    /// ([`scope::reference_in_scope`]). A set's removal names what was there; only what is
    /// written is checked.
    fn check_references(
        &self,
        caller: &Caller,
        reach: &scope::Reach,
        m: &Mutation,
    ) -> Result<Check, SyncError> {
        let invalid = |detail: &str| Ok(Err((RejectReason::Invalid, detail.to_owned())));
        for op in &m.ops {
            let value = match &op.change {
                FieldChange::Assign { value } | FieldChange::Add { value } => value,
                FieldChange::Remove { .. } => continue,
            };
            let references = match schema::references(op.entity, &op.field, value) {
                Ok(references) => references,
                Err(_) => return invalid("a reference is not a record's id"),
            };
            // What the record refers to already stays acceptable: editing a consent's scope
            // keeps its recorder, who may have moved team since; only new references are the
            // writer's to justify.
            // A visit's course and goals are items of its own citizen's record.
            if let Some(list) = citizen_item_list(op.entity, &op.field)
                && !value.is_null()
                && !self.citizen_holds_item(m, list, value)?
            {
                return invalid("the course or goal is not one of the citizen's");
            }
            let held = self.held_references(op)?;
            for reference in references.into_iter().filter(|r| !held.contains(r)) {
                if !planted(PlantedBug::ReferencesUnscoped)
                    && !scope::reference_in_scope(self.tx, caller, reach, reference)?
                {
                    return Ok(Err((
                        RejectReason::OutOfScope,
                        "a record it refers to is not available to this worker".to_owned(),
                    )));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Whether the citizen a visit mutation is about (named in it, or stored) holds the item
    /// `value` names in `list`, not removed.
    fn citizen_holds_item(
        &self,
        m: &Mutation,
        list: &str,
        value: &serde_json::Value,
    ) -> Result<bool, SyncError> {
        // Only the canonical spelling, as every reference (`schema::references`): one goal must
        // not sit in a visit's set twice under two spellings.
        let Some(item) = value.as_str().and_then(|s| {
            Uuid::try_parse(s)
                .ok()
                .filter(|id| id.hyphenated().to_string() == s)
        }) else {
            return Ok(false);
        };
        let first = &m.ops[0];
        let named = m
            .ops
            .iter()
            .find(|op| op.field == "citizen_id")
            .map(|op| op.change.value().clone());
        let citizen = match named {
            Some(v) => Some(v),
            None => field_value(self.tx, first.entity, first.id, "citizen_id")?,
        };
        let Some(citizen) = citizen.and_then(|v| serde_json::from_value::<Uuid>(v).ok()) else {
            return Ok(false);
        };
        Ok(field_value(
            self.tx,
            EntityKind::Citizen,
            citizen,
            &schema::item_field(list, item),
        )?
        .is_some_and(|v| !v.is_null()))
    }

    /// The references the stored value of `op`'s field holds now (every element of a set).
    fn held_references(&self, op: &FieldOp) -> Result<Vec<schema::Reference>, SyncError> {
        let Some(stored) = field_value(self.tx, op.entity, op.id, &op.field)? else {
            return Ok(Vec::new());
        };
        let items = match stored {
            serde_json::Value::Array(items)
                if op.entity.set_fields().contains(&op.field.as_str()) =>
            {
                items
            }
            other => vec![other],
        };
        Ok(items
            .iter()
            .flat_map(|v| schema::references(op.entity, &op.field, v).unwrap_or_default())
            .collect())
    }

    /// Applies a checked mutation; returns the citizen it is about, if any.
    fn apply(&mut self, caller: &Caller, m: &Mutation) -> Result<Option<Uuid>, SyncError> {
        let first = &m.ops[0];
        let existing = scope::record_scope(self.tx, first.entity, first.id)?;
        let created = existing.is_none();
        // The change is the record's team's: a supervisor's review of a team they supervise
        // reaches that team's devices, not their own team's.
        let team = existing.as_ref().map_or(caller.team_id, |e| e.team);
        let (class, citizen, site) = match existing {
            Some(existing) => (existing.class, existing.citizen, existing.site),
            None => {
                let (class, citizen) = scope::classify_new(m);
                let site = scope::site_of_new(m);
                self.tx
                    .prepare_cached(
                        "INSERT INTO records (entity, record_id, team_id, class, citizen_id, site_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        first.entity.as_str(),
                        &first.id.as_bytes()[..],
                        &caller.team_id.as_bytes()[..],
                        class.as_str(),
                        citizen.as_ref().map(|c| c.as_bytes().to_vec()),
                        site.as_ref().map(|s| s.as_bytes().to_vec())
                    ])?;
                if class == Class::Site && caller.role == Role::Caretaker {
                    // A caretaker's new site is theirs to keep.
                    self.tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO caretaker_sites (worker_id, site_id)
                             VALUES (?1, ?2)",
                        )?
                        .execute(params![
                            &caller.worker_id.as_bytes()[..],
                            &first.id.as_bytes()[..]
                        ])?;
                }
                if class == Class::Citizen {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO citizens (citizen_id, team_id) VALUES (?1, ?2)",
                        )?
                        .execute(params![
                            &first.id.as_bytes()[..],
                            &caller.team_id.as_bytes()[..]
                        ])?;
                }
                (class, citizen, site)
            }
        };
        // A citizen's rows are placed by the citizen's site now (`citizens`), not by this.
        let site = if class == Class::Citizen { None } else { site };
        let mut applied = m.clone();
        let mut altered = false;
        for op in &mut applied.ops {
            // The author is whoever is signed in on the device, and a new record's team is the
            // writer's, whatever the payload says. Once set they stay: a later op keeps the
            // stored value (no taking over a colleague's visit; a team changes only by an
            // administrator's move).
            if op.entity.server_fields().contains(&op.field.as_str()) {
                let truth = FieldChange::Assign {
                    value: self.server_owned(caller, op.entity, op.id, &op.field)?,
                };
                altered |= op.change != truth;
                op.change = truth;
            }
            if planted(PlantedBug::SkewUnchecked) {
                self.clock.witness(op.hlc);
            } else {
                self.clock.observe(op.hlc, self.now_ms)?;
            }
        }
        if created && !planted(PlantedBug::AuthorNotSet) {
            // A creation that left out a server-owned field gets it from the server, stored
            // and echoed like any value the server set: every device then holds the author.
            for field in first.entity.server_fields() {
                if !applied.ops.iter().any(|op| op.field == *field) {
                    let value = self.server_owned(caller, first.entity, first.id, field)?;
                    applied.ops.push(FieldOp {
                        entity: first.entity,
                        id: first.id,
                        field: (*field).to_owned(),
                        change: FieldChange::Assign { value },
                        hlc: first.hlc,
                        base: None,
                    });
                    altered = true;
                }
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
        let change_seq = self.log(team, &applied, altered, (class, citizen, site))?;
        if first.entity == EntityKind::Citizen {
            self.citizen_changed(first.id)?;
        }
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
        Ok(citizen)
    }

    /// The value of a server-owned field ([`EntityKind::server_fields`]): what is stored, or
    /// for a new record the writer's worker id (an author) or team (a team).
    fn server_owned(
        &self,
        caller: &Caller,
        entity: EntityKind,
        id: Uuid,
        field: &str,
    ) -> Result<serde_json::Value, SyncError> {
        if let Some(stored) = field_value(self.tx, entity, id, field)?
            && !stored.is_null()
        {
            return Ok(stored);
        }
        Ok(fresh_server_value(caller, field))
    }

    /// Keeps a citizen's scope row in step with their record: living at a site makes them the
    /// caretakers' business (they get the citizen's history, or an erasure when they move out),
    /// and archiving starts the retention clock.
    fn citizen_changed(&mut self, citizen: Uuid) -> Result<(), SyncError> {
        let site = field_value(self.tx, EntityKind::Citizen, citizen, "site_id")?
            .and_then(|v| serde_json::from_value::<Uuid>(v).ok());
        let archived = field_value(self.tx, EntityKind::Citizen, citizen, "archived")?;
        let resident = site.is_some();
        let archived = archived.is_some_and(|v| v == serde_json::Value::Bool(true));
        let (team, was_at, closed): (Vec<u8>, Option<Vec<u8>>, Option<i64>) = self
            .tx
            .prepare_cached(
                "SELECT team_id, site_id, closed_ms FROM citizens WHERE citizen_id = ?1",
            )?
            .query_row([&citizen.as_bytes()[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let was_at = was_at.map(|b| Uuid::from_slice(&b).unwrap_or_default());
        let team = Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?;
        let closed = match (archived, closed) {
            (true, None) => Some(self.now_ms as i64),
            (true, Some(t)) => Some(t),
            (false, _) => None,
        };
        self.tx
            .prepare_cached(
                "UPDATE citizens SET resident = ?2, closed_ms = ?3, site_id = ?4
                 WHERE citizen_id = ?1",
            )?
            .execute(params![
                &citizen.as_bytes()[..],
                resident,
                closed,
                site.as_ref().map(|s| s.as_bytes().to_vec())
            ])?;
        if site != was_at {
            // Moved out of one site or into another: the old site's caretakers erase them
            // (the erasure is served only to those who no longer see them), the new site's
            // caretakers receive their history (filtered by each caretaker's sites).
            let caretakers = Role::Caretaker.bit();
            if was_at.is_some() {
                self.log_erase(citizen, team, caretakers)?;
            }
            if site.is_some() {
                self.deliver_history(citizen, team, caretakers)?;
            }
        }
        Ok(())
    }

    /// The refusal a device's mutation got before, if it was refused for good.
    fn refused_before(&self, device: DeviceId, seq: u64) -> Result<Option<Rejection>, SyncError> {
        let row: Option<(String, String)> = self
            .tx
            .prepare_cached(
                "SELECT reason, detail FROM refused WHERE device_id = ?1 AND device_seq = ?2",
            )?
            .query_row(params![&device.0.as_bytes()[..], seq as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(reason, detail)| {
            let reason = serde_json::from_value(serde_json::Value::String(reason))
                .map_err(|_| SyncError::Corrupt("refusal"))?;
            Ok(Rejection {
                device_seq: seq,
                reason,
                detail,
            })
        })
        .transpose()
    }

    /// Keeps a refusal for good, so a late copy of the push gets it again.
    fn remember_refusal(
        &self,
        device: DeviceId,
        seq: u64,
        reason: RejectReason,
        detail: &str,
    ) -> Result<(), SyncError> {
        let reason = serde_json::to_value(reason).map_err(|_| SyncError::Corrupt("refusal"))?;
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO refused (device_id, device_seq, reason, detail)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                &device.0.as_bytes()[..],
                seq as i64,
                reason.as_str().unwrap_or("invalid"),
                detail
            ])?;
        Ok(())
    }

    /// Sends a citizen's history (copies of the log rows about them) to `roles` of `team`, who
    /// have just gained them; each role's own read rules still filter the copies.
    fn deliver_history(&self, citizen: Uuid, team: Uuid, roles: i64) -> Result<(), SyncError> {
        self.tx.prepare_cached("INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, roles, site_id)
             SELECT ?2, device_id, 1, mutation, coalesce(copy_of, seq), class, citizen_id, ?3, site_id
             FROM changes WHERE citizen_id = ?1 AND kind = 'mutation' AND roles IS NULL
             ORDER BY seq")?.execute(
            params![&citizen.as_bytes()[..], &team.as_bytes()[..], roles],
        )?;
        Ok(())
    }

    /// Tells `roles` of `team` to erase a citizen who left their scope.
    fn log_erase(&self, citizen: Uuid, team: Uuid, roles: i64) -> Result<(), SyncError> {
        self.tx.prepare_cached("INSERT INTO changes (team_id, device_id, echo, mutation, class, citizen_id, kind, roles)
             VALUES (?1, ?2, 1, '', 'citizen', ?3, 'erase', ?4)")?.execute(
            params![
                &team.as_bytes()[..],
                &SERVER_DEVICE.0.as_bytes()[..],
                &citizen.as_bytes()[..],
                roles
            ],
        )?;
        Ok(())
    }

    /// Merges one op into the field state; returns a conflict if it was concurrent and lost or
    /// displaced a value.
    fn merge_op(&self, op: &FieldOp, stamp: Stamp) -> Result<Option<merge::Conflict>, SyncError> {
        let row: Option<(String, i64, Vec<u8>, Option<String>)> = self
            .tx
            .prepare_cached("SELECT value, hlc, device, set_state FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3")?.query_row(
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
                let rules = schema::rule_field(op.entity, &op.field);
                let kind = if op.entity.text_fields().contains(&rules) {
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
        self.tx
            .prepare_cached(
                "INSERT INTO fields (entity, record_id, field, value, hlc, device, set_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (entity, record_id, field) DO UPDATE SET value = excluded.value,
                 hlc = excluded.hlc, device = excluded.device, set_state = excluded.set_state",
            )?
            .execute(params![
                op.entity.as_str(),
                &op.id.as_bytes()[..],
                &op.field,
                state.value.to_string(),
                state.stamp.hlc.as_u64() as i64,
                &state.stamp.device.0.as_bytes()[..],
                set_state
            ])?;
        Ok(conflict)
    }

    /// The worker a device was enrolled for (`None` for the server's own writes).
    fn worker_of(&self, device: DeviceId) -> Result<Option<WorkerId>, SyncError> {
        let id: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT worker_id FROM devices WHERE id = ?1")?
            .query_row([&device.0.as_bytes()[..]], |r| r.get(0))
            .optional()?;
        id.map(|b| {
            Uuid::from_slice(&b)
                .map(WorkerId)
                .map_err(|_| SyncError::Corrupt("worker id"))
        })
        .transpose()
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
                .prepare_cached("SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = 'citizen_id'")?.query_row(
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
            winner_author: self.worker_of(c.winner.stamp.device)?,
            loser_author: self.worker_of(c.loser.stamp.device)?,
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
        let about = scope::record_scope(self.tx, op.entity, op.id)?;
        // A conflict over a citizen's own fields is case work about them, not the citizen.
        let class = match about.map_or(Class::Anon, |a| a.class) {
            Class::Citizen => Class::Case,
            other => other,
        };
        let citizen = about.and_then(|a| a.citizen);
        let site = about.and_then(|a| a.site).filter(|_| class != Class::Case);
        let team = about.map_or(caller.team_id, |a| a.team);
        let new = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO records (entity, record_id, team_id, class, citizen_id, site_id)
             VALUES ('conflict', ?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &record.id.0.as_bytes()[..],
                &team.as_bytes()[..],
                class.as_str(),
                citizen.as_ref().map(|c| c.as_bytes().to_vec()),
                site.as_ref().map(|s| s.as_bytes().to_vec())
            ])?;
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
        self.log(team, &mutation, false, (class, citizen, site))
            .map(|_| ())
    }

    /// Appends to the change log. `echo`: the server altered the mutation, so its author
    /// device must pull it too, or it would keep the value it sent.
    /// `place`: the row's class, citizen and site (for site and site-log rows).
    fn log(
        &self,
        team: Uuid,
        m: &Mutation,
        echo: bool,
        (class, citizen, site): (Class, Option<Uuid>, Option<Uuid>),
    ) -> Result<i64, SyncError> {
        let text = serde_json::to_string(m).map_err(|_| SyncError::Corrupt("mutation"))?;
        self.tx
            .prepare_cached(
                "INSERT INTO changes (team_id, device_id, echo, mutation, class, citizen_id, site_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &team.as_bytes()[..],
                &m.device_id.0.as_bytes()[..],
                echo,
                text,
                class.as_str(),
                citizen.as_ref().map(|c| c.as_bytes().to_vec()),
                site.as_ref().map(|s| s.as_bytes().to_vec())
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Whether the change-log row `change_seq` was echoed again already. Once is enough: the
    /// device adopts the applied version from it, and a device that keeps sending other
    /// versions of the same sequence number must not make the server copy the row each time.
    fn echoed(&self, change_seq: i64) -> Result<bool, SyncError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT count(*) > 0 FROM changes WHERE copy_of = ?1 AND roles IS NULL",
            )?
            .query_row([change_seq], |r| r.get(0))?)
    }

    /// Appends the change-log row `change_seq` once more, echoed to its own device too.
    /// Pulling a mutation again is harmless for every other device (merging is idempotent).
    /// Only a row `device` wrote (its row is logged under the record's team, which for a
    /// supervisor's review is not the device's own).
    fn echo_again(&self, device: DeviceId, change_seq: i64) -> Result<(), SyncError> {
        self.tx.prepare_cached("INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, site_id)
             SELECT team_id, device_id, 1, mutation, seq, class, citizen_id, site_id FROM changes
             WHERE seq = ?1 AND device_id = ?2")?.execute(
            params![change_seq, &device.0.as_bytes()[..]],
        )?;
        Ok(())
    }
}

impl Ctx<'_> {
    /// Writes one field as the server (an administrator's decision), sequential to what is
    /// stored, and logs it like any mutation.
    fn server_assign(
        &mut self,
        team: Uuid,
        (entity, id, field): (EntityKind, Uuid, &str),
        value: serde_json::Value,
        (class, citizen): (Class, Option<Uuid>),
    ) -> Result<(), SyncError> {
        let base: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT hlc, device FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3")?.query_row(
                params![entity.as_str(), &id.as_bytes()[..], field],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let base = base
            .map(|(hlc, device)| -> Result<Stamp, SyncError> {
                Ok(Stamp {
                    hlc: Hlc::from_u64(hlc as u64),
                    device: DeviceId(
                        Uuid::from_slice(&device).map_err(|_| SyncError::Corrupt("device id"))?,
                    ),
                })
            })
            .transpose()?;
        let hlc = self.clock.now(self.now_ms)?;
        self.server_seq += 1;
        let op = FieldOp {
            entity,
            id,
            field: field.to_owned(),
            change: FieldChange::Assign { value },
            hlc,
            base,
        };
        self.merge_op(
            &op,
            Stamp {
                hlc,
                device: SERVER_DEVICE,
            },
        )?;
        let mutation = Mutation {
            device_id: SERVER_DEVICE,
            device_seq: self.server_seq,
            ops: vec![op],
        };
        self.log(team, &mutation, false, (class, citizen, None))?;
        Ok(())
    }
}

fn citizen_team(tx: &Transaction, citizen: Uuid) -> Result<Uuid, SyncError> {
    let team: Option<Vec<u8>> = tx
        .prepare_cached("SELECT team_id FROM citizens WHERE citizen_id = ?1 AND purged_ms IS NULL")?
        .query_row([&citizen.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    let team = team.ok_or(SyncError::NotFound("citizen"))?;
    Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))
}

/// Moves a citizen, with their whole history, to another team (an administrator's decision,
/// e.g. the citizen moved district). The old team's devices erase the citizen on their next
/// sync; the new team's devices receive everything. Audited as the administrator's.
pub fn move_citizen(
    conn: &mut Connection,
    citizen: Uuid,
    team: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<(), SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let old = citizen_team(&tx, citizen)?;
    let exists: bool = tx
        .prepare_cached("SELECT count(*) > 0 FROM teams WHERE id = ?1")?
        .query_row([&team.as_bytes()[..]], |r| r.get(0))?;
    if !exists {
        return Err(SyncError::NotFound("team"));
    }
    if old == team {
        return Ok(());
    }
    tx.prepare_cached("UPDATE citizens SET team_id = ?2 WHERE citizen_id = ?1")?
        .execute(params![&citizen.as_bytes()[..], &team.as_bytes()[..]])?;
    tx.prepare_cached("UPDATE records SET team_id = ?2 WHERE citizen_id = ?1")?
        .execute(params![&citizen.as_bytes()[..], &team.as_bytes()[..]])?;
    // The old team's site is not one of the new team's: the citizen no longer lives at a site
    // of their team, so they are not the new team's caretakers' business (until the new team
    // places them at one of its own sites).
    tx.prepare_cached("UPDATE citizens SET resident = 0, site_id = NULL WHERE citizen_id = ?1")?
        .execute([&citizen.as_bytes()[..]])?;
    let had_site =
        field_value(&tx, EntityKind::Citizen, citizen, "site_id")?.is_some_and(|v| !v.is_null());
    let mut ctx = Ctx::new(&tx, max_drift_ms, now_ms)?;
    ctx.log_erase(citizen, old, scope::all_roles())?;
    ctx.deliver_history(citizen, team, scope::all_roles())?;
    ctx.server_assign(
        team,
        (EntityKind::Citizen, citizen, "team_id"),
        serde_json::to_value(team).unwrap_or_default(),
        (Class::Citizen, Some(citizen)),
    )?;
    if had_site {
        ctx.server_assign(
            team,
            (EntityKind::Citizen, citizen, "site_id"),
            serde_json::Value::Null,
            (Class::Citizen, Some(citizen)),
        )?;
    }
    ctx.finish()?;
    audit::append(
        &tx,
        now_ms,
        &Entry::admin(Action::Move).record("citizen", citizen, Some(citizen)),
    )?;
    tx.commit()?;
    Ok(())
}

/// Assigns a caretaker to a site of their team (an administrator's decision): on their next
/// sync their devices receive the site, its log and its residents. Returns whether the
/// assignment is new. Audited as the administrator's.
pub fn assign_site(
    conn: &mut Connection,
    worker: Uuid,
    site: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<bool, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let team = caretaker_team(&tx, worker)?;
    // Another team's site looks like no site at all.
    scope::record_scope(&tx, EntityKind::Site, site)?
        .filter(|s| s.team == team)
        .ok_or(SyncError::NotFound("site in the worker's team"))?;
    let new = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO caretaker_sites (worker_id, site_id) VALUES (?1, ?2)",
        )?
        .execute(params![&worker.as_bytes()[..], &site.as_bytes()[..]])?
        == 1;
    if new {
        let ctx = Ctx::new(&tx, max_drift_ms, now_ms)?;
        let caretakers = Role::Caretaker.bit();
        // Copies for the team's caretakers; each one's sites still filter them.
        tx.prepare_cached(
            "INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, roles, site_id)
             SELECT ?2, device_id, 1, mutation, coalesce(copy_of, seq), class, citizen_id, ?3, site_id
             FROM changes WHERE site_id = ?1 AND class IN ('site', 'site_log')
               AND kind = 'mutation' AND roles IS NULL
             ORDER BY seq",
        )?
        .execute(params![&site.as_bytes()[..], &team.as_bytes()[..], caretakers])?;
        let residents: Vec<Vec<u8>> = tx
            .prepare_cached(
                "SELECT citizen_id FROM citizens WHERE site_id = ?1 AND team_id = ?2
                   AND off_devices = 0 AND purged_ms IS NULL",
            )?
            .query_map(params![&site.as_bytes()[..], &team.as_bytes()[..]], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
        for citizen in residents {
            let citizen =
                Uuid::from_slice(&citizen).map_err(|_| SyncError::Corrupt("citizen id"))?;
            ctx.deliver_history(citizen, team, caretakers)?;
        }
        audit::append_many(
            &tx,
            now_ms,
            &Entry::admin_decision(Action::AssignSite, worker, ("site", site)),
        )?;
    }
    tx.commit()?;
    Ok(new)
}

/// Takes a site from a caretaker: a scope change ([`crate::epochs`]). Their devices push what
/// they had pending (judged under the old scope), then erase the site, its log and its
/// residents on their next sync. Returns whether the caretaker had the site.
pub fn unassign_site(
    conn: &mut Connection,
    worker: Uuid,
    site: Uuid,
    now_ms: u64,
) -> Result<bool, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    crate::epochs::end_epoch(&tx, worker, now_ms)?;
    let removed = tx
        .prepare_cached("DELETE FROM caretaker_sites WHERE worker_id = ?1 AND site_id = ?2")?
        .execute(params![&worker.as_bytes()[..], &site.as_bytes()[..]])?;
    if removed == 0 {
        // Dropping the transaction undoes the epoch ended above.
        return Ok(false);
    }
    audit::append_many(
        &tx,
        now_ms,
        &Entry::admin_decision(Action::UnassignSite, worker, ("site", site)),
    )?;
    tx.commit()?;
    Ok(true)
}

/// The team of an active caretaker; other workers are not assigned sites.
fn caretaker_team(tx: &Transaction, worker: Uuid) -> Result<Uuid, SyncError> {
    let (role, team) = crate::identity::role_and_team(tx, worker)?;
    if role != Role::Caretaker {
        return Err(SyncError::Refused(
            "only caretakers are assigned sites (other roles see all of their team's sites)",
        ));
    }
    Ok(team)
}

/// A site as the administrator sees it: id, team, name, and the caretakers assigned to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub caretakers: Vec<Uuid>,
}

/// Every site, for `admin sites` (a site's name is a place, not a person's data).
pub fn list_sites(conn: &Connection) -> Result<Vec<SiteInfo>, SyncError> {
    let mut stmt = conn.prepare(
        "SELECT r.record_id, r.team_id, coalesce(json_extract(f.value, '$'), ''),
                (SELECT group_concat(hex(c.worker_id)) FROM caretaker_sites c
                 WHERE c.site_id = r.record_id)
         FROM records r LEFT JOIN fields f ON f.entity = 'site' AND f.record_id = r.record_id
             AND f.field = 'name'
         WHERE r.entity = 'site' ORDER BY r.team_id, r.record_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, team, name, caretakers) = row?;
        let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|_| SyncError::Corrupt("id"));
        out.push(SiteInfo {
            id: uuid(&id)?,
            team_id: uuid(&team)?,
            name,
            caretakers: caretakers
                .unwrap_or_default()
                .split(',')
                .filter_map(|hex| Uuid::try_parse(hex).ok())
                .collect(),
        });
    }
    Ok(out)
}

/// The municipality's retention rules for closed (archived) cases, in days after closing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Erase from every device after this many days (the server keeps the case).
    pub device_days: Option<u32>,
    /// Purge from the server after this many days: content gone, only the ids remain.
    pub purge_days: Option<u32>,
}

/// What one retention run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub off_devices: usize,
    pub purged: usize,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Applies the retention rules now, in one transaction. Devices learn of both kinds of removal
/// through an erasure in the change log, and erase the citizen by destroying their key.
pub fn apply_retention(
    conn: &mut Connection,
    rules: Retention,
    now_ms: u64,
) -> Result<RetentionReport, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ctx = Ctx::new(&tx, feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS, now_ms)?;
    let mut report = RetentionReport::default();
    let due = |days: u32, extra: &str| -> Result<Vec<(Uuid, Uuid, bool)>, SyncError> {
        let mut stmt = tx.prepare(&format!(
            "SELECT citizen_id, team_id, off_devices FROM citizens
             WHERE closed_ms IS NOT NULL AND closed_ms <= ?1 AND purged_ms IS NULL {extra}"
        ))?;
        let cutoff = now_ms as i64 - i64::from(days) * DAY_MS;
        let rows = stmt.query_map([cutoff], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (c, t, off) = row?;
            let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|_| SyncError::Corrupt("id"));
            out.push((uuid(&c)?, uuid(&t)?, off));
        }
        Ok(out)
    };
    let mut trail = Vec::new();
    if let Some(days) = rules.device_days {
        for (citizen, team, _) in due(days, "AND off_devices = 0")? {
            tx.prepare_cached("UPDATE citizens SET off_devices = 1 WHERE citizen_id = ?1")?
                .execute([&citizen.as_bytes()[..]])?;
            ctx.log_erase(citizen, team, scope::all_roles())?;
            let mut e = Entry::admin(Action::Erase).record("citizen", citizen, Some(citizen));
            e.actor = audit::Actor::Server;
            trail.push(e);
            report.off_devices += 1;
        }
    }
    if let Some(days) = rules.purge_days {
        for (citizen, team, off) in due(days, "")? {
            let id = &citizen.as_bytes()[..];
            tx.prepare_cached(
                "DELETE FROM fields WHERE (entity, record_id) IN
                     (SELECT entity, record_id FROM records WHERE citizen_id = ?1)",
            )?
            .execute([id])?;
            tx.prepare_cached("DELETE FROM changes WHERE citizen_id = ?1 AND kind = 'mutation'")?
                .execute([id])?;
            tx.prepare_cached("UPDATE citizens SET purged_ms = ?2 WHERE citizen_id = ?1")?
                .execute(params![id, now_ms as i64])?;
            if !off {
                ctx.log_erase(citizen, team, scope::all_roles())?;
            }
            let mut e = Entry::admin(Action::Purge).record("citizen", citizen, Some(citizen));
            e.actor = audit::Actor::Server;
            trail.push(e);
            report.purged += 1;
        }
    }
    audit::append_many(&tx, now_ms, &trail)?;
    tx.commit()?;
    if report.purged > 0 {
        // With secure_delete on, freed pages were overwritten; move the WAL's copies out too.
        conn.prepare_cached("PRAGMA wal_checkpoint(TRUNCATE)")?
            .query_row([], |_| Ok(()))?;
    }
    Ok(report)
}

/// What [`reopen_case`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopened {
    /// The citizen is back on the devices of their team, with their history.
    Reopened,
    /// The case was not taken off the devices: nothing to do.
    OnDevices,
}

/// Reopens a closed case that retention took off the devices (an administrator's decision: the
/// citizen came back to the service). The citizen is no longer archived, and their whole
/// history is delivered again to their team's devices, each role's read rules filtering it as
/// always; the retention clock starts again when the case is next closed. A case purged from
/// the server has no content left to bring back: refused. Audited as the administrator's.
pub fn reopen_case(
    conn: &mut Connection,
    citizen: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Reopened, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(Vec<u8>, bool, Option<i64>)> = tx
        .prepare_cached(
            "SELECT team_id, off_devices, purged_ms FROM citizens WHERE citizen_id = ?1",
        )?
        .query_row([&citizen.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let (team, off, purged) = row.ok_or(SyncError::NotFound("citizen"))?;
    if purged.is_some() {
        return Err(SyncError::Refused(
            "the case was purged from the server: its content is gone and cannot be reopened",
        ));
    }
    if !off {
        return Ok(Reopened::OnDevices);
    }
    let team = Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?;
    tx.prepare_cached(
        "UPDATE citizens SET off_devices = 0, closed_ms = NULL WHERE citizen_id = ?1",
    )?
    .execute([&citizen.as_bytes()[..]])?;
    let mut ctx = Ctx::new(&tx, max_drift_ms, now_ms)?;
    // The history first, then the change that reopens it: a device applies them in this order.
    ctx.deliver_history(citizen, team, scope::all_roles())?;
    ctx.server_assign(
        team,
        (EntityKind::Citizen, citizen, "archived"),
        serde_json::Value::Bool(false),
        (Class::Citizen, Some(citizen)),
    )?;
    ctx.finish()?;
    audit::append(
        &tx,
        now_ms,
        &Entry::admin(Action::Reopen).record("citizen", citizen, Some(citizen)),
    )?;
    tx.commit()?;
    Ok(Reopened::Reopened)
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

/// A new record's server-owned field: its team is the writer's team, its author the writer.
fn fresh_server_value(caller: &Caller, field: &str) -> serde_json::Value {
    let id = if field == "team_id" {
        caller.team_id
    } else {
        caller.worker_id
    };
    serde_json::Value::String(id.to_string())
}

/// Checks that a creating mutation describes a complete record that passes the domain rules
/// (the same [`feltbog_core::domain::Validate`] the device runs before saving). Messages name the rule, not values.
fn validate_creation(caller: &Caller, m: &Mutation) -> Check {
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
fn validate_stored(tx: &Transaction, entity: EntityKind, id: Uuid) -> Result<Check, SyncError> {
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
fn validate_written(tx: &Transaction, m: &Mutation) -> Result<Check, SyncError> {
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
fn citizen_item_list(entity: EntityKind, field: &str) -> Option<&'static str> {
    match (entity, field) {
        (EntityKind::Visit, "course_id") => Some("courses"),
        (EntityKind::Visit, "goals") => Some("goals"),
        _ => None,
    }
}

/// A stored record's fields as one JSON object.
fn stored_record(
    conn: &Connection,
    entity: EntityKind,
    id: Uuid,
) -> Result<serde_json::Map<String, serde_json::Value>, SyncError> {
    let mut record = serde_json::Map::new();
    let mut stmt = conn
        .prepare_cached("SELECT field, value FROM fields WHERE entity = ?1 AND record_id = ?2")?;
    let rows = stmt.query_map(params![entity.as_str(), &id.as_bytes()[..]], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (field, value) = row?;
        let value = serde_json::from_str(&value).map_err(|_| SyncError::Corrupt("field value"))?;
        record.insert(field, value);
    }
    Ok(record)
}

/// Every stored record that is not a valid record of its kind, with the reason: a field its
/// kind does not have, or fields that do not parse as the domain type or break a domain rule.
/// Empty on a healthy server; the adversarial push test checks it after every push. Purged
/// records (no fields left) are skipped.
pub fn invalid_records(conn: &Connection) -> Result<Vec<(EntityKind, Uuid, String)>, SyncError> {
    let mut stmt =
        conn.prepare("SELECT entity, record_id FROM records ORDER BY entity, record_id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (entity, id) in rows {
        let entity = EntityKind::parse(&entity).ok_or(SyncError::Corrupt("entity"))?;
        let id = Uuid::from_slice(&id).map_err(|_| SyncError::Corrupt("record id"))?;
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

/// One field's merged value on the server, for tests and reports.
pub fn field_value(
    conn: &Connection,
    entity: EntityKind,
    id: Uuid,
    field: &str,
) -> Result<Option<serde_json::Value>, SyncError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
        )?
        .query_row(params![entity.as_str(), &id.as_bytes()[..], field], |r| {
            r.get(0)
        })
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
    let mut stmt = conn.prepare(
        "SELECT seq, team_id, mutation, copy_of FROM changes WHERE kind = 'mutation' ORDER BY seq",
    )?;
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

/// A supervisor's decision on an open free-text conflict, made in the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "keep", content = "text", rename_all = "snake_case")]
pub enum Decision {
    /// The version that holds now.
    Current,
    /// The other version.
    Other,
    /// A text written from both (the text part of a structured value: a goal's words).
    Merged(String),
}

/// Settles an open free-text conflict for a supervisor signed in to the dashboard, by the same
/// rule and write path as a review from their tablet (`Ctx::is_conflict_review`,
/// `Ctx::judge`): the field gets the chosen value, then the conflict is marked resolved, as
/// two mutations the server writes in her name (no device of hers exists), logged for every
/// device of the team and audited as her writes. A refusal (not her team's, no longer open,
/// a value the record cannot hold) changes nothing.
pub fn review_from_dashboard(
    conn: &mut Connection,
    worker: Uuid,
    conflict: Uuid,
    decision: &Decision,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Result<(), (RejectReason, String)>, SyncError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let refused = |why: &str| Ok(Err((RejectReason::OutOfScope, why.to_owned())));
    let team: Option<Vec<u8>> = tx
        .query_row(
            "SELECT team_id FROM workers WHERE id = ?1 AND active = 1 AND role = ?2",
            params![&worker.as_bytes()[..], Role::Supervisor.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(team) = team.and_then(|t| Uuid::from_slice(&t).ok()) else {
        return refused("only an active supervisor reviews conflicts");
    };
    let caller = Caller {
        device_id: SERVER_DEVICE,
        worker_id: worker,
        team_id: team,
        role: Role::Supervisor,
    };
    let reach = scope::reach(&tx, &caller)?;
    let value = |field: &str| field_value(&tx, EntityKind::Conflict, conflict, field);
    let (Some(entity), Some(record), Some(field), Some(current), Some(other)) = (
        value("entity")?,
        value("record_id")?,
        value("field")?,
        value("winner")?,
        value("loser")?,
    ) else {
        return refused("no such conflict");
    };
    let (Ok(entity), Ok(record), Some(field)) = (
        serde_json::from_value::<EntityKind>(entity),
        serde_json::from_value::<Uuid>(record),
        field.as_str().map(str::to_owned),
    ) else {
        return Err(SyncError::Corrupt("conflict"));
    };
    if let Decision::Merged(text) = decision
        && text.trim().is_empty()
    {
        return Ok(Err((
            RejectReason::Invalid,
            "write the text to keep".into(),
        )));
    }
    let chosen = match decision {
        Decision::Current => current,
        Decision::Other => other,
        Decision::Merged(text) => match (&current, schema::text_part(entity, &field)) {
            (serde_json::Value::String(_), _) => serde_json::json!(text),
            (serde_json::Value::Object(parts), Some(part)) => {
                let mut parts = parts.clone();
                parts.insert(part.to_owned(), serde_json::json!(text));
                serde_json::Value::Object(parts)
            }
            _ => {
                return Ok(Err((
                    RejectReason::Invalid,
                    "this conflict has no text to write together".into(),
                )));
            }
        },
    };
    let base: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT hlc, device FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
            params![entity.as_str(), &record.as_bytes()[..], field],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let base = base.map(|(hlc, device)| Stamp {
        hlc: Hlc::from_u64(hlc as u64),
        device: DeviceId(Uuid::from_slice(&device).unwrap_or_default()),
    });
    let mut ctx = Ctx::new(&tx, max_drift_ms, now_ms)?;
    let hlc = ctx.clock.now(now_ms)?;
    let writes = [
        (entity, record, field, chosen, base),
        (
            EntityKind::Conflict,
            conflict,
            "status".to_owned(),
            serde_json::json!(ConflictStatus::Resolved),
            None,
        ),
    ];
    let mut trail = Vec::new();
    for (entity, id, field, value, base) in writes {
        ctx.server_seq += 1;
        let mutation = Mutation {
            device_id: SERVER_DEVICE,
            device_seq: ctx.server_seq,
            ops: vec![FieldOp {
                entity,
                id,
                field,
                change: FieldChange::Assign { value },
                hlc,
                base,
            }],
        };
        match ctx.judge(&caller, &reach, &mutation)? {
            Err(refusal) => return Ok(Err(refusal)),
            Ok(citizen) => {
                for citizen in filed_under(ctx.tx, entity, id, citizen)? {
                    trail.push(Entry::by_web(worker, Action::Write).record(
                        entity.as_str(),
                        id,
                        citizen,
                    ));
                }
            }
        }
    }
    ctx.finish()?;
    audit::append_many(&tx, now_ms, &trail)?;
    tx.commit()?;
    Ok(Ok(()))
}
