//! A conflict version (DESIGN §5): when two devices edit the same field without having seen
//! each other's edit, the server keeps the higher stamp as the value and records the other as a
//! [`ConflictRecord`]. It syncs to every device like any record, sealed under the citizen's key
//! when the record belongs to a citizen. Free text stays `open` until a worker resolves it —
//! the resolution is an ordinary edit of the field plus `status = resolved`; other fields are
//! notices a worker can dismiss.

use super::{
    CitizenId, EntityKind, KeyScope, Projection, Record, Validate, ValidationError, WorkerId,
    millis,
};
use crate::hlc::Stamp;
use crate::merge::ConflictKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a conflict stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConflictStatus {
    Open,
    Resolved,
    Dismissed,
}

/// A conflict's id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct ConflictId(pub Uuid);

/// Two versions of one field, side by side.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    pub id: ConflictId,
    /// The citizen the conflicting record belongs to, if any (decides the sealing key).
    pub citizen_id: Option<CitizenId>,
    pub entity: EntityKind,
    pub record_id: Uuid,
    pub field: String,
    pub kind: ConflictKind,
    /// The value that won (is the field's value unless edited since) and its stamp.
    pub winner: serde_json::Value,
    pub winner_stamp: Stamp,
    /// The value that lost, kept so nothing is lost.
    pub loser: serde_json::Value,
    pub loser_stamp: Stamp,
    /// Who wrote each version (the worker of the writing device, as the server knew it), so
    /// the inbox can name the other version's author. `None` for a version the server wrote,
    /// and on conflicts raised before authors were recorded.
    #[serde(default)]
    pub winner_author: Option<WorkerId>,
    #[serde(default)]
    pub loser_author: Option<WorkerId>,
    pub status: ConflictStatus,
    pub created_at: DateTime<Utc>,
}

impl Validate for ConflictRecord {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.field.is_empty() {
            return Err(ValidationError::Required { field: "field" });
        }
        Ok(())
    }
}

impl Record for ConflictRecord {
    const KIND: EntityKind = EntityKind::Conflict;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "citizen_id",
        "entity",
        "record_id",
        "field",
        "kind",
        "winner",
        "winner_stamp",
        "loser",
        "loser_stamp",
        "winner_author",
        "loser_author",
        "status",
        "created_at",
    ];

    fn record_id(&self) -> Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        match self.citizen_id {
            Some(c) => KeyScope::Citizen(c),
            None => KeyScope::General,
        }
    }
    fn projection(&self) -> Projection {
        Projection {
            citizen_id: self.citizen_id,
            site_id: None,
            sort_key: millis(self.created_at),
            archived: self.status != ConflictStatus::Open,
        }
    }
}

super::redacted_debug!(ConflictRecord);
