//! Data keys: one per citizen and one general key, each wrapped by the master key.
//!
//! The [`KeyRing`] exists only while the store is unlocked; dropping it (lock) zeroizes the master
//! key and every cached data key. A data key's wrapping is bound to its id and scope, so a
//! wrapped key copied to another citizen's row does not open.

use super::StoreError;
use crate::crypto::{Binding, KeyId, NoncePool, SecretKey, random};
use crate::domain::{CitizenId, KeyScope};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::Arc;

/// Unlocked key material: the master key and data keys unwrapped so far.
pub(crate) struct KeyRing {
    master: SecretKey,
    by_id: HashMap<KeyId, Arc<SecretKey>>,
    by_scope: HashMap<KeyScope, KeyId>,
    /// Keys created in the current, not yet committed transaction. If it rolls back they exist
    /// nowhere on disk and must leave the cache, or later saves would seal data under a key
    /// that is lost at the next lock.
    uncommitted: Vec<(KeyScope, KeyId)>,
}

pub(crate) fn scope_name(scope: KeyScope) -> String {
    match scope {
        KeyScope::General => "general".to_owned(),
        KeyScope::Citizen(id) => format!("citizen:{id}"),
        KeyScope::Site(id) => format!("site:{id}"),
        KeyScope::SiteEntry(id) => format!("entry:{id}"),
    }
}

fn wrap_binding<'a>(key_id: KeyId, scope: &'a str) -> Binding<'a> {
    Binding {
        key_id,
        table: "data_keys",
        record: scope.as_bytes(),
        field: "wrapped",
    }
}

impl KeyRing {
    pub(crate) fn new(master: SecretKey) -> KeyRing {
        KeyRing {
            master,
            by_id: HashMap::new(),
            by_scope: HashMap::new(),
            uncommitted: Vec::new(),
        }
    }

    /// The transaction that created keys committed: they are real now.
    pub(crate) fn commit_new_keys(&mut self) {
        self.uncommitted.clear();
    }

    /// The transaction that created keys rolled back: forget them.
    pub(crate) fn discard_new_keys(&mut self) {
        for (scope, id) in self.uncommitted.drain(..) {
            self.by_scope.remove(&scope);
            self.by_id.remove(&id);
        }
    }

