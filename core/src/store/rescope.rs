//! Following a change of the worker's scope (role, team, sites, supervised teams) without
//! losing work (issue 16; the server's side is `sync-server/src/epochs.rs`).
//!
//! The device learns of the change from the profile a sync answer carries (its `scope_epoch`
//! moved). Then, in the same sync:
//! 1. **Draining**: the outbox is pushed as usual. The server judges the edits made before the
//!    device learned under the old scope: each is accepted or set aside (and shown), never
//!    dropped.
//! 2. **Re-pulling**: once the outbox is empty, every record is deleted and the cursor goes back
//!    to 0; the pull asks for everything in the new scope (`resync`: the device's own earlier
//!    mutations too). Keys stay, so refused edits and drafts of citizens still in scope keep
//!    opening. A pull broken off by the network resumes from its cursor at the next sync.
//! 3. **Sweeping**: when the pull is complete, every key that no longer opens a record, a
//!    pending or a refused edit is destroyed, with the drafts under it. What left the scope is
//!    then unreadable wherever a copy of its ciphertext lingers; the WAL is truncated.
//!
//! Records are deleted and pulled again rather than diffed because a scope change can narrow
//! the *fields* a role is served (a caretaker is not served CPR numbers), which merging a pull
//! into the old records would keep.

use super::{Store, StoreError, keys};
use crate::protocol::Profile;
use rusqlite::TransactionBehavior;

/// Where the device is in following a scope change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rescope {
    /// No change to follow.
    Idle,
    /// Pushing what was pending when the change was learned.
    Draining,
    /// Pulling the new scope from the start.
    Repulling,
}

impl Store {
    /// Where the device is in following a scope change.
    pub fn rescope_state(&self) -> Result<Rescope, StoreError> {
        let phase: i64 =
            self.conn
                .query_row("SELECT rescope FROM sync_state WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(match phase {
            1 => Rescope::Draining,
            2 => Rescope::Repulling,
            _ => Rescope::Idle,
        })
    }

    fn set_rescope(&self, phase: i64) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE sync_state SET rescope = ?1 WHERE id = 1", [phase])?;
        Ok(())
    }

    /// Keeps a profile from a sync answer; if its scope epoch differs from the one held, the
    /// device starts following the change (draining first). Returns whether it did.
    pub fn take_profile(&mut self, profile: &Profile) -> Result<bool, StoreError> {
        let held = self.profile()?;
        self.set_profile(profile)?;
        let changed = held.is_some_and(|h| h.scope_epoch != profile.scope_epoch);
        if changed {
            self.set_rescope(1)?;
        }
        Ok(changed)
    }

    /// Starts following a scope change the server announced (`SyncResponse::rescope`), if not
    /// already following one.
    pub fn begin_rescope(&mut self) -> Result<(), StoreError> {
        if self.rescope_state()? == Rescope::Idle {
            self.set_rescope(1)?;
        }
        Ok(())
    }

    /// Moves the change along once the outbox is empty: deletes every record and rewinds the
    /// cursor, so the next pulls bring the new scope. Returns whether it started.
    pub fn start_repull(&mut self) -> Result<bool, StoreError> {
        if self.rescope_state()? != Rescope::Draining || self.outbox_len()? > 0 {
            return Ok(false);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM records", [])?;
        tx.execute(
            "UPDATE sync_state SET cursor = 0, rescope = 2 WHERE id = 1",
            [],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// After the new scope's pull is complete: destroys every key that opens nothing the device
    /// still holds (with the drafts sealed under it, and the keys linked to it) and truncates the
    /// WAL. Returns how many keys went.
    pub fn finish_rescope(&mut self) -> Result<usize, StoreError> {
        if self.rescope_state()? != Rescope::Repulling {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let unused: Vec<Vec<u8>> = tx
            .prepare(
                "SELECT key_id FROM data_keys WHERE scope != 'general'
                   AND key_id NOT IN (SELECT key_id FROM records)
                   AND key_id NOT IN (SELECT key_id FROM outbox)
                   AND key_id NOT IN (SELECT key_id FROM set_aside)",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let unused = unused
            .iter()
            .map(|k| keys::key_id_from(k))
            .collect::<Result<Vec<_>, _>>()?;
        // With them go the keys linked to them: a site-log entry naming a resident who left.
        let destroyed = keys::destroy_in(&tx, &unused, keys::Leaving::LeftScope)?;
        tx.execute("UPDATE sync_state SET rescope = 0 WHERE id = 1", [])?;
        tx.commit()?;
        if let Some(ring) = self.keys.as_mut() {
            ring.forget_all();
        }
        self.checkpoint()?;
        Ok(destroyed.len())
    }
}
