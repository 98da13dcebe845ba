//! The sync client: pushes the outbox and pulls the server's changes, one round trip at a time,
//! until both are drained (DESIGN §5).
//!
//! - Each round trip sends at most [`MAX_PUSH`] pending mutations with the pull cursor; the
//!   response acknowledges, refuses or echoes them and carries the next pull page. The store
//!   applies it in one transaction ([`Store::apply_sync_response`]), so the cursor moves only
//!   with the page it covers.
//! - A network failure is retried with back-off; what was not acknowledged stays in the
//!   outbox, and the server's idempotence makes a resend harmless.
//! - A mutation refused for good is set aside by the store and never blocks the queue; one
//!   refused for a clock too far ahead is re-stamped from the server's clock and pushed again.
//!
//! [`Transport`] is the seam: HTTP for the app and the CLI ([`http::HttpTransport`]), an
//! in-process server for the deterministic simulation.

#[cfg(feature = "http")]
pub mod http;

use crate::protocol::{
    EnrolRequest, EnrolResponse, ErrorCode, RotateResponse, SyncRequest, SyncResponse, limits,
};
use crate::store::{Rescope, Store, StoreError};
use std::time::Duration;

/// Mutations pushed per round trip.
pub const MAX_PUSH: usize = 200;

/// How a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer (offline, refused, timed out): retry later.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server answered with an error.
    #[error("server refused ({status}): {message}")]
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
        /// The server says: erase this device's data (revoked device or disabled worker).
        wipe: bool,
        /// The server says: wait this long (rate limited).
        retry_after_ms: Option<u64>,
    },
    /// The answer could not be read.
    #[error("unreadable answer from server: {0}")]
    Decode(String),
}

impl TransportError {
    fn is_retryable(&self) -> bool {
        match self {
            TransportError::Unreachable(_) => true,
            TransportError::Refused { status, .. } => *status >= 500 || *status == 429,
            TransportError::Decode(_) => false,
        }
    }
}

/// Bytes a round trip moved, as sent over the wire (compressed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireBytes {
    pub sent: u64,
    pub received: u64,
}

/// How requests reach a server.
pub trait Transport {
    /// Trades an enrolment code for a device token.
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, TransportError>;
    /// One sync round trip with the device's token.
    fn sync(
        &self,
        token: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, WireBytes), TransportError>;
    /// Asks whether the device still stands, with its lock-state credential
    /// ([`crate::protocol::STANDING_PATH`]). Transports without it refuse.
    fn standing(&self, _standing_token: &str) -> Result<(), TransportError> {
        Err(TransportError::Refused {
            status: 404,
            code: None,
            message: "the standing check is not available".into(),
            wipe: false,
            retry_after_ms: None,
        })
    }
    /// Trades the device's token for a new one. Transports without it refuse.
    fn rotate(&self, _token: &str) -> Result<RotateResponse, TransportError> {
        Err(TransportError::Refused {
            status: 404,
            code: None,
            message: "token rotation is not available".into(),
            wipe: false,
            retry_after_ms: None,
        })
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub requests: u32,
    pub pushed: usize,
    pub acked: usize,
    pub set_aside: usize,
    pub restamped: usize,
    pub pulled: usize,
    /// Citizens erased because they left this device's scope.
    pub erased: usize,
    /// The server sent a new profile (role, team, sites or directory changed).
    pub profile_changed: bool,
    /// The worker's scope changed and the device finished following it: what left the scope
    /// is erased, what entered it pulled ([`crate::store::Rescope`]).
    pub rescoped: bool,
    pub bytes: WireBytes,
}

impl SyncReport {
    /// Whether what the screens show may have changed: records pulled or erased, save marks
    /// moved (acknowledged or set aside), or who the device serves.
    pub fn changed_screens(&self) -> bool {
        self.acked + self.set_aside + self.pulled + self.erased > 0
            || self.profile_changed
            || self.rescoped
    }
}

/// Progress of a long sync, for the sync bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub pulled: usize,
    pub pending: u64,
    pub more: bool,
}

/// Sync failures.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("this device is not enrolled")]
    NotEnrolled,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server does not know this device's token (it may have been rotated elsewhere).
    #[error("the server does not accept this device's token")]
    Unauthorized,
    /// The server revoked this device or disabled its worker, and said to erase it: the caller
    /// must destroy the store (keys and files).
    #[error("this device's access was revoked")]
    Revoked,
    /// The server speaks a newer protocol.
    #[error("the server requires a newer version of the app")]
    UpdateRequired,
}

