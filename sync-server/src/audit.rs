//! The audit trail (DESIGN §6): who read or wrote which record about which citizen, and when.
//!
//! Append-only twice over. Triggers refuse UPDATE and DELETE, which stops mistakes; and every row
//! carries the SHA-256 of its predecessor, so someone with write access to the file who drops the
//! triggers and edits, deletes or reorders rows is still found by [`verify`]. The chain's head
//! (last hash and seq) is kept in `server_state`, so cutting off the newest rows is found too.
//! The hashes carry no key: someone who can write the file can also rewrite the chain from any
//! row on, recompute every later hash and the head, and [`verify`] alone passes. What closes
//! that gap is an [`Anchor`] kept off the server (`audit-verify` prints one; `audit-verify
//! --since` checks the chain still runs through it, with [`verify_from`]).
//!
//! Rows hold ids and names of actions, never field values, so the log itself adds no personal
//! data beyond who touched which record.

use crate::args;
use crate::storage::{self, Db, DbExt, StorageError, Value};
use serde::Serialize;
use uuid::Uuid;

/// Domain separation: these hashes can never collide with another use of SHA-256 in Feltbog.
/// A change of the encoding must change the tag.
const TAG: &[u8] = b"feltbog/audit/v1\0";

/// The `prev_hash` of the first row.
const GENESIS: [u8; 32] = [0; 32];

const INSERT: &str = "INSERT INTO audit (seq, at_ms, actor, worker_id, device_id, action, entity, \
     record_id, citizen_id, device_at_ms, operator, detail, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const COLUMNS: &str = "seq, at_ms, actor, worker_id, device_id, action, entity, record_id, \
     citizen_id, device_at_ms, operator, detail";

/// The person at the admin command line, for the rows this process appends as the
/// administrator (set once, at start: one process, one operator).
static OPERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the operator of this admin process, for its administrator rows: 1–64 printable
/// characters.
/// It is who the operating system says ran the command (or `--operator`), not a credential.
pub fn set_operator(name: &str) -> Result<(), &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("the operator name must be 1–64 printable characters");
    }
    OPERATOR
        .set(name.to_owned())
        .map_err(|_| "the operator is set already")
}

/// Who did it. Only a device request has a worker and a device; the others act for the
/// municipality as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A field worker's enrolled device, authenticated by its token.
    Device { worker: Uuid, device: Uuid },
    /// The administrator's command line on the server.
    Admin,
    /// A supervisor signed in to the reports dashboard (no device).
    Web { worker: Uuid },
    /// The server on its own (retention, purges).
    Server,
}

impl Actor {
    /// The stable name stored in the `actor` column; part of the hash, so never rename one.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Device { .. } => "device",
            Actor::Admin => "admin",
            Actor::Server => "server",
            Actor::Web { .. } => "web",
        }
    }

    fn worker(&self) -> Option<&Uuid> {
        match self {
            Actor::Device { worker, .. } | Actor::Web { worker } => Some(worker),
            _ => None,
        }
    }

    fn device(&self) -> Option<&Uuid> {
        match self {
            Actor::Device { device, .. } => Some(device),
            _ => None,
        }
    }
}

/// What was done. The names are stored and hashed, so they are stable: add, never rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The server sent a record to a device (pull).
    Read,
    /// A device's change to a record was applied (push).
    Write,
    /// A request touched a record outside the actor's scope and was refused.
    Denied,
    /// A device reported that its user opened a record (`device_at_ms`: the device's clock).
    DeviceRead,
    /// A device was enrolled.
    Enrol,
    /// A device's token was rotated.
    Rotate,
    /// A device was revoked.
    Revoke,
    /// A worker was disabled.
    Disable,
    /// A worker was enabled again.
    Enable,
    /// A worker's role changed.
    RoleChange,
    /// A citizen moved to another team.
    Move,
    /// Devices were told to erase a citizen.
    Erase,
    /// A citizen's content was removed from the server.
    Purge,
    /// Data was exported (e.g. an Art. 15 request).
    Export,
    /// An enrolment code was issued for a worker.
    IssueCode,
    /// A worker moved to another team.
    TeamChange,
    /// A caretaker was assigned a site (`record_id`: the site, `worker_id`: the caretaker).
    AssignSite,
    /// A site was taken from a caretaker (a scope change their devices follow).
    UnassignSite,
    /// A supervisor was given another team to read, or it was taken away (two rows: the
    /// worker, the team; a scope change their devices follow).
    Supervise,
    Unsupervise,
    /// A supervisor was given (or given again) a one-time code to set a dashboard password.
    WebAccess,
    /// A dashboard sign-in succeeded, failed (`worker_id` set when the login name is known),
    /// or a session ended.
    SignIn,
    SignInRefused,
    SignOut,
    /// A report was viewed or exported (`detail`: the report, its filter and format).
    ReportView,
    ReportExport,
    /// A closed case taken off the devices was reopened: back on its team's devices.
    Reopen,
}

impl Action {
    /// The stable snake_case name stored in the `action` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Denied => "denied",
            Action::DeviceRead => "device_read",
            Action::Enrol => "enrol",
            Action::Rotate => "rotate",
            Action::Revoke => "revoke",
            Action::Disable => "disable",
            Action::Enable => "enable",
            Action::RoleChange => "role_change",
            Action::Move => "move",
            Action::Erase => "erase",
            Action::Purge => "purge",
            Action::IssueCode => "issue_code",
            Action::TeamChange => "team_change",
            Action::Export => "export",
            Action::AssignSite => "assign_site",
            Action::UnassignSite => "unassign_site",
            Action::Supervise => "supervise",
            Action::Unsupervise => "unsupervise",
            Action::WebAccess => "web_access",
            Action::SignIn => "sign_in",
            Action::SignInRefused => "sign_in_refused",
            Action::SignOut => "sign_out",
            Action::ReportView => "report_view",
            Action::ReportExport => "report_export",
            Action::Reopen => "reopen_case",
        }
    }
}

