//! Sync wire types: one definition shared by the device and the server (DESIGN §5).
//!
//! A worker's save becomes one [`Mutation`]: an atomic group of [`FieldOp`]s, identified for
//! idempotence by `(device_id, device_seq)` — the server applies a given pair at most once, so a
//! retried push cannot duplicate anything. Each op carries its own version [`Stamp`] and the
//! version the writer had seen (`base`), which is how the merge tells a sequential edit from a
//! concurrent one.
//!
//! This module must not import SQLite, HTTP or crypto: the server depends on it with
//! `default-features = false`.

use crate::access::Role;
use crate::domain::{CitizenId, EntityKind};
use crate::hlc::{DeviceId, Hlc, Stamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Protocol version carried by every request; bumped on incompatible changes. 2: a citizen's
/// goals travel goal by goal (`goals__<id>`), not as one list; an app that still writes the
/// whole list is told to update instead of having its edits refused one by one.
pub const PROTOCOL_VERSION: u32 = 2;

/// How a field changes. `Debug` names the kind of change only: values are personal data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FieldChange {
    /// Last-writer-wins assignment of the whole value (scalars, text, structured values).
    Assign { value: serde_json::Value },
    /// Add one element to an add-wins set (themes, tags, referrals, residents); the op's stamp
    /// is the add's tag.
    Add { value: serde_json::Value },
    /// Remove one element from an add-wins set: only the adds the writer had seen (their tags),
    /// so a concurrent add survives.
    Remove {
        value: serde_json::Value,
        observed: Vec<Stamp>,
    },
}

impl FieldChange {
    /// The value written, added or removed.
    pub fn value(&self) -> &serde_json::Value {
        match self {
            FieldChange::Assign { value }
            | FieldChange::Add { value }
            | FieldChange::Remove { value, .. } => value,
        }
    }
}

impl std::fmt::Debug for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldChange::Assign { .. } => "Assign(‹redacted›)",
            FieldChange::Add { .. } => "Add(‹redacted›)",
            FieldChange::Remove { .. } => "Remove(‹redacted›)",
        })
    }
}

/// One field write.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FieldOp {
    pub entity: EntityKind,
    pub id: Uuid,
    pub field: String,
    pub change: FieldChange,
    /// The HLC of this write; with the mutation's device it forms the write's [`Stamp`].
    pub hlc: Hlc,
    /// The version of this field the writer had seen, `None` if it had seen none.
    pub base: Option<Stamp>,
}

/// One save on one device: applied atomically, at most once.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Mutation {
    pub device_id: DeviceId,
    /// Strictly increasing per device, starting at 1. Gaps are allowed: erasing a citizen from
    /// a device also drops that citizen's pending mutations.
    pub device_seq: u64,
    pub ops: Vec<FieldOp>,
}

impl Mutation {
    /// The stamp of one of this mutation's ops.
    pub fn stamp_of(&self, op: &FieldOp) -> Stamp {
        Stamp {
            hlc: op.hlc,
            device: self.device_id,
        }
    }
}

/// The HTTP header carrying [`PROTOCOL_VERSION`] on every request.
pub const PROTOCOL_HEADER: &str = "feltbog-protocol";

/// Limits both sides enforce. The server rejects anything larger with a clear error; the
/// client splits its outbox to stay under them.
pub mod limits {
    /// A request or response body on the wire (compressed).
    pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
    /// A body after decompression: a gzip bomb stops here.
    pub const MAX_INFLATED_BYTES: usize = 16 * 1024 * 1024;
    /// Mutations in one push.
    pub const MAX_MUTATIONS_PER_PUSH: usize = 500;
    /// Field operations in one mutation.
    pub const MAX_OPS_PER_MUTATION: usize = 400;
    /// Field operations in one push: one push is one write transaction on the server, and this
    /// keeps it short (docs/benchmarks.md has the measured lock time). The client packs to it.
    pub const MAX_OPS_PER_PUSH: usize = 10_000;
    /// Serialized size of one field value (for a set removal, with its observed stamps).
    pub const MAX_VALUE_BYTES: usize = 128 * 1024;
    /// Observed add stamps in one set removal: one per device that added the value, at most.
    pub const MAX_OBSERVED_TAGS: usize = 256;
    /// The values and field names of one mutation together: one record's save. With
    /// [`PAGE_BYTES`] this bounds a pull page, so no device can push a change that the rest
    /// of its team cannot pull.
    pub const MAX_MUTATION_BYTES: usize = 1024 * 1024;
    /// Serialized mutation bytes the client packs into one push, so a push fits
    /// [`MAX_BODY_BYTES`] on the wire even when nothing in it compresses.
    pub const PUSH_BYTES: usize = 1024 * 1024;
    /// Mutations in one pull page (a page never splits a mutation).
    pub const PULL_PAGE_MUTATIONS: usize = 1_000;
    /// Serialized mutation bytes in one pull page, so a page of long notes stays well under
    /// [`MAX_INFLATED_BYTES`]: a page stops before the change that would pass this, and always
    /// holds at least one.
    pub const PAGE_BYTES: usize = 4 * 1024 * 1024;
    /// Device access-log events in one push.
    pub const MAX_ACCESS_EVENTS_PER_PUSH: usize = 1_000;
}

