//! Applying pushes and serving pulls: the server's side of DESIGN §5.
//!
//! One push is one IMMEDIATE transaction. For each mutation, in the device's order:
//! 1. a `(device, seq)` pair already applied is acknowledged again and changes nothing
//!    (idempotence: a retried push cannot duplicate anything);
//! 2. the mutation is checked — the authenticated device, one record, well-formed fields, sizes,
//!    the skew bound on its HLC, the record's team — and rejected with a reason if it fails;
//! 3. each op is merged with [`feltbog_core::merge`]; a concurrent edit that loses becomes a
//!    [`ConflictRecord`](feltbog_core::domain::ConflictRecord) written by the server as its own mutation;
//! 4. the mutation as applied (author taken from authentication) is appended to the change log.
//!
//! The log's `seq` is the commit order; a device pulls by cursor and gets whole mutations only,
//! and only those in its worker's scope ([`crate::scope`]), checked in the same transaction.
//! Every mutation applied or refused and every change served is written to the audit trail in
//! that transaction too ([`crate::audit`]).
//!
//! The module is split by what a caller asks of it:
//! - [`push`](sync): a device's round trip (its push, its access log, one pull page);
//! - `pull`: the change log by cursor, filtered to the caller's scope ([`pull_page`]);
//! - `apply`: the write path all writers share (check, merge, log), used by a push, an
//!   administrator's decision and a supervisor's review;
//! - `validate`: whether a record is valid as a whole, after a creation or a merge;
//! - `admin`: an administrator's decisions that change what devices hold (moves, sites,
//!   reopening), each in one transaction with its audit rows ([`crate::admin`]);
//! - `retention`: closed cases off the devices, then purged;
//! - `decision`: a supervisor's decision on a conflict, from the dashboard;
//! - `state`: reads of the merged state and the change log for reports, tests and the
//!   simulation.

mod admin;
mod apply;
mod decision;
mod pull;
mod push;
mod retention;
mod state;
mod validate;

pub use admin::{
    Reopened, SiteInfo, assign_site, list_sites, move_citizen, reopen_case, unassign_site,
};
pub use decision::{Decision, review_from_dashboard};
pub use pull::pull_page;
pub use push::sync;
pub use retention::{Retention, RetentionReport, apply_retention};
pub use state::{Change, change_log, field_value, replica_state};
pub use validate::invalid_records;

use crate::audit;
use feltbog_core::domain::EntityKind;
use feltbog_core::hlc::DeviceId;
use uuid::Uuid;

/// The device id the server writes its own mutations (conflict records) under.
pub const SERVER_DEVICE: DeviceId = DeviceId(Uuid::nil());

/// Storage failures while syncing (everything else is a per-mutation rejection).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
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

/// The citizens an audit row about a record is filed under, for their Art. 15 export: the
/// record's own citizen, or for a site-log entry every resident it names (one row each); a
/// record about nobody gets one row under no citizen.
fn filed_under(
    tx: &dyn crate::storage::Db,
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

/// A day in milliseconds.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