/// One row to append. Build with [`Entry::device`], [`Entry::admin`] or [`Entry::server`] and
/// the builder methods; `entity` is a stable name such as `"citizen"` or `"visit"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    pub entity: Option<&'static str>,
    pub record_id: Option<Uuid>,
    pub citizen_id: Option<Uuid>,
    pub device_at_ms: Option<u64>,
}

impl Entry {
    /// Done by a worker's device.
    pub fn device(worker: Uuid, device: Uuid, action: Action) -> Entry {
        Entry::by(Actor::Device { worker, device }, action)
    }

    /// Done by the administrator.
    pub fn admin(action: Action) -> Entry {
        Entry::by(Actor::Admin, action)
    }

    /// Done by the server on its own.
    pub fn server(action: Action) -> Entry {
        Entry::by(Actor::Server, action)
    }

    /// Done by a supervisor signed in to the dashboard.
    pub fn by_web(worker: Uuid, action: Action) -> Entry {
        Entry::by(Actor::Web { worker }, action)
    }

    fn by(actor: Actor, action: Action) -> Entry {
        Entry {
            actor,
            action,
            entity: None,
            record_id: None,
            citizen_id: None,
            device_at_ms: None,
        }
    }

    /// About one record, and the citizen it concerns if any (a citizen record is about itself),
    /// so [`export_citizen`] finds it.
    pub fn record(self, entity: &'static str, id: Uuid, citizen: Option<Uuid>) -> Entry {
        Entry {
            entity: Some(entity),
            record_id: Some(id),
            citizen_id: citizen,
            ..self
        }
    }

    /// An administrator's decision about a worker's scope, as two rows: whose scope changed,
    /// and by which record (a site, a team).
    pub fn admin_decision(action: Action, worker: Uuid, by: (&'static str, Uuid)) -> [Entry; 2] {
        [
            Entry::admin(action).record("worker", worker, None),
            Entry::admin(action).record(by.0, by.1, None),
        ]
    }

    /// About a citizen as a whole, not one record (move, erase, purge, export).
    pub fn citizen(self, citizen: Uuid) -> Entry {
        Entry {
            citizen_id: Some(citizen),
            ..self
        }
    }

    /// When the device says it happened (its own clock, for [`Action::DeviceRead`]).
    pub fn device_at(self, ms: u64) -> Entry {
        Entry {
            device_at_ms: Some(ms),
            ..self
        }
    }
}

/// The outcome of a successful [`verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Rows in the chain.
    pub rows: u64,
    /// The last row's hash; `None` for an empty log. Keep a copy elsewhere to detect truncation
    /// by someone who can also rewrite `server_state`.
    pub head: Option<[u8; 32]>,
}

