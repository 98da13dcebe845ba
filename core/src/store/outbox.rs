//! The outbox: mutations saved on this device and not yet acknowledged by the server.
//!
//! A mutation is appended in the same transaction as the record change it describes, with the
//! next `device_seq`, sealed under the same data key as the record (so erasing a citizen erases
//! their pending mutations too) and bound to its sequence number.

use super::StoreError;
use super::keys::{KeyRing, key_id_from};
use crate::crypto::{Binding, KeyId, NoncePool, SecretKey};
use crate::domain::EntityKind;
use crate::protocol::Mutation;
use rusqlite::{Connection, params};
use uuid::Uuid;

fn binding(key_id: KeyId, seq_bytes: &[u8; 8]) -> Binding<'_> {
    Binding {
        key_id,
        table: "outbox",
        record: seq_bytes,
        field: "mutation",
    }
}

pub(crate) fn append(
    conn: &Connection,
    nonces: &mut NoncePool,
    key: &SecretKey,
    key_id: KeyId,
    entity: EntityKind,
    record_id: &Uuid,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    let seq = mutation.device_seq.to_be_bytes();
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(mutation).map_err(|_| StoreError::Corrupt("mutation"))?,
    );
    let sealed = key.seal(nonces, &binding(key_id, &seq), &json)?;
    conn.execute(
        "INSERT INTO outbox (device_seq, entity, record_id, key_id, sealed) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            mutation.device_seq as i64,
            entity.as_str(),
            &record_id.as_bytes()[..],
            &key_id.0[..],
            sealed
        ],
    )?;
    Ok(())
}

/// Re-seals a record's pending mutations from its old data key to its new one.
pub(crate) fn reseal_record(
    conn: &Connection,
    nonces: &mut NoncePool,
    entity: EntityKind,
    record_id: &Uuid,
    (old_id, old_key): (KeyId, &SecretKey),
    (new_id, new_key): (KeyId, &SecretKey),
) -> Result<(), StoreError> {
    for table in ["outbox", "set_aside"] {
        reseal_in(
            conn,
            nonces,
            table,
            entity,
            record_id,
            (old_id, old_key),
            (new_id, new_key),
        )?;
    }
    Ok(())
}

fn reseal_in(
    conn: &Connection,
    nonces: &mut NoncePool,
    table: &str,
    entity: EntityKind,
    record_id: &Uuid,
    (old_id, old_key): (KeyId, &SecretKey),
    (new_id, new_key): (KeyId, &SecretKey),
) -> Result<(), StoreError> {
    let rows = {
        let mut stmt = conn.prepare(&format!(
            "SELECT device_seq, sealed FROM {table} WHERE entity = ?1 AND record_id = ?2 AND key_id = ?3"
        ))?;
        stmt.query_map(
            params![entity.as_str(), &record_id.as_bytes()[..], &old_id.0[..]],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?
        .collect::<Result<Vec<_>, _>>()?
    };
    for (seq, sealed) in rows {
        let seq_bytes = (seq as u64).to_be_bytes();
        let plain = zeroize::Zeroizing::new(old_key.open(&binding(old_id, &seq_bytes), &sealed)?);
        let resealed = new_key.seal(nonces, &binding(new_id, &seq_bytes), &plain)?;
        conn.execute(
            &format!("UPDATE {table} SET key_id = ?1, sealed = ?2 WHERE device_seq = ?3"),
            params![&new_id.0[..], resealed, seq],
        )?;
    }
    Ok(())
}

pub(crate) fn list(conn: &Connection, keys: &mut KeyRing) -> Result<Vec<Mutation>, StoreError> {
    list_limited(conn, keys, i64::MAX as usize)
}

/// The pending mutations about one record, oldest first.
pub(crate) fn for_record(
    conn: &Connection,
    keys: &mut KeyRing,
    entity: crate::domain::EntityKind,
    id: &uuid::Uuid,
) -> Result<Vec<Mutation>, StoreError> {
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT device_seq, key_id, sealed FROM outbox WHERE entity = ?1 AND record_id = ?2
             ORDER BY device_seq",
        )?
        .query_map(
            rusqlite::params![entity.as_str(), &id.as_bytes()[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    rows.iter()
        .map(|(seq, key_id, sealed)| open_row(conn, keys, *seq as u64, key_id, sealed))
        .collect()
}

pub(crate) fn list_limited(
    conn: &Connection,
    keys: &mut KeyRing,
    max: usize,
) -> Result<Vec<Mutation>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT device_seq, key_id, sealed FROM outbox ORDER BY device_seq LIMIT ?1")?;
    let rows = stmt
        .query_map([max.min(i64::MAX as usize) as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, key_id, sealed) in rows {
        let key_id = key_id_from(&key_id)?;
        let key = keys.by_id(conn, key_id)?;
        let plain = zeroize::Zeroizing::new(
            key.open(&binding(key_id, &(seq as u64).to_be_bytes()), &sealed)?,
        );
        out.push(
            serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt("outbox mutation"))?,
        );
    }
    Ok(out)
}

/// Opens one sealed mutation row (of the outbox, or moved from it to `set_aside`: the sealing
/// is bound to the sequence number, not the table).
pub(crate) fn open_row(
    conn: &Connection,
    keys: &mut KeyRing,
    seq: u64,
    key_id: &[u8],
    sealed: &[u8],
) -> Result<Mutation, StoreError> {
    let key_id = key_id_from(key_id)?;
    let key = keys.by_id(conn, key_id)?;
    let plain = zeroize::Zeroizing::new(key.open(&binding(key_id, &seq.to_be_bytes()), sealed)?);
    serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt("outbox mutation"))
}

/// Replaces a pending mutation (same `device_seq`, same key) with a changed copy.
pub(crate) fn rewrite(
    conn: &Connection,
    nonces: &mut NoncePool,
    keys: &mut KeyRing,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    let key_id: Vec<u8> = conn.query_row(
        "SELECT key_id FROM outbox WHERE device_seq = ?1",
        [mutation.device_seq as i64],
        |r| r.get(0),
    )?;
    let key_id = key_id_from(&key_id)?;
    let key = keys.by_id(conn, key_id)?;
    let seq = mutation.device_seq.to_be_bytes();
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec(mutation).map_err(|_| StoreError::Corrupt("mutation"))?,
    );
    let sealed = key.seal(nonces, &binding(key_id, &seq), &json)?;
    conn.execute(
        "UPDATE outbox SET sealed = ?1 WHERE device_seq = ?2",
        params![sealed, mutation.device_seq as i64],
    )?;
    Ok(())
}

pub(crate) fn len(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as u64)
}
