//! The merge rules of DESIGN §5, shared by the server and every device. Pure: no I/O, no clock.
//!
//! Every field of every record is one of two kinds of replicated value:
//!
//! - a **register** ([`Register`]): last writer wins by the total order [`Stamp`] =
//!   `(hlc, device)`. A write carries the version it had seen (`base`). If that is the current
//!   version, the write is *sequential* and simply replaces it. Otherwise the two writes are
//!   *concurrent*: the higher stamp still wins, and the other value is returned as a
//!   [`Conflict`] so that nothing is lost. For free text ([`ConflictKind::Open`]) a person must
//!   resolve it; for other fields ([`ConflictKind::Notice`]) the winner stands and the worker is
//!   told.
//! - an **add-wins set** ([`OrSet`], an observed-remove set): every add of an element is tagged
//!   with the add's stamp; a remove deletes only the tags its writer had *observed*. An add the
//!   remover had not seen survives, so a concurrent add beats a remove.
//!
//! Both are state-based CRDTs under these rules: applying the same ops in any order, any number
//! of times, gives the same value (tested below with proptest). The set of conflicts raised
//! depends on arrival order, so conflicts are raised by one party only — the server, which
//! applies each push in its commit order — and travel to devices as records.

use crate::domain::EntityKind;
use crate::hlc::Stamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A last-writer-wins value with the stamp of the write that set it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Register {
    pub value: serde_json::Value,
    pub stamp: Stamp,
}

/// A replica's whole state, `(entity, id) → field → register` (a set field as its visible
/// array and newest stamp): what the simulation compares between devices and the server.
pub type ReplicaState = BTreeMap<(EntityKind, uuid::Uuid), BTreeMap<String, Register>>;

/// Whether a person must decide, or the winner stands and the worker is only told.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConflictKind {
    /// Free text: both versions are kept until someone resolves it.
    Open,
    /// A scalar: the later edit wins everywhere; the losing value is shown as a notice.
    Notice,
}

/// A concurrent write that lost: kept, never dropped.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub winner: Register,
    pub loser: Register,
}

/// What applying one write to a register did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RegisterOutcome {
    /// The write is the current value now.
    Applied(Register),
    /// The exact write was already applied (a replay): nothing changes.
    Duplicate,
    /// Concurrent writes: `state` is the new current value (the higher stamp) and `conflict`
    /// holds the loser.
    Concurrent { state: Register, conflict: Conflict },
}

/// Applies a write `(value, stamp)` made on top of `base` to the current register.
pub fn apply_register(
    current: Option<&Register>,
    value: &serde_json::Value,
    stamp: Stamp,
    base: Option<Stamp>,
    kind: ConflictKind,
) -> RegisterOutcome {
    let incoming = Register {
        value: value.clone(),
        stamp,
    };
    let Some(current) = current else {
        return RegisterOutcome::Applied(incoming);
    };
    if current.stamp == stamp {
        return RegisterOutcome::Duplicate;
    }
    let sequential = base == Some(current.stamp) && stamp > current.stamp;
    if sequential {
        return RegisterOutcome::Applied(incoming);
    }
    // Equal values written concurrently agree: no one has lost anything.
    if current.value == incoming.value {
        let state = if stamp > current.stamp {
            incoming
        } else {
            current.clone()
        };
        return RegisterOutcome::Applied(state);
    }
    let (winner, loser) = if stamp > current.stamp {
        (incoming, current.clone())
    } else {
        (current.clone(), incoming)
    };
    RegisterOutcome::Concurrent {
        state: winner.clone(),
        conflict: Conflict {
            kind,
            winner,
            loser,
        },
    }
}

/// LWW without conflict bookkeeping: what a device does with a write it pulls (the server has
/// already raised any conflict). Returns the register to keep. At an equal stamp the pulled
/// value wins: the server is the authority on a write it normalised (the author field it takes
/// from authentication) and echoes back to the writer.
pub fn lww(current: Option<&Register>, value: &serde_json::Value, stamp: Stamp) -> Register {
    match current {
        Some(c) if c.stamp > stamp => c.clone(),
        _ => Register {
            value: value.clone(),
            stamp,
        },
    }
}

