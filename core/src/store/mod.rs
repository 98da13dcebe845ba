//! The encrypted device store (DESIGN §4).
//!
//! One SQLite file per device, in WAL mode with `synchronous=FULL`: when [`Store::save`] returns,
//! the record *and* its outbox mutation are on disk, together or not at all. That is the promise
//! behind the word "saved" in the UI.
//!
//! Life cycle: [`Store::create`] (returns unlocked) or [`Store::open`] (locked) →
//! [`Store::unlock`] → work → [`Store::lock`] (keys zeroized). Everything that reads or writes
//! citizen data needs the store unlocked and otherwise fails with [`StoreError::Locked`].
//!
//! Invariants a reader could break:
//! - Never write a field value, a mutation or a key outside [`crate::crypto::SecretKey::seal`]
//!   with the binding of the place it is written to.
//! - The `device_seq` and the HLC in the header move in the same transaction as the outbox row
//!   that uses them; otherwise a crash could reuse a sequence number.
//! - The plain columns of `records` hold only what [`crate::domain::Projection`] allows.

mod drafts;
mod guard;
mod keys;
mod outbox;
mod records;
mod remote;
mod rescope;
pub mod schema;
mod set_aside;
mod sync_state;

pub use drafts::{Draft, MAX_DRAFT_BYTES};
pub use rescope::Rescope;
pub use set_aside::SetAsideEdit;
pub use sync_state::{Applied, Enrolment, Resolution, SyncStatus};

pub use guard::LockoutPolicy;

/// Deletes a store's files: the database and SQLite's WAL, shared-memory and journal files
/// beside it (missing ones are fine). Call [`Store::destroy`] first when the store holds keys:
/// deleting alone leaves the content readable on the disk until it is overwritten.
pub fn remove_files(path: &std::path::Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm", "-journal", ""] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

use crate::crypto::{
    Binding, CryptoError, KdfParams, KeyId, NoncePool, Passphrase, SecretKey, random,
};
use crate::domain::{Citizen, CitizenId, EntityKind, Record, SiteId, ValidationError};
use crate::hlc::{
    ClockError, DEFAULT_MAX_DRIFT_MS, DeviceId, Hlc, HlcClock, Stamp, SystemClock, WallClock,
};
use crate::keystore::{KeystoreError, NoPlatformSecret, PlatformSecret};
use crate::protocol::Mutation;
use keys::KeyRing;
use ring::rand::SystemRandom;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Everything that can go wrong in the store. Messages never contain personal data or keys.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is locked")]
    Locked,
    #[error(
        "wrong passphrase or PIN ({attempts_left} attempts left before the keys are destroyed)"
    )]
    WrongPassphrase { attempts_left: u32 },
    #[error("too many wrong attempts: wait {} s before trying again", retry_after_ms.div_ceil(1000))]
    BackOff { retry_after_ms: u64 },
    #[error(
        "this store's keys were destroyed after too many wrong passphrase attempts; it can never be \
         opened again. Enrol the device again to restore synced data from the server"
    )]
    Destroyed,
    #[error("no store at this path")]
    NotFound,
    #[error("a store already exists at this path")]
    AlreadyExists,
    #[error("this file is not a Feltbog store")]
    NotAStore,
    #[error(
        "the store has schema version {found}, newer than this app supports ({supported}); update the app"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("this record's key was destroyed (the citizen was erased from this device)")]
    KeyDestroyed,
    #[error("{entity} not found")]
    RecordNotFound { entity: EntityKind },
    #[error("that refused edit is no longer on this device")]
    SetAsideNotFound,
    #[error("invalid record: {0}")]
    Validation(#[from] ValidationError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("keystore: {0}")]
    Keystore(#[from] KeystoreError),
    #[error("clock: {0}")]
    Clock(#[from] ClockError),
    #[error("the store is busy in another process; close it and try again")]
    CheckpointBusy,
    #[error("the value given for {field} does not fit that field")]
    InvalidValue { field: String },
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
    #[error("stored data is corrupt ({0})")]
    Corrupt(&'static str),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
}

/// How a new store is protected.
#[derive(Clone)]
pub struct CreateOptions {
    /// Argon2id cost; use [`KdfParams::calibrate`] on the device itself.
    pub kdf: KdfParams,
    pub lockout: LockoutPolicy,
    pub platform: Arc<dyn PlatformSecret>,
    /// The device id; `None` (always, in the app) draws a random one. The deterministic
    /// simulation names its devices so a seed replays exactly.
    pub device_id: Option<DeviceId>,
}

impl CreateOptions {
    /// Options with the given KDF cost, the default lockout policy and no platform secret.
    pub fn with_kdf(kdf: KdfParams) -> CreateOptions {
        CreateOptions {
            kdf,
            lockout: LockoutPolicy::default(),
            platform: Arc::new(NoPlatformSecret),
            device_id: None,
        }
    }
}

/// How long an unlock took, split into key derivation and everything else.
#[derive(Clone, Copy, Debug)]
pub struct UnlockReport {
    pub key_derivation: Duration,
    pub total: Duration,
}

/// What [`Store::save`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written, with this outbox sequence number.
    Written { device_seq: u64 },
    /// Nothing differed from the stored record; nothing written.
    Unchanged,
}

/// Which records to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery {
    pub citizen: Option<CitizenId>,
    pub site: Option<SiteId>,
    pub include_archived: bool,
    pub limit: Option<usize>,
}

/// The encrypted device store. One per file; not shared between threads.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    device_id: DeviceId,
    nonces: NoncePool,
    platform: Arc<dyn PlatformSecret>,
    clock: HlcClock,
    /// Server time minus this device's clock, learnt when the server refused a stamp as too far
    /// ahead; added to the system clock for every new stamp.
    clock_offset_ms: i64,
    /// The physical clock behind the HLC and the unlock guard's waits.
    wall: Arc<dyn WallClock>,
    keys: Option<KeyRing>,
}