    /// The key for `scope`, created (and written inside the caller's transaction) if missing.
    pub(crate) fn for_scope(
        &mut self,
        conn: &Connection,
        nonces: &mut NoncePool,
        scope: KeyScope,
    ) -> Result<(KeyId, Arc<SecretKey>), StoreError> {
        if let Some(id) = self.by_scope.get(&scope)
            && let Some(key) = self.by_id.get(id)
        {
            return Ok((*id, key.clone()));
        }
        let name = scope_name(scope);
        let row: Option<(Vec<u8>, Vec<u8>)> = conn
            .query_row(
                "SELECT key_id, wrapped FROM data_keys WHERE scope = ?1",
                [&name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (key_id, key) = match row {
            Some((id, wrapped)) => {
                let key_id = key_id_from(&id)?;
                let key = self
                    .master
                    .unwrap_key(&wrap_binding(key_id, &name), &wrapped)?;
                (key_id, key)
            }
            None => {
                let key_id = KeyId(random::<16>(nonces.rng())?);
                let key = SecretKey::generate(nonces.rng())?;
                let wrapped = self
                    .master
                    .wrap(nonces, &key, &wrap_binding(key_id, &name))?;
                conn.execute(
                    "INSERT INTO data_keys (key_id, scope, wrapped) VALUES (?1, ?2, ?3)",
                    params![&key_id.0[..], &name, wrapped],
                )?;
                self.uncommitted.push((scope, key_id));
                (key_id, key)
            }
        };
        let key = Arc::new(key);
        self.by_id.insert(key_id, key.clone());
        self.by_scope.insert(scope, key_id);
        Ok((key_id, key))
    }

    /// The key with this id, unwrapped on first use.
    pub(crate) fn by_id(
        &mut self,
        conn: &Connection,
        key_id: KeyId,
    ) -> Result<Arc<SecretKey>, StoreError> {
        if let Some(key) = self.by_id.get(&key_id) {
            return Ok(key.clone());
        }
        let (scope, wrapped): (String, Vec<u8>) = conn
            .query_row(
                "SELECT scope, wrapped FROM data_keys WHERE key_id = ?1",
                [&key_id.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or(StoreError::KeyDestroyed)?;
        let key = Arc::new(
            self.master
                .unwrap_key(&wrap_binding(key_id, &scope), &wrapped)?,
        );
        self.by_id.insert(key_id, key.clone());
        Ok(key)
    }

    /// Forgets a key from the cache by id (its row is deleted by the caller).
    pub(crate) fn forget_id(&mut self, key_id: KeyId) {
        self.by_id.remove(&key_id);
        self.by_scope.retain(|_, id| *id != key_id);
    }

    /// Forgets every unwrapped data key (after an erasure that may have destroyed linked keys);
    /// they are unwrapped again on next use.
    pub(crate) fn forget_all(&mut self) {
        self.by_id.clear();
        self.by_scope.clear();
    }
}

pub(crate) fn key_id_from(bytes: &[u8]) -> Result<KeyId, StoreError> {
    bytes
        .try_into()
        .map(KeyId)
        .map_err(|_| StoreError::Corrupt("key id"))
}

/// The id of a citizen's key, if the device holds one.
pub(crate) fn citizen_key_id(
    conn: &Connection,
    citizen: CitizenId,
) -> Result<Option<KeyId>, StoreError> {
    let row: Option<Vec<u8>> = conn
        .query_row(
            "SELECT key_id FROM data_keys WHERE scope = ?1",
            [scope_name(KeyScope::Citizen(citizen))],
            |r| r.get(0),
        )
        .optional()?;
    row.map(|b| key_id_from(&b)).transpose()
}

/// Links `key_id` to `scopes`: destroying the key of any of them destroys `key_id` too
/// ([`destroy_in`]). Links are only added, never removed while the key lives.
pub(crate) fn link(
    conn: &Connection,
    key_id: KeyId,
    scopes: &[KeyScope],
) -> Result<(), StoreError> {
    if scopes.is_empty() {
        return Ok(());
    }
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO key_links (key_id, scope) VALUES (?1, ?2)")?;
    for scope in scopes {
        stmt.execute(params![&key_id.0[..], scope_name(*scope)])?;
    }
    Ok(())
}

/// How a key goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leaving {
    /// The worker erased it: everything sealed under it goes.
    Erased,
    /// What it seals left the device's scope in a sync: the worker's own work under it stays,
    /// with the key that opens it and nothing else — pending edits, still to be pushed (the
    /// server judges them: refused for good and set aside, or accepted if the record came
    /// back), and refused edits until the worker sends or discards them.
    LeftScope,
}

/// Destroys `roots` and every key linked to them, transitively, with everything sealed under
/// each: records and drafts; pending and refused edits as `leaving` says (a key that still
/// seals set-aside edits stays, opening only those). Returns the keys destroyed or emptied;
/// the caller drops them from the [`KeyRing`] ([`KeyRing::forget_all`]).
pub(crate) fn destroy_in(
    tx: &Connection,
    roots: &[KeyId],
    leaving: Leaving,
) -> Result<Vec<KeyId>, StoreError> {
    let mut queue: Vec<KeyId> = roots.to_vec();
    let mut done: Vec<KeyId> = Vec::new();
    while let Some(key_id) = queue.pop() {
        if done.contains(&key_id) {
            continue;
        }
        let scope: Option<String> = tx
            .query_row(
                "SELECT scope FROM data_keys WHERE key_id = ?1",
                [&key_id.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        let Some(scope) = scope else { continue };
        if scope == scope_name(KeyScope::General) {
            continue;
        }
        let id = &key_id.0[..];
        tx.execute("DELETE FROM records WHERE key_id = ?1", [id])?;
        tx.execute("DELETE FROM drafts WHERE key_id = ?1", [id])?;
        let unsent: i64 = tx.query_row(
            "SELECT (SELECT count(*) FROM set_aside WHERE key_id = ?1)
                  + (SELECT count(*) FROM outbox WHERE key_id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if matches!(leaving, Leaving::Erased) || unsent == 0 {
            tx.execute("DELETE FROM outbox WHERE key_id = ?1", [id])?;
            tx.execute("DELETE FROM set_aside WHERE key_id = ?1", [id])?;
            tx.execute("DELETE FROM key_links WHERE key_id = ?1", [id])?;
            tx.execute("DELETE FROM data_keys WHERE key_id = ?1", [id])?;
        }
        let linked: Vec<Vec<u8>> = tx
            .prepare_cached("SELECT key_id FROM key_links WHERE scope = ?1")?
            .query_map([&scope], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for k in linked {
            queue.push(key_id_from(&k)?);
        }
        done.push(key_id);
    }
    Ok(done)
}
