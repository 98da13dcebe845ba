//! # feltbog-core
//!
//! Everything Feltbog knows that is not a screen or an HTTP route:
//!
//! - [`access`]: roles and what each may read and write, used by the server's checks and the
//!   app's screens alike.
//! - [`domain`]: citizens, visits and contacts, tasks, sites and site-log entries, and the
//!   validation rules that keep bad input out of the store with a typed error.
//! - [`hlc`]: the hybrid logical clock that orders edits across devices. Causality beats wall
//!   clocks; the device id breaks ties, giving the total order `(hlc, device_id)`.
//! - [`protocol`]: the sync wire types (mutations of field operations). One definition, shared by
//!   the device and the server; it has no SQLite or HTTP imports so the server can depend on it
//!   with `default-features = false`.
//! - [`store`] (feature `client`): the encrypted device store. A worker's save is one SQLite
//!   transaction that writes the record's sealed fields *and* the outbox mutation for sync, so a
//!   record shown as saved is also queued for sync, or neither happened.
//! - [`crypto`] and [`keystore`] (feature `client`): key derivation, key wrapping and field
//!   sealing with associated data, and the seam for a platform keystore secret.
//!
//! - [`sim`]: planted bugs and fail points for the deterministic simulation (switchable only
//!   with the `sim` feature, which product builds never enable).
//!
//! Invariant worth repeating: no personal data is ever written to disk unsealed. Plain columns
//! hold only random ids, times, statuses and flags (see `docs/security.md`).
#![forbid(unsafe_code)]

pub mod access;
pub mod domain;
pub mod hlc;
pub mod merge;
pub mod protocol;
pub mod sim;

#[cfg(feature = "client")]
pub mod crypto;
#[cfg(feature = "client")]
pub mod keystore;
#[cfg(feature = "client")]
pub mod migration_lock;
#[cfg(feature = "client")]
pub mod store;
#[cfg(feature = "client")]
pub mod sync;

#[cfg(feature = "http")]
pub mod app;

#[cfg(feature = "dataset")]
pub mod dataset;