fn master_binding(device: &DeviceId) -> Binding<'_> {
    Binding {
        key_id: KeyId([0; 16]),
        table: "header",
        record: device.0.as_bytes(),
        field: "master_wrapped",
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidOption(
            "the file system does not support WAL",
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;",
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

impl Store {
    /// Creates a new store at `path`, protected by `passphrase`, and returns it unlocked.
    pub fn create(
        path: &Path,
        passphrase: &Passphrase,
        options: &CreateOptions,
    ) -> Result<Store, StoreError> {
        Self::create_at_schema(path, passphrase, options, schema::LATEST)
    }

    /// Creates a store with the schema as it was at `version`. Only for migration tests: shows
    /// that a store made by an older build upgrades under this one.
    #[doc(hidden)]
    pub fn create_at_schema(
        path: &Path,
        passphrase: &Passphrase,
        options: &CreateOptions,
        version: u32,
    ) -> Result<Store, StoreError> {
        options.kdf.check()?;
        options.lockout.check()?;
        if path.exists() {
            return Err(StoreError::AlreadyExists);
        }
        // Everything that can fail without the file happens first; a half-made file would
        // then answer "not a store" to open and "already exists" to create.
        let rng = SystemRandom::new();
        let device_id = match options.device_id {
            Some(id) => id,
            None => DeviceId(Uuid::from_bytes(random::<16>(&rng)?)),
        };
        let salt = random::<16>(&rng)?;
        let secret = options.platform.secret()?;
        let kek = SecretKey::derive_kek(
            passphrase,
            &salt,
            &options.kdf,
            secret.as_deref().map(|s| s.as_slice()),
        )?;
        let master = SecretKey::generate(&rng)?;
        let mut nonces = NoncePool::new(rng);
        let wrapped = kek.wrap(&mut nonces, &master, &master_binding(&device_id))?;
        let kdf_json =
            serde_json::to_string(&options.kdf).map_err(|_| StoreError::Corrupt("kdf params"))?;

        let write = || -> Result<Connection, StoreError> {
            let mut conn = Connection::open(path)?;
            restrict_permissions(path)?;
            conn.pragma_update(None, "application_id", schema::APPLICATION_ID)?;
            configure(&conn)?;
            schema::migrate_to(&mut conn, version)?;
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO header (id, device_id, kdf_salt, kdf_params, keystore, master_wrapped)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![
                    &device_id.0.as_bytes()[..],
                    &salt[..],
                    kdf_json,
                    options.platform.name(),
                    wrapped
                ],
            )?;
            if version >= 2 {
                guard::set_policy(&tx, &options.lockout)?;
            }
            tx.commit()?;
            Ok(conn)
        };
        let conn = match write() {
            Ok(conn) => conn,
            Err(e) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
                return Err(e);
            }
        };
        Ok(Store {
            conn,
            path: path.to_owned(),
            device_id,
            nonces,
            platform: options.platform.clone(),
            clock: HlcClock::new(Hlc::ZERO, DEFAULT_MAX_DRIFT_MS),
            clock_offset_ms: 0,
            wall: Arc::new(SystemClock),
            keys: Some(KeyRing::new(master)),
        })
    }

    /// Opens an existing store, locked, migrating its schema to the latest version.
    pub fn open(path: &Path, platform: Arc<dyn PlatformSecret>) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotFound);
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|_| StoreError::NotAStore)?;
        if app_id != schema::APPLICATION_ID {
            return Err(StoreError::NotAStore);
        }
        configure(&conn)?;
        schema::migrate_to(&mut conn, schema::LATEST)?;
        let (device, hlc_last): (Vec<u8>, i64) = conn
            .query_row(
                "SELECT device_id, hlc_last FROM header WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|_| StoreError::NotAStore)?;
        let device_id =
            DeviceId(Uuid::from_slice(&device).map_err(|_| StoreError::Corrupt("device id"))?);
        let clock_offset_ms: i64 = conn.query_row(
            "SELECT clock_offset_ms FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            device_id,
            nonces: NoncePool::new(SystemRandom::new()),
            platform,
            clock: HlcClock::new(Hlc::from_u64(hlc_last as u64), DEFAULT_MAX_DRIFT_MS),
            clock_offset_ms,
            wall: Arc::new(SystemClock),
            keys: None,
        })
    }

    /// Unlocks with a passphrase or PIN. Wrong attempts back off and, past the policy's limit,
    /// destroy the wrapped keys for good ([`StoreError::Destroyed`]). On an unlocked store the
    /// passphrase is still checked (and counted), so "confirm your PIN" flows can rely on it.
    pub fn unlock(&mut self, passphrase: &Passphrase) -> Result<UnlockReport, StoreError> {
        let started = Instant::now();
        let (master, key_derivation) = self.verify_passphrase(passphrase)?;
        self.keys = Some(KeyRing::new(master));
        Ok(UnlockReport {
            key_derivation,
            total: started.elapsed(),
        })
    }

    /// Checks a passphrase against the wrapped master key under the unlock guard.
    ///
    /// Order matters: every step that can fail for reasons other than the passphrase (reading
    /// the header, the platform keystore) runs before the attempt is counted, so a keystore
    /// hiccup never burns an attempt. The attempt is then counted atomically and committed
    /// *before* the key derivation, so killing the app mid-check gives no free guess, and
    /// parallel attempts from several processes each count.
    fn verify_passphrase(
        &mut self,
        passphrase: &Passphrase,
    ) -> Result<(SecretKey, Duration), StoreError> {
        let (salt, kdf_json, wrapped): (Vec<u8>, String, Option<Vec<u8>>) = self.conn.query_row(
            "SELECT kdf_salt, kdf_params, master_wrapped FROM header WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let salt: [u8; 16] = salt
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("salt"))?;
        let params: KdfParams =
            serde_json::from_str(&kdf_json).map_err(|_| StoreError::Corrupt("kdf params"))?;
        let secret = self.platform.secret()?;

        let (failed, policy, now) = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The time is read under the lock: read before it, a parallel attempt that counted
            // meanwhile could stand "in the future" of this one and refuse it a spurious wait.
            let now = self.wall.now_ms();
            let state = guard::read(&tx)?;
            if state.destroyed || wrapped.is_none() {
                return Err(StoreError::Destroyed);
            }
            // A clock that was wrong when the wait was set must not lock the user out for years.
            let wait_until = state
                .next_attempt_at_ms
                .min(now + state.policy.max_delay_ms);
            if now < wait_until {
                return Err(StoreError::BackOff {
                    retry_after_ms: wait_until - now,
                });
            }
            let failed = guard::count_attempt(&tx, now, &state.policy)?;
            tx.commit()?;
            (failed, state.policy, now)
        };
        let wrapped = wrapped.ok_or(StoreError::Destroyed)?;
        let kdf_started = Instant::now();
        let kek = SecretKey::derive_kek(
            passphrase,
            &salt,
            &params,
            secret.as_deref().map(|s| s.as_slice()),
        )?;
        let key_derivation = kdf_started.elapsed();
        match kek.unwrap_key(&master_binding(&self.device_id), &wrapped) {
            Ok(master) => {
                guard::reset(&self.conn)?;
                Ok((master, key_derivation))
            }
            Err(CryptoError::Open) if failed >= policy.max_attempts => {
                self.destroy_keys(now)?;
                Err(StoreError::Destroyed)
            }
            Err(CryptoError::Open) => Err(StoreError::WrongPassphrase {
                attempts_left: policy.max_attempts - failed,
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// Drops all key material (zeroized). Reads and writes fail with [`StoreError::Locked`]
    /// until the next [`Store::unlock`].
    pub fn lock(&mut self) {
        self.keys = None;
    }

    /// Replaces the physical clock (the system clock by default). The deterministic simulation
    /// gives each device a clock it can skew and jump.
    pub fn set_wall_clock(&mut self, wall: Arc<dyn WallClock>) {
        self.wall = wall;
    }

    /// Whether the keys were destroyed after too many wrong attempts (readable while locked):
    /// such a store can only be wiped and enrolled again.
    pub fn keys_destroyed(&self) -> Result<bool, StoreError> {
        let wrapped: Option<Vec<u8>> =
            self.conn
                .query_row("SELECT master_wrapped FROM header WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(guard::read(&self.conn)?.destroyed || wrapped.is_none())
    }

    /// Whether keys are in memory.
    pub fn is_unlocked(&self) -> bool {
        self.keys.is_some()
    }

    /// This device's id (random, made at create).
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Argon2id cost this store was created with.
    pub fn kdf_params(&self) -> Result<KdfParams, StoreError> {
        let json: String =
            self.conn
                .query_row("SELECT kdf_params FROM header WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
        serde_json::from_str(&json).map_err(|_| StoreError::Corrupt("kdf params"))
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }

    /// `PRAGMA integrity_check`: `"ok"` for a healthy file.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Re-wraps the master key under a new passphrase (new salt). Nothing is re-encrypted.
    /// The current passphrase is checked under the unlock guard like any unlock attempt.
    pub fn change_passphrase(
        &mut self,
        current: &Passphrase,
        new: &Passphrase,
    ) -> Result<(), StoreError> {
        if self.keys.is_none() {
            return Err(StoreError::Locked);
        }
        let (master, _) = self.verify_passphrase(current)?;
        let params = self.kdf_params()?;
        let secret = self.platform.secret()?;
        let new_salt = random::<16>(self.nonces.rng())?;
        let new_kek = SecretKey::derive_kek(
            new,
            &new_salt,
            &params,
            secret.as_deref().map(|s| s.as_slice()),
        )?;
        let rewrapped =
            new_kek.wrap(&mut self.nonces, &master, &master_binding(&self.device_id))?;
        self.conn.execute(
            "UPDATE header SET kdf_salt = ?1, master_wrapped = ?2 WHERE id = 1",
            params![&new_salt[..], rewrapped],
        )?;
        Ok(())
    }

    /// Saves a record (create or update) and queues its changed fields as one outbox mutation,
    /// in one durable transaction. Validates first.
    pub fn save<R: Record>(&mut self, record: &R) -> Result<Saved, StoreError> {
        Ok(self.save_all(std::slice::from_ref(record))?[0])
    }

    /// Saves several records in one durable transaction — all or none — each with its own outbox
    /// mutation. Every record is validated before anything is written.
    pub fn save_all<R: Record>(&mut self, records: &[R]) -> Result<Vec<Saved>, StoreError> {
        for record in records {
            record.validate()?;
        }
        self.in_save_tx(|save, keys, nonces| {
            records.iter().map(|r| save.save(keys, nonces, r)).collect()
        })
    }

    /// Saves two records of different kinds in one durable transaction — both or neither —
    /// e.g. a visit and the follow-up task it points at. Both are validated first.
    pub fn save_pair<A: Record, B: Record>(
        &mut self,
        first: &A,
        second: &B,
    ) -> Result<(Saved, Saved), StoreError> {
        first.validate()?;
        second.validate()?;
        self.in_save_tx(|save, keys, nonces| {
            Ok((
                save.save(keys, nonces, first)?,
                save.save(keys, nonces, second)?,
            ))
        })
    }

    /// Saves three records in one durable transaction — all or none — in the order given: a
    /// follow-up task, the visit that points at it, and the citizen whose followed referrals
    /// point at the visit (the server resolves references in that order). All are validated
    /// first.
    pub fn save_trio<A: Record, B: Record, C: Record>(
        &mut self,
        first: &A,
        second: &B,
        third: &C,
    ) -> Result<(Saved, Saved, Saved), StoreError> {
        first.validate()?;
        second.validate()?;
        third.validate()?;
        self.in_save_tx(|save, keys, nonces| {
            Ok((
                save.save(keys, nonces, first)?,
                save.save(keys, nonces, second)?,
                save.save(keys, nonces, third)?,
            ))
        })
    }

    fn in_save_tx<T>(
        &mut self,
        f: impl FnOnce(&mut SaveTx<'_>, &mut KeyRing, &mut NoncePool) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let now_ms = (self.wall.now_ms() as i64 + self.clock_offset_ms).max(0) as u64;
        let result = SaveTx::begin(&mut self.conn, (&self.clock, now_ms), self.device_id).and_then(
            |mut save| {
                let out = f(&mut save, keys, &mut self.nonces)?;
                Ok((out, save.commit()?))
            },
        );
        match result {
            Ok((out, clock)) => {
                keys.commit_new_keys();
                self.clock = clock;
                Ok(out)
            }
            Err(e) => {
                // Keys created in the rolled-back transaction exist nowhere on disk: forget them.
                keys.discard_new_keys();
                Err(e)
            }
        }
    }

    /// One record by id, or `None`.
    pub fn get<R: Record>(&mut self, id: Uuid) -> Result<Option<R>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let Some(row) = records::load_row(&self.conn, R::KIND, &id)? else {
            return Ok(None);
        };
        let key = keys.by_id(&self.conn, row.key_id)?;
        let cells = row.cells()?;
        if !records::is_complete(&cells) {
            return Ok(None);
        }
        records::open_record(&key, row.key_id, &id, &cells, &mut Vec::new()).map(Some)
    }

    /// Records of one kind, newest first (by start time, due date or creation).
    pub fn list<R: Record>(&mut self, query: &ListQuery) -> Result<Vec<R>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, key_id, cells FROM records
             WHERE entity = ?1 AND (?2 IS NULL OR citizen_id = ?2) AND (?3 IS NULL OR site_id = ?3)
               AND (?4 OR archived = 0)
             ORDER BY sort_key DESC LIMIT ?5",
        )?;
        let limit = query.limit.map(|l| l as i64).unwrap_or(-1);
        let mut rows = stmt.query(params![
            R::KIND.as_str(),
            query.citizen.map(|c| c.0.as_bytes().to_vec()),
            query.site.map(|s| s.0.as_bytes().to_vec()),
            query.include_archived,
            limit
        ])?;
        let mut out = Vec::new();
        let mut scratch = Vec::with_capacity(4096);
        while let Some(row) = rows.next()? {
            let blob = |i: usize| -> Result<&[u8], StoreError> {
                row.get_ref(i)?
                    .as_blob()
                    .map_err(|_| StoreError::Corrupt("record row"))
            };
            let id = Uuid::from_slice(blob(0)?).map_err(|_| StoreError::Corrupt("record id"))?;
            let key_id = keys::key_id_from(blob(1)?)?;
            let cells = records::decode_cell_refs(blob(2)?)?;
            if !records::is_complete(&cells) {
                continue;
            }
            let key = keys.by_id(&self.conn, key_id)?;
            out.push(records::open_record(
                &key,
                key_id,
                &id,
                &cells,
                &mut scratch,
            )?);
        }
        Ok(out)
    }

    /// Citizens whose alias, name, CPR, phone or tags contain `query` (case-insensitive).
    /// Runs over decrypted data in memory: there is no plaintext index to leak.
    pub fn search_citizens(
        &mut self,
        query: &str,
        include_archived: bool,
    ) -> Result<Vec<Citizen>, StoreError> {
        let needle = query.trim().to_lowercase();
        let digits: String = needle.chars().filter(char::is_ascii_digit).collect();
        let all = self.list::<Citizen>(&ListQuery {
            include_archived,
            ..ListQuery::default()
        })?;
        Ok(all
            .into_iter()
            .filter(|c| {
                let text_hit = [&c.alias, &c.full_name, &c.phone]
                    .into_iter()
                    .flatten()
                    .any(|s| s.expose().to_lowercase().contains(&needle))
                    || c.tags.iter().any(|t| t.to_lowercase().contains(&needle));
                let cpr_hit = digits.len() >= 4
                    && digits.len() == needle.chars().filter(|ch| *ch != '-' && *ch != ' ').count()
                    && c.cpr
                        .as_ref()
                        .is_some_and(|cpr| cpr.digits().contains(&digits));
                !needle.is_empty() && (text_hit || cpr_hit)
            })
            .collect())
    }

    /// Archives or un-archives a record. Archive is an ordinary field: it syncs like any edit.
    pub fn set_archived<R: Record>(
        &mut self,
        id: Uuid,
        archived: bool,
    ) -> Result<Saved, StoreError> {
        self.edit_typed::<R>(id, "archived", archived.into())
    }

    /// Erases everything about a citizen from this device by destroying their data key and
    /// deleting their records and pending mutations, then truncating the WAL so no old page
    /// survives. Returns the number of records removed.
    pub fn erase_citizen(&mut self, citizen: CitizenId) -> Result<usize, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = erase_citizen_in(&tx, citizen, keys::Leaving::Erased)?;
        tx.commit()?;
        keys.forget_all();
        self.checkpoint()?;
        Ok(removed)
    }

    /// After a sync erased citizens inside its transaction: drop their keys from memory and
    /// truncate the WAL.
    pub(crate) fn forget_erased(&mut self, erased: &[CitizenId]) -> Result<(), StoreError> {
        if erased.is_empty() {
            return Ok(());
        }
        if let Some(keys) = self.keys.as_mut() {
            keys.forget_all();
        }
        self.checkpoint()
    }

    /// Notes that the worker was shown these records (the device's access log, DESIGN §6), in
    /// one transaction. Ids only; the server works out whose data each record is.
    pub fn record_access(
        &mut self,
        shown: impl IntoIterator<Item = (EntityKind, Uuid)>,
    ) -> Result<(), StoreError> {
        let now = self.wall.now_ms() as i64;
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO access_log (at_ms, entity, record_id) VALUES (?1, ?2, ?3)",
            )?;
            for (entity, id) in shown {
                stmt.execute(rusqlite::params![now, entity.as_str(), &id.as_bytes()[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The oldest access-log events not yet acknowledged by the server, at most `max`.
    pub fn pending_access(
        &self,
        max: usize,
    ) -> Result<Vec<crate::protocol::AccessEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at_ms, entity, record_id, citizen_id FROM access_log ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([max as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Option<Vec<u8>>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, entity, record, citizen) = row?;
            let uuid =
                |b: &[u8]| Uuid::from_slice(b).map_err(|_| StoreError::Corrupt("access log"));
            out.push(crate::protocol::AccessEvent {
                seq: seq as u64,
                at_ms: at as u64,
                entity: EntityKind::parse(&entity).ok_or(StoreError::Corrupt("access log"))?,
                record_id: uuid(&record)?,
                citizen_id: citizen.as_deref().map(uuid).transpose()?.map(CitizenId),
            });
        }
        Ok(out)
    }

    /// The pending outbox, oldest first, decrypted.
    pub fn outbox(&mut self) -> Result<Vec<Mutation>, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        outbox::list(&self.conn, keys)
    }

    /// How many mutations wait for sync (works while locked: counts carry no personal data).
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        outbox::len(&self.conn)
    }

    /// Counts of stored records by kind (works while locked).
    pub fn count(&self, kind: EntityKind) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM records WHERE entity = ?1",
            [kind.as_str()],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// The sequence number of the last mutation this device saved (0 before the first). Every
    /// number up to it must reach the server or be set aside; the simulation checks that.
    pub fn last_device_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT device_seq FROM header WHERE id = 1", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Every record as stored, field by field with stamps, hidden set state left out. For the
    /// simulation's convergence check; the app reads typed records.
    #[doc(hidden)]
    pub fn replica_state(&mut self) -> Result<crate::merge::ReplicaState, StoreError> {
        let keys = self.keys.as_mut().ok_or(StoreError::Locked)?;
        let mut stmt = self
            .conn
            .prepare("SELECT entity, id, key_id, cells FROM records")?;
        let mut rows = stmt.query([])?;
        let mut out = crate::merge::ReplicaState::new();
        while let Some(row) = rows.next()? {
            let entity = EntityKind::parse(&row.get::<_, String>(0)?)
                .ok_or(StoreError::Corrupt("record kind"))?;
            let id = Uuid::from_slice(&row.get::<_, Vec<u8>>(1)?)
                .map_err(|_| StoreError::Corrupt("record id"))?;
            let key_id = keys::key_id_from(&row.get::<_, Vec<u8>>(2)?)?;
            let blob: Vec<u8> = row.get(3)?;
            let key = keys.by_id(&self.conn, key_id)?;
            let fields = records::open_all(
                &key,
                key_id,
                entity,
                &id,
                &records::decode_cell_refs(&blob)?,
            )?;
            out.insert(
                (entity, id),
                fields
                    .into_iter()
                    .filter(|(name, _)| !records::is_set_state(name))
                    .map(|(name, (stamp, value))| (name, crate::merge::Register { value, stamp }))
                    .collect(),
            );
        }
        Ok(out)
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        // Another connection reading the file can hold the checkpoint back; the erased data
        // would then linger in the WAL (sealed, its key gone — but we promise truncation).
        for attempt in 0..50 {
            let busy: i64 = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10 * (attempt + 1)));
        }
        Err(StoreError::CheckpointBusy)
    }

    /// Overwrites and deletes every wrapped key and all sealed content, then closes the store:
    /// for a wipe (revoked device, sign-out) before the files are deleted, so nothing of the
    /// keys is left in freed blocks of the flash either. Works while locked.
    pub fn destroy(mut self) -> Result<(), StoreError> {
        let now = self.wall.now_ms();
        self.destroy_keys(now)
    }

    /// After the attempt limit: overwrite and delete every wrapped key and all sealed content.
    fn destroy_keys(&mut self, now_ms: u64) -> Result<(), StoreError> {
        self.keys = None;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "UPDATE header SET master_wrapped = NULL;
             DELETE FROM records; DELETE FROM outbox; DELETE FROM set_aside; DELETE FROM drafts;
             UPDATE sync_state SET token_key_id = NULL, token_sealed = NULL;
             DELETE FROM data_keys;",
        )?;
        guard::mark_destroyed(&tx, now_ms)?;
        tx.commit()?;
        self.checkpoint()?;
        self.conn.execute_batch("VACUUM")?;
        self.checkpoint()
    }
}

