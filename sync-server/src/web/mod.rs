//! The supervisors' dashboard (issue 15): the page at `/`, its embedded assets, and a small
//! JSON API under `/dashboard/api/` for signing in and reading reports as JSON, CSV or Excel.
//!
//! Handlers are thin: they read the session cookie, check the CSRF token on every change, call
//! [`auth`] or [`crate::reports`] and audit each report view or export with its filter. Reports
//! run on the reading connection, so a long report does not hold up syncing devices.

mod assets;
pub mod auth;

use crate::AppState;
use crate::args;
use crate::audit::{self, Action, Entry};
use crate::pool::Conn;
use crate::reports::{self, Filter, Period, ReportKind, export};
use crate::storage::{Db, DbExt, Transact};
use auth::{Session, WebAuthError};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use feltbog_core::hlc::system_time_ms;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The session cookie's name.
pub const COOKIE: &str = "feltbog_session";
/// The header a change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest JSON body the dashboard sends (a sign-in).
const BODY_BYTES: usize = 4 * 1024;

/// The dashboard's routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/dashboard/assets/{file}", get(assets::file))
        .route("/dashboard/api/session", get(session_info))
        .route("/dashboard/api/setup", post(set_up))
        .route("/dashboard/api/sign-in", post(sign_in))
        .route("/dashboard/api/sign-out", post(sign_out))
        .route("/dashboard/api/reports/{kind}", get(report))
        .route("/dashboard/api/conflicts", get(conflicts))
        .route("/dashboard/api/conflicts/{id}", post(settle))
}

/// What the dashboard API fails with: a status, a stable code and a message for the person.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign in first")]
    SignedOut,
    #[error("the request did not come from this dashboard (missing or wrong CSRF token)")]
    Forbidden,
    #[error("{0}")]
    Auth(#[from] WebAuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many requests: wait {} seconds", .0.div_ceil(1000))]
    RateLimited(u64),
    /// A conflict review the server's rule refuses (not her team's, settled meanwhile).
    #[error("{0}")]
    Refused(String),
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorJson {
    code: &'static str,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code, wait) = match &self {
            WebError::SignedOut => (StatusCode::UNAUTHORIZED, "signed_out", None),
            WebError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", None),
            WebError::Auth(WebAuthError::Refused) => (StatusCode::UNAUTHORIZED, "refused", None),
            WebError::Auth(WebAuthError::Wait { retry_after_ms }) => {
                (StatusCode::TOO_MANY_REQUESTS, "wait", Some(*retry_after_ms))
            }
            WebError::Auth(WebAuthError::NotSupervisor) => {
                (StatusCode::FORBIDDEN, "not_supervisor", None)
            }
            WebError::Auth(WebAuthError::CodeRefused) => {
                (StatusCode::FORBIDDEN, "code_refused", None)
            }
            WebError::Auth(WebAuthError::Invalid(_)) | WebError::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "bad_request", None)
            }
            WebError::RateLimited(ms) => (StatusCode::TOO_MANY_REQUESTS, "wait", Some(*ms)),
            WebError::Refused(_) => (StatusCode::CONFLICT, "refused_review", None),
            WebError::Auth(other) => {
                tracing::error!(error = %other, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
            WebError::Internal(detail) => {
                tracing::error!(%detail, "dashboard request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let message = match status {
            StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_owned(),
            _ => self.to_string(),
        };
        let mut response = (status, Json(ErrorJson { code, message })).into_response();
        if let Some(ms) = wait
            && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<crate::storage::StorageError> for WebError {
    fn from(e: crate::storage::StorageError) -> Self {
        internal(e)
    }
}

impl From<tokio::task::JoinError> for WebError {
    fn from(e: tokio::task::JoinError) -> Self {
        internal(e)
    }
}

impl From<crate::pool::PoolError> for WebError {
    fn from(e: crate::pool::PoolError) -> Self {
        internal(e)
    }
}

fn internal(e: impl std::fmt::Display) -> WebError {
    WebError::Internal(e.to_string())
}

/// Runs `f` on a connection that may write, on the blocking pool.
async fn with_db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Conn<'_>) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || db.with(f))
        .await
        .map_err(internal)?
}

/// Runs `f` in one writing transaction, on the blocking pool.
async fn write<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Db) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    with_db(state, move |conn| conn.write(f)).await
}

/// The session cookie's value, if the request has one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The signed-in supervisor, or [`WebError::SignedOut`].
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<(String, Session), WebError> {
    let token = cookie_token(headers).ok_or(WebError::SignedOut)?;
    let lookup = token.clone();
    // A write: touching the session keeps it alive.
    let session = write(state, move |tx| {
        Ok(auth::session(tx, &lookup, system_time_ms())?)
    })
    .await?
    .ok_or(WebError::SignedOut)?;
    Ok((token, session))
}

