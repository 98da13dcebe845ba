//! The retention rules for closed cases: off the devices, then purged from the server.

use super::apply::Ctx;
use super::{DAY_MS, SyncError};
use crate::admin::Audited;
use crate::args;
use crate::audit::{self, Action, Entry};
use crate::scope::{self};
use crate::storage::{DbExt, Transact};
use uuid::Uuid;

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

/// Applies the retention rules now, in one transaction. Devices learn of both kinds of removal
/// through an erasure in the change log, and erase the citizen by destroying their key.
pub fn apply_retention(
    db: &mut impl Transact,
    rules: Retention,
    now_ms: u64,
) -> Result<RetentionReport, SyncError> {
    let report = crate::admin::perform(db, now_ms, |tx| {
        let ctx = Ctx::new(tx, feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS, now_ms)?;
        let mut report = RetentionReport::default();
        let due = |days: u32, extra: &str| -> Result<Vec<(Uuid, Uuid, bool)>, SyncError> {
            let cutoff = now_ms as i64 - i64::from(days) * DAY_MS;
            Ok(tx.all(
                &format!(
                    "SELECT citizen_id, team_id, off_devices FROM citizens
                     WHERE closed_ms IS NOT NULL AND closed_ms <= ?1 AND purged_ms IS NULL {extra}"
                ),
                args![cutoff],
            )?)
        };
        let mut trail = Vec::new();
        if let Some(days) = rules.device_days {
            for (citizen, team, _) in due(days, "AND off_devices = 0")? {
                tx.execute(
                    "UPDATE citizens SET off_devices = 1 WHERE citizen_id = ?1",
                    args![citizen],
                )?;
                ctx.log_erase(citizen, team, scope::all_roles())?;
                let mut e = Entry::admin(Action::Erase).record("citizen", citizen, Some(citizen));
                e.actor = audit::Actor::Server;
                trail.push(e);
                report.off_devices += 1;
            }
        }
        if let Some(days) = rules.purge_days {
            for (citizen, team, off) in due(days, "")? {
                let id = citizen;
                tx.execute(
                    "DELETE FROM fields WHERE (entity, record_id) IN
                     (SELECT entity, record_id FROM records WHERE citizen_id = ?1)",
                    args![id],
                )?;
                tx.execute(
                    "DELETE FROM changes WHERE citizen_id = ?1 AND kind = 'mutation'",
                    args![id],
                )?;
                tx.execute(
                    "UPDATE citizens SET purged_ms = ?2 WHERE citizen_id = ?1",
                    args![id, now_ms as i64],
                )?;
                if !off {
                    ctx.log_erase(citizen, team, scope::all_roles())?;
                }
                let mut e = Entry::admin(Action::Purge).record("citizen", citizen, Some(citizen));
                e.actor = audit::Actor::Server;
                trail.push(e);
                report.purged += 1;
            }
        }
        Ok::<_, SyncError>(Audited::done(report, trail))
    })?;
    if report.purged > 0 {
        // Freed pages were overwritten (SQLite's secure_delete); the WAL's copies go too.
        db.scrub()?;
    }
    Ok(report)
}
