//! Sync wire types: one definition shared by the device and the server (DESIGN §5).
//!
//! A worker's save becomes one [`Mutation`]: an atomic group of [`FieldOp`]s, identified for
//! idempotence by `(device_id, device_seq)` — the server applies a given pair at most once, so a
//! retried push cannot duplicate anything. Each op carries its own version [`Stamp`] and the
//! version the writer had seen (`base`), which is how the merge tells a sequential edit from a
//! concurrent one.
//!
//! This module must not import SQLite, HTTP or crypto: the server depends on it with
//! `default-features = false`.

use crate::domain::EntityKind;
use crate::hlc::{DeviceId, Hlc, Stamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Protocol version carried by every request; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// How a field changes. `Debug` names the kind of change only: values are personal data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum FieldChange {
    /// Last-writer-wins assignment of the whole value (scalars, text, structured values).
    Assign(serde_json::Value),
    /// Add one element to an add-wins set (themes, tags, referrals, residents).
    Add(serde_json::Value),
    /// Remove one element from an add-wins set; a concurrent add of the same element wins.
    Remove(serde_json::Value),
}

impl std::fmt::Debug for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldChange::Assign(_) => "Assign(‹redacted›)",
            FieldChange::Add(_) => "Add(‹redacted›)",
            FieldChange::Remove(_) => "Remove(‹redacted›)",
        })
    }
}

/// One field write.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FieldOp {
    pub entity: EntityKind,
    pub id: Uuid,
    pub field: String,
    pub change: FieldChange,
    /// The HLC of this write; with the mutation's device it forms the write's [`Stamp`].
    pub hlc: Hlc,
    /// The version of this field the writer had seen, `None` if it had seen none.
    pub base: Option<Stamp>,
}

/// One save on one device: applied atomically, at most once.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Mutation {
    pub device_id: DeviceId,
    /// Strictly increasing per device, starting at 1. Gaps are allowed: erasing a citizen from
    /// a device also drops that citizen's pending mutations.
    pub device_seq: u64,
    pub ops: Vec<FieldOp>,
}

impl Mutation {
    /// The stamp of one of this mutation's ops.
    pub fn stamp_of(&self, op: &FieldOp) -> Stamp {
        Stamp {
            hlc: op.hlc,
            device: self.device_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_stable_json() {
        let m = Mutation {
            device_id: DeviceId(Uuid::from_u128(7)),
            device_seq: 1,
            ops: vec![FieldOp {
                entity: EntityKind::Visit,
                id: Uuid::from_u128(9),
                field: "themes".into(),
                change: FieldChange::Add("housing".into()),
                hlc: Hlc::new(1_000, 2).unwrap(),
                base: None,
            }],
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["ops"][0]["entity"], "visit");
        assert_eq!(
            json["ops"][0]["change"],
            serde_json::json!({"op": "add", "value": "housing"})
        );
        assert_eq!(json["ops"][0]["hlc"], "0000000001000-00002");
        let back: Mutation = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert!(!format!("{m:?}").contains("housing"), "Debug leaks a value");
    }
}
