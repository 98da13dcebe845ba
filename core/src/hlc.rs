//! Hybrid logical clocks (Kulkarni et al., 2014).
//!
//! An [`Hlc`] is a 48-bit wall-clock millisecond part and a 16-bit logical counter packed into one
//! `u64`, so it sorts as an integer (also inside SQLite). The rules:
//!
//! - **send / local event** ([`HlcClock::now`]): the new stamp is greater than every stamp this
//!   clock has issued or observed, and at least the physical time.
//! - **receive** ([`HlcClock::observe`]): after seeing a remote stamp, every later local stamp is
//!   greater than it — so an edit made after seeing another edit wins over it, whatever the wall
//!   clocks say (DESIGN §5, property 5).
//! - **bounded skew**: a remote stamp more than `max_drift` ahead of our physical time is refused
//!   ([`ClockError::TooFarAhead`]) instead of dragging our clock into the future; the server uses
//!   the same rule to reject stamps from a tablet whose clock runs fast (property 6).
//!
//! Ties between equal stamps from different devices are broken by the device id: [`Stamp`] is the
//! total order `(hlc, device_id)` used by every merge decision.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

const COUNTER_BITS: u32 = 16;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
/// Largest wall-clock value that fits in 48 bits (year ~10889).
const WALL_MAX: u64 = (1 << 48) - 1;

/// A hybrid logical timestamp: wall milliseconds since the Unix epoch and a logical counter.
///
/// On the wire it is the string `WWWWWWWWWWWWW-CCCCC` (zero-padded, so it sorts as text too):
/// the packed `u64` exceeds 2^53 and would lose its counter in JavaScript.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(u64);

impl Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Hlc {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Hlc, Self::Err> {
        let (wall, counter) = s.split_once('-').ok_or("HLC must be WALL-COUNTER")?;
        let wall = wall.parse().map_err(|_| "HLC wall part is not a number")?;
        let counter = counter.parse().map_err(|_| "HLC counter is not a number")?;
        Hlc::new(wall, counter).ok_or("HLC wall part out of range")
    }
}

impl Hlc {
    /// The zero stamp, smaller than every stamp a clock issues.
    pub const ZERO: Hlc = Hlc(0);

    /// Builds a stamp from its parts; `None` if either part is out of range.
    pub fn new(wall_ms: u64, counter: u16) -> Option<Hlc> {
        (wall_ms <= WALL_MAX).then_some(Hlc((wall_ms << COUNTER_BITS) | u64::from(counter)))
    }

    /// Rebuilds a stamp from its packed form (as stored in SQLite or sent on the wire).
    pub fn from_u64(raw: u64) -> Hlc {
        Hlc(raw)
    }

    /// The packed form: sorts exactly like the stamp.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Wall-clock part in milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    /// Logical counter part.
    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MAX) as u16
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({}.{})", self.wall_ms(), self.counter())
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013}-{:05}", self.wall_ms(), self.counter())
    }
}

/// Identifies a device (a tablet's install of Feltbog). Random, not personal data.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(transparent)]
pub struct DeviceId(pub Uuid);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version of one field write: the total order `(hlc, device)` every merge compares.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct Stamp {
    pub hlc: Hlc,
    pub device: DeviceId,
}

/// Why a clock refused to move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// A remote stamp is further ahead of our physical clock than the allowed drift.
    #[error("timestamp is {ahead_ms} ms ahead of this clock (limit {max_drift_ms} ms)")]
    TooFarAhead { ahead_ms: u64, max_drift_ms: u64 },
    /// Physical time is outside the 48-bit range.
    #[error("physical time out of range")]
    OutOfRange,
}

/// A hybrid logical clock. Keep one per device (and one per server), persisted across restarts
/// (the store saves `last` in the same transaction as the edit that used it).
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

/// Default skew bound: a stamp may run at most five minutes ahead of the receiver's clock.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

impl HlcClock {
    /// A clock that has issued and seen nothing newer than `last`.
    pub fn new(last: Hlc, max_drift_ms: u64) -> Self {
        HlcClock { last, max_drift_ms }
    }

