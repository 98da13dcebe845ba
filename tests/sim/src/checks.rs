//! The properties of DESIGN §5, checked after the network has healed. (Monotonic cursors, the
//! skew bound and scope are also checked on every round trip while the run goes on.)
//!
//! Failure messages name records, fields, devices and stamps — never field values.

use crate::Broken;
use crate::world::{World, broken};
use feltbog_core::domain::EntityKind;
use feltbog_core::hlc::{DeviceId, Stamp};
use feltbog_core::merge::{Register, ReplicaState};
use feltbog_core::protocol::FieldChange;
use feltbog_server::sync::{Change, change_log, replica_state};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

type FieldKey = (EntityKind, Uuid, String);

/// Every check, in an order where an earlier failure explains a later one best.
pub(crate) fn all(world: &mut World) -> Result<(), Broken> {
    let result = (|| {
        outbox_drained(world)?;
        let log = server_log(world)?;
        world.env.borrow_mut().stats.replays_resent =
            log.iter().filter(|c| c.copy_of.is_some()).count() as u64;
        every_saved_mutation_reached_the_server(world, &log)?;
        let state = server_state(world)?;
        world.env.borrow_mut().stats.conflicts_raised = state
            .keys()
            .filter(|(entity, _)| *entity == EntityKind::Conflict)
            .count() as u64;
        // What every device saved holds on the server, before the devices are compared with
        // it: a lost edit is named as such, not as the difference it leaves.
        reference_model(world, &log, &state)?;
        convergence(world)?;
        causality(&log)?;
        idempotence(world)
    })();
    result.map_err(|b| world.with_trace(b))
}

/// Every `(device, seq)` the server applied, by its own table: a purge deletes a closed case's
/// rows from the change log, but not the record that they were applied.
fn applied_on_server(world: &World) -> Result<BTreeSet<(DeviceId, u64)>, Broken> {
    let env = world.env.borrow();
    let mut stmt = env
        .server
        .prepare("SELECT device_id, device_seq FROM applied")
        .map_err(|e| broken("server", e))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
        .map_err(|e| broken("server", e))?;
    let mut out = BTreeSet::new();
    for row in rows {
        let (device, seq) = row.map_err(|e| broken("server", e))?;
        let device = Uuid::from_slice(&device).map_err(|e| broken("server", e))?;
        out.insert((DeviceId(device), seq as u64));
    }
    Ok(out)
}

