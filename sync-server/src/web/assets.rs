//! The dashboard's page and assets, embedded at build time (`build.rs`). Vite names the
//! assets by content hash, so they are cached for good; the page itself never is.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/dashboard_files.rs"));

/// Shown when the server was built before the dashboard.
const NOT_BUILT: &str = "<!doctype html><html lang=\"da\"><meta charset=\"utf-8\">\
<title>Feltbog</title><main><h1>Feltbog</h1><p>Rapportsiden er ikke bygget ind i denne \
server. Kør <code>npm run build:dashboard</code> i <code>ui/</code> og byg serveren igen.</p>\
<p lang=\"en\">The reports dashboard is not built into this server: run \
<code>npm run build:dashboard</code> in <code>ui/</code> and build the server again.</p></main></html>";

/// The security headers every dashboard response carries: no framing, no sniffing, no
/// referrer, and scripts and styles from this origin only.
fn harden(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `/`: the dashboard's page.
pub async fn index() -> Response {
    let body: &'static [u8] = FILES
        .iter()
        .find(|(name, _)| *name == "index.html")
        .map_or(NOT_BUILT.as_bytes(), |(_, bytes)| *bytes);
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    harden(&mut response);
    response
}

/// `/dashboard/assets/{file}`: one built asset.
pub async fn file(Path(name): Path<String>) -> Response {
    let path = format!("assets/{name}");
    let Some((_, bytes)) = FILES.iter().find(|(n, _)| *n == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = Response::new(Body::from(*bytes));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    harden(&mut response);
    response
}