/// Retry schedule for network failures within one sync.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_delay: Duration::from_millis(250),
        }
    }
}

/// Access to the store for one step of a sync. The app shares its store with the screens, so it
/// hands the store out only between round trips: a save never waits on the network.
pub trait StoreAccess {
    /// Runs `f` with the store; fails (e.g. [`StoreError::Locked`]) if it is gone meanwhile.
    fn with_store<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError>;
}

impl StoreAccess for &mut Store {
    fn with_store<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError> {
        f(self)
    }
}

/// Syncs until the outbox is drained and the pull is complete.
pub fn sync_now(
    store: &mut Store,
    transport: &dyn Transport,
    retry: Retry,
    progress: &mut dyn FnMut(Progress),
) -> Result<SyncReport, SyncError> {
    sync_with(&mut &mut *store, transport, retry, progress)
}

/// [`sync_now`] over shared access: the store is held for each local step, never across a round
/// trip. If the store is locked meanwhile, the sync stops with that error; whatever the server
/// committed is pulled again next time (pushes are idempotent).
pub fn sync_with<A: StoreAccess>(
    access: &mut A,
    transport: &dyn Transport,
    retry: Retry,
    progress: &mut dyn FnMut(Progress),
) -> Result<SyncReport, SyncError> {
    let enrolment = access.with_store(|s| s.enrolment()?.ok_or(SyncError::NotEnrolled))?;
    let mut report = SyncReport::default();
    // A bound on round trips: a server that always says "more" cannot keep us here forever.
    for _ in 0..100_000 {
        let request = access.with_store(|store| {
            let mut pending = store.pending(MAX_PUSH)?;
            // Pack by size and op count too: a push of long notes must stay under the server's
            // body limits, and a push of many edits under its limit on one transaction.
            let (mut bytes, mut ops) = (0, 0);
            let fits = pending
                .iter()
                .take_while(|m| {
                    bytes += serde_json::to_vec(m).map_or(0, |v| v.len());
                    ops += m.ops.len();
                    bytes <= limits::PUSH_BYTES && ops <= limits::MAX_OPS_PER_PUSH
                })
                .count()
                .max(1);
            pending.truncate(fits);
            // The access log goes with the push that empties the outbox: a read of a record
            // made offline is then filed by the server under the record's citizen, which it
            // learns from the record's creating mutation.
            let access_log = if pending.len() as u64 >= store.outbox_len()? {
                store.pending_access(limits::MAX_ACCESS_EVENTS_PER_PUSH)?
            } else {
                Vec::new()
            };
            Ok(SyncRequest {
                mutations: pending,
                cursor: store.sync_status()?.cursor,
                access_log,
                profile_digest: store.profile()?.map(|p| p.digest()),
                last_device_seq: Some(store.last_device_seq()?),
                resync: store.rescope_state()? == Rescope::Repulling,
                want_standing: store.standing()?.is_none(),
            })
        })?;
        let (response, bytes) =
            match round_trip(transport, enrolment.token.expose(), &request, retry) {
                Ok(ok) => ok,
                Err(e) => {
                    let message = match &e {
                        SyncError::Transport(TransportError::Unreachable(_)) => {
                            "offline: server unreachable"
                        }
                        SyncError::Unauthorized => "token refused",
                        SyncError::Revoked => "access revoked",
                        SyncError::UpdateRequired => "app update required",
                        _ => "sync failed",
                    };
                    access.with_store(|s| Ok(s.record_sync_error(message)?))?;
                    return Err(e);
                }
            };
        report.requests += 1;
        report.pushed += request.mutations.len();
        report.bytes.sent += bytes.sent;
        report.bytes.received += bytes.received;
        let (applied, restamped, pending_now, (repull, rescoped)) = access.with_store(|store| {
            let applied = store.apply_sync_response(&response)?;
            if let Some(token) = &response.standing_token {
                store.set_standing_token(token.expose())?;
            }
            if let Some(profile) = &response.profile {
                // A changed role, team, site or directory: the app's screens follow it. A
                // changed scope is followed below (`store::rescope`).
                store.take_profile(profile)?;
            }
            if response.rescope {
                // Said by the server, in case the profile alone cannot tell (a device that
                // held none before).
                store.begin_rescope()?;
            }
            let mut restamped = 0;
            if !applied.clock_rejected.is_empty() {
                restamped = store.restamp(&response)?;
            }
            // Following a scope change: once what was pending is pushed, pull the new scope
            // afresh; once that pull is complete, destroy the keys of what left.
            let repull = store.start_repull()?;
            let rescoped = request.resync
                && !response.pull.more
                && store.rescope_state()? == Rescope::Repulling;
            if rescoped {
                store.finish_rescope()?;
            }
            Ok((applied, restamped, store.outbox_len()?, (repull, rescoped)))
        })?;
        report.acked += applied.acked;
        report.set_aside += applied.set_aside;
        report.pulled += applied.pulled;
        report.erased += applied.erased.len();
        report.profile_changed |= response.profile.is_some();
        report.rescoped |= rescoped;
        report.restamped += restamped;
        progress(Progress {
            pulled: report.pulled,
            pending: pending_now,
            more: response.pull.more,
        });
        // Done when the pull is complete and the outbox is empty — or when this round moved
        // nothing out of it and changed nothing to retry (edits saved meanwhile wait for the
        // next sync).
        let stuck = applied.acked + applied.set_aside == 0 && restamped == 0;
        // A full access log that the server took may have more behind it: send on (pushes
        // with no mutations) until it is drained, so reads never pile up on the device.
        let access_more = request.access_log.len() == limits::MAX_ACCESS_EVENTS_PER_PUSH
            && response.access_acked > 0;
        if !response.pull.more && (pending_now == 0 || stuck) && !access_more && !repull {
            break;
        }
    }
    Ok(report)
}