/// A device trades a one-time enrolment code for a device token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub code: String,
    /// The device's own id (made when its store was created).
    pub device_id: DeviceId,
}

impl std::fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolRequest")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// Who a device serves, as the server sees it now: the signed-in worker, their role, the teams
/// whose work the device holds and (a caretaker's) sites, and a small directory of those teams'
/// workers so screens can name who wrote a visit or holds a task. Names here are colleagues'
/// display names, never citizens' data.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub worker_id: Uuid,
    pub name: String,
    pub role: Role,
    pub team_id: Uuid,
    /// The teams the device reads, own team first (a supervisor's supervised teams follow).
    pub teams: Vec<TeamEntry>,
    /// A caretaker's sites (empty for other roles, who see all of their team's sites).
    pub sites: Vec<Uuid>,
    /// The workers of those teams, by name.
    pub directory: Vec<DirectoryEntry>,
    /// Counts the changes of this worker's scope (role, team, sites, supervised teams). A device
    /// that sees it move pushes what it had pending, then erases what it holds and pulls its
    /// new scope afresh (`resync`), so nothing outside the new scope stays behind.
    #[serde(default)]
    pub scope_epoch: u64,
}

impl Profile {
    /// A digest of this profile: the device sends the one it holds, and the server sends the
    /// profile again only when it has changed.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        // FNV-1a, 64 bits: a change detector, not a security measure.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// A team the device reads.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TeamEntry {
    pub id: Uuid,
    pub name: String,
}

/// One worker of the device's teams, as screens name them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub team_id: Uuid,
    pub active: bool,
}

/// The answer to an enrolment: who this device now belongs to, and its bearer token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    pub worker_id: Uuid,
    pub team_id: Uuid,
    /// Shown once; the server keeps only a hash.
    pub token: String,
    /// Who the device serves (absent from a server that predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The lock-state credential: asks [`STANDING_PATH`] whether the device still stands, and
    /// nothing else. Kept outside the encrypted store, so a locked tablet can use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_token: Option<String>,
}

impl std::fmt::Debug for EnrolResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolResponse")
            .field("worker_id", &self.worker_id)
            .field("team_id", &self.team_id)
            .finish_non_exhaustive()
    }
}

/// One round trip: push the outbox (possibly empty) and get the first pull page back.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SyncRequest {
    pub mutations: Vec<Mutation>,
    /// The device's pull cursor: the server sequence it has applied up to.
    pub cursor: u64,
    /// What the worker opened on the device since the last sync (DESIGN §6: the device's access
    /// log syncs up into the server's audit trail). Oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_log: Vec<AccessEvent>,
    /// The [`Profile::digest`] of the profile the device holds; the answer carries the profile
    /// only when the server's differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_digest: Option<String>,
    /// The newest `device_seq` this device has used. Sent so that, on the first request after a
    /// scope change, the server knows which edits were made before the device learned of it
    /// (those are judged under the old scope) without trusting the device's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_device_seq: Option<u64>,
    /// A pull from the start after a scope change: the device has erased what it held, so the
    /// server serves its own earlier mutations too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
    /// The device holds no lock-state credential (enrolled before there were any): the answer
    /// carries a new one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub want_standing: bool,
}

/// One read of citizen data on a device: which record, when. Never a value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AccessEvent {
    /// The device's own sequence for its access log; acknowledged by the server.
    pub seq: u64,
    /// Device wall clock (UTC, ms) when the record was shown.
    pub at_ms: u64,
    pub entity: EntityKind,
    pub record_id: Uuid,
    /// The citizen the record is about, as the device knows it. The server does not trust it:
    /// it files the read under the citizen its own records name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citizen_id: Option<CitizenId>,
}

/// Why the server refused a mutation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// An op's HLC is further ahead of the server clock than allowed: re-stamp and push again.
    ClockAhead,
    /// The mutation breaks a protocol rule (unknown entity or field, oversize value, bad op).
    Invalid,
    /// The mutation names a device other than the authenticated one.
    ForgedDevice,
    /// The record is outside this worker's scope.
    OutOfScope,
}

