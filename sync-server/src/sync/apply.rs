//! The write path shared by a device's push, an administrator's decision and a supervisor's
//! review from the dashboard: check a mutation, merge it field by field, log it.

use super::state::field_value;
use super::validate::{
    citizen_item_list, valid_field_name, validate_creation, validate_stored, validate_written,
};
use super::{SERVER_DEVICE, SyncError};
use crate::args;
use crate::identity::{Caller, Role};
use crate::scope::{self, Class};
use crate::storage::{Db, DbExt};
use feltbog_core::domain::schema::{self, SchemaError};
use feltbog_core::domain::{
    CitizenId, ConflictId, ConflictRecord, ConflictStatus, EntityKind, WorkerId,
};
use feltbog_core::hlc::{DeviceId, Hlc, HlcClock, Stamp};
use feltbog_core::merge::{self, ConflictKind, OrSet, Register, RegisterOutcome};
use feltbog_core::protocol::{FieldChange, FieldOp, Mutation, RejectReason, Rejection, limits};
use feltbog_core::sim::{PlantedBug, planted};
use uuid::Uuid;

pub(super) struct Ctx<'a> {
    pub(super) tx: &'a dyn Db,
    pub(super) clock: HlcClock,
    pub(super) server_seq: u64,
    now_ms: u64,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(tx: &'a dyn Db, max_drift_ms: u64, now_ms: u64) -> Result<Self, SyncError> {
        let (hlc_last, server_seq): (i64, i64) = tx.value(
            "SELECT hlc_last, server_seq FROM server_state WHERE id = 1",
            &[],
        )?;
        Ok(Ctx {
            tx,
            clock: HlcClock::new(Hlc::from_u64(hlc_last as u64), max_drift_ms),
            server_seq: server_seq as u64,
            now_ms,
        })
    }

    /// Saves the server clock and its own sequence; returns the clock's reading now.
    pub(super) fn finish(&mut self) -> Result<Hlc, SyncError> {
        let server_hlc = self.clock.now(self.now_ms)?;
        self.tx.execute(
            "UPDATE server_state SET hlc_last = ?1, server_seq = ?2 WHERE id = 1",
            args![server_hlc.as_u64() as i64, self.server_seq as i64],
        )?;
        Ok(server_hlc)
    }
}

