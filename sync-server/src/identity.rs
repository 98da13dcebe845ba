//! Teams, workers and their roles, devices, enrolment codes and device tokens (DESIGN §6).
//!
//! A device token is 256 random bits, shown once at enrolment and stored only as its SHA-256
//! (a fast hash is right for a high-entropy secret). Enrolment codes are one-time and expire
//! after minutes; they too are stored hashed.
//!
//! Revocation is immediate because every request authenticates against these tables: a revoked
//! device, or any device of a disabled worker, gets 401 with a wipe instruction on its very next
//! request. Changing a worker's role, team, sites or supervised teams does not revoke: it ends a
//! scope epoch ([`crate::epochs`]), and their devices push what they had pending, erase what
//! left their scope and pull what entered it on their next sync.

use crate::args;
use crate::db::DbError;
use crate::storage::{Db, DbExt, Transact};
use feltbog_core::hlc::DeviceId;
use feltbog_core::protocol::{DirectoryEntry, Profile, TeamEntry};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// How long an enrolment code is valid by default: long enough to walk over to the worker.
pub const ENROLMENT_CODE_TTL_MS: u64 = 30 * 60 * 1000;
/// The longest validity an administrator may choose.
pub const MAX_ENROLMENT_CODE_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Crockford base32: no I, L, O, U — easy to read aloud and type on a tablet.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Identity failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
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
    #[error("audit: {0}")]
    Audit(String),
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
    pub role: Role,
}

/// A worker's role: one definition in `core`, shared with the app (what each may see and
/// change is [`crate::scope`]'s business).
pub use feltbog_core::access::Role;

/// Why a token did not authenticate. Only [`Denied::Revoked`] tells the device to wipe: an
/// unknown token may be a typo in a test or an old token after rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Unknown,
    /// The device was revoked, or its worker disabled.
    Revoked,
}

/// A device as the administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub worker_id: Uuid,
    pub enrolled_ms: u64,
    pub revoked_ms: Option<u64>,
}

/// A worker as the administrator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

pub(crate) fn hash(secret: &str) -> Vec<u8> {
    digest(&SHA256, secret.as_bytes()).as_ref().to_vec()
}

/// A new id for a team or a worker: time-ordered (v7), or from the simulation's seed.
fn new_id() -> Uuid {
    let mut bytes = [0u8; 16];
    if feltbog_core::sim::seeded_random(&mut bytes) {
        return uuid::Builder::from_random_bytes(bytes).into_uuid();
    }
    Uuid::now_v7()
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut buf = [0u8; N];
    // The deterministic simulation draws from its seed instead (never in a product build).
    if feltbog_core::sim::seeded_random(&mut buf) {
        return Ok(buf);
    }
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| IdentityError::Random)?;
    Ok(buf)
}

/// Creates a team.
pub fn create_team(conn: &dyn Db, name: &str, now_ms: u64) -> Result<Uuid, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::Invalid("team name (1–200 characters)"));
    }
    let id = new_id();
    conn.execute(
        "INSERT INTO teams (id, name, created_ms) VALUES (?1, ?2, ?3)",
        args![id, name, now_ms as i64],
    )?;
    Ok(id)
}

/// Creates a worker in a team.
pub fn create_worker(
    conn: &dyn Db,
    team: Uuid,
    name: &str,
    role: &str,
) -> Result<Uuid, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::Invalid("worker name (1–200 characters)"));
    }
    let role = parse_role(role)?;
    team_exists(conn, team)?;
    let id = new_id();
    conn.execute(
        "INSERT INTO workers (id, team_id, name, role) VALUES (?1, ?2, ?3, ?4)",
        args![id, team, name, role.as_str()],
    )?;
    Ok(id)
}

fn parse_role(role: &str) -> Result<Role, IdentityError> {
    Role::parse(role).ok_or(IdentityError::Invalid(
        "role (outreach, home_support, caretaker, supervisor, admin)",
    ))
}

fn team_exists(conn: &dyn Db, team: Uuid) -> Result<(), IdentityError> {
    let exists: bool = conn.value("SELECT count(*) > 0 FROM teams WHERE id = ?1", args![team])?;
    if exists {
        Ok(())
    } else {
        Err(IdentityError::NotFound("team"))
    }
}