impl RejectReason {
    /// Whether pushing the same mutation again can ever succeed.
    pub fn is_permanent(self) -> bool {
        !matches!(self, RejectReason::ClockAhead)
    }
}

/// A mutation the server did not apply.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Rejection {
    pub device_seq: u64,
    pub reason: RejectReason,
    /// For people: what was wrong. Never contains a field value.
    pub detail: String,
}

/// Changes from the server log, in commit order, whole mutations only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PullPage {
    /// `(server sequence, mutation)` pairs after the request's cursor.
    pub changes: Vec<(u64, Mutation)>,
    /// The cursor to store once these changes are applied (covers entries skipped because
    /// the device sent them itself).
    pub next_cursor: u64,
    /// More changes wait beyond this page.
    pub more: bool,
    /// Citizens that left this device's scope (moved to another team, case closed past
    /// retention, purged): the device erases them by destroying their keys, after applying
    /// `changes`. A page ends at an erasure, so nothing later in the log is applied before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erase: Vec<CitizenId>,
    /// The page belongs to a pull from the start after a scope change (the request's
    /// `resync`): a device applies such pages only while it pulls afresh, and no other page
    /// then, so a late copy of an old page cannot bring back what left its scope.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resync: bool,
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Sequence numbers of pushed mutations now durably applied (or applied before: replays).
    pub acked: Vec<u64>,
    pub rejected: Vec<Rejection>,
    pub pull: PullPage,
    /// The server's clock (HLC) when it answered, so a device can catch its clock up.
    pub server_hlc: Hlc,
    /// The server's wall clock when it answered: the time the skew bound is measured from.
    /// (The HLC may run ahead of it by up to the bound, after accepting such a stamp.) Zero from
    /// a server that predates the field; devices then fall back to `server_hlc`.
    #[serde(default)]
    pub server_time_ms: u64,
    /// The highest [`AccessEvent::seq`] the server has recorded; the device drops those.
    #[serde(default)]
    pub access_acked: u64,
    /// Who the device serves now, when it differs from what the request's digest says the
    /// device holds (a role, team, site or directory change reaches the device this way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// A new lock-state credential, when the request asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing_token: Option<crate::domain::Sensitive<String>>,
    /// The device learns with this answer that its worker's scope changed: it follows the
    /// change (`store::Rescope`), whatever profile it held before (even none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rescope: bool,
}

impl SyncResponse {
    /// The server's wall clock, for correcting a device's clock.
    pub fn server_now_ms(&self) -> u64 {
        if self.server_time_ms == 0 {
            self.server_hlc.wall_ms()
        } else {
            self.server_time_ms
        }
    }
}

/// An error answer: a stable code for programs and a message for people (never personal data).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Set on a 401 for a revoked device or a disabled worker: erase every local copy now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wipe: bool,
    /// Set on a 429: how long to wait before the next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Where a tablet asks, with its lock-state credential as the bearer token, whether it still
/// stands. `200` with [`StandingAnswer`]: it does; `401` with `wipe`: revoked, erase now; `401`
/// without: the credential is unknown.
pub const STANDING_PATH: &str = "/v1/standing";

/// The answer of [`STANDING_PATH`] for a device that stands. There is nothing else to learn.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StandingAnswer {
    pub active: bool,
}

/// The answer to a token rotation: the device's new bearer token (the old one stops working).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateResponse {
    pub token: String,
}

impl std::fmt::Debug for RotateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateResponse").finish_non_exhaustive()
    }
}

/// Stable error codes of the HTTP API.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The client speaks another protocol version: update the app.
    UpdateRequired,
    /// Missing, unknown or revoked token.
    Unauthorized,
    /// The enrolment code is unknown, used or expired.
    EnrolmentRefused,
    /// The body is too large, before or after decompression.
    TooLarge,
    /// The body is not valid (compression, JSON, or a limit on counts).
    BadRequest,
    /// Too many requests from this device (or, for enrolment, this address): wait
    /// `retry_after_ms`.
    RateLimited,
    /// Something failed on the server; details are in its log.
    Internal,
    /// The server is at its connection limit with every connection busy: try again shortly.
    Unavailable,
}

/// The scheme of an enrolment link: the QR code an administrator prints, and a link that opens
/// the app at first run.
pub const ENROLMENT_SCHEME: &str = "feltbog-enrol";

/// What an enrolment QR code or a `feltbog-enrol:` link holds: the server's address and the
/// one-time code, so the tablet fills in both fields (`feltbog-enrol:<server>#<code>`). Not a
/// web link: nothing a browser would fetch or log. One definition for the server that prints it
/// and the app that reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct EnrolmentLink {
    pub server_url: String,
    pub code: String,
}

