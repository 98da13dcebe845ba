//! Reads of the merged state and the change log, for reports, tests and the simulation.

use super::SyncError;
use crate::args;
use crate::storage::{Db, DbExt, FromRow};
use feltbog_core::domain::EntityKind;
use feltbog_core::hlc::{DeviceId, Hlc, Stamp};
use feltbog_core::merge::{self, Register};
use feltbog_core::protocol::Mutation;
use uuid::Uuid;

/// One field's merged value on the server, for tests and reports.
pub fn field_value(
    db: &dyn Db,
    entity: EntityKind,
    id: Uuid,
    field: &str,
) -> Result<Option<serde_json::Value>, SyncError> {
    let text: Option<String> = db.one(
        "SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
        args![entity.as_str(), id, field],
    )?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| SyncError::Corrupt("field value")))
        .transpose()
}

/// The merged state of every record of `team`, field by field with stamps. For the simulation's
/// convergence check (devices must hold exactly this).
pub fn replica_state(db: &dyn Db, team: Uuid) -> Result<merge::ReplicaState, SyncError> {
    let mut out = merge::ReplicaState::new();
    let mut corrupt = None;
    db.for_each(
        "SELECT f.entity, f.record_id, f.field, f.value, f.hlc, f.device FROM fields f
         JOIN records r ON r.entity = f.entity AND r.record_id = f.record_id WHERE r.team_id = ?1",
        args![team],
        &mut |row| {
            let (entity, id, field, value, hlc, device): (String, Uuid, String, String, i64, Uuid) =
                FromRow::from_row(row)?;
            let (Some(entity), Ok(value)) =
                (EntityKind::parse(&entity), serde_json::from_str(&value))
            else {
                corrupt = Some("field value");
                return Ok(());
            };
            let stamp = Stamp {
                hlc: Hlc::from_u64(hlc as u64),
                device: DeviceId(device),
            };
            out.entry((entity, id))
                .or_default()
                .insert(field, Register { value, stamp });
            Ok(())
        },
    )?;
    match corrupt {
        Some(what) => Err(SyncError::Corrupt(what)),
        None => Ok(out),
    }
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
pub fn change_log(db: &dyn Db) -> Result<Vec<Change>, SyncError> {
    let rows: Vec<(u64, Uuid, String, Option<u64>)> = db.all(
        "SELECT seq, team_id, mutation, copy_of FROM changes WHERE kind = 'mutation' ORDER BY seq",
        &[],
    )?;
    rows.into_iter()
        .map(|(seq, team, mutation, copy_of)| {
            Ok(Change {
                seq,
                team,
                mutation: serde_json::from_str(&mutation)
                    .map_err(|_| SyncError::Corrupt("change log"))?,
                copy_of,
            })
        })
        .collect()
}
