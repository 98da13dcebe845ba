//! An administrator's decisions that change what devices hold: moving a citizen, assigning
//! and unassigning sites, reopening a case.

use super::SyncError;
use super::apply::Ctx;
use super::state::field_value;
use crate::admin::Audited;
use crate::args;
use crate::audit::{Action, Entry};
use crate::identity::Role;
use crate::scope::{self, Class};
use crate::storage::Transact;
use crate::storage::{Db, DbExt};
use feltbog_core::domain::EntityKind;
use uuid::Uuid;

fn citizen_team(tx: &dyn Db, citizen: Uuid) -> Result<Uuid, SyncError> {
    let team: Option<Vec<u8>> = tx.one(
        "SELECT team_id FROM citizens WHERE citizen_id = ?1 AND purged_ms IS NULL",
        args![citizen],
    )?;
    let team = team.ok_or(SyncError::NotFound("citizen"))?;
    Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))
}

/// Moves a citizen, with their whole history, to another team (an administrator's decision,
/// e.g. the citizen moved district). The old team's devices erase the citizen on their next
/// sync; the new team's devices receive everything. Audited as the administrator's.
pub fn move_citizen(
    db: &mut impl Transact,
    citizen: Uuid,
    team: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<(), SyncError> {
    crate::admin::perform(db, now_ms, |tx| {
        let old = citizen_team(tx, citizen)?;
        let exists: bool = tx.value("SELECT count(*) > 0 FROM teams WHERE id = ?1", args![team])?;
        if !exists {
            return Err(SyncError::NotFound("team"));
        }
        if old == team {
            return Ok(Audited::unchanged(()));
        }
        tx.execute(
            "UPDATE citizens SET team_id = ?2 WHERE citizen_id = ?1",
            args![citizen, team],
        )?;
        tx.execute(
            "UPDATE records SET team_id = ?2 WHERE citizen_id = ?1",
            args![citizen, team],
        )?;
        // The old team's site is not one of the new team's: the citizen no longer lives at a site
        // of their team, so they are not the new team's caretakers' business (until the new team
        // places them at one of its own sites).
        tx.execute(
            "UPDATE citizens SET resident = 0, site_id = NULL WHERE citizen_id = ?1",
            args![citizen],
        )?;
        let had_site =
            field_value(tx, EntityKind::Citizen, citizen, "site_id")?.is_some_and(|v| !v.is_null());
        let mut ctx = Ctx::new(tx, max_drift_ms, now_ms)?;
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
        let row = Entry::admin(Action::Move).record("citizen", citizen, Some(citizen));
        Ok(Audited::done((), [row]))
    })
}

/// Assigns a caretaker to a site of their team (an administrator's decision): on their next
/// sync their devices receive the site, its log and its residents. Returns whether the
/// assignment is new. Audited as the administrator's.
pub fn assign_site(
    db: &mut impl Transact,
    worker: Uuid,
    site: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<bool, SyncError> {
    crate::admin::perform(db, now_ms, |tx| {
        let team = caretaker_team(tx, worker)?;
        // Another team's site looks like no site at all.
        scope::record_scope(tx, EntityKind::Site, site)?
            .filter(|s| s.team == team)
            .ok_or(SyncError::NotFound("site in the worker's team"))?;
        let new = tx
            .execute("INSERT INTO caretaker_sites (worker_id, site_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING", args![worker, site])?
            == 1;
        if !new {
            return Ok(Audited::unchanged(false));
        }
        {
            let ctx = Ctx::new(tx, max_drift_ms, now_ms)?;
            let caretakers = Role::Caretaker.bit();
            // Copies for the team's caretakers; each one's sites still filter them.
            tx.execute("INSERT INTO changes (team_id, device_id, echo, mutation, copy_of, class, citizen_id, roles, site_id)
             SELECT ?2, device_id, 1, mutation, coalesce(copy_of, seq), class, citizen_id, ?3, site_id
             FROM changes WHERE site_id = ?1 AND class IN ('site', 'site_log')
               AND kind = 'mutation' AND roles IS NULL
             ORDER BY seq", args![site, team, caretakers])?;
            let residents: Vec<Uuid> = tx.all(
                "SELECT citizen_id FROM citizens WHERE site_id = ?1 AND team_id = ?2
                   AND off_devices = 0 AND purged_ms IS NULL",
                args![site, team],
            )?;
            for citizen in residents {
                ctx.deliver_history(citizen, team, caretakers)?;
            }
        }
        Ok(Audited::done(
            true,
            Entry::admin_decision(Action::AssignSite, worker, ("site", site)),
        ))
    })
}

/// Takes a site from a caretaker: a scope change ([`crate::epochs`]). Their devices push what
/// they had pending (judged under the old scope), then erase the site, its log and its
/// residents on their next sync. Returns whether the caretaker had the site.
pub fn unassign_site(
    db: &mut impl Transact,
    worker: Uuid,
    site: Uuid,
    now_ms: u64,
) -> Result<bool, SyncError> {
    crate::admin::perform(db, now_ms, |tx| {
        crate::epochs::end_epoch(tx, worker, now_ms)?;
        let removed = tx.execute(
            "DELETE FROM caretaker_sites WHERE worker_id = ?1 AND site_id = ?2",
            args![worker, site],
        )?;
        if removed == 0 {
            // Nothing changed: `perform` rolls back the epoch ended above.
            return Ok(Audited::unchanged(false));
        }
        Ok(Audited::done(
            true,
            Entry::admin_decision(Action::UnassignSite, worker, ("site", site)),
        ))
    })
}

/// The team of an active caretaker; other workers are not assigned sites.
fn caretaker_team(tx: &dyn Db, worker: Uuid) -> Result<Uuid, SyncError> {
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
pub fn list_sites(conn: &dyn Db) -> Result<Vec<SiteInfo>, SyncError> {
    // The name is stored as JSON text; the caretakers are read apart (no string aggregate is
    // spelt the same on both backends).
    let sites: Vec<(Uuid, Uuid, Option<String>)> = conn.all(
        "SELECT r.record_id, r.team_id, f.value
         FROM records r LEFT JOIN fields f ON f.entity = 'site' AND f.record_id = r.record_id
             AND f.field = 'name'
         WHERE r.entity = 'site' ORDER BY r.team_id, r.record_id",
        &[],
    )?;
    sites
        .into_iter()
        .map(|(id, team_id, name)| {
            let name = match name.map(|n| serde_json::from_str::<serde_json::Value>(&n)) {
                Some(Ok(serde_json::Value::String(name))) => name,
                Some(Ok(serde_json::Value::Null)) | None => String::new(),
                Some(Ok(_)) | Some(Err(_)) => return Err(SyncError::Corrupt("site name")),
            };
            let caretakers = conn.all(
                "SELECT worker_id FROM caretaker_sites WHERE site_id = ?1 ORDER BY worker_id",
                args![id],
            )?;
            Ok(SiteInfo {
                id,
                team_id,
                name,
                caretakers,
            })
        })
        .collect()
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
    db: &mut impl Transact,
    citizen: Uuid,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Reopened, SyncError> {
    crate::admin::perform(db, now_ms, |tx| {
        let row: Option<(Vec<u8>, bool, Option<i64>)> = tx.one(
            "SELECT team_id, off_devices, purged_ms FROM citizens WHERE citizen_id = ?1",
            args![citizen],
        )?;
        let (team, off, purged) = row.ok_or(SyncError::NotFound("citizen"))?;
        if purged.is_some() {
            return Err(SyncError::Refused(
                "the case was purged from the server: its content is gone and cannot be reopened",
            ));
        }
        if !off {
            return Ok(Audited::unchanged(Reopened::OnDevices));
        }
        let team = Uuid::from_slice(&team).map_err(|_| SyncError::Corrupt("team id"))?;
        tx.execute(
            "UPDATE citizens SET off_devices = 0, closed_ms = NULL WHERE citizen_id = ?1",
            args![citizen],
        )?;
        let mut ctx = Ctx::new(tx, max_drift_ms, now_ms)?;
        // The history first, then the change that reopens it: a device applies them in this order.
        ctx.deliver_history(citizen, team, scope::all_roles())?;
        ctx.server_assign(
            team,
            (EntityKind::Citizen, citizen, "archived"),
            serde_json::Value::Bool(false),
            (Class::Citizen, Some(citizen)),
        )?;
        ctx.finish()?;
        let row = Entry::admin(Action::Reopen).record("citizen", citizen, Some(citizen));
        Ok(Audited::done(Reopened::Reopened, [row]))
    })
}