/// A caretaker's sites and a supervisor's teams belong to their role and team: a change of
/// either ends them.
fn forget_sites(conn: &dyn Db, worker: Uuid) -> Result<(), IdentityError> {
    for sql in [
        "DELETE FROM caretaker_sites WHERE worker_id = ?1",
        "DELETE FROM supervised_teams WHERE worker_id = ?1",
    ] {
        conn.execute(sql, args![worker])?;
    }
    Ok(())
}

/// Gives a supervisor another team to read, or (`supervise = false`) takes it away: a scope
/// change ([`crate::epochs`]), which their devices follow on their next sync. Returns whether
/// anything changed.
pub fn set_supervised(
    conn: &dyn Db,
    worker: Uuid,
    team: Uuid,
    supervise: bool,
    now_ms: u64,
) -> Result<bool, IdentityError> {
    let (role, own) = role_and_team(conn, worker)?;
    if role != Role::Supervisor {
        return Err(IdentityError::Invalid(
            "worker: only supervisors supervise other teams",
        ));
    }
    team_exists(conn, team)?;
    if own == team {
        return Err(IdentityError::Invalid(
            "team: a supervisor reads their own team already",
        ));
    }
    let has: bool = conn.value(
        "SELECT count(*) > 0 FROM supervised_teams WHERE worker_id = ?1 AND team_id = ?2",
        args![worker, team],
    )?;
    if has == supervise {
        return Ok(false);
    }
    crate::epochs::end_epoch(conn, worker, now_ms)?;
    if supervise {
        conn.execute(
            "INSERT INTO supervised_teams (worker_id, team_id) VALUES (?1, ?2)",
            args![worker, team],
        )?;
    } else {
        conn.execute(
            "DELETE FROM supervised_teams WHERE worker_id = ?1 AND team_id = ?2",
            args![worker, team],
        )?;
    }
    Ok(true)
}

/// A worker's role and team now.
pub(crate) fn role_and_team(conn: &dyn Db, worker: Uuid) -> Result<(Role, Uuid), IdentityError> {
    let row: Option<(String, Vec<u8>)> = conn.one(
        "SELECT role, team_id FROM workers WHERE id = ?1",
        args![worker],
    )?;
    let (role, team) = row.ok_or(IdentityError::NotFound("worker"))?;
    let role = Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?;
    Ok((role, stored_uuid(&team)?))
}

/// Revokes every active device of a worker; returns how many.
pub(crate) fn revoke_workers_devices(
    conn: &dyn Db,
    worker: Uuid,
    now_ms: u64,
) -> Result<usize, IdentityError> {
    Ok(conn.execute(
        "UPDATE devices SET active = 0, revoked_ms = ?2 WHERE worker_id = ?1 AND active = 1",
        args![worker, now_ms as i64],
    )? as usize)
}

/// Changes a worker's role: a scope change ([`crate::epochs`]), which their devices follow on
/// their next sync. Returns whether the role changed.
pub fn set_role(
    conn: &dyn Db,
    worker: Uuid,
    role: &str,
    now_ms: u64,
) -> Result<bool, IdentityError> {
    let role = parse_role(role)?;
    let now: Option<String> = conn.one("SELECT role FROM workers WHERE id = ?1", args![worker])?;
    match now {
        None => return Err(IdentityError::NotFound("worker")),
        // The same role again changes nothing: no devices revoked, no sites lost.
        Some(now) if now == role.as_str() => return Ok(false),
        Some(_) => {}
    }
    crate::epochs::end_epoch(conn, worker, now_ms)?;
    conn.execute(
        "UPDATE workers SET role = ?2 WHERE id = ?1",
        args![worker, role.as_str()],
    )?;
    forget_sites(conn, worker)?;
    Ok(true)
}

/// Moves a worker to another team: a scope change ([`crate::epochs`]), which their devices
/// follow on their next sync. Returns whether the team changed.
pub fn move_worker(
    conn: &dyn Db,
    worker: Uuid,
    team: Uuid,
    now_ms: u64,
) -> Result<bool, IdentityError> {
    team_exists(conn, team)?;
    let (_, own) = role_and_team(conn, worker)?;
    if own == team {
        return Ok(false);
    }
    crate::epochs::end_epoch(conn, worker, now_ms)?;
    let n = conn.execute(
        "UPDATE workers SET team_id = ?2 WHERE id = ?1",
        args![worker, team],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("worker"));
    }
    forget_sites(conn, worker)?;
    Ok(true)
}