/// Why a scanned code or an opened link is not an enrolment. Never quotes what was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentLinkError {
    /// Some other QR code or link (a web address, a ticket).
    #[error("this is not a Feltbog enrolment code")]
    Foreign,
    /// A Feltbog enrolment, but its server address or code is damaged.
    #[error("the enrolment code is damaged")]
    Damaged,
}

impl EnrolmentLink {
    /// The text the QR code holds and the link opens.
    pub fn to_text(&self) -> String {
        format!(
            "{ENROLMENT_SCHEME}:{}#{}",
            self.server_url.trim_end_matches('/'),
            self.code
        )
    }

    /// Reads a scanned code or an opened link. The server address must be a web address
    /// (the app checks https further at first run); the code is what an administrator's
    /// `enrolment-code` prints: letters, digits and dashes.
    pub fn parse(text: &str) -> Result<EnrolmentLink, EnrolmentLinkError> {
        let text = text.trim();
        let rest = text
            .split_once(':')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(ENROLMENT_SCHEME))
            .map(|(_, rest)| rest)
            .ok_or(EnrolmentLinkError::Foreign)?;
        let (server, code) = rest.rsplit_once('#').ok_or(EnrolmentLinkError::Damaged)?;
        // A plain address only: no `user@` part (`https://kommune.dk@elsewhere` goes to
        // elsewhere), no query or second fragment a link could hide another address in.
        let web = ["https://", "http://"].iter().any(|p| {
            server.strip_prefix(p).is_some_and(|rest| {
                let authority = rest.split('/').next().unwrap_or("");
                !authority.is_empty() && !authority.contains('@')
            })
        }) && !server.contains(['?', '#']);
        let code_ok = (1..=64).contains(&code.len())
            && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !web || server.len() > 2048 || server.contains(char::is_whitespace) || !code_ok {
            return Err(EnrolmentLinkError::Damaged);
        }
        Ok(EnrolmentLink {
            server_url: server.trim_end_matches('/').to_owned(),
            code: code.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_stable_json() {
        let m = Mutation {
            device_id: DeviceId(Uuid::from_u128(7)),
            device_seq: 1,
            ops: vec![FieldOp {
                entity: EntityKind::Visit,
                id: Uuid::from_u128(9),
                field: "themes".into(),
                change: FieldChange::Add {
                    value: "housing".into(),
                },
                hlc: Hlc::new(1_000, 2).unwrap(),
                base: None,
            }],
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["ops"][0]["entity"], "visit");
        assert_eq!(
            json["ops"][0]["change"],
            serde_json::json!({"op": "add", "value": "housing"})
        );
        assert_eq!(json["ops"][0]["hlc"], "0000000001000-00002");
        let back: Mutation = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        assert!(!format!("{m:?}").contains("housing"), "Debug leaks a value");
    }

    #[test]
    fn an_enrolment_link_reads_back_and_foreign_or_damaged_ones_are_named() {
        let link = EnrolmentLink {
            server_url: "https://feltbog.kommune.dk/".into(),
            code: "K7QP-2MXW".into(),
        };
        let text = link.to_text();
        assert_eq!(text, "feltbog-enrol:https://feltbog.kommune.dk#K7QP-2MXW");
        let read = EnrolmentLink::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(read.server_url, "https://feltbog.kommune.dk");
        assert_eq!(read.code, "K7QP-2MXW");
        assert_eq!(
            EnrolmentLink::parse("FELTBOG-ENROL:http://127.0.0.1:8080#ABC")
                .unwrap()
                .server_url,
            "http://127.0.0.1:8080"
        );
        for foreign in ["https://example.com/#x", "WIFI:S:net;;", "", "feltbog:x#y"] {
            assert_eq!(
                EnrolmentLink::parse(foreign),
                Err(EnrolmentLinkError::Foreign),
                "{foreign}"
            );
        }
        for damaged in [
            "feltbog-enrol:https://x",
            "feltbog-enrol:ftp://x#ABC",
            "feltbog-enrol:https://x#",
            "feltbog-enrol:https://x#AB C",
            "feltbog-enrol:https://x y#ABC",
            "feltbog-enrol:https://feltbog.kommune.dk@evil.example#ABC",
            "feltbog-enrol:https://evil.example?https://feltbog.kommune.dk#ABC",
            "feltbog-enrol:https://#ABC",
        ] {
            assert_eq!(
                EnrolmentLink::parse(damaged),
                Err(EnrolmentLinkError::Damaged),
                "{damaged}"
            );
        }
    }
}