impl Ctx<'_> {
    /// Checks one mutation and applies it if it passes: a creation as it is, an edit only if
    /// the record it leaves is valid (else it is undone). The verdict names the citizen the
    /// record is about, or the refusal. One path for a device's push and a supervisor's review
    /// from the dashboard.
    pub(super) fn judge(
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
                        self.tx.execute("SAVEPOINT edit", &[])?;
                        let server_seq = self.server_seq;
                        let citizen = self.apply(caller, mutation)?;
                        match validate_stored(self.tx, mutation.ops[0].entity, record)? {
                            Ok(()) => {
                                self.tx.execute("RELEASE SAVEPOINT edit", &[])?;
                                Ok(citizen)
                            }
                            Err(refused) => {
                                self.tx.execute("ROLLBACK TO SAVEPOINT edit", &[])?;
                                self.tx.execute("RELEASE SAVEPOINT edit", &[])?;
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

pub(super) type Check = Result<(), (RejectReason, String)>;

/// What a mutation that passed [`Ctx::check`] does.
enum Made {
    Created,
    /// Changes a stored record: checked once more after merging ([`validate_stored`]).
    Edited,
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
        let sql = "SELECT count(*) > 0 FROM fields r
             JOIN fields e ON e.entity = 'conflict' AND e.record_id = r.record_id AND e.field = 'entity'
             JOIN fields f ON f.entity = 'conflict' AND f.record_id = r.record_id AND f.field = 'field'
             JOIN fields k ON k.entity = 'conflict' AND k.record_id = r.record_id AND k.field = 'kind'
             JOIN fields s ON s.entity = 'conflict' AND s.record_id = r.record_id AND s.field = 'status'
             WHERE r.entity = 'conflict' AND r.field = 'record_id' AND r.value = ?1
               AND e.value = ?2 AND f.value = ?3 AND k.value = ?4 AND s.value = ?4";
        for op in &m.ops {
            let under_review: bool = self.tx.value(
                sql,
                args![
                    json(serde_json::json!(first.id)),
                    json(serde_json::json!(first.entity)),
                    json(serde_json::json!(op.field)),
                    json(open.clone()),
                ],
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
        let rows: Vec<(String, String)> = self.tx.all(
            "SELECT w.value, l.value FROM fields r
             JOIN fields f ON f.entity = 'conflict' AND f.record_id = r.record_id AND f.field = 'field'
             JOIN fields s ON s.entity = 'conflict' AND s.record_id = r.record_id AND s.field = 'status'
             JOIN fields w ON w.entity = 'conflict' AND w.record_id = r.record_id AND w.field = 'winner'
             JOIN fields l ON l.entity = 'conflict' AND l.record_id = r.record_id AND l.field = 'loser'
             WHERE r.entity = 'conflict' AND r.field = 'record_id' AND r.value = ?1
               AND f.value = ?2 AND s.value = ?3",
            args![
                json(serde_json::json!(op.id)),
                json(serde_json::json!(op.field)),
                json(serde_json::json!("open")),
            ],
        )?;
        let mut out = Vec::new();
        for (winner, loser) in rows {
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
                self.tx.execute(
                    "INSERT INTO records (entity, record_id, team_id, class, citizen_id, site_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    args![
                        first.entity.as_str(),
                        first.id,
                        caller.team_id,
                        class.as_str(),
                        citizen,
                        site
                    ],
                )?;
                if class == Class::Site && caller.role == Role::Caretaker {
                    // A caretaker's new site is theirs to keep.
                    self.tx.execute(
                        "INSERT INTO caretaker_sites (worker_id, site_id)
                             VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                        args![caller.worker_id, first.id],
                    )?;
                }
                if class == Class::Citizen {
                    self.tx.execute(
                        "INSERT INTO citizens (citizen_id, team_id) VALUES (?1, ?2)",
                        args![first.id, caller.team_id],
                    )?;
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
                "INSERT INTO applied (device_id, device_seq, digest, change_seq)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO applied (device_id, device_seq, digest, change_seq)
                 VALUES (?1, ?2, ?3, ?4)"
            },
            args![
                m.device_id.0,
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
            .one(
                "SELECT team_id, site_id, closed_ms FROM citizens WHERE citizen_id = ?1",
                args![citizen],
            )?
            .ok_or(SyncError::Corrupt("citizen without scope"))?;
        let was_at = was_at.map(|b| Uuid::from_slice(&b).unwrap_or_default());
        let team = Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?;
        let closed = match (archived, closed) {
            (true, None) => Some(self.now_ms as i64),
            (true, Some(t)) => Some(t),
            (false, _) => None,
        };
        self.tx.execute(
            "UPDATE citizens SET resident = ?2, closed_ms = ?3, site_id = ?4
                 WHERE citizen_id = ?1",
            args![citizen, resident, closed, site],
        )?;
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
    pub(super) fn refused_before(
        &self,
        device: DeviceId,
        seq: u64,
    ) -> Result<Option<Rejection>, SyncError> {
        let row: Option<(String, String)> = self.tx.one(
            "SELECT reason, detail FROM refused WHERE device_id = ?1 AND device_seq = ?2",
            args![device.0, seq as i64],
        )?;
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
    pub(super) fn remember_refusal(
        &self,
        device: DeviceId,
        seq: u64,
        reason: RejectReason,
        detail: &str,
    ) -> Result<(), SyncError> {
        let reason = serde_json::to_value(reason).map_err(|_| SyncError::Corrupt("refusal"))?;
        self.tx.execute(
            "INSERT INTO refused (device_id, device_seq, reason, detail)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            args![
                device.0,
                seq as i64,
                reason.as_str().unwrap_or("invalid"),
                detail
            ],
        )?;
        Ok(())
    }

    /// Sends a citizen's history (copies of the log rows about them) to `roles` of `team`, who
    /// have just gained them; each role's own read rules still filter the copies.
    pub(super) fn deliver_history(
        &self,
        citizen: Uuid,
        team: Uuid,
        roles: i64,
    ) -> Result<(), SyncError> {
        self.tx.execute("INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, roles, site_id)
             SELECT ?2, device_id, 1, mutation, coalesce(copy_of, seq), class, citizen_id, ?3, site_id
             FROM changes WHERE citizen_id = ?1 AND kind = 'mutation' AND roles IS NULL
             ORDER BY seq", args![citizen, team, roles])?;
        Ok(())
    }

    /// Tells `roles` of `team` to erase a citizen who left their scope.
    pub(super) fn log_erase(&self, citizen: Uuid, team: Uuid, roles: i64) -> Result<(), SyncError> {
        self.tx.execute(
            "INSERT INTO changes (team_id, device_id, echo, mutation, class, citizen_id, kind, roles)
             VALUES (?1, ?2, 1, '', 'citizen', ?3, 'erase', ?4)",
            args![team, SERVER_DEVICE.0, citizen, roles],
        )?;
        Ok(())
    }

    /// Merges one op into the field state; returns a conflict if it was concurrent and lost or
    /// displaced a value.
    fn merge_op(&self, op: &FieldOp, stamp: Stamp) -> Result<Option<merge::Conflict>, SyncError> {
        let row: Option<(String, i64, Vec<u8>, Option<String>)> = self
            .tx
            .one("SELECT value, hlc, device, set_state FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3", args![op.entity.as_str(), op.id, &op.field])?;
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
        self.tx.execute(
            "INSERT INTO fields (entity, record_id, field, value, hlc, device, set_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (entity, record_id, field) DO UPDATE SET value = excluded.value,
                 hlc = excluded.hlc, device = excluded.device, set_state = excluded.set_state",
            args![
                op.entity.as_str(),
                op.id,
                &op.field,
                state.value.to_string(),
                state.stamp.hlc.as_u64() as i64,
                state.stamp.device.0,
                set_state
            ],
        )?;
        Ok(conflict)
    }

    /// The worker a device was enrolled for (`None` for the server's own writes).
    fn worker_of(&self, device: DeviceId) -> Result<Option<WorkerId>, SyncError> {
        let id: Option<Vec<u8>> = self.tx.one(
            "SELECT worker_id FROM devices WHERE id = ?1",
            args![device.0],
        )?;
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
                .one("SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = 'citizen_id'", args![op.entity.as_str(), op.id])?;
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
        let new = self.tx.execute(
            "INSERT INTO records (entity, record_id, team_id, class, citizen_id, site_id)
             VALUES ('conflict', ?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            args![record.id.0, team, class.as_str(), citizen, site],
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
        Ok(self.tx.value(
            "INSERT INTO changes (team_id, device_id, echo, mutation, class, citizen_id, site_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING seq",
            args![
                team,
                m.device_id.0,
                echo,
                text,
                class.as_str(),
                citizen,
                site
            ],
        )?)
    }

    /// Whether the change-log row `change_seq` was echoed again already. Once is enough: the
    /// device adopts the applied version from it, and a device that keeps sending other
    /// versions of the same sequence number must not make the server copy the row each time.
    pub(super) fn echoed(&self, change_seq: i64) -> Result<bool, SyncError> {
        Ok(self.tx.value(
            "SELECT count(*) > 0 FROM changes WHERE copy_of = ?1 AND roles IS NULL",
            args![change_seq],
        )?)
    }

    /// Appends the change-log row `change_seq` once more, echoed to its own device too.
    /// Pulling a mutation again is harmless for every other device (merging is idempotent).
    /// Only a row `device` wrote (its row is logged under the record's team, which for a
    /// supervisor's review is not the device's own). Filed under the team the row's citizen
    /// belongs to now (a pull reads by the team a row is filed under, and the citizen may have
    /// moved since the original was written).
    pub(super) fn echo_again(&self, device: DeviceId, change_seq: i64) -> Result<(), SyncError> {
        self.tx.execute(
            "INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, site_id)
             SELECT coalesce((SELECT z.team_id FROM citizens z WHERE z.citizen_id = c.citizen_id),
                             c.team_id),
                    c.device_id, 1, c.mutation, c.seq, c.class, c.citizen_id, c.site_id
             FROM changes c WHERE c.seq = ?1 AND c.device_id = ?2",
            args![change_seq, device.0],
        )?;
        Ok(())
    }
}

impl Ctx<'_> {
    /// Writes one field as the server (an administrator's decision), sequential to what is
    /// stored, and logs it like any mutation.
    pub(super) fn server_assign(
        &mut self,
        team: Uuid,
        (entity, id, field): (EntityKind, Uuid, &str),
        value: serde_json::Value,
        (class, citizen): (Class, Option<Uuid>),
    ) -> Result<(), SyncError> {
        let base: Option<(i64, Vec<u8>)> = self.tx.one(
            "SELECT hlc, device FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
            args![entity.as_str(), id, field],
        )?;
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

/// SHA-256 of a mutation as received: tells an exact replay from a re-stamped one.
pub(super) fn mutation_digest(m: &Mutation) -> Vec<u8> {
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
pub(super) fn fresh_server_value(caller: &Caller, field: &str) -> serde_json::Value {
    let id = if field == "team_id" {
        caller.team_id
    } else {
        caller.worker_id
    };
    serde_json::Value::String(id.to_string())
}