/// A change must carry the session's CSRF token, and come from this origin if the browser
/// says where it came from.
fn check_csrf(headers: &HeaderMap, session: &Session) -> Result<(), WebError> {
    same_origin(headers)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_bytes(sent.as_bytes(), session.csrf.as_bytes()) {
        return Err(WebError::Forbidden);
    }
    Ok(())
}

/// Equal, in a time that does not depend on where two tokens of one length differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a request whose `Origin` names another site than the `Host` it was sent to (a
/// cross-site form or script). Requests without `Origin` are same-origin navigations or tools.
fn same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || origin_host != host {
        return Err(WebError::Forbidden);
    }
    Ok(())
}

/// A JSON body of at most [`BODY_BYTES`], sent as `application/json` (which a cross-site form
/// cannot send).
async fn json_body<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, WebError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(WebError::BadRequest("send JSON".into()));
    }
    let bytes = axum::body::to_bytes(request.into_body(), BODY_BYTES)
        .await
        .map_err(|_| WebError::BadRequest("the request is too large".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| WebError::BadRequest("not a valid request".into()))
}

/// Counts a guess (sign-in, set-up) against the client address's allowance, shared with
/// device enrolment.
async fn guess(state: &AppState, key: Vec<u8>) -> Result<(), WebError> {
    let guesses = state.enrol_limiter.clone();
    crate::http::with_limits(state, move |conn| {
        guesses
            .check_n(conn, &key, 1)?
            .map_err(|wait| WebError::RateLimited(wait.as_millis().max(1) as u64))
    })
    .await
}

/// What the page learns about its session.
#[derive(Serialize)]
struct SessionJson {
    name: String,
    csrf: String,
    teams: Vec<TeamJson>,
}

#[derive(Serialize)]
struct TeamJson {
    id: Uuid,
    name: String,
}