/// Audit failures. Messages name rows by seq only: never personal data.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: {0}")]
    Storage(#[from] StorageError),
    /// A time or count beyond what the log stores.
    #[error("a value is out of range")]
    OutOfRange,
    /// The chain does not hold: `seq` is the first row found wrong.
    #[error("audit row {seq}: {why}")]
    Broken { seq: u64, why: &'static str },
    #[error("audit export: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends one row inside the caller's transaction (or its own if there is none) and returns
/// its seq. `at_ms` is the server clock, UTC.
///
/// seq = `server_state.audit_seq` + 1; prev_hash = `server_state.audit_head` (32 zero bytes for
/// the first row); hash = SHA-256 over a domain-separation tag, prev_hash and a canonical,
/// length-prefixed encoding of every column, `None` distinct from empty. Then the head moves.
/// A failure leaves neither the row nor the head behind.
pub fn append(conn: &dyn Db, at_ms: u64, entry: &Entry) -> Result<u64, AuditError> {
    in_savepoint(conn, "audit_append", true, || {
        append_rows(conn, at_ms, std::slice::from_ref(entry), None)
    })
}

/// [`append`] with a detail: what a report view covered, as JSON (report, period, team ids,
/// format). Never personal data: the caller builds it from a report's filter only.
pub fn append_detailed(
    conn: &dyn Db,
    at_ms: u64,
    entry: &Entry,
    detail: &str,
) -> Result<u64, AuditError> {
    in_savepoint(conn, "audit_append", true, || {
        append_rows(conn, at_ms, std::slice::from_ref(entry), Some(detail))
    })
}

/// [`append`] for many rows at once, all or none: the head is read once, the statement prepared
/// once and the head written once, so a pull's thousand reads cost little more than their
/// inserts.
pub fn append_many(conn: &dyn Db, at_ms: u64, entries: &[Entry]) -> Result<(), AuditError> {
    if entries.is_empty() {
        return Ok(());
    }
    in_savepoint(conn, "audit_append", true, || {
        append_rows(conn, at_ms, entries, None)
    })?;
    Ok(())
}

fn append_rows(
    conn: &dyn Db,
    at_ms: u64,
    entries: &[Entry],
    detail: Option<&str>,
) -> Result<u64, AuditError> {
    let at = to_i64(at_ms)?;
    let (head, mut seq): (Option<Vec<u8>>, i64) = conn.value(
        "SELECT audit_head, audit_seq FROM server_state WHERE id = 1",
        &[],
    )?;
    let mut prev = match (head, seq) {
        (None, 0) => GENESIS,
        (Some(h), s) if s > 0 => h.try_into().map_err(|_| broken(s, MALFORMED_HEAD))?,
        (_, s) => return Err(broken(s, MALFORMED_HEAD)),
    };
    for e in entries {
        seq += 1;
        let device_at = e.device_at_ms.map(to_i64).transpose()?;
        let row = Row {
            seq,
            at_ms: at,
            actor: e.actor.as_str(),
            worker: e.actor.worker().map(|u| &u.as_bytes()[..]),
            device: e.actor.device().map(|u| &u.as_bytes()[..]),
            action: e.action.as_str(),
            entity: e.entity,
            record: e.record_id.as_ref().map(|u| &u.as_bytes()[..]),
            citizen: e.citizen_id.as_ref().map(|u| &u.as_bytes()[..]),
            device_at_ms: device_at,
            operator: match e.actor {
                Actor::Admin => OPERATOR.get().map(String::as_str),
                _ => None,
            },
            detail,
        };
        let hash = chain_hash(&prev, &row);
        conn.execute(
            INSERT,
            args![
                row.seq,
                row.at_ms,
                row.actor,
                row.worker,
                row.device,
                row.action,
                row.entity,
                row.record,
                row.citizen,
                row.device_at_ms,
                row.operator,
                row.detail,
                &prev,
                &hash,
            ],
        )?;
        prev = hash;
    }
    conn.execute(
        "UPDATE server_state SET audit_head = ?1, audit_seq = ?2 WHERE id = 1",
        args![&prev, seq],
    )?;
    Ok(seq as u64)
}

const MALFORMED_HEAD: &str = "the chain head in server_state is malformed";

/// Walks the chain from the first row, streaming, in one read snapshot. Finds an edited row
/// (its hash no longer matches its contents), a deleted row (a gap in seq: names the first row
/// after it; or, at the end, `server_state` recording more rows than exist: names the last row
/// left), a reordered row (seq is hashed), a row not linked to the one before, and rows added
/// behind [`append`]'s back. Returns the first fault as [`AuditError::Broken`].
pub fn verify(conn: &dyn Db) -> Result<Verified, AuditError> {
    in_savepoint(conn, "audit_verify", false, || verify_rows(conn, None))
}

/// A chain head kept off the server (printed by an earlier `audit-verify`): row `seq` had
/// hash `hash`. The chain's hashes alone cannot tell a consistent rewrite from the original,
/// since anyone with the file can recompute them; a kept anchor can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl std::str::FromStr for Anchor {
    type Err = &'static str;

    /// `SEQ:HEX`, as `audit-verify` prints it.
    fn from_str(s: &str) -> Result<Anchor, Self::Err> {
        const FORM: &str = "expected SEQ:HASH as printed by audit-verify";
        let (seq, hex) = s.split_once(':').ok_or(FORM)?;
        let seq = seq.parse().map_err(|_| FORM)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(FORM);
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| FORM)?;
        }
        Ok(Anchor { seq, hash })
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.seq)?;
        self.hash.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// [`verify`], and that the chain still runs through `anchor`: any edit, deletion or rewrite
/// of a row up to the anchor's is found, even one with every later hash recomputed.
pub fn verify_from(conn: &dyn Db, anchor: Anchor) -> Result<Verified, AuditError> {
    in_savepoint(conn, "audit_verify", false, || {
        verify_rows(conn, Some(anchor))
    })
}

fn verify_rows(conn: &dyn Db, anchor: Option<Anchor>) -> Result<Verified, AuditError> {
    let mut expected: i64 = 1;
    let mut prev = GENESIS;
    let sql = format!("SELECT {COLUMNS}, prev_hash, hash FROM audit ORDER BY seq");
    storage::each_row(conn, &sql, &[], |r| -> Result<(), AuditError> {
        let seq: i64 = r.get(0)?;
        if seq > expected {
            return Err(broken(seq, "rows before it are missing"));
        }
        if seq < expected {
            return Err(broken(seq, "it is out of sequence"));
        }
        let (row, prev_hash, hash) = read_columns(&r, true).map_err(|why| broken(seq, why))?;
        if chain_hash(&prev_hash, &row) != hash {
            return Err(broken(seq, "its contents do not match its hash"));
        }
        if prev_hash != prev {
            return Err(broken(seq, "it does not follow the row before it"));
        }
        if let Some(a) = anchor
            && a.seq == seq as u64
            && a.hash != hash
        {
            return Err(broken(
                seq,
                "it differs from the kept head: the chain was rewritten up to here",
            ));
        }
        prev = hash;
        expected += 1;
        Ok(())
    })?;
    let last = expected - 1;
    if let Some(a) = anchor
        && a.seq > last as u64
    {
        return Err(broken(
            a.seq as i64,
            "the kept head's row is missing: the chain was cut",
        ));
    }
    let (head, recorded): (Option<Vec<u8>>, i64) = conn.value(
        "SELECT audit_head, audit_seq FROM server_state WHERE id = 1",
        &[],
    )?;
    if recorded > last {
        return Err(if last == 0 {
            broken(1, "missing, with every row after it")
        } else {
            broken(last, "the rows after it are missing")
        });
    }
    if recorded < last {
        return Err(broken(
            recorded + 1,
            "it lies beyond the recorded chain head",
        ));
    }
    let matches = match &head {
        None => last == 0,
        Some(h) => last > 0 && h[..] == prev[..],
    };
    if !matches {
        return Err(broken(last, "it does not match the recorded chain head"));
    }
    Ok(Verified {
        rows: last as u64,
        head: (last > 0).then_some(prev),
    })
}