/// Disables a worker (left the job, lost trust): every device of theirs is refused and told to
/// wipe on its next request. Returns the devices revoked.
pub fn disable_worker(conn: &dyn Db, worker: Uuid, now_ms: u64) -> Result<usize, IdentityError> {
    let n = conn.execute(
        "UPDATE workers SET active = 0, disabled_ms = ?2 WHERE id = ?1",
        args![worker, now_ms as i64],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("worker"));
    }
    // Codes issued before stay dead when the worker is enabled again.
    conn.execute(
        "UPDATE enrolment_codes SET used_ms = ?2 WHERE worker_id = ?1 AND used_ms IS NULL",
        args![worker, now_ms as i64],
    )?;
    revoke_workers_devices(conn, worker, now_ms)
}

/// Enables a disabled worker again. Their old devices stay revoked: they enrol anew.
pub fn enable_worker(conn: &dyn Db, worker: Uuid) -> Result<(), IdentityError> {
    let n = conn.execute(
        "UPDATE workers SET active = 1, disabled_ms = NULL WHERE id = ?1",
        args![worker],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("worker"));
    }
    Ok(())
}

/// Revokes one device (lost or stolen tablet).
pub fn revoke_device(conn: &dyn Db, device: DeviceId, now_ms: u64) -> Result<(), IdentityError> {
    let n = conn.execute(
        "UPDATE devices SET active = 0, revoked_ms = coalesce(revoked_ms, ?2) WHERE id = ?1",
        args![device.0, now_ms as i64],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("device"));
    }
    Ok(())
}

/// Issues a device a new token. The old one keeps working until the device first uses the new
/// one, then stops: a rotation whose answer was lost never locks a device out.
pub fn rotate_token(conn: &dyn Db, device: DeviceId) -> Result<String, IdentityError> {
    let token = hex(&random_bytes::<32>()?);
    let n = conn.execute(
        "UPDATE devices SET next_token_hash = ?2 WHERE id = ?1 AND active = 1",
        args![device.0, hash(&token)],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("active device"));
    }
    Ok(token)
}

/// Every worker, by team then name.
pub fn list_workers(conn: &dyn Db) -> Result<Vec<WorkerInfo>, IdentityError> {
    let rows: Vec<(Uuid, Uuid, String, String, bool)> = conn.all(
        "SELECT id, team_id, name, role, active FROM workers ORDER BY team_id, name",
        &[],
    )?;
    rows.into_iter()
        .map(|(id, team_id, name, role, active)| {
            Ok(WorkerInfo {
                id,
                team_id,
                name,
                role: Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?,
                active,
            })
        })
        .collect()
}

/// Every device, newest first.
pub fn list_devices(conn: &dyn Db) -> Result<Vec<DeviceInfo>, IdentityError> {
    let rows: Vec<(Uuid, Uuid, u64, Option<u64>)> = conn.all(
        "SELECT id, worker_id, enrolled_ms, revoked_ms FROM devices ORDER BY enrolled_ms DESC",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, worker_id, enrolled_ms, revoked_ms)| DeviceInfo {
            id: DeviceId(id),
            worker_id,
            enrolled_ms,
            revoked_ms,
        })
        .collect())
}

pub(crate) fn stored_uuid(b: &[u8]) -> Result<Uuid, IdentityError> {
    Uuid::from_slice(b).map_err(|_| IdentityError::Invalid("stored id"))
}

/// Issues a one-time enrolment code for a worker, valid [`ENROLMENT_CODE_TTL_MS`].
pub fn issue_enrolment_code(
    conn: &dyn Db,
    worker: Uuid,
    now_ms: u64,
) -> Result<String, IdentityError> {
    issue_enrolment_code_for(conn, worker, now_ms, ENROLMENT_CODE_TTL_MS)
}

