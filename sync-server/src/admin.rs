//! An administrator's audited actions (the `admin` commands, DESIGN §8), each performed by
//! [`perform`]:
//! one IMMEDIATE transaction that holds the action and the audit rows that record it. An
//! action that commits is audited, an audit row never describes an action that was rolled
//! back, and an action that changed nothing writes no row and commits nothing.
//!
//! The actions on workers and devices are here; the ones that change what devices hold
//! (moving a citizen, sites, reopening, retention) write to the change log and live with the
//! write path in [`crate::sync`], performed the same way.

use crate::audit::{self, Action, Entry};
use crate::identity::{self, IdentityError};
use crate::storage::{Db, StorageError, Transact};
use crate::sync::SyncError;
use crate::web::auth::WebAuthError;
use feltbog_core::hlc::DeviceId;
use uuid::Uuid;

/// Why an administrator's action failed; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("audit: {0}")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    WebAuth(#[from] WebAuthError),
    /// Writing an export to its destination.
    #[error("output: {0}")]
    Output(std::io::Error),
}

/// What an action did, and the audit rows that record it.
pub struct Audited<T> {
    pub outcome: T,
    /// Empty when the action changed nothing: then its transaction is rolled back, undoing
    /// any bookkeeping the action did on its way to finding that out.
    pub trail: Vec<Entry>,
}

impl<T> Audited<T> {
    /// The action changed something, recorded by `trail`.
    pub fn done(outcome: T, trail: impl IntoIterator<Item = Entry>) -> Self {
        Audited {
            outcome,
            trail: trail.into_iter().collect(),
        }
    }

    /// The action found nothing to change.
    pub fn unchanged(outcome: T) -> Self {
        Audited {
            outcome,
            trail: Vec::new(),
        }
    }
}

/// Runs `action` in one writing transaction and appends its audit rows in the same
/// transaction before committing (nothing is committed when the action changed nothing or
/// failed).
pub fn perform<T, E>(
    db: &mut impl Transact,
    now_ms: u64,
    action: impl FnOnce(&dyn Db) -> Result<Audited<T>, E>,
) -> Result<T, E>
where
    E: From<StorageError> + From<audit::AuditError>,
{
    db.write_if(|tx| {
        let Audited { outcome, trail } = action(tx)?;
        if trail.is_empty() {
            return Ok((outcome, false));
        }
        audit::append_many(tx, now_ms, &trail)?;
        Ok((outcome, true))
    })
}

/// The audit row of an action on a worker (their role, team, access).
fn on_worker(action: Action, worker: Uuid) -> Entry {
    Entry::admin(action).record("worker", worker, None)
}

/// `done` with the row when `changed`, else nothing.
fn if_changed(changed: bool, trail: impl IntoIterator<Item = Entry>) -> Audited<bool> {
    if changed {
        Audited::done(true, trail)
    } else {
        Audited::unchanged(false)
    }
}

/// Gives a worker another role: a scope change ([`crate::epochs`]). Whether it changed.
pub fn set_role(
    db: &mut impl Transact,
    worker: Uuid,
    role: &str,
    now_ms: u64,
) -> Result<bool, AdminError> {
    perform(db, now_ms, |tx| {
        let changed = identity::set_role(tx, worker, role, now_ms)?;
        Ok(if_changed(changed, [on_worker(Action::RoleChange, worker)]))
    })
}

/// Moves a worker to another team: a scope change. Whether it changed.
pub fn move_worker(
    db: &mut impl Transact,
    worker: Uuid,
    team: Uuid,
    now_ms: u64,
) -> Result<bool, AdminError> {
    perform(db, now_ms, |tx| {
        let changed = identity::move_worker(tx, worker, team, now_ms)?;
        Ok(if_changed(changed, [on_worker(Action::TeamChange, worker)]))
    })
}

/// Disables a worker; their devices wipe on their next request. Returns how many devices.
pub fn disable_worker(
    db: &mut impl Transact,
    worker: Uuid,
    now_ms: u64,
) -> Result<usize, AdminError> {
    perform(db, now_ms, |tx| {
        let devices = identity::disable_worker(tx, worker, now_ms)?;
        Ok(Audited::done(devices, [on_worker(Action::Disable, worker)]))
    })
}

/// Enables a disabled worker again (their devices enrol anew).
pub fn enable_worker(db: &mut impl Transact, worker: Uuid, now_ms: u64) -> Result<(), AdminError> {
    perform(db, now_ms, |tx| {
        identity::enable_worker(tx, worker)?;
        Ok(Audited::done((), [on_worker(Action::Enable, worker)]))
    })
}

/// A one-time enrolment code for one device of `worker`, valid `ttl_ms`.
pub fn issue_enrolment_code(
    db: &mut impl Transact,
    worker: Uuid,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<String, AdminError> {
    perform(db, now_ms, |tx| {
        let code = identity::issue_enrolment_code_for(tx, worker, now_ms, ttl_ms)?;
        Ok(Audited::done(code, [on_worker(Action::IssueCode, worker)]))
    })
}

/// Revokes one device; it wipes its data on its next request.
pub fn revoke_device(
    db: &mut impl Transact,
    device: DeviceId,
    now_ms: u64,
) -> Result<(), AdminError> {
    perform(db, now_ms, |tx| {
        identity::revoke_device(tx, device, now_ms)?;
        let row = Entry::admin(Action::Revoke).record("device", device.0, None);
        Ok(Audited::done((), [row]))
    })
}

/// Lets a supervisor read another team (`on`), or ends it: a scope change. Whether it changed.
pub fn set_supervised(
    db: &mut impl Transact,
    worker: Uuid,
    team: Uuid,
    on: bool,
    now_ms: u64,
) -> Result<bool, AdminError> {
    let action = if on {
        Action::Supervise
    } else {
        Action::Unsupervise
    };
    perform(db, now_ms, |tx| {
        let changed = identity::set_supervised(tx, worker, team, on, now_ms)?;
        Ok(if_changed(
            changed,
            Entry::admin_decision(action, worker, ("team", team)),
        ))
    })
}

/// A supervisor's dashboard login and a one-time code to set its password with
/// ([`crate::web::auth::issue_setup`]).
pub fn web_access(
    db: &mut impl Transact,
    worker: Uuid,
    login: &str,
    now_ms: u64,
) -> Result<String, AdminError> {
    perform(db, now_ms, |tx| {
        let code = crate::web::auth::issue_setup(tx, worker, login, now_ms)?;
        Ok(Audited::done(code, [on_worker(Action::WebAccess, worker)]))
    })
}

/// Writes every audit row filed under `citizen` to `out` (their Art. 15 access log); the
/// export is itself an access to the citizen's data and audited. The rows are gathered and the
/// access recorded first, then written: a slow reader of `out` (a pager) does not hold the
/// write lock, and nothing is shown that was not recorded. Returns the rows written.
pub fn export_citizen_audit(
    db: &mut impl Transact,
    citizen: Uuid,
    out: &mut dyn std::io::Write,
    now_ms: u64,
) -> Result<u64, AdminError> {
    let (rows, export) = perform(db, now_ms, |tx| {
        let mut export = Vec::new();
        let rows = audit::export_citizen(tx, citizen, &mut export)?;
        let row = Entry::admin(Action::Export).record("citizen", citizen, Some(citizen));
        Ok::<_, AdminError>(Audited::done((rows, export), [row]))
    })?;
    out.write_all(&export).map_err(AdminError::Output)?;
    Ok(rows)
}