/// An add-wins (observed-remove) set of JSON values.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct OrSet {
    /// Canonical JSON text of an element → its state.
    elements: BTreeMap<String, Element>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
struct Element {
    value: serde_json::Value,
    /// Tags of adds not (yet) removed.
    live: BTreeSet<Stamp>,
    /// Tags removed; kept so an add replayed after its remove stays removed.
    removed: BTreeSet<Stamp>,
}

impl OrSet {
    /// Adds `value`, tagged with the add's stamp.
    pub fn add(&mut self, value: &serde_json::Value, tag: Stamp) {
        let e = self.element(value);
        if !e.removed.contains(&tag) {
            e.live.insert(tag);
        }
    }

    /// Removes the adds of `value` that the remover had observed.
    pub fn remove(&mut self, value: &serde_json::Value, observed: &[Stamp]) {
        let e = self.element(value);
        if crate::sim::planted(crate::sim::PlantedBug::SetRemoveDropsConcurrentAdd) {
            let all: Vec<Stamp> = e.live.iter().copied().collect();
            for tag in all.into_iter().chain(observed.iter().copied()) {
                e.live.remove(&tag);
                e.removed.insert(tag);
            }
            return;
        }
        for tag in observed {
            e.live.remove(tag);
            e.removed.insert(*tag);
        }
    }

    /// The tags a remove of `value` must carry: every add this replica has seen.
    pub fn observed(&self, value: &serde_json::Value) -> Vec<Stamp> {
        self.elements
            .get(&value.to_string())
            .map(|e| e.live.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: &serde_json::Value) -> bool {
        self.elements
            .get(&value.to_string())
            .is_some_and(|e| !e.live.is_empty())
    }

    /// The elements present, in canonical order.
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.elements
            .values()
            .filter(|e| !e.live.is_empty())
            .map(|e| e.value.clone())
            .collect()
    }

    /// Renames tags (a device re-stamping edits its clock had put in the future).
    pub fn restamp(&mut self, map: &BTreeMap<Stamp, Stamp>) {
        let rename = |set: &BTreeSet<Stamp>| set.iter().map(|s| *map.get(s).unwrap_or(s)).collect();
        for e in self.elements.values_mut() {
            e.live = rename(&e.live);
            e.removed = rename(&e.removed);
        }
    }