/// Issues a one-time enrolment code, `XXXX-XXXX-XXXX-XXXX` (80 bits), valid `ttl_ms` (at most
/// a day).
pub fn issue_enrolment_code_for(
    conn: &dyn Db,
    worker: Uuid,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<String, IdentityError> {
    if ttl_ms == 0 || ttl_ms > MAX_ENROLMENT_CODE_TTL_MS {
        return Err(IdentityError::Invalid("validity (1 minute to 24 hours)"));
    }
    let exists: bool = conn.value(
        "SELECT count(*) > 0 FROM workers WHERE id = ?1 AND active = 1",
        args![worker],
    )?;
    if !exists {
        return Err(IdentityError::NotFound("active worker"));
    }
    let code = new_code()?;
    conn.execute(
        "INSERT INTO enrolment_codes (code_hash, worker_id, expires_ms) VALUES (?1, ?2, ?3)",
        args![
            hash(&normalise_code(&code)),
            worker,
            (now_ms + ttl_ms) as i64
        ],
    )?;
    Ok(code)
}

/// A one-time code, `XXXX-XXXX-XXXX-XXXX` (80 bits of Crockford base32): read aloud or typed.
pub(crate) fn new_code() -> Result<String, IdentityError> {
    let raw = random_bytes::<16>()?;
    let chars: String = raw
        .iter()
        .map(|b| CODE_ALPHABET[(*b & 31) as usize] as char)
        .collect();
    Ok(format!(
        "{}-{}-{}-{}",
        &chars[0..4],
        &chars[4..8],
        &chars[8..12],
        &chars[12..16]
    ))
}

/// What the enrolment QR code holds ([`feltbog_core::protocol::EnrolmentLink`], the one
/// definition the app reads back): the server's address and the code.
pub fn enrolment_qr_payload(server_url: &str, code: &str) -> String {
    feltbog_core::protocol::EnrolmentLink {
        server_url: server_url.to_owned(),
        code: code.to_owned(),
    }
    .to_text()
}

/// Codes are typed by people: ignore case, spaces and dashes.
pub(crate) fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Trades a code for a device token, once. Returns the caller the token stands for and the token.
pub fn enrol(
    db: &mut impl Transact,
    code: &str,
    device: DeviceId,
    now_ms: u64,
) -> Result<(Caller, String), IdentityError> {
    if device.0.is_nil() {
        return Err(IdentityError::Invalid("device id"));
    }
    db.write(|tx| enrol_in(tx, code, device, now_ms))
}

fn enrol_in(
    tx: &dyn Db,
    code: &str,
    device: DeviceId,
    now_ms: u64,
) -> Result<(Caller, String), IdentityError> {
    let row: Option<(Vec<u8>, Vec<u8>, String)> = tx.one(
        "SELECT c.worker_id, w.team_id, w.role FROM enrolment_codes c JOIN workers w ON w.id = c.worker_id
         WHERE c.code_hash = ?1 AND c.used_ms IS NULL AND c.expires_ms > ?2 AND w.active = 1",
        args![hash(&normalise_code(code)), now_ms as i64],
    )?;
    let (worker, team, role) = row.ok_or(IdentityError::CodeRefused)?;
    let role = Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?;
    let taken: bool = tx.value(
        "SELECT count(*) > 0 FROM devices WHERE id = ?1",
        args![device.0],
    )?;
    if taken {
        return Err(IdentityError::DeviceExists);
    }
    let token = hex(&random_bytes::<32>()?);
    tx.execute(
        "UPDATE enrolment_codes SET used_ms = ?1 WHERE code_hash = ?2",
        args![now_ms as i64, hash(&normalise_code(code))],
    )?;
    tx.execute(
        "INSERT INTO devices (id, worker_id, token_hash, enrolled_ms, scope_epoch)
         SELECT ?1, ?2, ?3, ?4, scope_epoch FROM workers WHERE id = ?2",
        args![device.0, &worker, hash(&token), now_ms as i64],
    )?;
    crate::audit::append(
        tx,
        now_ms,
        &crate::audit::Entry::device(stored_uuid(&worker)?, device.0, crate::audit::Action::Enrol),
    )
    .map_err(|e| IdentityError::Audit(e.to_string()))?;
    Ok((
        Caller {
            device_id: device,
            worker_id: stored_uuid(&worker)?,
            team_id: stored_uuid(&team)?,
            role,
        },
        token,
    ))
}

/// The caller a token stands for, if the token is known and its device and worker are active.
pub fn authenticate(conn: &dyn Db, token: &str) -> Result<Option<Caller>, IdentityError> {
    Ok(check_token(conn, token)?.ok())
}

/// The caller a token stands for, or why not. Run inside the request's transaction, so a
/// revocation committed before it takes effect on this very request.
pub fn check_token(conn: &dyn Db, token: &str) -> Result<Result<Caller, Denied>, IdentityError> {
    /// Device, worker, team, role, and whether both are active.
    type Row = (Vec<u8>, Vec<u8>, Vec<u8>, String, bool);
    let hashed = hash(token);
    let row: Option<Row> = conn.one(
        "SELECT d.id, w.id, w.team_id, w.role, d.active = 1 AND w.active = 1
         FROM devices d JOIN workers w ON w.id = d.worker_id
         WHERE d.token_hash = ?1 OR d.next_token_hash = ?1",
        args![&hashed],
    )?;
    let Some((device, worker, team, role, active)) = row else {
        return Ok(Err(Denied::Unknown));
    };
    if !active {
        return Ok(Err(Denied::Revoked));
    }
    // First use of a rotated token: it becomes the token, and the old one stops working.
    conn.execute(
        "UPDATE devices SET token_hash = next_token_hash, next_token_hash = NULL
         WHERE id = ?1 AND next_token_hash = ?2",
        args![&device, hashed],
    )?;
    Ok(Ok(Caller {
        device_id: DeviceId(stored_uuid(&device)?),
        worker_id: stored_uuid(&worker)?,
        team_id: stored_uuid(&team)?,
        role: Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?,
    }))
}

/// Issues `device` a new lock-state credential (replacing any earlier one): a random secret,
/// stored hashed, that [`check_standing`] accepts and nothing else does. The tablet keeps it
/// outside its encrypted store, so it can ask "am I revoked?" while locked.
pub fn issue_standing(conn: &dyn Db, device: DeviceId) -> Result<String, IdentityError> {
    let token = hex(&random_bytes::<32>()?);
    let n = conn.execute(
        "UPDATE devices SET standing_hash = ?2 WHERE id = ?1 AND active = 1",
        args![device.0, hash(&token)],
    )?;
    if n == 0 {
        return Err(IdentityError::NotFound("device"));
    }
    Ok(token)
}

/// What a lock-state credential learns: its device stands (`Ok`, with the device's id for
/// rate limiting), was revoked or its worker disabled, or the credential is unknown. It opens
/// nothing: no record is read or written, and a device token is not one.
pub fn check_standing(
    conn: &dyn Db,
    token: &str,
) -> Result<Result<DeviceId, Denied>, IdentityError> {
    let row: Option<(Vec<u8>, bool)> = conn.one(
        "SELECT d.id, d.active = 1 AND w.active = 1
             FROM devices d JOIN workers w ON w.id = d.worker_id WHERE d.standing_hash = ?1",
        args![hash(token)],
    )?;
    Ok(match row {
        None => Err(Denied::Unknown),
        Some((_, false)) => Err(Denied::Revoked),
        Some((device, true)) => Ok(DeviceId(stored_uuid(&device)?)),
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

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
            issue_enrolment_code_for(&conn, worker, 0, MAX_ENROLMENT_CODE_TTL_MS + 1),
            Err(IdentityError::Invalid(_))
        ));
        assert!(matches!(
            enrol(&mut conn, &code, DeviceId(Uuid::now_v7()), late),
            Err(IdentityError::CodeRefused)
        ));
    }
}

