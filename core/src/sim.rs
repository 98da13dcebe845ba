//! Seams for the deterministic simulation (`tests/sim`): planted bugs and fail points.
//!
//! The simulation must show that its checks can fail, so a few known sync bugs can be switched on
//! in the real code paths ([`PlantedBug`]), and it must crash a device or the server in the middle
//! of applying a response, so the code asks [`fail_here`] at those points. Both are per thread
//! (the simulation runs seeds on several threads) and can only be switched on with the `sim`
//! feature; without it [`planted`] and [`fail_here`] are constant `false`. Product builds never
//! enable `sim`.

/// A known sync bug that can be planted to prove the simulation catches it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlantedBug {
    /// The device moves its pull cursor in its own transaction, before the page is applied.
    CursorBeforeApply,
    /// The server keeps the winner of a concurrent edit and drops the loser (no conflict record).
    ConflictLoserDropped,
    /// The server forgets which `(device, seq)` it applied, so a retried push is applied again.
    PushNotIdempotent,
    /// The device stamps edits with its wall clock instead of its hybrid logical clock.
    WallClockStamps,
    /// The server accepts stamps however far ahead of its clock they are.
    SkewUnchecked,
    /// The device sets its cursor to the page's end even when that is behind it.
    CursorRewind,
    /// The server serves pull pages from every team's changes.
    ScopeLeak,
    /// The server stores a new visit or site-log entry without setting its author.
    AuthorNotSet,
    /// The server stores fields its record kind does not have.
    FieldsUnchecked,
    /// The server stores references (residents, citizens, sites, tasks, workers) without
    /// resolving them against the writer's scope.
    ReferencesUnscoped,
    /// A set remove drops every add of the element, also the concurrent ones it had not seen.
    SetRemoveDropsConcurrentAdd,
    /// A device that crashes while applying a pull page keeps the page's cursor (but not the
    /// page): after the restart it pulls from past the page it never applied.
    PullSkipsPageAfterCrash,
    /// Erasing a citizen who left the device's scope also empties the pending edits of other
    /// citizens, before they were pushed.
    EraseDropsOthersPending,
}

impl PlantedBug {
    /// Every bug the simulation must catch.
    pub const ALL: [PlantedBug; 10] = [
        PlantedBug::CursorBeforeApply,
        PlantedBug::ConflictLoserDropped,
        PlantedBug::PushNotIdempotent,
        PlantedBug::WallClockStamps,
        PlantedBug::SkewUnchecked,
        PlantedBug::CursorRewind,
        PlantedBug::ScopeLeak,
        PlantedBug::SetRemoveDropsConcurrentAdd,
        PlantedBug::PullSkipsPageAfterCrash,
        PlantedBug::EraseDropsOthersPending,
    ];

    /// Bugs in the server's checks of what a device sends, which the adversarial push test
    /// (`sync-server/tests/adversarial.rs`) must catch. The simulation's honest devices never
    /// send what these checks refuse, so they are not in [`PlantedBug::ALL`].
    pub const SERVER_CHECKS: [PlantedBug; 3] = [
        PlantedBug::AuthorNotSet,
        PlantedBug::FieldsUnchecked,
        PlantedBug::ReferencesUnscoped,
    ];
}

/// A place where the simulation may crash the code in the middle of its work.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FailPoint {
    /// The device has applied a sync response inside its transaction but not committed it.
    DeviceApplyBeforeCommit,
    /// The server has applied a push inside its transaction but not committed it.
    ServerSyncBeforeCommit,
    /// The device has written a save (record, outbox) inside its transaction but not
    /// committed it: the worker was never told "saved".
    DeviceSaveBeforeCommit,
    /// The device has re-stamped its pending edits inside its transaction but not committed it.
    DeviceRestampBeforeCommit,
}

#[cfg(feature = "sim")]
mod switches {
    use super::{FailPoint, PlantedBug};
    use std::cell::{Cell, RefCell};

    type Decider = Box<dyn FnMut(FailPoint) -> bool>;

    thread_local! {
        static PLANTED: Cell<Option<PlantedBug>> = const { Cell::new(None) };
        static FAIL: RefCell<Option<Decider>> = const { RefCell::new(None) };
        static SEEDED: RefCell<Option<crate::dataset::SplitMix>> = const { RefCell::new(None) };
    }

    /// Makes the server's random ids and secrets on this thread come from `seed` (or, with
    /// `None`, from the operating system again), so a simulation replays byte for byte.
    pub fn seed_random(seed: Option<u64>) {
        SEEDED.with(|s| *s.borrow_mut() = seed.map(crate::dataset::SplitMix));
    }

    pub(super) fn seeded_random(buf: &mut [u8]) -> bool {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(rng) => {
                for chunk in buf.chunks_mut(8) {
                    let word = rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
                true
            }
            None => false,
        })
    }

    /// Plants `bug` (or none) for the code running on this thread.
    pub fn plant(bug: Option<PlantedBug>) {
        PLANTED.with(|p| p.set(bug));
    }

    pub(super) fn planted(bug: PlantedBug) -> bool {
        PLANTED.with(|p| p.get() == Some(bug))
    }

    /// Installs (or removes) the function that decides, at each fail point reached on this
    /// thread, whether to fail there.
    pub fn set_fail_points(decide: Option<Box<dyn FnMut(FailPoint) -> bool>>) {
        FAIL.with(|f| *f.borrow_mut() = decide);
    }

    pub(super) fn fail_here(point: FailPoint) -> bool {
        FAIL.with(|f| f.borrow_mut().as_mut().is_some_and(|decide| decide(point)))
    }
}

#[cfg(feature = "sim")]
pub use switches::{plant, seed_random, set_fail_points};

/// Fills `buf` from the simulation's seeded generator, if one is set on this thread; returns
/// whether it did (always `false` without the `sim` feature: product builds use the OS).
#[inline]
pub fn seeded_random(buf: &mut [u8]) -> bool {
    #[cfg(feature = "sim")]
    return switches::seeded_random(buf);
    #[cfg(not(feature = "sim"))]
    {
        let _ = buf;
        false
    }
}

/// Whether `bug` is planted on this thread (always `false` without the `sim` feature).
#[inline]
pub fn planted(bug: PlantedBug) -> bool {
    #[cfg(feature = "sim")]
    return switches::planted(bug);
    #[cfg(not(feature = "sim"))]
    {
        let _ = bug;
        false
    }
}

/// Whether the code should fail at `point` now (always `false` without the `sim` feature).
#[inline]
pub fn fail_here(point: FailPoint) -> bool {
    #[cfg(feature = "sim")]
    return switches::fail_here(point);
    #[cfg(not(feature = "sim"))]
    {
        let _ = point;
        false
    }
}