    fn element(&mut self, value: &serde_json::Value) -> &mut Element {
        self.elements
            .entry(value.to_string())
            .or_insert_with(|| Element {
                value: value.clone(),
                live: BTreeSet::new(),
                removed: BTreeSet::new(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::{DeviceId, Hlc};
    use proptest::prelude::*;
    use serde_json::json;
    use uuid::Uuid;

    fn stamp(wall: u64, device: u128) -> Stamp {
        Stamp {
            hlc: Hlc::new(wall, 0).unwrap(),
            device: DeviceId(Uuid::from_u128(device)),
        }
    }

    #[test]
    fn sequential_write_replaces_without_conflict() {
        let v1 = Register {
            value: json!("a"),
            stamp: stamp(10, 1),
        };
        let out = apply_register(
            Some(&v1),
            &json!("b"),
            stamp(20, 2),
            Some(v1.stamp),
            ConflictKind::Open,
        );
        assert_eq!(
            out,
            RegisterOutcome::Applied(Register {
                value: json!("b"),
                stamp: stamp(20, 2)
            })
        );
    }

    #[test]
    fn concurrent_writes_keep_the_loser_whichever_arrives_first() {
        let base = Register {
            value: json!("base"),
            stamp: stamp(10, 1),
        };
        let a = (json!("A's note"), stamp(20, 1));
        let b = (json!("B's note"), stamp(30, 2));
        // A arrives first, then B (both wrote on top of `base`).
        let RegisterOutcome::Applied(after_a) =
            apply_register(Some(&base), &a.0, a.1, Some(base.stamp), ConflictKind::Open)
        else {
            panic!()
        };
        let RegisterOutcome::Concurrent { state, conflict } = apply_register(
            Some(&after_a),
            &b.0,
            b.1,
            Some(base.stamp),
            ConflictKind::Open,
        ) else {
            panic!("B on top of A must be concurrent")
        };
        assert_eq!(state.value, json!("B's note"));
        assert_eq!(conflict.loser.value, json!("A's note"));
        // B first, then A: the same winner, the same loser.
        let RegisterOutcome::Applied(after_b) =
            apply_register(Some(&base), &b.0, b.1, Some(base.stamp), ConflictKind::Open)
        else {
            panic!()
        };
        let RegisterOutcome::Concurrent { state, conflict } = apply_register(
            Some(&after_b),
            &a.0,
            a.1,
            Some(base.stamp),
            ConflictKind::Open,
        ) else {
            panic!()
        };
        assert_eq!(state.value, json!("B's note"));
        assert_eq!(conflict.loser.value, json!("A's note"));
        assert_eq!(conflict.kind, ConflictKind::Open);
    }

    #[test]
    fn a_replay_is_a_duplicate_and_equal_concurrent_values_do_not_conflict() {
        let r = Register {
            value: json!(3),
            stamp: stamp(10, 1),
        };
        assert_eq!(
            apply_register(Some(&r), &json!(3), r.stamp, None, ConflictKind::Notice),
            RegisterOutcome::Duplicate
        );
        let out = apply_register(
            Some(&r),
            &json!(3),
            stamp(11, 2),
            None,
            ConflictKind::Notice,
        );
        assert!(matches!(out, RegisterOutcome::Applied(_)));
    }

    #[test]
    fn a_later_edit_that_saw_the_other_wins_even_with_a_lower_device_clock() {
        // Causality: B saw A's write (base = A) — B's HLC is above A's whatever B's wall clock.
        let a = Register {
            value: json!("A"),
            stamp: stamp(1_000, 9),
        };
        let b_stamp = Stamp {
            hlc: Hlc::new(1_000, 1).unwrap(),
            device: DeviceId(Uuid::from_u128(1)),
        };
        let out = apply_register(
            Some(&a),
            &json!("B"),
            b_stamp,
            Some(a.stamp),
            ConflictKind::Notice,
        );
        assert_eq!(
            out,
            RegisterOutcome::Applied(Register {
                value: json!("B"),
                stamp: b_stamp
            })
        );
    }

    #[test]
    fn concurrent_add_beats_remove() {
        let mut set = OrSet::default();
        set.add(&json!("housing"), stamp(10, 1));
        let observed = set.observed(&json!("housing"));
        // Device 2 adds "housing" again without having seen the first add or the remove.
        set.remove(&json!("housing"), &observed);
        set.add(&json!("housing"), stamp(5, 2));
        assert!(
            set.contains(&json!("housing")),
            "an unseen add must survive a remove"
        );
        // A remove that observed both takes it out.
        let observed = set.observed(&json!("housing"));
        set.remove(&json!("housing"), &observed);
        assert!(!set.contains(&json!("housing")));
        // Replaying the removed adds changes nothing.
        set.add(&json!("housing"), stamp(10, 1));
        set.add(&json!("housing"), stamp(5, 2));
        assert!(!set.contains(&json!("housing")));
    }

    /// One write to a register, as generated for the property tests.
    #[derive(Clone, Debug)]
    struct Write {
        value: i64,
        stamp: Stamp,
        base: Option<Stamp>,
    }

    fn writes() -> impl Strategy<Value = Vec<Write>> {
        prop::collection::vec((0i64..5, 1u64..50, 0u128..3, any::<bool>()), 1..12).prop_map(|raw| {
            let mut out: Vec<Write> = Vec::new();
            for (value, wall, device, has_base) in raw {
                let base = if has_base {
                    out.last().map(|w| w.stamp)
                } else {
                    None
                };
                let stamp = stamp(wall * 10 + device as u64, device);
                if out.iter().all(|w| w.stamp != stamp) {
                    out.push(Write { value, stamp, base });
                }
            }
            out
        })
    }

    fn replay(order: &[Write]) -> (Option<Register>, Vec<Register>) {
        let mut state: Option<Register> = None;
        let mut losers = Vec::new();
        for w in order {
            match apply_register(
                state.as_ref(),
                &json!(w.value),
                w.stamp,
                w.base,
                ConflictKind::Notice,
            ) {
                RegisterOutcome::Applied(r) => {
                    if let Some(prev) = &state
                        && w.base != Some(prev.stamp)
                        && prev.value != r.value
                    {
                        losers.push(prev.clone());
                    }
                    state = Some(r)
                }
                RegisterOutcome::Duplicate => {}
                RegisterOutcome::Concurrent { state: s, conflict } => {
                    losers.push(conflict.loser);
                    state = Some(s);
                }
            }
        }
        (state, losers)
    }

    proptest! {
        /// Convergence: any order of the same writes ends on the same value — the highest stamp.
        #[test]
        fn registers_converge_in_any_order(ws in writes(), seed in any::<u64>()) {
            let mut shuffled = ws.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let (a, _) = replay(&ws);
            let (b, _) = replay(&shuffled);
            prop_assert_eq!(a.clone(), b);
            let top = ws.iter().max_by_key(|w| w.stamp).unwrap();
            prop_assert_eq!(a.unwrap().stamp, top.stamp);
        }

        /// Idempotence: applying every write twice changes nothing.
        #[test]
        fn registers_are_idempotent(ws in writes()) {
            let twice: Vec<Write> = ws.iter().flat_map(|w| [w.clone(), w.clone()]).collect();
            prop_assert_eq!(replay(&ws).0, replay(&twice).0);
        }

        /// No lost write: every written value is the final value or was reported as a loser.
        #[test]
        fn no_write_is_lost(ws in writes()) {
            let (state, losers) = replay(&ws);
            let state = state.unwrap();
            for w in &ws {
                let kept = state.stamp == w.stamp
                    || state.value == json!(w.value)
                    || losers.iter().any(|l| l.stamp == w.stamp || l.value == json!(w.value))
                    // Superseded, not lost: a later write had seen this write, or had seen an
                    // equal value that this write was merged into.
                    || ws.iter().any(|later| {
                        later.base.is_some_and(|b| ws.iter().any(|x| x.stamp == b && x.value == w.value))
                    });
                prop_assert!(kept, "write {:?} vanished", w);
            }
        }

        /// The add-wins set converges in any order, and is idempotent.
        #[test]
        fn or_sets_converge(
            ops in prop::collection::vec((0u8..3, any::<bool>(), 1u64..40, 0u128..3), 1..20),
            seed in any::<u64>(),
        ) {
            // Build ops as a replica would: a remove carries the tags seen so far on its device.
            let mut per_device: BTreeMap<u128, OrSet> = BTreeMap::new();
            let mut log: Vec<(serde_json::Value, Result<Stamp, Vec<Stamp>>)> = Vec::new();
            for (elem, is_add, wall, device) in ops {
                let v = json!(elem);
                let local = per_device.entry(device).or_default();
                if is_add {
                    let tag = stamp(wall * 10 + device as u64, device);
                    local.add(&v, tag);
                    log.push((v, Ok(tag)));
                } else {
                    let observed = local.observed(&v);
                    local.remove(&v, &observed);
                    log.push((v, Err(observed)));
                }
            }
            let apply = |order: &[(serde_json::Value, Result<Stamp, Vec<Stamp>>)]| {
                let mut set = OrSet::default();
                for (v, op) in order {
                    match op {
                        Ok(tag) => set.add(v, *tag),
                        Err(observed) => set.remove(v, observed),
                    }
                }
                set.values()
            };
            let mut shuffled = log.clone();
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            let doubled: Vec<_> = log.iter().flat_map(|o| [o.clone(), o.clone()]).collect();
            prop_assert_eq!(apply(&log), apply(&shuffled));
            prop_assert_eq!(apply(&log), apply(&doubled));
        }
    }
}