async fn session_info(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionJson>, WebError> {
    let (_, session) = signed_in(&state, &headers).await?;
    Ok(Json(session_json(&state, session).await?))
}

async fn session_json(state: &AppState, session: Session) -> Result<SessionJson, WebError> {
    let teams = session.teams.clone();
    let names = with_db(state, move |conn| {
        conn.read(|db| {
            teams
                .iter()
                .map(|t| {
                    let name: String = db
                        .value("SELECT name FROM teams WHERE id = ?1", args![t])
                        .map_err(internal)?;
                    Ok(TeamJson { id: *t, name })
                })
                .collect::<Result<Vec<_>, WebError>>()
        })
    })
    .await?;
    Ok(SessionJson {
        name: session.name,
        csrf: session.csrf,
        teams: names,
    })
}

#[derive(Deserialize)]
struct SetUpJson {
    login: String,
    code: String,
    password: String,
}

/// Sets a password with the administrator's one-time code.
async fn set_up(State(state): State<AppState>, request: Request) -> Result<StatusCode, WebError> {
    guess(&state, crate::http::peer_key(request.extensions())).await?;
    same_origin(request.headers())?;
    let body: SetUpJson = json_body(request).await?;
    // The hash is made inside: a set-up is rare, and it must not race a second one.
    write(&state, move |tx| {
        auth::set_up(
            tx,
            &body.login,
            &body.code,
            &body.password,
            system_time_ms(),
        )?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct SignInJson {
    login: String,
    password: String,
}

/// Signs in: sets the session cookie and answers the session (with its CSRF token).
async fn sign_in(State(state): State<AppState>, request: Request) -> Result<Response, WebError> {
    guess(&state, crate::http::peer_key(request.extensions())).await?;
    same_origin(request.headers())?;
    let body: SignInJson = json_body(request).await?;
    let login = body.login.clone();
    let attempt = with_db(&state, move |conn| {
        conn.read(|db| Ok(auth::begin_sign_in(db, &login, system_time_ms())?))
    })
    .await?;
    let hash = attempt.hash.clone();
    let ok =
        tokio::task::spawn_blocking(move || auth::verify_password(hash.as_deref(), &body.password))
            .await
            .map_err(internal)?;
    let (token, session) = with_db(&state, move |conn| {
        Ok(auth::finish_sign_in(conn, &attempt, ok, system_time_ms())?)
    })
    .await?;
    tracing::info!(worker = %session.worker_id, "dashboard sign-in");
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        auth::SESSION_MAX_MS / 1000
    );
    let mut response = Json(session_json(&state, session).await?).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(internal)?,
    );
    Ok(response)
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, WebError> {
    let (token, session) = signed_in(&state, &headers).await?;
    check_csrf(&headers, &session)?;
    with_db(&state, move |conn| {
        Ok(auth::sign_out(
            conn,
            &token,
            session.worker_id,
            system_time_ms(),
        )?)
    })
    .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("feltbog_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// A report's query: the period, one team or all the supervisor reads, the format, the
/// language of an export's labels.
#[derive(Deserialize)]
struct ReportQuery {
    from: NaiveDate,
    to: NaiveDate,
    team: Option<Uuid>,
    #[serde(default)]
    format: Format,
    #[serde(default)]
    lang: export::Lang,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// The report as data, for API users.
    #[default]
    Json,
    /// The report as labelled tables (`export::tables`): what the dashboard shows.
    Tables,
    Csv,
    Xlsx,
}

/// What the audit row of a report view holds: the report and its filter, never figures.
#[derive(Serialize)]
struct ViewDetail<'a> {
    report: &'static str,
    from: NaiveDate,
    to: NaiveDate,
    teams: &'a [Uuid],
    format: Format,
}

/// A report for the signed-in supervisor, in their teams only; audited before it is sent.
async fn report(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let kind =
        ReportKind::parse(&kind).ok_or_else(|| WebError::BadRequest("no such report".into()))?;
    let Query(query) = query.map_err(|_| {
        WebError::BadRequest("give from and to as YYYY-MM-DD, and a team you read".into())
    })?;
    let teams = session
        .report_teams(query.team)
        .ok_or(WebError::Forbidden)?;
    let period =
        Period::new(query.from, query.to).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let filter = Filter { period, teams };
    // The visits' report rows catch up with the change log under the write lock (short but
    // for the first time); the report itself then runs on the reading connection.
    with_db(&state, |conn| reports::refresh(conn).map_err(internal)).await?;
    let db = state.db.clone();
    let run_filter = filter.clone();
    let now = chrono::Utc::now();
    let report = tokio::task::spawn_blocking(move || {
        db.with_reader(|conn| {
            conn.read(|db| reports::run(db, kind, &run_filter, now).map_err(internal))
        })
    })
    .await
    .map_err(internal)??;
    let detail = serde_json::to_string(&ViewDetail {
        report: kind.as_str(),
        from: filter.period.from,
        to: filter.period.to,
        teams: &filter.teams,
        format: query.format,
    })
    .map_err(internal)?;
    let action = match query.format {
        Format::Json | Format::Tables => Action::ReportView,
        Format::Csv | Format::Xlsx => Action::ReportExport,
    };
    let worker = session.worker_id;
    write(&state, move |tx| {
        audit::append_detailed(
            tx,
            system_time_ms(),
            &Entry::by_web(worker, action),
            &detail,
        )
        .map_err(internal)
    })
    .await?;
    tracing::info!(worker = %worker, report = kind.as_str(), "report viewed");
    let file = |ext: &str| {
        format!(
            "feltbog-{}-{}-{}.{ext}",
            kind.as_str(),
            filter.period.from,
            filter.period.to
        )
    };
    let title = export::label(query.lang, &format!("report.{}", kind.as_str()));
    let (body, content_type, name) = match query.format {
        Format::Json => {
            let answer = export::Answer {
                report: kind.as_str(),
                filter: &filter,
                data: &report,
            };
            (
                serde_json::to_vec(&answer).map_err(internal)?,
                "application/json",
                None,
            )
        }
        Format::Tables => (
            serde_json::to_vec(&export::tables(&report, query.lang)).map_err(internal)?,
            "application/json",
            None,
        ),
        Format::Csv => (
            export::csv(&export::tables(&report, query.lang), query.lang).map_err(internal)?,
            "text/csv; charset=utf-8",
            Some(file("csv")),
        ),
        Format::Xlsx => (
            export::xlsx(&title, &export::tables(&report, query.lang)).map_err(internal)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Some(file("xlsx")),
        ),
    };
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(name) = name {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(internal)?,
        );
    }
    Ok(response)
}

#[derive(Deserialize)]
struct LangQuery {
    #[serde(default)]
    lang: export::Lang,
}

/// The open free-text conflicts of the supervisor's teams.
async fn conflicts(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::review::OpenConflict>>, WebError> {
    let (_, session) = signed_in(&state, &headers).await?;
    let list = write(&state, move |tx| {
        crate::review::open_conflicts(
            tx,
            session.worker_id,
            &session.teams,
            q.lang,
            system_time_ms(),
        )
        .map_err(internal)
    })
    .await?;
    Ok(Json(list))
}

/// Settles one conflict by the same rule as a review from the supervisor's tablet.
async fn settle(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    request: Request,
) -> Result<StatusCode, WebError> {
    let (_, session) = signed_in(&state, request.headers()).await?;
    check_csrf(request.headers(), &session)?;
    let decision: crate::sync::Decision = json_body(request).await?;
    let max_drift = state.config.max_drift_ms;
    let worker = session.worker_id;
    with_db(&state, move |conn| {
        crate::sync::review_from_dashboard(conn, worker, id, &decision, system_time_ms(), max_drift)
            .map_err(internal)?
            .map_err(|(_, why)| WebError::Refused(why))
    })
    .await?;
    tracing::info!(worker = %worker, "conflict settled from the dashboard");
    Ok(StatusCode::NO_CONTENT)
}