/// The body of [`Store::save_all`]: one IMMEDIATE transaction. Returns the clock to keep only
/// if the commit succeeded.
/// One durable save of several records, possibly of different kinds: all or none.
struct SaveTx<'c> {
    tx: rusqlite::Transaction<'c>,
    device_seq: i64,
    clock: HlcClock,
    now_ms: u64,
    device_id: DeviceId,
}

impl<'c> SaveTx<'c> {
    fn begin(
        conn: &'c mut Connection,
        (clock, now_ms): (&HlcClock, u64),
        device_id: DeviceId,
    ) -> Result<SaveTx<'c>, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read the sequence and the clock inside the transaction: another process (the CLI
        // beside the app) may have saved since this handle was opened.
        let (device_seq, hlc_last): (i64, i64) = tx.query_row(
            "SELECT device_seq, hlc_last FROM header WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let clock = HlcClock::new(
            clock.last().max(Hlc::from_u64(hlc_last as u64)),
            clock.max_drift_ms(),
        );
        Ok(SaveTx {
            tx,
            device_seq,
            clock,
            now_ms,
            device_id,
        })
    }

    fn save<R: Record>(
        &mut self,
        keys: &mut KeyRing,
        nonces: &mut NoncePool,
        record: &R,
    ) -> Result<Saved, StoreError> {
        self.save_forced(keys, nonces, record, &records::Forced::default())
    }

    fn save_forced<R: Record>(
        &mut self,
        keys: &mut KeyRing,
        nonces: &mut NoncePool,
        record: &R,
        forced: &records::Forced,
    ) -> Result<Saved, StoreError> {
        save_one(
            &self.tx,
            keys,
            nonces,
            (&mut self.clock, self.now_ms),
            (self.device_id, &mut self.device_seq),
            record,
            forced,
        )
    }

    fn commit(self) -> Result<HlcClock, StoreError> {
        self.tx.execute(
            "UPDATE header SET device_seq = ?1, hlc_last = max(hlc_last, ?2) WHERE id = 1",
            params![self.device_seq, self.clock.last().as_u64() as i64],
        )?;
        if crate::sim::fail_here(crate::sim::FailPoint::DeviceSaveBeforeCommit) {
            // Dropping the transaction rolls it back, as a crash before the commit would.
            return Err(StoreError::Io(std::io::Error::other("simulated crash")));
        }
        self.tx.commit()?;
        Ok(self.clock)
    }
}