    /// The newest stamp this clock has issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The configured skew bound in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// Issues a stamp for a local event (an edit, or a message about to be sent).
    pub fn now(&mut self, physical_ms: u64) -> Result<Hlc, ClockError> {
        if physical_ms > WALL_MAX {
            return Err(ClockError::OutOfRange);
        }
        let next = if physical_ms > self.last.wall_ms() {
            Hlc::new(physical_ms, 0).ok_or(ClockError::OutOfRange)?
        } else {
            bump(self.last)?
        };
        self.last = next;
        Ok(next)
    }

    /// Checks a remote stamp against the skew bound without moving the clock.
    pub fn check_drift(&self, remote: Hlc, physical_ms: u64) -> Result<(), ClockError> {
        let ahead_ms = remote.wall_ms().saturating_sub(physical_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }

    /// Receive rule without the skew check, for stamps that come through the server (which has
    /// already enforced the bound against its own clock): a device whose clock runs slow must
    /// still order its next edit after everything it has seen.
    pub fn witness(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// Receive rule: merges a remote stamp so that every later local stamp is greater than it.
    /// Refuses stamps beyond the skew bound and leaves the clock unchanged then.
    pub fn observe(&mut self, remote: Hlc, physical_ms: u64) -> Result<Hlc, ClockError> {
        self.check_drift(remote, physical_ms)?;
        if physical_ms > WALL_MAX {
            return Err(ClockError::OutOfRange);
        }
        let max_wall = physical_ms.max(self.last.wall_ms()).max(remote.wall_ms());
        let next = if max_wall == self.last.wall_ms() && max_wall == remote.wall_ms() {
            bump(self.last.max(remote))?
        } else if max_wall == self.last.wall_ms() {
            bump(self.last)?
        } else if max_wall == remote.wall_ms() {
            bump(remote)?
        } else {
            Hlc::new(max_wall, 0).ok_or(ClockError::OutOfRange)?
        };
        self.last = next;
        Ok(next)
    }
}

/// The next stamp after `h`: the counter, or — after 65,536 events in one millisecond — the
/// next millisecond (logical time may run that little ahead of the wall clock).
fn bump(h: Hlc) -> Result<Hlc, ClockError> {
    if u64::from(h.counter()) == COUNTER_MAX {
        return Hlc::new(h.wall_ms() + 1, 0).ok_or(ClockError::OutOfRange);
    }
    Ok(Hlc(h.0 + 1))
}

/// Where a device reads the time from: the system clock in the app, a simulated clock (with
/// skew and jumps) in the deterministic simulation. Everything that stamps or times out reads it.
pub trait WallClock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        system_time_ms()
    }
}

