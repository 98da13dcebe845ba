//! Numbered schema migrations for the device store.
//!
//! Append-only: never edit a migration that has shipped; add the next number. The schema
//! version lives in SQLite's `user_version`; `application_id` marks the file as a Feltbog store.
//! A store newer than this build refuses to open (a tablet that was downgraded) rather than
//! guessing.
//!
//! Plain columns hold only random ids, times, flags and ciphertext — never personal data.

use super::StoreError;
use rusqlite::Connection;

/// `application_id` of a Feltbog device store ("FELT").
pub const APPLICATION_ID: i32 = 0x4645_4c54;

/// The migrations, in order; index + 1 is the version each one produces.
const MIGRATIONS: &[&str] = &[
    // 1: header, wrapped keys, sealed records, the outbox.
    r#"
    CREATE TABLE header (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        device_id      BLOB    NOT NULL,
        kdf_salt       BLOB    NOT NULL,
        kdf_params     TEXT    NOT NULL,  -- JSON KdfParams; not secret
        keystore       TEXT    NOT NULL,  -- which platform secret was mixed in
        master_wrapped BLOB,              -- NULL once the keys are destroyed
        device_seq     INTEGER NOT NULL DEFAULT 0, -- last device_seq used by the outbox
        hlc_last       INTEGER NOT NULL DEFAULT 0  -- the clock survives restarts
    );
    CREATE TABLE data_keys (
        key_id  BLOB PRIMARY KEY,
        scope   TEXT NOT NULL UNIQUE,   -- 'general' or 'citizen:<random uuid>'
        wrapped BLOB NOT NULL
    ) WITHOUT ROWID;
    -- A rowid table, not WITHOUT ROWID: sealed rows run to a few KiB, and WITHOUT ROWID tables
    -- spill anything over ~1 KiB to overflow pages (measured: 3x the file size, 2x list time).
    CREATE TABLE records (
        entity     TEXT    NOT NULL,
        id         BLOB    NOT NULL,
        citizen_id BLOB,
        site_id    BLOB,
        sort_key   INTEGER NOT NULL,
        archived   INTEGER NOT NULL,
        key_id     BLOB    NOT NULL REFERENCES data_keys (key_id),
        cells      BLOB    NOT NULL,    -- postcard Vec<Cell>: field, stamp, sealed value
        UNIQUE (entity, id)
    );
    CREATE INDEX records_by_citizen ON records (citizen_id, entity);
    CREATE INDEX records_by_sort ON records (entity, sort_key);
    CREATE TABLE outbox (
        device_seq INTEGER PRIMARY KEY,
        entity     TEXT NOT NULL,        -- the record the mutation is about
        record_id  BLOB NOT NULL,
        key_id     BLOB NOT NULL REFERENCES data_keys (key_id),
        sealed     BLOB NOT NULL         -- sealed JSON Mutation
    );
    CREATE INDEX outbox_by_key ON outbox (key_id);
    CREATE INDEX outbox_by_record ON outbox (entity, record_id);
    "#,
    // 2: the unlock guard (wrong-passphrase back-off and key destruction), in its own one-row
    //    table so counting an attempt is a single small write. Stores from version 1 get the
    //    default policy.
    r#"
    CREATE TABLE unlock_guard (
        id                 INTEGER PRIMARY KEY CHECK (id = 1),
        failed_attempts    INTEGER NOT NULL DEFAULT 0,
        next_attempt_at_ms INTEGER NOT NULL DEFAULT 0,
        max_attempts       INTEGER NOT NULL,
        free_attempts      INTEGER NOT NULL,
        base_delay_ms      INTEGER NOT NULL,
        max_delay_ms       INTEGER NOT NULL,
        destroyed_at_ms    INTEGER
    );
    INSERT INTO unlock_guard (id, max_attempts, free_attempts, base_delay_ms, max_delay_ms)
        VALUES (1, 10, 3, 1000, 900000);
    "#,
    // 3: sync — where the server is, the device token (sealed), the pull cursor, and mutations
    //    the server refused for good, set aside so they never block the queue.
    r#"
    CREATE TABLE sync_state (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        server_url      TEXT,
        worker_id       BLOB,
        team_id         BLOB,
        token_key_id    BLOB REFERENCES data_keys (key_id),
        token_sealed    BLOB,
        cursor          INTEGER NOT NULL DEFAULT 0,
        last_success_ms INTEGER,
        last_error      TEXT,            -- a message for the worker; never personal data
        clock_offset_ms INTEGER NOT NULL DEFAULT 0  -- server time minus this device's clock
    );
    INSERT INTO sync_state (id) VALUES (1);
    CREATE TABLE set_aside (
        device_seq INTEGER PRIMARY KEY,
        entity     TEXT NOT NULL,
        record_id  BLOB NOT NULL,
        key_id     BLOB NOT NULL REFERENCES data_keys (key_id),
        sealed     BLOB NOT NULL,        -- the refused mutation, still sealed: nothing is lost
        reason     TEXT NOT NULL,
        detail     TEXT NOT NULL,
        at_ms      INTEGER NOT NULL
    );
    "#,
    // 4: the device's access log (DESIGN §6): which record the worker opened, when. Ids and
    // times only; it syncs up into the server's audit trail and is deleted once acknowledged.
    r#"
    CREATE TABLE access_log (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms      INTEGER NOT NULL,
        entity     TEXT NOT NULL,
        record_id  BLOB NOT NULL,
        citizen_id BLOB
    );
    "#,
    // 5: who the device serves (worker, role, teams, sites, the teams' worker directory), as
    // the server last said; sealed under the general key (colleagues' names).
    r#"
    ALTER TABLE sync_state ADD COLUMN profile_key_id BLOB;
    ALTER TABLE sync_state ADD COLUMN profile_sealed BLOB;
    "#,
    // 6: half-typed forms (store/drafts.rs), sealed under the citizen's key or the general key.
    r#"
    CREATE TABLE drafts (
        form   TEXT PRIMARY KEY,
        key_id BLOB NOT NULL REFERENCES data_keys (key_id),
        sealed BLOB NOT NULL,
        at_ms  INTEGER NOT NULL
    );
    "#,
    // 7: a change of the worker's scope (issue 16, `store/rescope.rs`): 1 while the device
    //    pushes what it had pending, 2 while it pulls its new scope afresh; 0 otherwise.
    r#"
    ALTER TABLE sync_state ADD COLUMN rescope INTEGER NOT NULL DEFAULT 0;
    "#,
    // 8: the lock-state credential (issue 16): asks the server "am I revoked?" and nothing
    //    else, so it is kept in the clear, readable while the store is locked.
    r#"
    ALTER TABLE sync_state ADD COLUMN standing_token TEXT;
    "#,
    // 9: keys per site (issue 16): a site-log entry's key is linked to its site's key and its
    //    residents' keys (`keys::link`); destroying one of those destroys the entry's key.
    //    Scopes are 'site:<uuid>' and 'entry:<uuid>' besides 'citizen:<uuid>' and 'general'.
    r#"
    CREATE TABLE key_links (
        key_id BLOB NOT NULL REFERENCES data_keys (key_id),
        scope  TEXT NOT NULL,            -- the scope whose key's destruction destroys key_id
        PRIMARY KEY (scope, key_id)
    ) WITHOUT ROWID;
    CREATE INDEX key_links_by_key ON key_links (key_id);
    -- Sites and logs pulled before were sealed under the general key: an enrolled device
    -- pulls its scope afresh on its next sync (store/rescope.rs), which seals them under
    -- their own keys.
    UPDATE sync_state SET rescope = 1
     WHERE token_sealed IS NOT NULL
       AND EXISTS (SELECT 1 FROM records WHERE entity IN ('site', 'site_log_entry'));
    "#,
];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database (0 for an empty file).
pub fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?)
}

/// Migrates up to `target` (≤ [`LATEST`]), each step in its own transaction with the version bump.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(StoreError::NewerSchema {
            found,
            supported: LATEST,
        });
    }
    for v in found..target.min(LATEST) {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[v as usize])?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
    }
    version(conn)
}

#[cfg(test)]
mod tests {
    /// Device migrations are append-only (`crate::migration_lock`): `migrations.lock` holds the
    /// SHA-256 of each one's text.
    #[test]
    fn applied_device_migrations_never_change() {
        let lock =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations.lock");
        crate::migration_lock::check(&lock, super::MIGRATIONS).unwrap();
    }
}