fn save_one<R: Record>(
    tx: &rusqlite::Transaction<'_>,
    keys: &mut KeyRing,
    nonces: &mut NoncePool,
    (clock, now_ms): (&mut HlcClock, u64),
    (device_id, device_seq): (DeviceId, &mut i64),
    record: &R,
    forced: &records::Forced,
) -> Result<Saved, StoreError> {
    let id = record.record_id();
    let (key_id, key) = keys.for_scope(tx, nonces, record.key_scope())?;
    keys::link(tx, key_id, &record.key_links())?;
    let old = records::load_row(tx, R::KIND, &id)?;
    let old_key = match &old {
        Some(row) => Some(keys.by_id(tx, row.key_id)?),
        None => None,
    };
    let hlc = if crate::sim::planted(crate::sim::PlantedBug::WallClockStamps) {
        Hlc::new(now_ms, 0).ok_or(ClockError::OutOfRange)?
    } else {
        clock.now(now_ms)?
    };
    let stamp = Stamp {
        hlc,
        device: device_id,
    };
    let old_cells = old.as_ref().map(records::SealedRow::cells).transpose()?;
    let previous = match (&old, old_key.as_deref(), old_cells.as_deref()) {
        (Some(row), Some(k), Some(cells)) => Some((k, row.key_id, cells)),
        _ => None,
    };
    let staged = records::stage(nonces, record, forced, previous, &key, key_id, stamp)?;
    // The key scope follows from the record's fields, so a re-keyed record always has ops.
    if staged.ops.is_empty() {
        return Ok(Saved::Unchanged);
    }
    records::write_row(
        tx,
        R::KIND,
        &id,
        &record.projection(),
        key_id,
        &staged.cells,
    )?;
    if let (Some(row), Some(old_key)) = (&old, &old_key)
        && row.key_id != key_id
    {
        // The record moved to another citizen: its pending mutations follow it to the new
        // key, or erasing the old citizen would drop them unsynced.
        outbox::reseal_record(
            tx,
            nonces,
            R::KIND,
            &id,
            (row.key_id, old_key),
            (key_id, &key),
        )?;
    }
    *device_seq += 1;
    let mutation = Mutation {
        device_id,
        device_seq: *device_seq as u64,
        ops: staged.ops,
    };
    outbox::append(tx, nonces, &key, key_id, R::KIND, &id, &mutation)?;
    Ok(Saved::Written {
        device_seq: *device_seq as u64,
    })
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device_id", &self.device_id)
            .field("unlocked", &self.is_unlocked())
            .finish()
    }
}

