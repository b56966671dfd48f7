//! Access: the token (bearer header, `?token=` or the cookie it sets), and the rules for
//! requests that change anything (POST only, same site, not `--read-only`, bodies ≤ 1 MiB).

use crate::error::ApiError;
use crate::State;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The cookie holding the token once a page was opened with `?token=`.
pub const COOKIE: &str = "taskpool_token";
/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A fresh random token: 128 bits, as hex.
pub fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| anyhow::anyhow!("getting random bytes for the token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Read the token from `path`: the file must be the caller's and mode 0600 or stricter.
pub fn token_from_file(path: &std::path::Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "token file {} has mode {:04o}: others may read it (chmod 600 it)",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        anyhow::bail!("token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// Whether `given` is the token, compared in constant time.
fn is_token(state: &State, given: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(state.token.as_bytes()))
}

/// The middleware guarding every route.
pub async fn guard(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let from_query = query_token(req.uri().query()).filter(|t| is_token(&state, t));
    let ok = from_query.is_some()
        || bearer_token(headers).is_some_and(|t| is_token(&state, t))
        || cookie_token(headers).is_some_and(|t| is_token(&state, t));
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is needed (Authorization: Bearer TOKEN, or open the page with ?token=TOKEN)",
        )
        .into_response();
    }
    if let Err(e) = check_change(&state, &req) {
        return e.into_response();
    }
    let set_cookie = from_query.is_some();
    let mut resp = next.run(req).await;
    if set_cookie {
        let c = format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            state.token
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The rules for a request that may change something.
fn check_change(state: &State, req: &Request) -> Result<(), ApiError> {
    if req.method() != Method::POST {
        return Ok(());
    }
    let h = req.headers();
    if h.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
        return Err(ApiError::forbidden(
            "refused: the request comes from another site (Sec-Fetch-Site: cross-site)",
        ));
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| origin.as_bytes() == o.as_bytes()) {
            return Err(ApiError::forbidden(format!(
                "refused: Origin {} is not this server's",
                String::from_utf8_lossy(origin.as_bytes())
            )));
        }
    }
    if state.read_only {
        return Err(ApiError::forbidden(
            "refused: the server is read-only (--read-only)",
        ));
    }
    let len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if len.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    Ok(())
}

/// 413.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is over {MAX_BODY} bytes"),
    )
}

/// One line per request on stderr: method, path (without the query, which may hold the token),
/// status and time taken.
pub async fn log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    eprintln!(
        "{method} {path} {} {:.1}ms",
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    );
    resp
}

/// Headers on every answer: no `Referer` leaves the page (its URL may hold the token), and no
/// answer is sniffed into another type than it says.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
