//! Scope epochs: how a change of a worker's scope reaches their devices without losing work
//! (DESIGN §6, issue 16).
//!
//! A change of a worker's role, team, caretaker sites or supervised teams ends their current
//! *scope epoch*: the scope that held (role, team, sites, teams) is kept in `scope_epochs`, and
//! the worker's epoch counter moves on. Devices are not revoked. Each device remembers the
//! epoch it knows. On its first request after a change — when it *learns* — the server notes
//! which of the device's edits were made before it learned: those numbered up to the
//! `last_device_seq` it declares in that request (capped at [`MAX_GRACE_EDITS`] past what the
//! server has applied from it), pushed within [`GRACE_MS`] of learning. Those edits are judged
//! under the old epoch's scope; everything else under the scope that holds now. The device is
//! sent the new profile, pushes what it had pending, then erases what it holds and pulls its
//! new scope from the start (`SyncRequest::resync`).
//!
//! The server never takes the device's clock as proof of when an edit was made: a stamp
//! backdated into the old epoch by a device that has learned is judged under the new scope.
//! What a hostile device that holds a valid token can still do: until its first request after
//! the change, and with edit numbers up to what it declares then (at most [`MAX_GRACE_EDITS`]
//! ahead), for [`GRACE_MS`], write what its worker could write before the change — no more
//! than the same device could have written had it synced a minute before the change. A device
//! that is not trusted is revoked, not rescoped.

use crate::args;
use crate::identity::{Caller, IdentityError, Role};
use crate::scope::Reach;
use crate::storage::{Db, DbExt, StorageError};
use std::collections::BTreeSet;
use uuid::Uuid;

/// How long after learning of a change a device's earlier edits are still judged under the
/// old scope: long enough for a sync broken off by the network to be finished the next day.
pub const GRACE_MS: u64 = 24 * 60 * 60 * 1000;

/// How many edits past the last one the server applied from a device it may declare as made
/// before it learned. A tablet's outbox after weeks offline is a few hundred edits.
pub const MAX_GRACE_EDITS: u64 = 10_000;

/// Ends `worker`'s current scope epoch: keeps the scope that held until now. Call in the
/// transaction that changes the scope, before changing it.
pub fn end_epoch(conn: &dyn Db, worker: Uuid, now_ms: u64) -> Result<(), IdentityError> {
    let (role, team) = crate::identity::role_and_team(conn, worker)?;
    let epoch = current_epoch(conn, worker)? as i64;
    let ids = |sql: &str| -> Result<String, IdentityError> {
        let ids: Vec<String> = conn
            .all::<Uuid>(sql, args![worker])?
            .iter()
            .map(Uuid::to_string)
            .collect();
        Ok(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()))
    };
    let sites = ids("SELECT site_id FROM caretaker_sites WHERE worker_id = ?1")?;
    let teams = ids("SELECT team_id FROM supervised_teams WHERE worker_id = ?1")?;
    conn.execute(
        "INSERT INTO scope_epochs (worker_id, epoch, role, team_id, sites, teams, ended_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            worker,
            epoch,
            role.as_str(),
            team,
            sites,
            teams,
            now_ms as i64
        ],
    )?;
    conn.execute(
        "UPDATE workers SET scope_epoch = scope_epoch + 1 WHERE id = ?1",
        args![worker],
    )?;
    Ok(())
}

/// A worker's scope epoch now.
pub fn current_epoch(conn: &dyn Db, worker: Uuid) -> Result<u64, StorageError> {
    conn.one(
        "SELECT scope_epoch FROM workers WHERE id = ?1",
        args![worker],
    )?
    .ok_or(StorageError::Missing("worker"))
}

/// The old scope a device's edits made before it learned of a change are judged under.
#[derive(Clone, Debug)]
pub struct Grace {
    pub caller: Caller,
    pub reach: Reach,
    until_seq: u64,
    until_ms: u64,
}

impl Grace {
    /// Whether the edit numbered `device_seq`, pushed at `now_ms`, is judged under the old scope.
    pub fn covers(&self, device_seq: u64, now_ms: u64) -> bool {
        device_seq <= self.until_seq && now_ms < self.until_ms
    }
}