/// GDPR Art. 15: every audit row about one citizen, oldest first, as JSON lines
/// `{seq, at, actor, worker_id, device_id, action, entity, record_id, citizen_id, device_at}`
/// (times RFC 3339 UTC, ids hyphenated, absent values null) written to `out`. Returns the
/// number of rows. The hashes are not part of it: they say nothing about the citizen.
pub fn export_citizen(
    conn: &dyn Db,
    citizen: Uuid,
    out: &mut dyn std::io::Write,
) -> Result<u64, AuditError> {
    let sql = format!("SELECT {COLUMNS} FROM audit WHERE citizen_id = ?1 ORDER BY seq");
    let mut count = 0;
    storage::each_row(conn, &sql, args![citizen], |r| -> Result<(), AuditError> {
        let seq: i64 = r.get(0)?;
        let line = export_line(&r).map_err(|why| broken(seq, why))?;
        let mut buf = serde_json::to_vec(&line).map_err(std::io::Error::from)?;
        buf.push(b'\n');
        out.write_all(&buf)?;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// One exported row: exactly the listed columns, in this order.
#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    at: String,
    actor: &'a str,
    worker_id: Option<Uuid>,
    device_id: Option<Uuid>,
    action: &'a str,
    entity: Option<&'a str>,
    record_id: Option<Uuid>,
    citizen_id: Option<Uuid>,
    device_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

fn export_line(r: &storage::Row) -> Result<Line<'_>, &'static str> {
    let (row, ..) = read_columns(r, false)?;
    let id = |b: Option<&[u8]>| {
        b.map(|b| Uuid::from_slice(b).map_err(|_| "an id is malformed"))
            .transpose()
    };
    Ok(Line {
        seq: row.seq as u64,
        at: rfc3339(row.at_ms)?,
        actor: row.actor,
        worker_id: id(row.worker)?,
        device_id: id(row.device)?,
        action: row.action,
        entity: row.entity,
        record_id: id(row.record)?,
        citizen_id: id(row.citizen)?,
        device_at: row.device_at_ms.map(rfc3339).transpose()?,
        operator: row.operator,
        detail: row.detail,
    })
}

fn rfc3339(ms: i64) -> Result<String, &'static str> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ok_or("a time is out of range")
}

/// The hashed columns of one row, as stored.
struct Row<'a> {
    seq: i64,
    at_ms: i64,
    actor: &'a str,
    worker: Option<&'a [u8]>,
    device: Option<&'a [u8]>,
    action: &'a str,
    entity: Option<&'a str>,
    record: Option<&'a [u8]>,
    citizen: Option<&'a [u8]>,
    device_at_ms: Option<i64>,
    /// Added in schema 4: hashed only when present, so earlier rows keep their hashes.
    operator: Option<&'a str>,
    /// Added in schema 6, the same way.
    detail: Option<&'a str>,
}

/// SHA-256(tag, prev, each column in order). Each column is a presence byte (0: NULL) and, if
/// present, its length (u64 big-endian) and bytes; integers are 8 bytes big-endian. So no two
/// different rows encode alike, and NULL differs from empty.
fn chain_hash(prev: &[u8; 32], row: &Row) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(TAG);
    ctx.update(prev);
    let mut put = |v: Option<&[u8]>| match v {
        None => ctx.update(&[0]),
        Some(b) => {
            ctx.update(&[1]);
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b);
        }
    };
    put(Some(&row.seq.to_be_bytes()));
    put(Some(&row.at_ms.to_be_bytes()));
    put(Some(row.actor.as_bytes()));
    put(row.worker);
    put(row.device);
    put(Some(row.action.as_bytes()));
    put(row.entity.map(str::as_bytes));
    put(row.record);
    put(row.citizen);
    put(row
        .device_at_ms
        .map(i64::to_be_bytes)
        .as_ref()
        .map(|b| &b[..]));
    // Every field before is self-delimiting and their number fixed, so a row with an operator
    // never encodes like one without.
    // A detail brings the operator slot with it (present or not), so a row with a detail
    // never encodes like one with an operator only.
    match (row.operator, row.detail) {
        (operator, Some(detail)) => {
            put(operator.map(str::as_bytes));
            put(Some(detail.as_bytes()));
        }
        (Some(operator), None) => put(Some(operator.as_bytes())),
        (None, None) => {}
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

type Columns<'r> = (Row<'r>, [u8; 32], [u8; 32]);