#[cfg(test)]
mod revocation_tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn revoking_and_disabling_refuse_the_token_with_a_wipe_and_scope_changes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::db::open(dir.path()).unwrap();
        let team = create_team(&conn, "Team Nord", 0).unwrap();
        let other = create_team(&conn, "Team Syd", 0).unwrap();
        let worker = create_worker(&conn, team, "Anne", "outreach").unwrap();
        let enrol_one = |conn: &mut Connection| {
            let code = issue_enrolment_code(conn, worker, 0).unwrap();
            let device = DeviceId(Uuid::now_v7());
            let (_, token) = enrol(conn, &code, device, 1).unwrap();
            (device, token)
        };
        let (d1, t1) = enrol_one(&mut conn);
        let (_, t2) = enrol_one(&mut conn);
        revoke_device(&conn, d1, 5).unwrap();
        assert_eq!(check_token(&conn, &t1).unwrap(), Err(Denied::Revoked));
        assert!(check_token(&conn, &t2).unwrap().is_ok());
        // Rotation: the old token works until the new one is used, then it is unknown (no
        // wipe); a second rotation before that replaces the pending one.
        let (d3, t3) = enrol_one(&mut conn);
        let lost = rotate_token(&conn, d3).unwrap();
        let t3b = rotate_token(&conn, d3).unwrap();
        assert_eq!(check_token(&conn, &lost).unwrap(), Err(Denied::Unknown));
        assert_eq!(check_token(&conn, &t3).unwrap().unwrap().device_id, d3);
        assert_eq!(check_token(&conn, &t3b).unwrap().unwrap().device_id, d3);
        assert_eq!(check_token(&conn, &t3).unwrap(), Err(Denied::Unknown));
        assert_eq!(check_token(&conn, &t3b).unwrap().unwrap().device_id, d3);
        // A role change or a team move does not revoke: the token stays good and answers
        // with the worker's new role and team (the device follows on its next sync).
        assert!(
            !set_role(&conn, worker, "outreach", 6).unwrap(),
            "no change"
        );
        assert!(set_role(&conn, worker, "caretaker", 6).unwrap());
        assert_eq!(
            check_token(&conn, &t2).unwrap().unwrap().role,
            Role::Caretaker
        );
        assert!(move_worker(&conn, worker, other, 7).unwrap());
        assert!(!move_worker(&conn, worker, other, 7).unwrap(), "no change");
        assert_eq!(check_token(&conn, &t2).unwrap().unwrap().team_id, other);
        let (_, t5) = enrol_one(&mut conn);
        assert_eq!(check_token(&conn, &t5).unwrap().unwrap().team_id, other);
        // Disabling refuses every device and every new enrolment.
        assert_eq!(disable_worker(&conn, worker, 8).unwrap(), 3);
        assert_eq!(check_token(&conn, &t5).unwrap(), Err(Denied::Revoked));
        assert_eq!(check_token(&conn, &t2).unwrap(), Err(Denied::Revoked));
        let code = issue_enrolment_code(&conn, worker, 9);
        assert!(matches!(code, Err(IdentityError::NotFound(_))));
        enable_worker(&conn, worker).unwrap();
        assert_eq!(check_token(&conn, &t5).unwrap(), Err(Denied::Revoked));
        assert_eq!(list_devices(&conn).unwrap().len(), 4);
        assert!(list_workers(&conn).unwrap().iter().all(|w| w.active));
    }
}