/// What [`on_sync`] found.
#[derive(Clone, Debug, Default)]
pub struct Learned {
    /// The device learns of a scope change with this request (the answer says `rescope`).
    pub now: bool,
    /// The old scope, while a grace window is open.
    pub grace: Option<Grace>,
}

/// Run at the start of a device's sync, in its transaction: if the device has not yet learned
/// of its worker's latest scope change, it learns now (the grace window is set from
/// `declared_seq`, see the module docs).
pub fn on_sync(
    conn: &dyn Db,
    caller: &Caller,
    declared_seq: Option<u64>,
    pushed_seqs: impl Iterator<Item = u64>,
    now_ms: u64,
) -> Result<Learned, IdentityError> {
    let device = caller.device_id.0;
    type Row = (i64, Option<i64>, Option<i64>, Option<i64>);
    let (known, mut grace_epoch, mut until_seq, mut until_ms): Row = conn
        .one(
            "SELECT scope_epoch, grace_epoch, grace_until_seq, grace_until_ms
             FROM devices WHERE id = ?1",
            args![device],
        )?
        .ok_or(StorageError::Missing("device"))?;
    let epoch = current_epoch(conn, caller.worker_id)? as i64;
    let learns = known < epoch;
    if learns {
        // Learning now. What the server has applied from this device bounds what it may declare.
        let applied: i64 = conn.value(
            "SELECT coalesce(max(device_seq), 0) FROM applied WHERE device_id = ?1",
            args![device],
        )?;
        let declared = declared_seq.unwrap_or_else(|| pushed_seqs.max().unwrap_or(0));
        let bound = declared.min(applied as u64 + MAX_GRACE_EDITS);
        grace_epoch = Some(known);
        until_seq = Some(bound as i64);
        until_ms = Some(now_ms.saturating_add(GRACE_MS) as i64);
        conn.execute(
            "UPDATE devices SET scope_epoch = ?2, grace_epoch = ?3, grace_until_seq = ?4,
                 grace_until_ms = ?5 WHERE id = ?1",
            args![device, epoch, grace_epoch, until_seq, until_ms],
        )?;
    }
    let none = Learned {
        now: learns,
        grace: None,
    };
    let (Some(old), Some(until_seq), Some(until_ms)) = (grace_epoch, until_seq, until_ms) else {
        return Ok(none);
    };
    if now_ms as i64 >= until_ms {
        return Ok(none);
    }
    let Some((role, team, sites, teams)) = old_scope(conn, caller.worker_id, old as u64)? else {
        return Ok(none);
    };
    let mut reach = Reach {
        teams: BTreeSet::from([team]),
        sites: BTreeSet::new(),
    };
    match role {
        Role::Caretaker => reach.sites = sites,
        Role::Supervisor => reach.teams.extend(teams),
        _ => {}
    }
    Ok(Learned {
        now: learns,
        grace: Some(Grace {
            caller: Caller {
                role,
                team_id: team,
                ..*caller
            },
            reach,
            until_seq: until_seq as u64,
            until_ms: until_ms as u64,
        }),
    })
}

type OldScope = (Role, Uuid, BTreeSet<Uuid>, BTreeSet<Uuid>);

/// The scope that held during `epoch` of `worker`, if that epoch has ended.
fn old_scope(conn: &dyn Db, worker: Uuid, epoch: u64) -> Result<Option<OldScope>, IdentityError> {
    let row: Option<(String, Vec<u8>, String, String)> = conn.one(
        "SELECT role, team_id, sites, teams FROM scope_epochs
         WHERE worker_id = ?1 AND epoch = ?2",
        args![worker, epoch as i64],
    )?;
    let Some((role, team, sites, teams)) = row else {
        return Ok(None);
    };
    let role = Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?;
    let set = |json: &str| -> Result<BTreeSet<Uuid>, IdentityError> {
        serde_json::from_str(json).map_err(|_| IdentityError::Invalid("stored scope"))
    };
    Ok(Some((
        role,
        crate::identity::stored_uuid(&team)?,
        set(&sites)?,
        set(&teams)?,
    )))
}