/// A row's columns and (if `hashes`) its prev_hash and hash. Wrong types are a fault of the
/// row, not of the database, so they come back as a reason naming no value.
fn read_columns(r: &storage::Row, hashes: bool) -> Result<Columns<'_>, &'static str> {
    const WRONG: &str = "a column has the wrong type";
    let get = |i: usize| r.0.get(i).ok_or(WRONG);
    let int = |v: &Value| match v {
        Value::Int(i) => Ok(*i),
        _ => Err(WRONG),
    };
    let int_or_null = |v: &Value| match v {
        Value::Null => Ok(None),
        v => int(v).map(Some),
    };
    fn text(v: &Value) -> Result<&str, &'static str> {
        match v {
            Value::Text(s) => Ok(s),
            _ => Err(WRONG),
        }
    }
    fn text_or_null(v: &Value) -> Result<Option<&str>, &'static str> {
        match v {
            Value::Null => Ok(None),
            v => text(v).map(Some),
        }
    }
    fn blob_or_null(v: &Value) -> Result<Option<&[u8]>, &'static str> {
        match v {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b)),
            _ => Err(WRONG),
        }
    }
    let hash = |v: &Value| -> Result<[u8; 32], &'static str> {
        match v {
            Value::Blob(b) => b[..].try_into().map_err(|_| "a hash is malformed"),
            _ => Err(WRONG),
        }
    };
    let row = Row {
        seq: int(get(0)?)?,
        at_ms: int(get(1)?)?,
        actor: text(get(2)?)?,
        worker: blob_or_null(get(3)?)?,
        device: blob_or_null(get(4)?)?,
        action: text(get(5)?)?,
        entity: text_or_null(get(6)?)?,
        record: blob_or_null(get(7)?)?,
        citizen: blob_or_null(get(8)?)?,
        device_at_ms: int_or_null(get(9)?)?,
        operator: text_or_null(get(10)?)?,
        detail: text_or_null(get(11)?)?,
    };
    let (prev, this) = if hashes {
        (hash(get(12)?)?, hash(get(13)?)?)
    } else {
        (GENESIS, GENESIS)
    };
    Ok((row, prev, this))
}

fn broken(seq: i64, why: &'static str) -> AuditError {
    AuditError::Broken {
        seq: u64::try_from(seq).unwrap_or(0),
        why,
    }
}

fn to_i64(v: u64) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| AuditError::OutOfRange)
}

/// Runs `f` in a savepoint nested in the caller's transaction, or without one in a transaction
/// of its own (IMMEDIATE when writing, so it cannot fail to upgrade a read snapshot). Rolled
/// back on failure, so a half-written batch never reaches the caller's commit; always rolled
/// back when `!keep` (a read snapshot).
fn in_savepoint<T>(
    conn: &dyn Db,
    name: &str,
    keep: bool,
    f: impl FnOnce() -> Result<T, AuditError>,
) -> Result<T, AuditError> {
    // Only a SQLite connection is ever used outside a transaction ([`Db::in_transaction`]).
    let outer = !conn.in_transaction();
    conn.execute(
        &if outer && keep {
            "BEGIN IMMEDIATE".to_string()
        } else {
            format!("SAVEPOINT {name}")
        },
        &[],
    )?;
    let result = f();
    if keep && result.is_ok() {
        let end = if outer {
            "COMMIT".to_string()
        } else {
            format!("RELEASE SAVEPOINT {name}")
        };
        return match conn.execute(&end, &[]) {
            Ok(_) => result,
            Err(e) => {
                let _ = undo(conn, name, outer);
                Err(e.into())
            }
        };
    }
    let undone = undo(conn, name, outer);
    let value = result?;
    undone?;
    Ok(value)
}

