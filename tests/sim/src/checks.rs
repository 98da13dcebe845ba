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
use feltbog_server::sync::{Change, SERVER_DEVICE, change_log, replica_state};
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
        convergence(world)?;
        let state = server_state(world)?;
        world.env.borrow_mut().stats.conflicts_raised = state
            .keys()
            .filter(|(entity, _)| *entity == EntityKind::Conflict)
            .count() as u64;
        no_lost_edit(&log, &state)?;
        causality(&log)?;
        idempotence(world)
    })();
    result.map_err(|b| world.with_trace(b))
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

/// Liveness: every outbox is empty and nothing was set aside (this workload makes no edit the
/// server may refuse for good).
fn outbox_drained(world: &mut World) -> Result<(), Broken> {
    for d in &mut world.devices {
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let status = store.sync_status().map_err(|e| broken("store", e))?;
        if status.pending > 0 || status.set_aside > 0 {
            return Err(broken(
                "outbox drained",
                format!(
                    "{} still has {} pending and {} set-aside mutations",
                    d.name, status.pending, status.set_aside
                ),
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
        for seq in 1..=last {
            match on_server.get(&seq) {
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
                        format!("{}'s saved mutation {seq} never reached the server", d.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Convergence and scope: every device holds exactly its team's records as the server merged
/// them — the same fields, values and stamps.
fn convergence(world: &mut World) -> Result<(), Broken> {
    for i in 0..world.devices.len() {
        let team = world.devices[i].team;
        let expected = {
            let env = world.env.borrow();
            replica_state(&env.server, env.teams[team]).map_err(|e| broken("server", e))?
        };
        let d = &mut world.devices[i];
        let store = d
            .store
            .as_mut()
            .ok_or_else(|| broken("liveness", "a device is down"))?;
        let actual = store.replica_state().map_err(|e| broken("store", e))?;
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

/// No lost saved edit, the merge half: every value a device assigned is the final value, or a
/// version (same stamp, same value) in a conflict record, or was overwritten by an edit made on
/// top of it (its `base`), or equals a value that is accounted for and came later. Every element
/// a device added to a set is in the final set or was removed by someone who had seen that add.
fn no_lost_edit(log: &[Change], state: &ReplicaState) -> Result<(), Broken> {
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
            return Err(broken(
                "no lost saved edit",
                "a conflict record is incomplete",
            ));
        };
        for (stamp_name, value_name) in [("winner_stamp", "winner"), ("loser_stamp", "loser")] {
            if let (Some(stamp), Some(value)) =
                (stamp_field(fields, stamp_name), fields.get(value_name))
            {
                versions.insert((target.clone(), stamp), value.value.clone());
            }
        }
    }
    let mut assigns: BTreeMap<FieldKey, Vec<(Stamp, &serde_json::Value, u64)>> = BTreeMap::new();
    let mut bases: BTreeSet<(FieldKey, Stamp)> = BTreeSet::new();
    let mut removed: BTreeSet<(FieldKey, String, Stamp)> = BTreeSet::new();
    let mut adds = Vec::new();
    for m in log.iter().map(|c| &c.mutation) {
        for op in &m.ops {
            let key = (op.entity, op.id, op.field.clone());
            let stamp = m.stamp_of(op);
            if let Some(base) = op.base {
                bases.insert((key.clone(), base));
            }
            match &op.change {
                FieldChange::Assign { value } if m.device_id != SERVER_DEVICE => {
                    assigns
                        .entry(key)
                        .or_default()
                        .push((stamp, value, m.device_seq));
                }
                FieldChange::Assign { .. } => {}
                FieldChange::Add { value } => adds.push((key, value, stamp, m.device_seq)),
                FieldChange::Remove { value, observed } => {
                    for tag in observed {
                        removed.insert((key.clone(), value.to_string(), *tag));
                    }
                }
            }
        }
    }
    for (key, mut ops) in assigns {
        let final_stamp = state
            .get(&(key.0, key.1))
            .and_then(|f| f.get(&key.2))
            .map(|r| r.stamp);
        ops.sort_by_key(|op| std::cmp::Reverse(op.0));
        let mut kept: Vec<&serde_json::Value> = Vec::new();
        for (stamp, value, seq) in ops {
            let accounted = final_stamp == Some(stamp)
                || versions.get(&(key.clone(), stamp)) == Some(value)
                || bases.contains(&(key.clone(), stamp))
                || kept.contains(&value);
            if !accounted {
                return Err(broken(
                    "no lost saved edit",
                    format!(
                        "the edit of {} {} field {} stamped {stamp:?} (seq {seq}) is neither the final value, \
                         nor a conflict version, nor overwritten by an edit that saw it",
                        key.0, key.1, key.2
                    ),
                ));
            }
            kept.push(value);
        }
    }
    for (key, value, stamp, seq) in adds {
        let present = state
            .get(&(key.0, key.1))
            .and_then(|f| f.get(&key.2))
            .and_then(|r| r.value.as_array())
            .is_some_and(|items| items.contains(value));
        if !present && !removed.contains(&(key.clone(), value.to_string(), stamp)) {
            return Err(broken(
                "no lost saved edit",
                format!(
                    "an element added to {} {} field {} at {stamp:?} (seq {seq}) is gone, though no \
                     remove had seen it",
                    key.0, key.1, key.2
                ),
            ));
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