/// Milliseconds since the Unix epoch from the system clock (the physical input of a clock).
pub fn system_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DRIFT: u64 = 60_000;

    #[test]
    fn packs_and_orders_like_its_parts() {
        let a = Hlc::new(1_000, 5).unwrap();
        let b = Hlc::new(1_000, 6).unwrap();
        let c = Hlc::new(1_001, 0).unwrap();
        assert!(a < b && b < c);
        assert_eq!((c.wall_ms(), c.counter()), (1_001, 0));
        assert_eq!(Hlc::from_u64(a.as_u64()), a);
        assert!(Hlc::new(WALL_MAX + 1, 0).is_none());
    }

    #[test]
    fn wire_form_is_an_exact_sortable_string() {
        let h = Hlc::new(1_763_900_000_123, 7).unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"1763900000123-00007\"");
        assert_eq!(serde_json::from_str::<Hlc>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hlc>("\"12\"").is_err());
        let later = Hlc::new(1_763_900_000_124, 0).unwrap();
        assert!(serde_json::to_string(&later).unwrap() > json);
    }

    #[test]
    fn a_full_counter_carries_into_the_next_millisecond() {
        let mut c = HlcClock::new(Hlc::new(500, u16::MAX).unwrap(), DRIFT);
        let next = c.now(500).unwrap();
        assert_eq!((next.wall_ms(), next.counter()), (501, 0));
    }

    #[test]
    fn clock_standing_still_still_advances() {
        let mut c = HlcClock::new(Hlc::ZERO, DRIFT);
        let a = c.now(500).unwrap();
        let b = c.now(500).unwrap();
        let d = c.now(400).unwrap(); // wall clock stepped back
        assert!(a < b && b < d);
        assert_eq!(d.wall_ms(), 500);
    }

    #[test]
    fn remote_far_ahead_is_refused_and_clock_unchanged() {
        let mut c = HlcClock::new(Hlc::new(1_000, 0).unwrap(), DRIFT);
        let day_ahead = Hlc::new(1_000 + 86_400_000, 0).unwrap();
        let err = c.observe(day_ahead, 1_000).unwrap_err();
        assert!(matches!(err, ClockError::TooFarAhead { .. }));
        assert_eq!(c.last(), Hlc::new(1_000, 0).unwrap());
    }

    #[test]
    fn stamps_break_ties_by_device() {
        let h = Hlc::new(7, 0).unwrap();
        let a = Stamp {
            hlc: h,
            device: DeviceId(Uuid::from_u128(1)),
        };
        let b = Stamp {
            hlc: h,
            device: DeviceId(Uuid::from_u128(2)),
        };
        assert!(a < b);
    }

    proptest! {
        /// Every stamp a clock issues is strictly greater than the one before, whatever the
        /// physical clock does (jumps back, stands still) and whatever it observes.
        #[test]
        fn monotonic_under_any_physical_time(
            events in prop::collection::vec((0u64..10_000_000, any::<bool>(), 0u64..10_000_000, 0u16..100), 1..200)
        ) {
            let mut c = HlcClock::new(Hlc::ZERO, DRIFT);
            let mut prev = Hlc::ZERO;
            for (phys, is_receive, remote_wall, remote_counter) in events {
                let next = if is_receive {
                    match c.observe(Hlc::new(remote_wall, remote_counter).unwrap(), phys) {
                        Ok(h) => h,
                        Err(ClockError::TooFarAhead { .. }) => continue,
                        Err(e) => panic!("unexpected {e}"),
                    }
                } else {
                    c.now(phys).unwrap()
                };
                prop_assert!(next > prev, "{next:?} after {prev:?}");
                prop_assert!(next.wall_ms() >= phys);
                prev = next;
            }
        }

        /// Receive rule: after observing a remote stamp within the drift bound, the clock's
        /// next stamp is greater than both the remote one and everything issued before.
        #[test]
        fn receive_rule_orders_after_remote(
            local_wall in 0u64..1_000_000, local_counter in 0u16..1000,
            remote_wall in 0u64..1_000_000, remote_counter in 0u16..1000,
            phys in 0u64..1_000_000,
        ) {
            let local = Hlc::new(local_wall, local_counter).unwrap();
            let remote = Hlc::new(remote_wall, remote_counter).unwrap();
            let mut c = HlcClock::new(local, 2_000_000);
            let seen = c.observe(remote, phys).unwrap();
            prop_assert!(seen > remote && seen > local);
            prop_assert!(seen.wall_ms() >= phys);
            let next = c.now(phys).unwrap();
            prop_assert!(next > seen);
        }

        /// The skew bound: a stamp is accepted exactly when it is at most `max_drift` ahead.
        #[test]
        fn skew_bound_is_exact(phys in 0u64..1_000_000_000, ahead in 0u64..200_000) {
            let mut c = HlcClock::new(Hlc::ZERO, DRIFT);
            let remote = Hlc::new(phys + ahead, 0).unwrap();
            let result = c.observe(remote, phys);
            prop_assert_eq!(result.is_ok(), ahead <= DRIFT);
        }

        /// Wall part never runs ahead of max(physical, anything observed).
        #[test]
        fn wall_part_is_bounded(events in prop::collection::vec((0u64..1_000_000, 0u64..1_000_000), 1..100)) {
            let mut c = HlcClock::new(Hlc::ZERO, 2_000_000);
            let mut max_seen = 0;
            for (phys, remote) in events {
                max_seen = max_seen.max(phys).max(remote);
                let h = c.observe(Hlc::new(remote, 0).unwrap(), phys).unwrap();
                prop_assert!(h.wall_ms() <= max_seen);
            }
        }
    }
}
