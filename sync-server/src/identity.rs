//! Teams, workers, enrolment codes and device tokens — the minimal identity sync needs.
//!
//! A device token is 256 random bits, shown once at enrolment and stored only as its SHA-256
//! (a fast hash is right for a high-entropy secret). Enrolment codes are one-time and expire;
//! they too are stored hashed.

use crate::db::DbError;
use feltbog_core::hlc::DeviceId;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// How long an enrolment code is valid.
pub const ENROLMENT_CODE_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Crockford base32: no I, L, O, U — easy to read aloud and type on a tablet.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Identity failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the enrolment code is unknown, used or expired")]
    CodeRefused,
    #[error("this device is already enrolled")]
    DeviceExists,
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl From<rusqlite::Error> for IdentityError {
    fn from(e: rusqlite::Error) -> Self {
        IdentityError::Db(DbError::Sqlite(e))
    }
}

/// Who is calling: resolved from a valid device token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub device_id: DeviceId,
    pub worker_id: Uuid,
    pub team_id: Uuid,
}

/// Worker roles (DESIGN §3). Scope by role arrives with the access-model issue.
pub const ROLES: &[&str] = &[
    "outreach",
    "home_support",
    "caretaker",
    "supervisor",
    "admin",
];

fn hash(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| IdentityError::Random)?;
    Ok(buf)
}

/// Creates a team.
pub fn create_team(conn: &Connection, name: &str, now_ms: u64) -> Result<Uuid, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::Invalid("team name (1–200 characters)"));
    }
    let id = Uuid::now_v7();
    conn.execute(
        "INSERT INTO teams (id, name, created_ms) VALUES (?1, ?2, ?3)",
        params![&id.as_bytes()[..], name, now_ms as i64],
    )?;
    Ok(id)
}

/// Creates a worker in a team.
pub fn create_worker(
    conn: &Connection,
    team: Uuid,
    name: &str,
    role: &str,
) -> Result<Uuid, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::Invalid("worker name (1–200 characters)"));
    }
    if !ROLES.contains(&role) {
        return Err(IdentityError::Invalid(
            "role (outreach, home_support, caretaker, supervisor, admin)",
        ));
    }
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM teams WHERE id = ?1",
        [&team.as_bytes()[..]],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(IdentityError::NotFound("team"));
    }
    let id = Uuid::now_v7();
    conn.execute(
        "INSERT INTO workers (id, team_id, name, role) VALUES (?1, ?2, ?3, ?4)",
        params![&id.as_bytes()[..], &team.as_bytes()[..], name, role],
    )?;
    Ok(id)
}

/// Issues a one-time enrolment code for a worker: `XXXX-XXXX-XXXX-XXXX` (80 bits).
pub fn issue_enrolment_code(
    conn: &Connection,
    worker: Uuid,
    now_ms: u64,
) -> Result<String, IdentityError> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM workers WHERE id = ?1 AND active = 1",
        [&worker.as_bytes()[..]],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(IdentityError::NotFound("active worker"));
    }
    let raw = random_bytes::<16>()?;
    let chars: String = raw
        .iter()
        .map(|b| CODE_ALPHABET[(*b & 31) as usize] as char)
        .collect();
    let code = format!(
        "{}-{}-{}-{}",
        &chars[0..4],
        &chars[4..8],
        &chars[8..12],
        &chars[12..16]
    );
    conn.execute(
        "INSERT INTO enrolment_codes (code_hash, worker_id, expires_ms) VALUES (?1, ?2, ?3)",
        params![
            hash(&normalise_code(&code)),
            &worker.as_bytes()[..],
            (now_ms + ENROLMENT_CODE_TTL_MS) as i64
        ],
    )?;
    Ok(code)
}

