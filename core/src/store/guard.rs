//! The unlock guard: wrong-passphrase back-off and, past a limit, destruction of the keys.
//!
//! An attempt is counted (and committed with `synchronous=FULL`) *before* the key derivation
//! runs, so killing the app after a wrong guess does not give a free retry. A successful unlock
//! resets the count. The back-off uses the wall clock, which a thief can wind; the attempt limit
//! does not, and it is the real protection against guessing through the app (`docs/security.md`).

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// How many wrong attempts are allowed and how the delay between them grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// After this many consecutive wrong attempts the wrapped keys are destroyed.
    pub max_attempts: u32,
    /// Attempts allowed without any delay.
    pub free_attempts: u32,
    /// The delay after the first attempt past the free ones; doubles with each further failure.
    pub base_delay_ms: u64,
    /// The longest delay.
    pub max_delay_ms: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_attempts: 10,
            free_attempts: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 15 * 60_000,
        }
    }
}

impl LockoutPolicy {
    /// The wait before the next attempt after `failed` consecutive failures.
    pub fn delay_after(&self, failed: u32) -> u64 {
        if failed < self.free_attempts || self.base_delay_ms == 0 {
            return 0;
        }
        let doublings = (failed - self.free_attempts).min(40);
        self.base_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_delay_ms)
    }

    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.max_attempts == 0 || self.free_attempts > self.max_attempts {
            return Err(StoreError::InvalidOption(
                "lockout: need 1 ≤ max_attempts and free_attempts ≤ max_attempts",
            ));
        }
        Ok(())
    }
}

/// The guard's state as stored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardState {
    pub next_attempt_at_ms: u64,
    pub policy: LockoutPolicy,
    pub destroyed: bool,
}

pub(crate) fn read(conn: &Connection) -> Result<GuardState, StoreError> {
    let row = conn
        .query_row(
            "SELECT next_attempt_at_ms, max_attempts, free_attempts, base_delay_ms,
                    max_delay_ms, destroyed_at_ms IS NOT NULL FROM unlock_guard WHERE id = 1",
            [],
            |r| {
                Ok(GuardState {
                    next_attempt_at_ms: r.get::<_, i64>(0)? as u64,
                    policy: LockoutPolicy {
                        max_attempts: r.get(1)?,
                        free_attempts: r.get(2)?,
                        base_delay_ms: r.get::<_, i64>(3)? as u64,
                        max_delay_ms: r.get::<_, i64>(4)? as u64,
                    },
                    destroyed: r.get(5)?,
                })
            },
        )
        .optional()?;
    row.ok_or(StoreError::NotAStore)
}

pub(crate) fn set_policy(conn: &Connection, p: &LockoutPolicy) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE unlock_guard SET max_attempts = ?1, free_attempts = ?2, base_delay_ms = ?3, max_delay_ms = ?4 WHERE id = 1",
        params![p.max_attempts, p.free_attempts, p.base_delay_ms as i64, p.max_delay_ms as i64],
    )?;
    Ok(())
}

/// Counts one attempt (atomically, `failed_attempts + 1` in SQL, so parallel attempts from
/// several processes each count) and sets the time before which the next one is refused.
/// Returns the new count. Call inside an IMMEDIATE transaction.
pub(crate) fn count_attempt(
    conn: &Connection,
    now_ms: u64,
    policy: &LockoutPolicy,
) -> Result<u32, StoreError> {
    let failed: u32 = conn.query_row(
        "UPDATE unlock_guard SET failed_attempts = failed_attempts + 1 WHERE id = 1 RETURNING failed_attempts",
        [],
        |r| r.get(0),
    )?;
    // A free attempt sets no wait (not even "now": another process's clock may be behind).
    let delay = policy.delay_after(failed);
    if delay > 0 {
        conn.execute(
            "UPDATE unlock_guard SET next_attempt_at_ms = ?1 WHERE id = 1",
            [(now_ms + delay) as i64],
        )?;
    }
    Ok(failed)
}

pub(crate) fn reset(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE unlock_guard SET failed_attempts = 0, next_attempt_at_ms = 0 WHERE id = 1",
        [],
    )?;
    Ok(())
}

pub(crate) fn mark_destroyed(conn: &Connection, now_ms: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE unlock_guard SET destroyed_at_ms = ?1 WHERE id = 1",
        [now_ms as i64],
    )?;
    Ok(())
}
