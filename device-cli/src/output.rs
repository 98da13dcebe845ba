//! Text or JSON output. `list`, `search`, `show` and `outbox` print personal data (that is
//! their job); status, saved and error lines never do.

use anyhow::Result;
use feltbog_core::crypto::KdfParams;
use feltbog_core::domain::ConflictRecord;
use feltbog_core::domain::{Citizen, EntityKind, Visit};
use feltbog_core::protocol::Mutation;
use feltbog_core::store::{Saved, Store, SyncStatus, UnlockReport};
use feltbog_core::sync::SyncReport;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

pub struct Out {
    pub json: bool,
}

impl Out {
    fn print(&self, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{value}")?;
        } else {
            writeln!(stdout, "{}", text())?;
        }
        stdout.flush()?;
        Ok(())
    }

    pub fn message(&self, msg: &str) -> Result<()> {
        self.print(json!({ "message": msg }), || msg.to_owned())
    }

    pub fn created(
        &self,
        store: &Store,
        kdf: &KdfParams,
        estimate: Option<Duration>,
        took: Duration,
    ) -> Result<()> {
        let calibrated = estimate.map(|d| d.as_millis() as u64);
        self.print(
            json!({ "store": store.path(), "device_id": store.device_id(), "kdf": kdf,
                    "kdf_estimated_ms": calibrated, "create_ms": took.as_millis() as u64 }),
            || {
                format!(
                    "Created {}\n  device id: {}\n  key derivation: {kdf}{}\n  create took {} ms",
                    store.path().display(),
                    store.device_id(),
                    calibrated
                        .map(|ms| format!(" (calibrated: ≈{ms} ms per unlock on this machine)"))
                        .unwrap_or_default(),
                    took.as_millis()
                )
            },
        )
    }

    pub fn unlock(&self, r: &UnlockReport) -> Result<()> {
        let kdf = r.key_derivation.as_secs_f64() * 1000.0;
        let rest = (r.total - r.key_derivation).as_secs_f64() * 1000.0;
        self.print(
            json!({ "unlocked": true, "key_derivation_ms": kdf, "rest_ms": rest }),
            || format!("Unlocked: key derivation {kdf:.1} ms, the rest {rest:.1} ms"),
        )
    }

    pub fn status(&self, store: &Store) -> Result<()> {
        let kdf = store.kdf_params()?;
        let counts: Vec<(EntityKind, u64)> = [
            EntityKind::Citizen,
            EntityKind::Visit,
            EntityKind::Task,
            EntityKind::Site,
            EntityKind::SiteLogEntry,
        ]
        .into_iter()
        .map(|k| Ok((k, store.count(k)?)))
        .collect::<Result<_>>()?;
        let pending = store.outbox_len()?;
        let schema = store.schema_version()?;
        let sync = store.sync_status()?;
        self.print(
            json!({ "store": store.path(), "device_id": store.device_id(), "schema": schema, "kdf": kdf,
                    "outbox": pending, "enrolled": sync.enrolled, "set_aside": sync.set_aside,
                    "cursor": sync.cursor, "last_sync_ms": sync.last_success_ms, "last_error": sync.last_error, "records": counts.iter().map(|(k, n)| (k.as_str(), n)).collect::<std::collections::BTreeMap<_, _>>() }),
            || {
                let mut s = format!(
                    "Store {}\n  device id: {}\n  schema version: {schema}\n  key derivation: {kdf}\n  waiting for sync: {pending}",
                    store.path().display(),
                    store.device_id()
                );
                s.push_str(&format!(
                    "\n  enrolled: {}\n  set aside: {}\n  last sync: {}{}",
                    if sync.enrolled { "yes" } else { "no" },
                    sync.set_aside,
                    sync.last_success_ms
                        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "never".into()),
                    sync.last_error.as_ref().map(|e| format!(" (last attempt: {e})")).unwrap_or_default()
                ));
                for (k, n) in &counts {
                    s.push_str(&format!("\n  {k}: {n}"));
                }
                s
            },
        )
    }

    pub fn saved(&self, kind: EntityKind, id: Uuid, saved: Saved) -> Result<()> {
        let seq = match saved {
            Saved::Written { device_seq } => Some(device_seq),
            Saved::Unchanged => None,
        };
        self.print(
            json!({ "saved": kind, "id": id, "device_seq": seq }),
            || match seq {
                Some(seq) => format!("saved {kind} {id} seq={seq}"),
                None => format!("unchanged {kind} {id}"),
            },
        )
    }

    pub fn citizens(&self, list: &[Citizen]) -> Result<()> {
        self.print(serde_json::to_value(list)?, || {
            let mut s = format!("{} citizens", list.len());
            for c in list {
                s.push_str(&format!(
                    "\n  {}  {}{}",
                    c.id,
                    c.display_name(),
                    if c.archived { " (archived)" } else { "" }
                ));
            }
            s
        })
    }

    /// One record in full (personal data: only `show` commands call this).
    pub fn record<T: serde::Serialize>(&self, record: &T) -> Result<()> {
        let value = serde_json::to_value(record)?;
        let pretty = serde_json::to_string_pretty(&value)?;
        self.print(value, || pretty)
    }

    pub fn visits(&self, list: &[Visit]) -> Result<()> {
        self.print(serde_json::to_value(list)?, || {
            let mut s = format!("{} visits", list.len());
            for v in list {
                let who = match (&v.citizen_id, &v.anonymous) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(a)) => format!("anonymous ×{}", a.count),
                    _ => String::new(),
                };
                s.push_str(&format!(
                    "\n  {}  {}  {:?}  {who}",
                    v.id,
                    v.started_at.format("%Y-%m-%d %H:%M"),
                    v.kind
                ));
            }
            s
        })
    }

    pub fn sync_report(&self, r: &SyncReport, status: &SyncStatus) -> Result<()> {
        self.print(
            json!({ "requests": r.requests, "pushed": r.pushed, "acked": r.acked, "set_aside": r.set_aside,
                    "restamped": r.restamped, "pulled": r.pulled, "bytes_sent": r.bytes.sent,
                    "bytes_received": r.bytes.received, "pending": status.pending, "cursor": status.cursor }),
            || {
                format!(
                    "Synced in {} requests: pushed {}, acknowledged {}, set aside {}, re-stamped {}, pulled {} ({} B sent, {} B received). Waiting: {}.",
                    r.requests, r.pushed, r.acked, r.set_aside, r.restamped, r.pulled, r.bytes.sent, r.bytes.received, status.pending
                )
            },
        )
    }

    pub fn conflicts(&self, list: &[ConflictRecord]) -> Result<()> {
        self.print(serde_json::to_value(list)?, || {
            let mut s = format!("{} conflicts", list.len());
            for c in list {
                s.push_str(&format!(
                    "\n  {}  {:?} {}.{} of {}  ({:?})",
                    c.id.0, c.kind, c.entity, c.field, c.record_id, c.status
                ));
            }
            s
        })
    }

    pub fn outbox(&self, list: &[Mutation]) -> Result<()> {
        self.print(serde_json::to_value(list)?, || {
            let mut s = format!("{} mutations waiting for sync", list.len());
            for m in list {
                let fields: Vec<String> = m
                    .ops
                    .iter()
                    .map(|op| format!("{}.{}", op.entity, op.field))
                    .collect();
                s.push_str(&format!(
                    "\n  seq {}  {} ops: {}",
                    m.device_seq,
                    m.ops.len(),
                    fields.join(", ")
                ));
            }
            s
        })
    }
}
