//! The web page at `/`: one HTML file, one script and one stylesheet (`server/page/`), embedded
//! in the binary at build time, so the server needs no files and the page no network beyond the
//! server. Everything a task prints or sets goes into the page as text (`textContent`), and the
//! Content-Security-Policy allows no script but `/app.js`, so markup in output never runs.

use crate::api::S;
use crate::error::ApiError;
use axum::extract::State as St;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

const INDEX: &str = include_str!("../page/index.html");
const SCRIPT: &str = include_str!("../page/app.js");
const STYLE: &str = include_str!("../page/app.css");

/// The policy sent with the page: its own script and stylesheet only, no inline code, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /app.js`.
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /app.css`.
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /api/server`: what the page needs to know of the server (whether to show the buttons).
pub async fn server(St(s): S) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pool": s.pool.path(),
        "read_only": s.read_only,
        "allow_spawn": s.allow_spawn,
    }))
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such page")
}
