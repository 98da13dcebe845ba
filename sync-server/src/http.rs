//! The HTTP boundary: routes, body codec (gzip with limits before and after inflating), the
//! protocol-version check, authentication, rate limits, and one error enum mapped to status and
//! stable code. Handlers parse, call one domain function on a blocking thread, and map the
//! result. Logs name devices and counts, never personal data or tokens.

use crate::audit::{self, Action, Entry};
use crate::identity::{self, Caller, Denied, IdentityError};
use crate::pool::Conn;
use crate::rate::Bucket;
use crate::storage::{DbExt, Transact};
use crate::{AppState, sync};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use feltbog_core::hlc::system_time_ms;
use feltbog_core::protocol::{
    EnrolRequest, EnrolResponse, ErrorBody, ErrorCode, PROTOCOL_HEADER, PROTOCOL_VERSION,
    RotateResponse, SyncRequest, limits,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};

/// Everything a request can fail with, each mapped to one status and one stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request's protocol header is missing or names another version. The header's value
    /// is never quoted back: an error answer repeats nothing a client sent.
    #[error(
        "this protocol version is not supported; this server speaks {PROTOCOL_VERSION}: update the app"
    )]
    UpdateRequired,
    #[error("missing, unknown or revoked device token")]
    Unauthorized,
    /// The device was revoked or its worker disabled: the app erases its data.
    #[error("this device's access has been revoked; erase its data")]
    Revoked,
    #[error("too many requests: wait {} seconds", retry_after_ms.div_ceil(1000))]
    RateLimited { retry_after_ms: u64 },
    /// The device has written its budget of field operations or bytes for now.
    #[error("this device has written too much for now: wait {} seconds", retry_after_ms.div_ceil(1000))]
    WriteBudget { retry_after_ms: u64 },
    /// The request body did not arrive within the body deadline.
    #[error("the request body arrived too slowly")]
    BodyTimeout,
    #[error("the enrolment code is unknown, used or expired")]
    EnrolmentRefused,
    #[error("body too large: at most {limit} bytes {stage}")]
    TooLarge { limit: usize, stage: &'static str },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Every database connection stayed busy for the pool's wait: the device tries again.
    #[error("the server is busy: try again shortly")]
    Busy,
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::UpdateRequired => (StatusCode::UPGRADE_REQUIRED, ErrorCode::UpdateRequired),
            ApiError::Unauthorized | ApiError::Revoked => {
                (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
            }
            ApiError::RateLimited { .. } | ApiError::WriteBudget { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited)
            }
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, ErrorCode::BadRequest),
            ApiError::EnrolmentRefused => (StatusCode::FORBIDDEN, ErrorCode::EnrolmentRefused),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Busy => {
                tracing::warn!("no database connection within the pool's wait");
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            ApiError::Internal(detail) => {
                // The detail goes to the log, not to the client.
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let retry_after_ms = match self {
            ApiError::RateLimited { retry_after_ms } | ApiError::WriteBudget { retry_after_ms } => {
                Some(retry_after_ms)
            }
            ApiError::Busy => Some(1000),
            _ => None,
        };
        let body = ErrorBody {
            code,
            message: self.to_string(),
            wipe: matches!(self, ApiError::Revoked),
            retry_after_ms,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(ms) = retry_after_ms
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::CodeRefused | IdentityError::DeviceExists => ApiError::EnrolmentRefused,
            IdentityError::Invalid(what) => ApiError::BadRequest(format!("invalid {what}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::pool::PoolError> for ApiError {
    fn from(e: crate::pool::PoolError) -> Self {
        match e {
            crate::pool::PoolError::Unavailable(_) => ApiError::Busy,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<sync::SyncError> for ApiError {
    fn from(e: sync::SyncError) -> Self {
        match e {
            sync::SyncError::Revoked => ApiError::Revoked,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The router: `/healthz`, `/readyz`, `/v1/enrol`, `/v1/sync`, `/v1/token/rotate`, and the
/// supervisors' dashboard ([`crate::web`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/enrol", post(enrol))
        .route("/v1/sync", post(sync_handler))
        .route("/v1/token/rotate", post(rotate))
        .route(feltbog_core::protocol::STANDING_PATH, post(standing))
        .merge(crate::web::routes())
        .with_state(state)
}

/// Liveness: the process answers. It touches nothing shared, so a long write transaction
/// does not make a busy server look dead to an orchestrator.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers a read. It uses a reading connection (on SQLite, WAL lets
/// it read while a push holds the write lock).
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    tokio::task::spawn_blocking(move || {
        state.db.with_reader(|conn| {
            conn.read(|db| {
                let _: i64 = db.value("SELECT count(*) FROM server_state", &[])?;
                Ok::<_, ApiError>(())
            })
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok("ready")
}

/// The client's address as a rate-limit key (IPv6 by /64); empty when unknown (in-process tests).
pub(crate) fn peer_key(extensions: &axum::http::Extensions) -> Vec<u8> {
    extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| crate::rate::ip_key(c.0.ip()).to_vec())
        .unwrap_or_default()
}

async fn enrol(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    // Codes are 80 random bits, but guessing is still throttled per client address.
    let peer = peer_key(request.extensions());
    let guesses = state.enrol_limiter.clone();
    with_limits(&state, move |conn| limit(&guesses, conn, &peer)).await?;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    check_protocol(&headers)?;
    let request: EnrolRequest = decode(&state, &headers, body, ENROL_BODY_BYTES).await?;
    let response = blocking(state, move |conn| {
        let now = system_time_ms();
        // Enrolled and audited in one transaction.
        let (caller, token) = identity::enrol(conn, &request.code, request.device_id, now)?;
        // The enrolment is committed: a failure here leaves a device that asks again in its
        // first sync (`want_standing`).
        let standing_token = conn
            .write(|tx| identity::issue_standing(tx, caller.device_id))
            .ok();
        tracing::info!(device = %caller.device_id, worker = %caller.worker_id, "device enrolled");
        let profile = conn.read(|tx| {
            let reach =
                crate::scope::reach(tx, &caller).map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok::<_, ApiError>(identity::profile(tx, &caller, &reach)?)
        })?;
        Ok(EnrolResponse {
            worker_id: caller.worker_id,
            team_id: caller.team_id,
            token,
            profile: Some(profile),
            standing_token,
        })
    })
    .await?;
    encode(&headers, &response)
}

async fn sync_handler(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    check_protocol(&headers)?;
    let caller = authenticate(&state, &headers, &peer_key(&parts.extensions)).await?;
    let request: SyncRequest = decode(&state, &headers, body, limits::MAX_INFLATED_BYTES).await?;
    if request.mutations.len() > limits::MAX_MUTATIONS_PER_PUSH {
        return Err(ApiError::BadRequest(format!(
            "at most {} mutations per push",
            limits::MAX_MUTATIONS_PER_PUSH
        )));
    }
    let ops: usize = request.mutations.iter().map(|m| m.ops.len()).sum();
    if ops > limits::MAX_OPS_PER_PUSH {
        return Err(ApiError::BadRequest(format!(
            "at most {} field operations per push",
            limits::MAX_OPS_PER_PUSH
        )));
    }
    spend_write_budget(&state, &caller, &request).await?;
    if request.access_log.len() > limits::MAX_ACCESS_EVENTS_PER_PUSH {
        return Err(ApiError::BadRequest(format!(
            "at most {} access-log events per push",
            limits::MAX_ACCESS_EVENTS_PER_PUSH
        )));
    }
    let max_drift = state.config.max_drift_ms;
    let pushed = request.mutations.len();
    let response = blocking(state, move |conn| {
        Ok(sync::sync(
            conn,
            &caller,
            &request,
            system_time_ms(),
            max_drift,
        )?)
    })
    .await?;
    tracing::info!(
        device = %caller.device_id,
        pushed,
        acked = response.acked.len(),
        rejected = response.rejected.len(),
        pulled = response.pull.changes.len(),
        erased = response.pull.erase.len(),
        "sync"
    );
    encode(&headers, &response)
}

/// A locked tablet asks whether it still stands, with its lock-state credential
/// ([`identity::check_standing`]): it learns "yes" or "revoked: erase now", and nothing else.
/// Unknown credentials count against the address's guessing allowance, as unknown tokens do.
async fn standing(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    check_protocol(&headers)?;
    let peer = peer_key(request.extensions());
    resolve_bearer(&state, &headers, &peer, identity::check_standing, |d| *d).await?;
    encode(
        &headers,
        &feltbog_core::protocol::StandingAnswer { active: true },
    )
}

/// Gives the calling device a new token; the old one stops working at once.
async fn rotate(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let headers = request.headers().clone();
    check_protocol(&headers)?;
    let caller = authenticate(&state, &headers, &peer_key(request.extensions())).await?;
    let response = blocking(state, move |conn| {
        conn.write(|tx| {
            // Revoked since authentication: answer as revoked, not as an error.
            let token = match identity::rotate_token(tx, caller.device_id) {
                Err(IdentityError::NotFound(_)) => return Err(ApiError::Revoked),
                other => other?,
            };
            audit::append(
                tx,
                system_time_ms(),
                &Entry::device(caller.worker_id, caller.device_id.0, Action::Rotate),
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(RotateResponse { token })
        })
    })
    .await?;
    tracing::info!(device = %caller.device_id, "token rotated");
    encode(&headers, &response)
}

/// Charges a push to its device's write budget ([`crate::WriteBudget`]): its field operations,
/// and an estimate of the bytes it will store. Replays are charged too: the budget bounds what
/// a device makes the server do, not only what it keeps.
async fn spend_write_budget(
    state: &AppState,
    caller: &Caller,
    request: &SyncRequest,
) -> Result<(), ApiError> {
    if request.mutations.is_empty() {
        return Ok(());
    }
    let ops: usize = request.mutations.iter().map(|m| m.ops.len()).sum();
    let bytes: usize = request
        .mutations
        .iter()
        .map(crate::stored_bytes_estimate)
        .sum();
    let key = caller.device_id.0;
    let (ops_budget, bytes_budget) = (state.ops_budget.clone(), state.bytes_budget.clone());
    with_limits(state, move |mut conn: Option<&mut Conn<'_>>| {
        let refused = |wait: std::time::Duration| ApiError::WriteBudget {
            retry_after_ms: wait.as_millis().max(1) as u64,
        };
        // The ops are charged only when the bytes fit too: a refused push costs nothing.
        ops_budget
            .check_n(conn.as_deref_mut(), key.as_bytes(), ops as u32)?
            .map_err(refused)?;
        let fits = bytes_budget.check_n(
            conn.as_deref_mut(),
            key.as_bytes(),
            bytes.div_ceil(1024) as u32,
        )?;
        if let Err(wait) = fits {
            ops_budget.refund(conn, key.as_bytes(), ops as u32)?;
            return Err(refused(wait));
        }
        Ok(())
    })
    .await
}

/// Takes a token from `key`'s bucket in `bucket`, or answers 429 with when to retry.
fn limit(bucket: &Bucket, conn: Option<&mut Conn<'_>>, key: &[u8]) -> Result<(), ApiError> {
    bucket
        .check_n(conn, key, 1)?
        .map_err(|wait| ApiError::RateLimited {
            retry_after_ms: wait.as_millis().max(1) as u64,
        })
}

/// Runs `f` on a database connection when the rate limits are kept in the database (several
/// instances share them), or at once without one when they are in memory.
pub(crate) async fn with_limits<T: Send + 'static, E>(
    state: &AppState,
    f: impl FnOnce(Option<&mut Conn<'_>>) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    E: From<crate::pool::PoolError> + From<tokio::task::JoinError> + Send + 'static,
{
    if !state.db.is_shared() {
        return f(None);
    }
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || db.with(|conn| f(Some(conn)))).await?
}

fn check_protocol(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok());
    match found {
        Some(v) if v.trim() == PROTOCOL_VERSION.to_string() => Ok(()),
        _ => Err(ApiError::UpdateRequired),
    }
}

/// Resolves the bearer token as a device token. Unknown tokens count against the client
/// address's guessing allowance (shared with enrolment), so tokens cannot be tried at full speed.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: &[u8],
) -> Result<Caller, ApiError> {
    resolve_bearer(state, headers, peer, identity::check_token, |c| c.device_id).await
}

/// How a credential is looked up: what it stands for, or why it was denied.
type CredentialCheck<T> =
    fn(&dyn crate::storage::Db, &str) -> Result<Result<T, Denied>, IdentityError>;

/// Resolves a bearer credential with `check` (a device token, or a lock-state credential): a
/// missing or unknown one counts against the address's guessing allowance, a revoked one is
/// told to erase, a good one counts against its device's request rate.
async fn resolve_bearer<T: Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    peer: &[u8],
    check: CredentialCheck<T>,
    device_of: fn(&T) -> feltbog_core::hlc::DeviceId,
) -> Result<T, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let Some(token) = token else {
        let (guesses, peer) = (state.enrol_limiter.clone(), peer.to_vec());
        with_limits(state, move |conn| limit(&guesses, conn, &peer)).await?;
        return Err(ApiError::Unauthorized);
    };
    let guesses = state.enrol_limiter.clone();
    let peer = peer.to_vec();
    // A write: the first use of a rotated token makes it the token.
    let resolved = blocking(state.clone(), move |conn| {
        match conn.write(|tx| check(tx, &token).map_err(ApiError::from))? {
            Ok(found) => Ok(found),
            Err(Denied::Unknown) => {
                limit(&guesses, Some(conn), &peer)?;
                Err(ApiError::Unauthorized)
            }
            Err(Denied::Revoked) => Err(ApiError::Revoked),
        }
    })
    .await?;
    let (devices, device) = (state.device_limiter.clone(), device_of(&resolved).0);
    with_limits(state, move |conn| limit(&devices, conn, device.as_bytes())).await?;
    Ok(resolved)
}

/// Runs a database call on a connection that may write, on the blocking pool (both backends'
/// clients are synchronous).
async fn blocking<T: Send + 'static>(
    state: AppState,
    f: impl FnOnce(&mut Conn<'_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || state.db.with(f))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// An enrolment request is a code and an id: anything bigger is not one.
const ENROL_BODY_BYTES: usize = 4 * 1024;

/// Reads a JSON body, gzip-inflated if so marked, with limits before (`MAX_BODY_BYTES`, or
/// `inflated_limit` if smaller) and after inflating (`inflated_limit`).
/// The whole body must arrive within the body deadline: a client that trickles it cannot hold
/// a connection (and a handler) for long.
async fn decode<T: DeserializeOwned + Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    inflated_limit: usize,
) -> Result<T, ApiError> {
    let wire_limit = limits::MAX_BODY_BYTES.min(inflated_limit);
    let raw: Bytes = tokio::time::timeout(
        state.config.connections.body_timeout,
        axum::body::to_bytes(body, wire_limit),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)?
    .map_err(|_| ApiError::TooLarge {
        limit: wire_limit,
        stage: "on the wire",
    })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    // Inflating and parsing up to 16 MiB is work for the blocking pool, not for the threads
    // that accept connections and answer health checks.
    tokio::task::spawn_blocking(move || inflate_and_parse(&raw, gzip, inflated_limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn inflate_and_parse<T: DeserializeOwned>(
    raw: &[u8],
    gzip: bool,
    inflated_limit: usize,
) -> Result<T, ApiError> {
    let inflated;
    let json = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(inflated_limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| ApiError::BadRequest("body is not valid gzip".into()))?;
        if out.len() > inflated_limit {
            return Err(ApiError::TooLarge {
                limit: inflated_limit,
                stage: "after decompression",
            });
        }
        inflated = out;
        &inflated[..]
    } else {
        raw
    };
    // serde's messages can quote the input: report only the position.
    serde_json::from_slice(json).map_err(|e| {
        ApiError::BadRequest(format!(
            "body is not a valid request ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Writes a JSON body, gzip-compressed when the client accepts it.
fn encode<T: Serialize>(headers: &HeaderMap, value: &T) -> Result<Response, ApiError> {
    let json = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if accepts_gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&json)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let body = enc
            .finish()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Body::from(json))
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