/// Codes are typed by people: ignore case, spaces and dashes.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Trades a code for a device token, once. Returns the caller the token stands for and the token.
pub fn enrol(
    conn: &mut Connection,
    code: &str,
    device: DeviceId,
    now_ms: u64,
) -> Result<(Caller, String), IdentityError> {
    if device.0.is_nil() {
        return Err(IdentityError::Invalid("device id"));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let row: Option<(Vec<u8>, Vec<u8>)> = tx
        .query_row(
            "SELECT c.worker_id, w.team_id FROM enrolment_codes c JOIN workers w ON w.id = c.worker_id
             WHERE c.code_hash = ?1 AND c.used_ms IS NULL AND c.expires_ms > ?2 AND w.active = 1",
            params![hash(&normalise_code(code)), now_ms as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (worker, team) = row.ok_or(IdentityError::CodeRefused)?;
    let taken: bool = tx.query_row(
        "SELECT count(*) > 0 FROM devices WHERE id = ?1",
        [&device.0.as_bytes()[..]],
        |r| r.get(0),
    )?;
    if taken {
        return Err(IdentityError::DeviceExists);
    }
    let token = hex(&random_bytes::<32>()?);
    tx.execute(
        "UPDATE enrolment_codes SET used_ms = ?1 WHERE code_hash = ?2",
        params![now_ms as i64, hash(&normalise_code(code))],
    )?;
    tx.execute(
        "INSERT INTO devices (id, worker_id, token_hash, enrolled_ms) VALUES (?1, ?2, ?3, ?4)",
        params![
            &device.0.as_bytes()[..],
            worker,
            hash(&token),
            now_ms as i64
        ],
    )?;
    tx.commit()?;
    let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|_| IdentityError::Invalid("stored id"));
    Ok((
        Caller {
            device_id: device,
            worker_id: uuid(&worker)?,
            team_id: uuid(&team)?,
        },
        token,
    ))
}

/// The caller a token stands for, if the token is known and its device and worker are active.
pub fn authenticate(conn: &Connection, token: &str) -> Result<Option<Caller>, IdentityError> {
    let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT d.id, w.id, w.team_id FROM devices d JOIN workers w ON w.id = d.worker_id
             WHERE d.token_hash = ?1 AND d.active = 1 AND w.active = 1",
            [hash(token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((device, worker, team)) = row else {
        return Ok(None);
    };
    let uuid = |b: &[u8]| Uuid::from_slice(b).map_err(|_| IdentityError::Invalid("stored id"));
    Ok(Some(Caller {
        device_id: DeviceId(uuid(&device)?),
        worker_id: uuid(&worker)?,
        team_id: uuid(&team)?,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        (dir, conn)
    }

    #[test]
    fn a_code_enrols_one_device_once_and_the_token_authenticates() {
        let (_dir, mut conn) = db();
        let team = create_team(&conn, "Team Nord", 0).unwrap();
        let worker = create_worker(&conn, team, "Anne", "outreach").unwrap();
        let code = issue_enrolment_code(&conn, worker, 1_000).unwrap();
        assert_eq!(code.len(), 19);
        let device = DeviceId(Uuid::now_v7());
        let (caller, token) = enrol(
            &mut conn,
            &code.to_lowercase().replace('-', " "),
            device,
            2_000,
        )
        .unwrap();
        assert_eq!((caller.worker_id, caller.team_id), (worker, team));
        assert_eq!(token.len(), 64);
        assert_eq!(authenticate(&conn, &token).unwrap(), Some(caller));
        assert_eq!(authenticate(&conn, "not-a-token").unwrap(), None);
        // One-time: the same code does not enrol another device.
        assert!(matches!(
            enrol(&mut conn, &code, DeviceId(Uuid::now_v7()), 3_000),
            Err(IdentityError::CodeRefused)
        ));
        // The token is stored hashed only.
        let stored: Vec<u8> = conn
            .query_row("SELECT token_hash FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token.as_bytes());
    }

    #[test]
    fn expired_codes_and_unknown_roles_are_refused() {
        let (_dir, mut conn) = db();
        let team = create_team(&conn, "Team Syd", 0).unwrap();
        assert!(matches!(
            create_worker(&conn, team, "Bo", "wizard"),
            Err(IdentityError::Invalid(_))
        ));
        let worker = create_worker(&conn, team, "Bo", "home_support").unwrap();
        let code = issue_enrolment_code(&conn, worker, 0).unwrap();
        let late = ENROLMENT_CODE_TTL_MS + 1;
        assert!(matches!(
            enrol(&mut conn, &code, DeviceId(Uuid::now_v7()), late),
            Err(IdentityError::CodeRefused)
        ));
    }
}