/// The records devices no longer hold by design: those of cases the retention rules took off
/// the devices or purged.
fn off_devices(world: &World) -> Result<BTreeSet<(EntityKind, Uuid)>, Broken> {
    let env = world.env.borrow();
    let mut stmt = env
        .server
        .prepare(
            "SELECT r.entity, r.record_id FROM records r JOIN citizens z
               ON z.citizen_id = r.citizen_id
             WHERE z.off_devices = 1 OR z.purged_ms IS NOT NULL",
        )
        .map_err(|e| broken("server", e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .map_err(|e| broken("server", e))?;
    let mut out = BTreeSet::new();
    for row in rows {
        let (entity, id) = row.map_err(|e| broken("server", e))?;
        let entity = EntityKind::parse(&entity).ok_or_else(|| broken("server", "entity"))?;
        out.insert((
            entity,
            Uuid::from_slice(&id).map_err(|e| broken("server", e))?,
        ));
    }
    Ok(out)
}

fn server_log(world: &World) -> Result<Vec<Change>, Broken> {
    change_log(&world.env.borrow().server).map_err(|e| broken("server", e))
}

/// The merged state of both teams.
fn server_state(world: &World) -> Result<ReplicaState, Broken> {
    let mut state = ReplicaState::new();
    for team in 0..2 {
        let env = world.env.borrow();
        state.extend(replica_state(&env.server, env.teams[team]).map_err(|e| broken("server", e))?);
    }
    Ok(state)
}

/// Liveness: every outbox is empty, and nothing was set aside but edits of records that left
/// the device's scope (a citizen moved to the other team before the edit reached the server,
/// or made after the device learned it was moved): the only refusals this workload can earn.
fn outbox_drained(world: &mut World) -> Result<(), Broken> {
    for d in &mut world.devices {
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let status = store.sync_status().map_err(|e| broken("store", e))?;
        if status.pending > 0 {
            return Err(broken(
                "outbox drained",
                format!("{} still has {} pending mutations", d.name, status.pending),
            ));
        }
        let aside = store.set_aside().map_err(|e| broken("store", e))?;
        if let Some((seq, reason, _)) = aside.iter().find(|(_, r, _)| r != "out_of_scope") {
            return Err(broken(
                "outbox drained",
                format!("{}'s mutation {seq} was set aside: {reason}", d.name),
            ));
        }
    }
    Ok(())
}

/// No lost write, the device half: every mutation a device saved (sequence numbers 1 to its
/// last) is in the server's change log exactly once.
fn every_saved_mutation_reached_the_server(
    world: &mut World,
    log: &[Change],
) -> Result<(), Broken> {
    let mut seen: BTreeMap<DeviceId, BTreeMap<u64, usize>> = BTreeMap::new();
    let applied = applied_on_server(world)?;
    // Copies re-sent to their device are not applications.
    for m in log
        .iter()
        .filter(|c| c.copy_of.is_none())
        .map(|c| &c.mutation)
    {
        *seen
            .entry(m.device_id)
            .or_default()
            .entry(m.device_seq)
            .or_default() += 1;
    }
    for d in &mut world.devices {
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let last = store.last_device_seq().map_err(|e| broken("store", e))?;
        let on_server = seen.remove(&store.device_id()).unwrap_or_default();
        let aside: BTreeSet<u64> = store
            .set_aside()
            .map_err(|e| broken("store", e))?
            .into_iter()
            .map(|(seq, _, _)| seq)
            .collect();
        for seq in 1..=last {
            match on_server.get(&seq) {
                None if aside.contains(&seq) => {}
                // Applied, then purged from the log with its closed case.
                None if applied.contains(&(store.device_id(), seq)) => {}
                Some(1) => {}
                Some(n) => {
                    return Err(broken(
                        "idempotence",
                        format!("{}'s mutation {seq} was applied {n} times", d.name),
                    ));
                }
                None => {
                    return Err(broken(
                        "no lost saved edit",
                        format!(
                            "{}'s saved mutation {seq} never reached the server and is not set aside",
                            d.name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Convergence and scope: every device holds exactly its team's records as the server merged
/// them — the same fields, values and stamps — but for records with a refused edit set aside.
fn convergence(world: &mut World) -> Result<(), Broken> {
    for i in 0..world.devices.len() {
        let team = world.devices[i].team;
        let gone = off_devices(world)?;
        let mut expected = {
            let env = world.env.borrow();
            replica_state(&env.server, env.teams[team]).map_err(|e| broken("server", e))?
        };
        // A closed case taken off the devices is the server's alone (a device still holding it
        // is a scope failure).
        expected.retain(|key, _| !gone.contains(key));
        let d = &mut world.devices[i];
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let mut actual = store.replica_state().map_err(|e| broken("store", e))?;
        // A record with a refused edit set aside holds the worker's version of it (shown on the
        // set-aside screen) — a creation the server refused is only here. The reference model
        // checks those edits; the rest must be the server's.
        let (_, aside) = store.unsent_records().map_err(|e| broken("store", e))?;
        for key in &aside {
            expected.remove(key);
            actual.remove(key);
        }
        if let Some(difference) = first_difference(&expected, &actual) {
            let property = if actual.keys().any(|k| !expected.contains_key(k)) {
                "scope"
            } else {
                "convergence"
            };
            return Err(broken(
                property,
                format!("{} differs from the server: {difference}", d.name),
            ));
        }
    }
    Ok(())
}

pub(crate) fn first_difference(server: &ReplicaState, device: &ReplicaState) -> Option<String> {
    for (key, fields) in server {
        let Some(theirs) = device.get(key) else {
            return Some(format!("{} {} missing on the device", key.0, key.1));
        };
        for (field, register) in fields {
            match theirs.get(field) {
                None => return Some(format!("{} {} field {field} missing", key.0, key.1)),
                Some(r) if r != register => {
                    return Some(format!(
                        "{} {} field {field}: server has stamp {:?}, device {:?}{}",
                        key.0,
                        key.1,
                        register.stamp,
                        r.stamp,
                        if r.stamp == register.stamp {
                            " (values differ)".to_owned()
                        } else {
                            String::new()
                        }
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = theirs.keys().find(|f| !fields.contains_key(*f)) {
            return Some(format!(
                "{} {} field {extra} only on the device",
                key.0, key.1
            ));
        }
    }
    device
        .keys()
        .find(|k| !server.contains_key(*k))
        .map(|k| format!("{} {} on the device is not in its team's state", k.0, k.1))
}

fn stamp_field(fields: &BTreeMap<String, Register>, name: &str) -> Option<Stamp> {
    serde_json::from_value(fields.get(name)?.value.clone()).ok()
}

/// No lost saved edit, against the reference model: every edit a device reported saved (kept
/// by the simulation as it was saved, not read back from the server) is accounted for, op by
/// op. Its mutation is on the server, carrying exactly what was saved (the stamps may have been
/// re-stamped), or set aside on the device. Then each op:
/// - an assignment is the final value of its field (same stamp and value), or a version (same
///   stamp and value) in a conflict record, open or resolved, or was overwritten by an edit
///   that causally followed it (an op on the field whose `base` is its stamp); a text that was
///   overwritten otherwise counts as lost, even if an equal text was written again later (a
///   flag or a choice holds through a later equal value that holds);
/// - an add is in the final set, or a remove that had observed it took it out;
/// - a remove holds: its element is absent from the final set, or present through an add the
///   remove had not observed (add wins over a concurrent remove).
///
/// Server-owned fields (a team, an author) are the server's to set and are left out.
fn reference_model(world: &mut World, log: &[Change], state: &ReplicaState) -> Result<(), Broken> {
    let lost = |detail: String| broken("no lost saved edit", detail);
    // (field, stamp) → the value a conflict record keeps for that write.
    let mut versions: BTreeMap<(FieldKey, Stamp), serde_json::Value> = BTreeMap::new();
    for ((entity, _), fields) in state {
        if *entity != EntityKind::Conflict {
            continue;
        }
        let target = (|| {
            let entity: EntityKind =
                serde_json::from_value(fields.get("entity")?.value.clone()).ok()?;
            let id: Uuid = serde_json::from_value(fields.get("record_id")?.value.clone()).ok()?;
            let field = fields.get("field")?.value.as_str()?.to_owned();
            Some((entity, id, field))
        })();
        let Some(target) = target else {
            return Err(lost("a conflict record is incomplete".into()));
        };
        for (stamp_name, value_name) in [("winner_stamp", "winner"), ("loser_stamp", "loser")] {
            if let (Some(stamp), Some(value)) =
                (stamp_field(fields, stamp_name), fields.get(value_name))
            {
                versions.insert((target.clone(), stamp), value.value.clone());
            }
        }
    }
    // What the server applied, by (device, seq); the bases every edit was made on; the tags
    // every remove observed; the tags of every add, by element.
    let mut applied: BTreeMap<(DeviceId, u64), &feltbog_core::protocol::Mutation> = BTreeMap::new();
    let mut bases: BTreeSet<(FieldKey, Stamp)> = BTreeSet::new();
    let mut removed: BTreeSet<(FieldKey, String, Stamp)> = BTreeSet::new();
    let mut added: BTreeMap<(FieldKey, String), BTreeSet<Stamp>> = BTreeMap::new();
    for c in log {
        let m = &c.mutation;
        if c.copy_of.is_none() {
            applied.insert((m.device_id, m.device_seq), m);
        }
        for op in &m.ops {
            let key = (op.entity, op.id, op.field.clone());
            if let Some(base) = op.base {
                bases.insert((key.clone(), base));
            }
            match &op.change {
                FieldChange::Remove { value, observed } => {
                    for tag in observed {
                        removed.insert((key.clone(), value.to_string(), *tag));
                    }
                }
                FieldChange::Add { value } => {
                    added
                        .entry((key, value.to_string()))
                        .or_default()
                        .insert(m.stamp_of(op));
                }
                FieldChange::Assign { .. } => {}
            }
        }
    }
    let mut aside: BTreeMap<DeviceId, BTreeSet<u64>> = BTreeMap::new();
    for d in &mut world.devices {
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let seqs = store.set_aside().map_err(|e| broken("store", e))?;
        aside.insert(
            store.device_id(),
            seqs.into_iter().map(|(seq, _, _)| seq).collect(),
        );
    }
    let final_of = |key: &FieldKey| state.get(&(key.0, key.1)).and_then(|f| f.get(&key.2));
    let applied_anywhere = applied_on_server(world)?;
    // Every assignment in the log that holds: the final value, a conflict version, or
    // overwritten by an edit made on top of it. A value that is not free text (a flag, a
    // choice) also holds when an equal value written later holds — two workers who archive a
    // case at once raise no conflict, and the case is archived. Free text never does.
    let mut writes: BTreeMap<FieldKey, Vec<(Stamp, &serde_json::Value)>> = BTreeMap::new();
    for c in log {
        for op in &c.mutation.ops {
            if let FieldChange::Assign { value } = &op.change {
                writes
                    .entry((op.entity, op.id, op.field.clone()))
                    .or_default()
                    .push((c.mutation.stamp_of(op), value));
            }
        }
    }
    let mut holds: BTreeSet<(FieldKey, Stamp)> = BTreeSet::new();
    for (key, mut ops) in writes {
        ops.sort_by_key(|(stamp, _)| std::cmp::Reverse(*stamp));
        let mut held_values: Vec<&serde_json::Value> = Vec::new();
        for (stamp, value) in ops {
            let direct = final_of(&key).is_some_and(|r| r.stamp == stamp && &r.value == value)
                || versions.get(&(key.clone(), stamp)) == Some(value)
                || bases.contains(&(key.clone(), stamp));
            let free_text = key.0.text_fields().contains(&key.2.as_str());
            if direct || (!free_text && held_values.contains(&value)) {
                holds.insert((key.clone(), stamp));
                held_values.push(value);
            }
        }
    }
    for (device, saved) in &world.saved {
        let name = world.devices[*device].name;
        let seq = saved.device_seq;
        let Some(on_server) = applied.get(&(saved.device_id, seq)) else {
            if aside
                .get(&saved.device_id)
                .is_some_and(|s| s.contains(&seq))
            {
                continue;
            }
            if applied_anywhere.contains(&(saved.device_id, seq)) {
                // Applied, and purged since with its closed case: gone by design.
                continue;
            }
            return Err(lost(format!(
                "{name}'s saved mutation {seq} is neither on the server nor set aside"
            )));
        };
        for op in &saved.ops {
            if op.entity.server_fields().contains(&op.field.as_str()) {
                continue;
            }
            let key = (op.entity, op.id, op.field.clone());
            let Some(as_applied) = on_server
                .ops
                .iter()
                .find(|o| o.entity == op.entity && o.id == op.id && o.field == op.field)
            else {
                return Err(lost(format!(
                    "{name}'s mutation {seq} reached the server without its op on {} {} {}",
                    key.0, key.1, key.2
                )));
            };
            let stamp = on_server.stamp_of(as_applied);
            let same_change = match (&op.change, &as_applied.change) {
                (FieldChange::Assign { value: a }, FieldChange::Assign { value: b })
                | (FieldChange::Add { value: a }, FieldChange::Add { value: b }) => a == b,
                (FieldChange::Remove { value: a, .. }, FieldChange::Remove { value: b, .. }) => {
                    a == b
                }
                _ => false,
            };
            if !same_change {
                return Err(lost(format!(
                    "{name}'s mutation {seq} reached the server changed on {} {} {}",
                    key.0, key.1, key.2
                )));
            }
            match &as_applied.change {
                FieldChange::Assign { .. } => {
                    if !holds.contains(&(key.clone(), stamp)) {
                        return Err(lost(format!(
                            "{name}'s edit of {} {} field {} (seq {seq}, stamped {stamp:?}) is \
                             neither the final value, nor a conflict version, nor overwritten \
                             by an edit that followed it",
                            key.0, key.1, key.2
                        )));
                    }
                }
                FieldChange::Add { value } => {
                    let present = final_of(&key)
                        .and_then(|r| r.value.as_array())
                        .is_some_and(|items| items.contains(value));
                    if !present && !removed.contains(&(key.clone(), value.to_string(), stamp)) {
                        return Err(lost(format!(
                            "{name}'s add to {} {} field {} (seq {seq}, stamped {stamp:?}) is \
                             gone, though no remove had seen it",
                            key.0, key.1, key.2
                        )));
                    }
                }
                FieldChange::Remove { value, observed } => {
                    let present = final_of(&key)
                        .and_then(|r| r.value.as_array())
                        .is_some_and(|items| items.contains(value));
                    let unseen_add = added
                        .get(&(key.clone(), value.to_string()))
                        .is_some_and(|tags| tags.iter().any(|t| !observed.contains(t)));
                    if present && !unseen_add {
                        return Err(lost(format!(
                            "{name}'s remove from {} {} field {} (seq {seq}) is undone, though \
                             every add of the element was one it had seen",
                            key.0, key.1, key.2
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Causality beats clocks: an edit made on top of another (its `base`) is ordered after it,
/// whatever the wall clocks said.
fn causality(log: &[Change]) -> Result<(), Broken> {
    for Change {
        seq, mutation: m, ..
    } in log
    {
        for op in &m.ops {
            let stamp = m.stamp_of(op);
            if let Some(base) = op.base
                && stamp <= base
            {
                return Err(broken(
                    "causality beats clocks",
                    format!(
                        "change {seq}: an edit of {} {} field {} stamped {stamp:?} was made on top of \
                         {base:?} but orders before it",
                        op.entity, op.id, op.field
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Idempotence: every request the server ever answered, pushed again, changes nothing on the
/// server; every device applying its last response again changes nothing on the device.
fn idempotence(world: &mut World) -> Result<(), Broken> {
    let before = (server_state(world)?, server_log(world)?);
    let requests = world.env.borrow().delivered.clone();
    for (device, request) in requests.iter().rev().take(300) {
        let mut env = world.env.borrow_mut();
        let now = env.server_now();
        let caller = feltbog_server::identity::authenticate(&env.server, &env.tokens[*device])
            .ok()
            .flatten()
            .ok_or_else(|| broken("idempotence", "a device token stopped working"))?;
        feltbog_server::sync::sync(
            &mut env.server,
            &caller,
            request,
            now,
            feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS,
        )
        .map_err(|e| broken("server", e))?;
    }
    let after = (server_state(world)?, server_log(world)?);
    if let Some(difference) = first_difference(&before.0, &after.0) {
        return Err(broken(
            "idempotence",
            format!("pushing old requests again changed the server: {difference}"),
        ));
    }
    // The log may only have gained copies of rows it already held (an old copy of a re-stamped
    // mutation is answered by re-sending the applied version), never a new application.
    if let Some(Change {
        seq, mutation: m, ..
    }) = after.1[before.1.len()..]
        .iter()
        .find(|c| c.copy_of.is_none())
    {
        return Err(broken(
            "idempotence",
            format!(
                "pushing old requests again logged new content: change {seq} ({} seq {})",
                m.device_id.0, m.device_seq
            ),
        ));
    }
    for i in 0..world.devices.len() {
        let Some(response) = world.env.borrow().recent_responses[i].last().cloned() else {
            continue;
        };
        let d = &mut world.devices[i];
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let state = store.replica_state().map_err(|e| broken("store", e))?;
        let cursor = store.sync_status().map_err(|e| broken("store", e))?.cursor;
        store
            .apply_sync_response(&response)
            .map_err(|e| broken("store", e))?;
        let again = store.replica_state().map_err(|e| broken("store", e))?;
        let cursor_again = store.sync_status().map_err(|e| broken("store", e))?.cursor;
        if let Some(difference) = first_difference(&state, &again) {
            return Err(broken(
                "idempotence",
                format!(
                    "{} applying its last response again changed {difference}",
                    d.name
                ),
            ));
        }
        if cursor != cursor_again {
            return Err(broken(
                "monotonic cursor",
                format!(
                    "{}'s cursor moved from {cursor} to {cursor_again} on a repeat",
                    d.name
                ),
            ));
        }
    }
    Ok(())
}