/// Who `caller`'s device serves now ([`Profile`]): the worker, their teams (own first, then the
/// teams `reach` adds) with names, a caretaker's sites, and the directory of those teams'
/// workers. Read in the transaction that answers, so it agrees with the records served.
pub fn profile(
    conn: &dyn Db,
    caller: &Caller,
    reach: &crate::scope::Reach,
) -> Result<Profile, IdentityError> {
    let name: String = conn.value(
        "SELECT name FROM workers WHERE id = ?1",
        args![caller.worker_id],
    )?;
    let mut team_ids: Vec<Uuid> = vec![caller.team_id];
    team_ids.extend(reach.teams.iter().filter(|t| **t != caller.team_id));
    let mut teams = Vec::new();
    let mut directory = Vec::new();
    for team in &team_ids {
        let team_name: String = conn.value("SELECT name FROM teams WHERE id = ?1", args![team])?;
        teams.push(TeamEntry {
            id: *team,
            name: team_name,
        });
        let rows: Vec<(Uuid, String, String, bool)> = conn.all(
            "SELECT id, name, role, active FROM workers WHERE team_id = ?1 ORDER BY name, id",
            args![team],
        )?;
        for (id, name, role, active) in rows {
            directory.push(DirectoryEntry {
                id,
                name,
                role: Role::parse(&role).ok_or(IdentityError::Invalid("stored role"))?,
                team_id: *team,
                active,
            });
        }
    }
    Ok(Profile {
        worker_id: caller.worker_id,
        name,
        role: caller.role,
        team_id: caller.team_id,
        teams,
        sites: reach.sites.iter().copied().collect(),
        directory,
        scope_epoch: crate::epochs::current_epoch(conn, caller.worker_id)?,
    })
}