fn undo(conn: &dyn Db, name: &str, outer: bool) -> Result<(), StorageError> {
    if !outer {
        conn.execute(&format!("ROLLBACK TO SAVEPOINT {name}"), &[])?;
        conn.execute(&format!("RELEASE SAVEPOINT {name}"), &[])?;
    } else if conn.in_transaction() {
        conn.execute("ROLLBACK", &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use std::collections::BTreeSet;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        (dir, conn)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A mix of actors and shapes: device reads and writes about two citizens, admin actions,
    /// a device read with the device's clock, an anonymous record.
    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let citizen = id(100 + (i % 2) as u128);
                match i % 5 {
                    0 => Entry::device(id(1), id(2), Action::Read).record(
                        "citizen",
                        citizen,
                        Some(citizen),
                    ),
                    1 => Entry::device(id(1), id(2), Action::Write).record(
                        "visit",
                        id(1000 + i as u128),
                        Some(citizen),
                    ),
                    2 => Entry::admin(Action::Move).citizen(citizen),
                    3 => Entry::device(id(3), id(4), Action::DeviceRead)
                        .record("visit", id(2000 + i as u128), Some(citizen))
                        .device_at(1_700_000_000_000 + i as u64),
                    _ => Entry::server(Action::Purge).record("site", id(3000 + i as u128), None),
                }
            })
            .collect()
    }

    fn fill(conn: &mut Connection, n: usize) {
        let tx = conn.transaction().unwrap();
        append_many(&tx, 1_700_000_000_000, &entries(n)).unwrap();
        tx.commit().unwrap();
    }

    fn state(conn: &Connection) -> (Option<Vec<u8>>, i64) {
        conn.query_row(
            "SELECT audit_head, audit_seq FROM server_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn unlock(conn: &Connection) {
        conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn broken_at(conn: &Connection) -> (u64, String) {
        match verify(conn) {
            Err(e @ AuditError::Broken { seq, .. }) => (seq, e.to_string()),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_of_n_rows_verifies_with_its_count_and_head() {
        let (_dir, mut conn) = db();
        assert_eq!(append(&conn, 5, &entries(1)[0]).unwrap(), 1);
        fill(&mut conn, 49);
        let v = verify(&conn).unwrap();
        assert_eq!(v.rows, 50);
        let last: Vec<u8> = conn
            .query_row("SELECT hash FROM audit WHERE seq = 50", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v.head.unwrap().to_vec(), last);
        assert_eq!(state(&conn), (Some(last), 50));
    }

    #[test]
    fn an_empty_log_verifies_with_no_head() {
        let (_dir, conn) = db();
        assert_eq!(
            verify(&conn).unwrap(),
            Verified {
                rows: 0,
                head: None
            }
        );
    }

    #[test]
    fn rows_link_to_their_predecessor_from_zero() {
        let (_dir, conn) = db();
        for (i, e) in entries(4).iter().enumerate() {
            assert_eq!(append(&conn, 10, e).unwrap(), i as u64 + 1);
        }
        let mut stmt = conn
            .prepare("SELECT prev_hash, hash FROM audit ORDER BY seq")
            .unwrap();
        let links: Vec<(Vec<u8>, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(links[0].0, vec![0; 32]);
        for w in links.windows(2) {
            assert_eq!(w[1].0, w[0].1);
        }
    }

    #[test]
    fn append_many_writes_the_same_chain_as_one_by_one() {
        let (_d1, a) = db();
        let (_d2, b) = db();
        let es = entries(12);
        for e in &es {
            append(&a, 7, e).unwrap();
        }
        append_many(&b, 7, &es[..5]).unwrap();
        append_many(&b, 7, &[]).unwrap();
        append_many(&b, 7, &es[5..]).unwrap();
        assert_eq!(verify(&a).unwrap(), verify(&b).unwrap());
        assert_eq!(state(&a), state(&b));
    }

    #[test]
    fn null_and_empty_hash_differently() {
        let row = |entity| Row {
            seq: 1,
            at_ms: 0,
            actor: "admin",
            worker: None,
            device: None,
            action: "read",
            entity,
            record: None,
            citizen: None,
            device_at_ms: None,
            operator: None,
            detail: None,
        };
        assert_ne!(
            chain_hash(&GENESIS, &row(None)),
            chain_hash(&GENESIS, &row(Some("")))
        );
        // Shifting bytes between neighbouring columns changes the hash.
        let mut a = row(Some("ab"));
        a.actor = "x";
        let mut b = row(Some("b"));
        b.actor = "x";
        b.action = "reada";
        assert_ne!(chain_hash(&GENESIS, &a), chain_hash(&GENESIS, &b));
    }

    #[test]
    fn the_triggers_refuse_update_and_delete() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 3);
        let update = conn
            .execute("UPDATE audit SET action = 'write' WHERE seq = 2", [])
            .unwrap_err();
        assert!(update.to_string().contains("append-only"), "{update}");
        let delete = conn
            .execute("DELETE FROM audit WHERE seq = 3", [])
            .unwrap_err();
        assert!(delete.to_string().contains("append-only"), "{delete}");
        assert_eq!(verify(&conn).unwrap().rows, 3);
    }

    #[test]
    fn an_edited_action_is_found_naming_its_seq() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 10);
        unlock(&conn);
        conn.execute("UPDATE audit SET action = 'write' WHERE seq = 6", [])
            .unwrap();
        let (seq, msg) = broken_at(&conn);
        assert_eq!(seq, 6);
        assert_eq!(msg, "audit row 6: its contents do not match its hash");
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_is_found_at_the_next_row() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 10);
        unlock(&conn);
        // Forge row 6 as a consistent row: only its successor's link can tell.
        let prev: Vec<u8> = conn
            .query_row("SELECT prev_hash FROM audit WHERE seq = 6", [], |r| {
                r.get(0)
            })
            .unwrap();
        let forged = Row {
            seq: 6,
            at_ms: 1,
            actor: "admin",
            worker: None,
            device: None,
            action: "enable",
            entity: None,
            record: None,
            citizen: None,
            device_at_ms: None,
            operator: None,
            detail: None,
        };
        let hash = chain_hash(&prev.try_into().unwrap(), &forged);
        conn.execute(
            "UPDATE audit SET at_ms = 1, actor = 'admin', worker_id = NULL, device_id = NULL, \
             action = 'enable', entity = NULL, record_id = NULL, citizen_id = NULL, \
             device_at_ms = NULL, hash = ?1 WHERE seq = 6",
            [&hash[..]],
        )
        .unwrap();
        assert_eq!(broken_at(&conn).0, 7);
    }

    #[test]
    fn a_deleted_middle_row_is_found_naming_the_row_after_it() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 10);
        unlock(&conn);
        conn.execute("DELETE FROM audit WHERE seq = 4", []).unwrap();
        let (seq, msg) = broken_at(&conn);
        assert_eq!(seq, 5);
        assert_eq!(msg, "audit row 5: rows before it are missing");
    }

    #[test]
    fn a_deleted_first_row_is_found() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 3);
        unlock(&conn);
        conn.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
        assert_eq!(broken_at(&conn).0, 2);
    }

    #[test]
    fn a_deleted_last_row_is_found_by_the_head() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 10);
        unlock(&conn);
        conn.execute("DELETE FROM audit WHERE seq = 10", [])
            .unwrap();
        let (seq, msg) = broken_at(&conn);
        assert_eq!(seq, 9);
        assert_eq!(msg, "audit row 9: the rows after it are missing");
        // Every row deleted.
        conn.execute("DELETE FROM audit", []).unwrap();
        assert_eq!(broken_at(&conn).0, 1);
    }

    /// The encoding is a stored format: rows hashed before the operator column existed must
    /// hash the same now (a known answer, computed once with the encoding of schema 3).
    #[test]
    fn a_row_without_an_operator_hashes_as_before_and_one_with_covers_it() {
        let citizen = id(100);
        let row = |operator| Row {
            seq: 7,
            at_ms: 1_700_000_000_000,
            actor: "admin",
            worker: None,
            device: None,
            action: "move",
            entity: Some("citizen"),
            record: Some(citizen.as_bytes()),
            citizen: Some(citizen.as_bytes()),
            device_at_ms: None,
            operator,
            detail: None,
        };
        let hex = |h: [u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(chain_hash(&GENESIS, &row(None))), KNOWN_ANSWER);
        let named = chain_hash(&GENESIS, &row(Some("Anne")));
        assert_ne!(hex(named), KNOWN_ANSWER);
        assert_ne!(named, chain_hash(&GENESIS, &row(Some("Bo"))));
        // A detail (schema 6) is covered, and never encodes like an operator of the same text.
        let detailed = |operator, detail| {
            chain_hash(
                &GENESIS,
                &Row {
                    detail,
                    ..row(operator)
                },
            )
        };
        assert_ne!(detailed(None, Some("Anne")), named);
        assert_ne!(detailed(None, Some("x")), detailed(None, Some("y")));
        assert_ne!(detailed(Some("Anne"), Some("x")), detailed(None, Some("x")));
    }

    /// Row 7 above as schema 3 hashed it.
    const KNOWN_ANSWER: &str = "01cf1fdd704936e3adea408d2bfd0d1650e5b5c3e226d80c3514524b405243d4";

    #[test]
    fn an_edited_operator_is_found() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 2);
        let (prev, seq): (Vec<u8>, i64) = conn
            .query_row(
                "SELECT hash, seq FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let row = Row {
            seq: seq + 1,
            at_ms: 5,
            actor: "admin",
            worker: None,
            device: None,
            action: "export",
            entity: None,
            record: None,
            citizen: None,
            device_at_ms: None,
            operator: Some("Anne"),
            detail: None,
        };
        let hash = chain_hash(&prev.clone().try_into().unwrap(), &row);
        conn.execute(
            "INSERT INTO audit (seq, at_ms, actor, action, operator, prev_hash, hash)
             VALUES (?1, 5, 'admin', 'export', 'Anne', ?2, ?3)",
            rusqlite::params![seq + 1, &prev, &hash[..]],
        )
        .unwrap();
        conn.execute(
            "UPDATE server_state SET audit_head = ?1, audit_seq = ?2 WHERE id = 1",
            rusqlite::params![&hash[..], seq + 1],
        )
        .unwrap();
        assert_eq!(verify(&conn).unwrap().rows, 3);
        unlock(&conn);
        conn.execute("UPDATE audit SET operator = 'Bo' WHERE seq = 3", [])
            .unwrap();
        let (at, msg) = broken_at(&conn);
        assert_eq!(at, 3);
        assert!(msg.contains("do not match its hash"), "{msg}");
    }

    #[test]
    fn a_last_row_replaced_without_the_head_is_found() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 4);
        unlock(&conn);
        // A consistent replacement of row 4, but server_state still holds the old head.
        let prev: Vec<u8> = conn
            .query_row("SELECT prev_hash FROM audit WHERE seq = 4", [], |r| {
                r.get(0)
            })
            .unwrap();
        let forged = Row {
            seq: 4,
            at_ms: 1,
            actor: "server",
            worker: None,
            device: None,
            action: "purge",
            entity: None,
            record: None,
            citizen: None,
            device_at_ms: None,
            operator: None,
            detail: None,
        };
        let hash = chain_hash(&prev.clone().try_into().unwrap(), &forged);
        conn.execute("DELETE FROM audit WHERE seq = 4", []).unwrap();
        conn.execute(
            "INSERT INTO audit (seq, at_ms, actor, action, prev_hash, hash) \
             VALUES (4, 1, 'server', 'purge', ?1, ?2)",
            rusqlite::params![&prev, &hash[..]],
        )
        .unwrap();
        let (seq, msg) = broken_at(&conn);
        assert_eq!(seq, 4);
        assert!(msg.contains("recorded chain head"), "{msg}");
    }

    /// Rolls the chain back to row `keep` as someone with the file could: rows after it gone,
    /// the head in `server_state` set to match.
    fn roll_back_to(conn: &Connection, keep: i64) {
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
        )
        .unwrap();
        conn.execute("DELETE FROM audit WHERE seq > ?1", [keep])
            .unwrap();
        conn.execute(
            "UPDATE server_state SET audit_head = (SELECT hash FROM audit WHERE seq = ?1),
                 audit_seq = ?1 WHERE id = 1",
            [keep],
        )
        .unwrap();
    }

    #[test]
    fn a_consistent_rewrite_passes_verify_but_not_a_kept_anchor() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 4);
        let v = verify(&conn).unwrap();
        let anchor = Anchor {
            seq: v.rows,
            hash: v.head.unwrap(),
        };
        assert_eq!(anchor.to_string().parse::<Anchor>().unwrap(), anchor);
        fill(&mut conn, 3);
        assert_eq!(verify_from(&conn, anchor).unwrap().rows, 7);
        // Rows 2.. replaced by others, every hash recomputed: the chain alone looks intact.
        roll_back_to(&conn, 1);
        let tx = conn.transaction().unwrap();
        append_many(&tx, 1_800_000_000_000, &entries(6)[1..]).unwrap();
        tx.commit().unwrap();
        assert_eq!(verify(&conn).unwrap().rows, 6);
        let err = verify_from(&conn, anchor).unwrap_err().to_string();
        assert!(
            err.starts_with("audit row 4: it differs from the kept head"),
            "{err}"
        );
        // Cut back before the anchor, head rewritten: found too.
        roll_back_to(&conn, 2);
        assert!(verify(&conn).is_ok());
        let err = verify_from(&conn, anchor).unwrap_err().to_string();
        assert!(
            err.starts_with("audit row 4: the kept head's row is missing"),
            "{err}"
        );
        assert!("4:abc".parse::<Anchor>().is_err());
    }

    #[test]
    fn a_row_added_behind_appends_back_is_found() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 3);
        let head = verify(&conn).unwrap().head.unwrap();
        let forged = Row {
            seq: 4,
            at_ms: 1,
            actor: "admin",
            worker: None,
            device: None,
            action: "enable",
            entity: None,
            record: None,
            citizen: None,
            device_at_ms: None,
            operator: None,
            detail: None,
        };
        let hash = chain_hash(&head, &forged);
        conn.execute(
            "INSERT INTO audit (seq, at_ms, actor, action, prev_hash, hash) \
             VALUES (4, 1, 'admin', 'enable', ?1, ?2)",
            rusqlite::params![&head[..], &hash[..]],
        )
        .unwrap();
        assert_eq!(broken_at(&conn).0, 4);
    }

    #[test]
    fn reordered_rows_are_found() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 6);
        unlock(&conn);
        conn.execute_batch(
            "UPDATE audit SET seq = -3 WHERE seq = 3;
             UPDATE audit SET seq = 3 WHERE seq = 4;
             UPDATE audit SET seq = 4 WHERE seq = -3;",
        )
        .unwrap();
        assert_eq!(broken_at(&conn).0, 3);
    }

    #[test]
    fn a_failed_batch_leaves_no_trace() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 3);
        let before = state(&conn);
        let mut es = entries(5);
        es[3].device_at_ms = Some(u64::MAX); // fails after three inserts
        // Without a transaction of the caller's.
        assert!(matches!(
            append_many(&conn, 9, &es),
            Err(AuditError::OutOfRange)
        ));
        assert!(conn.is_autocommit());
        assert_eq!(state(&conn), before);
        assert_eq!(verify(&conn).unwrap().rows, 3);
        // Inside one, which the caller then commits anyway.
        let tx = conn.transaction().unwrap();
        append(&tx, 9, &es[0]).unwrap();
        assert!(append_many(&tx, 9, &es).is_err());
        tx.commit().unwrap();
        assert_eq!(verify(&conn).unwrap().rows, 4);
    }

    #[test]
    fn verify_works_inside_the_callers_transaction() {
        let (_dir, mut conn) = db();
        let tx = conn.transaction().unwrap();
        append_many(&tx, 1, &entries(3)).unwrap();
        assert_eq!(verify(&tx).unwrap().rows, 3);
        append(&tx, 2, &entries(1)[0]).unwrap();
        tx.commit().unwrap();
        assert_eq!(verify(&conn).unwrap().rows, 4);
    }

    #[test]
    fn export_citizen_gives_only_that_citizens_rows_and_only_the_listed_columns() {
        let (_dir, mut conn) = db();
        fill(&mut conn, 20);
        let (ours, theirs) = (id(100), id(101));
        let mut out = Vec::new();
        let n = export_citizen(&conn, ours, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected = entries(20)
            .iter()
            .filter(|e| e.citizen_id == Some(ours))
            .count();
        assert!(expected > 5);
        assert_eq!(n as usize, expected);
        assert_eq!(lines.len(), expected);
        assert!(!text.contains(&theirs.to_string()));
        let keys: BTreeSet<&str> = [
            "seq",
            "at",
            "actor",
            "worker_id",
            "device_id",
            "action",
            "entity",
            "record_id",
            "citizen_id",
            "device_at",
        ]
        .into();
        let mut last = 0;
        for l in &lines {
            let obj = l.as_object().unwrap();
            assert_eq!(
                obj.keys().map(String::as_str).collect::<BTreeSet<_>>(),
                keys
            );
            assert_eq!(obj["citizen_id"], ours.to_string());
            assert_eq!(obj["at"], "2023-11-14T22:13:20.000Z");
            let seq = obj["seq"].as_u64().unwrap();
            assert!(seq > last, "oldest first");
            last = seq;
        }
        // Values as listed: ids hyphenated, null when absent, the device's clock as a time.
        let read = &lines[0];
        assert_eq!(read["actor"], "device");
        assert_eq!(read["worker_id"], id(1).to_string());
        assert_eq!(read["action"], "read");
        assert_eq!(read["entity"], "citizen");
        assert_eq!(read["device_at"], serde_json::Value::Null);
        let moved = lines.iter().find(|l| l["action"] == "move").unwrap();
        assert_eq!(moved["actor"], "admin");
        assert_eq!(moved["worker_id"], serde_json::Value::Null);
        assert_eq!(moved["record_id"], serde_json::Value::Null);
        let device_read = lines.iter().find(|l| l["action"] == "device_read").unwrap();
        assert!(device_read["device_at"].as_str().unwrap().ends_with('Z'));
        // Nobody else's rows: an unknown citizen has none.
        assert_eq!(export_citizen(&conn, id(999), &mut Vec::new()).unwrap(), 0);
    }

    #[test]
    fn action_names_are_stable_and_distinct() {
        use Action::*;
        let all = [
            Read,
            Write,
            Denied,
            DeviceRead,
            Enrol,
            Rotate,
            Revoke,
            Disable,
            Enable,
            RoleChange,
            Move,
            Erase,
            Purge,
            Export,
            IssueCode,
            TeamChange,
            AssignSite,
            UnassignSite,
            Supervise,
            Unsupervise,
            WebAccess,
            SignIn,
            SignInRefused,
            SignOut,
            ReportView,
            ReportExport,
            Reopen,
        ];
        let names: BTreeSet<&str> = all.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        assert_eq!(DeviceRead.as_str(), "device_read");
        assert_eq!(RoleChange.as_str(), "role_change");
    }
}
