//! Half-typed forms, kept so that nothing a worker typed is lost to a tap on another menu item
//! or to the idle lock (which drops every screen). A draft is sealed like a record: under the
//! citizen's key when the form is about a citizen (erasing the citizen erases the draft), else
//! under the general key, bound to its form name. One draft per form name; saving the form
//! deletes it.

use super::keys::key_id_from;
use super::{Store, StoreError};
use crate::crypto::{Binding, KeyId};
use crate::domain::{CitizenId, KeyScope};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

/// The largest draft kept (a long visit note and its fields fit many times over).
pub const MAX_DRAFT_BYTES: usize = 256 * 1024;

fn binding(key_id: KeyId, form: &str) -> Binding<'_> {
    Binding {
        key_id,
        table: "drafts",
        record: form.as_bytes(),
        field: "form",
    }
}

/// A draft as kept: its content and when it was last written (device clock, ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub content: Vec<u8>,
    pub at_ms: u64,
}

impl Store {
    /// Keeps `content` as the draft of `form`, replacing any earlier one.
    pub fn save_draft(
        &mut self,
        form: &str,
        citizen: Option<CitizenId>,
        content: &[u8],
    ) -> Result<(), StoreError> {
        if content.len() > MAX_DRAFT_BYTES || form.is_empty() || form.len() > 200 {
            return Err(StoreError::InvalidValue {
                field: "draft".into(),
            });
        }
        let now = self.wall.now_ms() as i64;
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let scope = citizen.map_or(KeyScope::General, KeyScope::Citizen);
        let (key_id, key) = keys.for_scope(&tx, &mut self.nonces, scope)?;
        let sealed = key.seal(&mut self.nonces, &binding(key_id, form), content)?;
        tx.execute(
            "INSERT INTO drafts (form, key_id, sealed, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (form) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed,
                 at_ms = excluded.at_ms",
            params![form, &key_id.0[..], sealed, now],
        )?;
        tx.commit()?;
        keys.commit_new_keys();
        Ok(())
    }

    /// The draft of `form`, if one is kept (and its key still exists).
    pub fn draft(&mut self, form: &str) -> Result<Option<Draft>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let row: Option<(Vec<u8>, Vec<u8>, i64)> = self
            .conn
            .query_row(
                "SELECT key_id, sealed, at_ms FROM drafts WHERE form = ?1",
                [form],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((key_id, sealed, at_ms)) = row else {
            return Ok(None);
        };
        let key_id = key_id_from(&key_id)?;
        let key = match keys.by_id(&self.conn, key_id) {
            Ok(key) => key,
            Err(StoreError::KeyDestroyed) => return Ok(None),
            Err(e) => return Err(e),
        };
        let content = key.open(&binding(key_id, form), &sealed)?;
        Ok(Some(Draft {
            content,
            at_ms: at_ms as u64,
        }))
    }

    /// Deletes the draft of `form` (saved, or discarded by the worker).
    pub fn discard_draft(&mut self, form: &str) -> Result<(), StoreError> {
        self.keys.as_ref().ok_or(StoreError::Locked)?;
        self.conn
            .execute("DELETE FROM drafts WHERE form = ?1", [form])?;
        Ok(())
    }
}