/// Asks the server whether this device still stands, with its lock-state credential
/// ([`Store::standing`]; it can learn "revoked" and nothing else), which works while the store
/// is locked. `Err(SyncError::Revoked)` means erase now, as after a sync.
pub fn check_standing(
    standing_token: &crate::domain::Sensitive<String>,
    transport: &dyn Transport,
) -> Result<(), SyncError> {
    transport
        .standing(standing_token.expose())
        .map_err(|e| map_refusal(e).unwrap_or_else(SyncError::from))
}

/// Replaces this device's token with a fresh one (routine rotation). The new token is stored
/// before anything else is sent; the old one stops working on the server at once.
pub fn rotate_token(store: &mut Store, transport: &dyn Transport) -> Result<(), SyncError> {
    let mut enrolment = store.enrolment()?.ok_or(SyncError::NotEnrolled)?;
    let response = transport
        .rotate(enrolment.token.expose())
        .map_err(|e| map_refusal(e).unwrap_or_else(SyncError::from))?;
    enrolment.token = crate::domain::Sensitive(response.token);
    store.replace_token(&enrolment)?;
    Ok(())
}

/// The refusals that end a sync at once, whatever the retry schedule.
fn map_refusal(e: TransportError) -> Result<SyncError, TransportError> {
    match e {
        TransportError::Refused {
            code: Some(ErrorCode::Unauthorized),
            wipe,
            ..
        } => Ok(if wipe {
            SyncError::Revoked
        } else {
            SyncError::Unauthorized
        }),
        TransportError::Refused {
            code: Some(ErrorCode::UpdateRequired),
            ..
        } => Ok(SyncError::UpdateRequired),
        other => Err(other),
    }
}

/// Enrols this store with a server: trades the code, stores the token sealed.
pub fn enrol(
    store: &mut Store,
    transport: &dyn Transport,
    server_url: &str,
    code: &str,
) -> Result<EnrolResponse, SyncError> {
    let response = transport.enrol(&EnrolRequest {
        code: code.to_owned(),
        device_id: store.device_id(),
    })?;
    store.set_enrolment(server_url, &response)?;
    Ok(response)
}

fn round_trip(
    transport: &dyn Transport,
    token: &str,
    request: &SyncRequest,
    retry: Retry,
) -> Result<(SyncResponse, WireBytes), SyncError> {
    let mut delay = retry.first_delay;
    let mut attempt = 1;
    loop {
        let e = match transport.sync(token, request) {
            Ok(ok) => return Ok(ok),
            Err(e) => match map_refusal(e) {
                Ok(fatal) => return Err(fatal),
                Err(e) => e,
            },
        };
        match e {
            // Rate limited: wait as told, if that is short; else stop and let the app's
            // schedule come back later.
            TransportError::Refused {
                retry_after_ms: Some(ms),
                ..
            } if attempt < retry.attempts && ms <= 30_000 => {
                std::thread::sleep(Duration::from_millis(ms).max(delay));
                attempt += 1;
            }
            e if e.is_retryable() && attempt < retry.attempts => {
                std::thread::sleep(delay);
                delay = delay.saturating_mul(2).min(Duration::from_secs(30));
                attempt += 1;
            }
            e => return Err(e.into()),
        }
    }
}
