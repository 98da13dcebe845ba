//! A device's sync round trip: its push applied mutation by mutation, its access log filed,
//! then one pull page, all in one writing transaction.

use super::apply::{Ctx, mutation_digest};
use super::pull::pull_page;
use super::{DAY_MS, SyncError, filed_under};
use crate::args;
use crate::audit::{self, Action, Entry};
use crate::identity::{Caller, Role};
use crate::scope::{self};
use crate::storage::{Db, DbExt, Transact};
use feltbog_core::domain::EntityKind;
use feltbog_core::protocol::{Rejection, SyncRequest, SyncResponse};
use feltbog_core::sim::{FailPoint, PlantedBug, fail_here, planted};
use uuid::Uuid;

/// Handles one sync round trip for `caller`, in one writing transaction.
pub fn sync(
    db: &mut impl Transact,
    caller: &Caller,
    request: &SyncRequest,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<SyncResponse, SyncError> {
    db.write(|tx| round_trip(tx, caller, request, now_ms, max_drift_ms))
}

fn round_trip(
    tx: &dyn Db,
    caller: &Caller,
    request: &SyncRequest,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<SyncResponse, SyncError> {
    // Authentication ran before this transaction; a revocation committed since must still stop
    // this request, so check once more under the write lock. A scope change committed since is
    // taken as it is now.
    let still: Option<(String, Vec<u8>)> = tx.one(
        "SELECT w.role, w.team_id FROM devices d JOIN workers w ON w.id = d.worker_id
             WHERE d.id = ?1 AND d.active = 1 AND w.active = 1",
        args![caller.device_id.0],
    )?;
    let Some((role, team)) = still else {
        return Err(SyncError::Revoked);
    };
    let caller = &Caller {
        role: Role::parse(&role).ok_or(SyncError::Corrupt("role"))?,
        team_id: Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?,
        ..*caller
    };
    let mut reach = scope::reach(tx, caller)?;
    // Edits made before the device learned of a change of its worker's scope are judged under
    // the scope that held then (`epochs.rs`).
    let learned = crate::epochs::on_sync(
        tx,
        caller,
        request.last_device_seq,
        request.mutations.iter().map(|m| m.device_seq),
        now_ms,
    )?;
    let mut grace = learned.grace;
    let mut ctx = Ctx::new(tx, max_drift_ms, now_ms)?;
    let who = |action| Entry::device(caller.worker_id, caller.device_id.0, action);
    let mut trail: Vec<Entry> = Vec::new();
    let mut acked = Vec::new();
    let mut rejected = Vec::new();
    for mutation in &request.mutations {
        let seq = mutation.device_seq;
        let done: Option<(Option<Vec<u8>>, Option<i64>)> = ctx.tx.one(
            "SELECT digest, change_seq FROM applied WHERE device_id = ?1 AND device_seq = ?2",
            args![mutation.device_id.0, seq as i64],
        )?;
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
                ctx.tx.execute(
                    "UPDATE applied SET digest = ?1 WHERE device_id = ?2 AND device_seq = ?3",
                    args![received, mutation.device_id.0, seq as i64],
                )?;
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
        let scope = scope::record_scope(tx, event.entity, event.record_id)?;
        let action = match scope {
            Some(s) if scope::readable(caller, &reach, &s) => Action::DeviceRead,
            _ => Action::Denied,
        };
        let citizens = filed_under(
            tx,
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
    let pull = pull_page(tx, caller, request.cursor, request.resync)?;
    for (_, m) in &pull.changes {
        if let Some(op) = m.ops.first() {
            let citizen = scope::record_scope(tx, op.entity, op.id)?.and_then(|s| s.citizen);
            for citizen in filed_under(tx, op.entity, op.id, citizen)? {
                trail.push(who(Action::Read).record(op.entity.as_str(), op.id, citizen));
            }
        }
    }
    for citizen in &pull.erase {
        trail.push(who(Action::Erase).record("citizen", citizen.0, Some(citizen.0)));
    }
    audit::append_many(tx, now_ms, &trail)?;
    let profile = crate::identity::profile(tx, caller, &reach)?;
    let profile =
        (request.profile_digest.as_deref() != Some(profile.digest().as_str())).then_some(profile);
    let standing_token = if request.want_standing {
        Some(feltbog_core::domain::Sensitive(
            crate::identity::issue_standing(tx, caller.device_id)?,
        ))
    } else {
        None
    };
    if fail_here(FailPoint::ServerSyncBeforeCommit) {
        // Dropping the transaction rolls it back, as a crash before the commit would.
        return Err(SyncError::Corrupt("simulated crash"));
    }
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
