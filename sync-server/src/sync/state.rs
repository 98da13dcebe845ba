//! Reads of the merged state and the change log, for reports, tests and the simulation.

use super::SyncError;
use feltbog_core::domain::EntityKind;
use feltbog_core::hlc::{DeviceId, Hlc, Stamp};
use feltbog_core::merge::{self, Register};
use feltbog_core::protocol::Mutation;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// One field's merged value on the server, for tests and reports.
pub fn field_value(
    conn: &Connection,
    entity: EntityKind,
    id: Uuid,
    field: &str,
) -> Result<Option<serde_json::Value>, SyncError> {
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
        )?
        .query_row(params![entity.as_str(), &id.as_bytes()[..], field], |r| {
            r.get(0)
        })
        .optional()?;
    text.map(|t| serde_json::from_str(&t).map_err(|_| SyncError::Corrupt("field value")))
        .transpose()
}

/// The merged state of every record of `team`, field by field with stamps. For the simulation's
/// convergence check (devices must hold exactly this).
pub fn replica_state(conn: &Connection, team: Uuid) -> Result<merge::ReplicaState, SyncError> {
    let mut stmt = conn.prepare(
        "SELECT f.entity, f.record_id, f.field, f.value, f.hlc, f.device FROM fields f
         JOIN records r ON r.entity = f.entity AND r.record_id = f.record_id WHERE r.team_id = ?1",
    )?;
    let mut rows = stmt.query([&team.as_bytes()[..]])?;
    let mut out = merge::ReplicaState::new();
    while let Some(row) = rows.next()? {
        let entity =
            EntityKind::parse(&row.get::<_, String>(0)?).ok_or(SyncError::Corrupt("entity"))?;
        let uuid = |b: Vec<u8>| Uuid::from_slice(&b).map_err(|_| SyncError::Corrupt("id"));
        let id = uuid(row.get(1)?)?;
        let value = serde_json::from_str(&row.get::<_, String>(3)?)
            .map_err(|_| SyncError::Corrupt("field value"))?;
        let stamp = Stamp {
            hlc: Hlc::from_u64(row.get::<_, i64>(4)? as u64),
            device: DeviceId(uuid(row.get(5)?)?),
        };
        out.entry((entity, id))
            .or_default()
            .insert(row.get(2)?, Register { value, stamp });
    }
    Ok(out)
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
pub fn change_log(conn: &Connection) -> Result<Vec<Change>, SyncError> {
    let mut stmt = conn.prepare(
        "SELECT seq, team_id, mutation, copy_of FROM changes WHERE kind = 'mutation' ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let team = Uuid::from_slice(&row.get::<_, Vec<u8>>(1)?)
            .map_err(|_| SyncError::Corrupt("team id"))?;
        let mutation = serde_json::from_str(&row.get::<_, String>(2)?)
            .map_err(|_| SyncError::Corrupt("change log"))?;
        out.push(Change {
            seq: row.get::<_, i64>(0)? as u64,
            team,
            mutation,
            copy_of: row.get::<_, Option<i64>>(3)?.map(|s| s as u64),
        });
    }
    Ok(out)
}
