//! The HTTP boundary: routes, body codec (gzip with limits before and after inflating), the
//! protocol-version check, authentication, and one error enum mapped to status and stable code.
//! Handlers parse, call one domain function on a blocking thread, and map the result.

use crate::identity::{self, Caller, IdentityError};
use crate::{AppState, sync};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use feltbog_core::hlc::system_time_ms;
use feltbog_core::protocol::{
    EnrolRequest, EnrolResponse, ErrorBody, ErrorCode, PROTOCOL_HEADER, PROTOCOL_VERSION,
    SyncRequest, limits,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};

/// Everything a request can fail with, each mapped to one status and one stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "protocol version {found:?} is not supported; this server speaks {PROTOCOL_VERSION}: update the app"
    )]
    UpdateRequired { found: Option<String> },
    #[error("missing, unknown or revoked device token")]
    Unauthorized,
    #[error("the enrolment code is unknown, used or expired")]
    EnrolmentRefused,
    #[error("body too large: at most {limit} bytes {stage}")]
    TooLarge { limit: usize, stage: &'static str },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::UpdateRequired { .. } => {
                (StatusCode::UPGRADE_REQUIRED, ErrorCode::UpdateRequired)
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::EnrolmentRefused => (StatusCode::FORBIDDEN, ErrorCode::EnrolmentRefused),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Internal(detail) => {
                // The detail goes to the log, not to the client.
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let body = ErrorBody {
            code,
            message: self.to_string(),
        };
        (status, axum::Json(body)).into_response()
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

impl From<sync::SyncError> for ApiError {
    fn from(e: sync::SyncError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The router: `/healthz`, `/v1/enrol`, `/v1/sync`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/enrol", post(enrol))
        .route("/v1/sync", post(sync_handler))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    blocking(state, |conn| {
        conn.query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok("ok")
}

async fn enrol(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_protocol(&headers)?;
    let request: EnrolRequest = decode(&headers, body, ENROL_BODY_BYTES).await?;
    let response = blocking(state, move |conn| {
        let (caller, token) =
            identity::enrol(conn, &request.code, request.device_id, system_time_ms())?;
        tracing::info!(device = %caller.device_id, worker = %caller.worker_id, "device enrolled");
        Ok(EnrolResponse {
            worker_id: caller.worker_id,
            team_id: caller.team_id,
            token,
        })
    })
    .await?;
    encode(&headers, &response)
}

async fn sync_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_protocol(&headers)?;
    let caller = authenticate(&state, &headers).await?;
    let request: SyncRequest = decode(&headers, body, limits::MAX_INFLATED_BYTES).await?;
    if request.mutations.len() > limits::MAX_MUTATIONS_PER_PUSH {
        return Err(ApiError::BadRequest(format!(
            "at most {} mutations per push",
            limits::MAX_MUTATIONS_PER_PUSH
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
        "sync"
    );
    encode(&headers, &response)
}

fn check_protocol(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok());
    match found {
        Some(v) if v.trim() == PROTOCOL_VERSION.to_string() => Ok(()),
        other => Err(ApiError::UpdateRequired {
            found: other.map(|s| s.chars().take(16).collect()),
        }),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .ok_or(ApiError::Unauthorized)?;
    blocking(state.clone(), move |conn| {
        identity::authenticate(conn, &token)?.ok_or(ApiError::Unauthorized)
    })
    .await
}

/// Runs a database call on the blocking pool (SQLite is synchronous).
async fn blocking<T: Send + 'static>(
    state: AppState,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut conn = state
            .db
            .lock()
            .map_err(|_| ApiError::Internal("database lock poisoned".into()))?;
        f(&mut conn)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// An enrolment request is a code and an id: anything bigger is not one.
const ENROL_BODY_BYTES: usize = 4 * 1024;

/// Reads a JSON body, gzip-inflated if so marked, with limits before (`MAX_BODY_BYTES`, or
/// `inflated_limit` if smaller) and after inflating (`inflated_limit`).
async fn decode<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    inflated_limit: usize,
) -> Result<T, ApiError> {
    let wire_limit = limits::MAX_BODY_BYTES.min(inflated_limit);
    let raw: Bytes =
        axum::body::to_bytes(body, wire_limit)
            .await
            .map_err(|_| ApiError::TooLarge {
                limit: wire_limit,
                stage: "on the wire",
            })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let json = if gzip {
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(inflated_limit as u64 + 1)
            .read_to_end(&mut inflated)
            .map_err(|_| ApiError::BadRequest("body is not valid gzip".into()))?;
        if inflated.len() > inflated_limit {
            return Err(ApiError::TooLarge {
                limit: inflated_limit,
                stage: "after decompression",
            });
        }
        inflated
    } else {
        raw.to_vec()
    };
    // serde's messages can quote the input: report only the position.
    serde_json::from_slice(&json).map_err(|e| {
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