/// Deletes a citizen's records and data key inside `tx` (and the keys linked to it: site-log
/// entries naming them). Without the key nothing sealed for the citizen can be opened again,
/// wherever a copy lingers.
///
/// [`keys::Leaving::LeftScope`]: the citizen left this device's scope in a sync. Edits still
/// pending and edits the server refused are the worker's own unsent work: pending ones are
/// still pushed (the server refuses them for good, or takes them if the citizen came back),
/// refused ones stay set aside until the worker sends or discards them — each with the key
/// that opens it, and nothing else; the last one gone takes the key with it. [`keys::Leaving::Erased`]: the worker erased the citizen; all goes.
pub(crate) fn erase_citizen_in(
    tx: &rusqlite::Transaction,
    citizen: CitizenId,
    leaving: keys::Leaving,
) -> Result<usize, StoreError> {
    let removed = tx.execute(
        "DELETE FROM records WHERE citizen_id = ?1",
        [&citizen.0.as_bytes()[..]],
    )?;
    if crate::sim::planted(crate::sim::PlantedBug::EraseDropsOthersPending) {
        tx.execute("DELETE FROM outbox", [])?;
    }
    if let Some(key_id) = keys::citizen_key_id(tx, citizen)? {
        // With it go the keys linked to it: site-log entries that name the citizen.
        keys::destroy_in(tx, &[key_id], leaving)?;
    }
    Ok(removed)
}
