//! The task routes: listing with `--where` patterns, info, report, groups, the POST routes that
//! control a task, and spawning a job. Each a thin layer over the `taskpool` library.

use crate::api::{blocking, query_error, task, S};
use crate::auth::{too_large, MAX_BODY};
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as St};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The query of `GET /api/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "where")]
    where_: Option<String>,
    state: Option<String>,
}

/// `GET /api/tasks`.
pub async fn list(St(s): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<Response> {
    let Query(q) = q.map_err(query_error)?;
    let mut pattern = match &q.where_ {
        Some(w) if !w.trim().is_empty() => match serde_json::from_str::<Value>(w) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "where: the pattern must be a JSON object",
                ))
            }
            Err(e) => return Err(ApiError::bad_request(format!("where: not JSON: {e}"))),
        },
        _ => Map::new(),
    };
    if let Some(st) = &q.state {
        if serde_json::from_value::<taskpool::State>(Value::String(st.clone())).is_err() {
            return Err(ApiError::bad_request(format!(
                "state: unknown state {st:?}"
            )));
        }
        let st = Value::String(st.clone());
        if pattern.get("state").is_some_and(|w| *w != st) {
            // Contradicts the pattern's own state: no task matches.
            return Ok(json_bytes(b"[]".to_vec()));
        }
        pattern.insert("state".into(), st);
    }
    blocking(move || {
        let infos = s.pool.search(&Value::Object(pattern))?;
        let body = serde_json::to_vec(&infos).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        Ok(json_bytes(body))
    })
    .await
}

/// An already serialized JSON body.
fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/tasks/{id}`.
pub async fn info(St(s): S, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || Ok(Json(task(&s, &id)?.info()?.to_json()))).await
}

/// `GET /api/tasks/{id}/report`.
pub async fn report(St(s): S, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let info = task(&s, &id)?.info()?;
        match info.report {
            Some(r) => Ok(Json(serde_json::to_value(r).unwrap_or_default())),
            None => Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_report",
                format!(
                    "task {} has no report (it is {})",
                    info.id,
                    info.state.as_str()
                ),
            )),
        }
    })
    .await
}

/// `GET /api/groups`.
pub async fn groups(St(s): S) -> ApiResult<Json<Value>> {
    blocking(move || {
        Ok(Json(
            serde_json::to_value(s.pool.groups()?).unwrap_or_default(),
        ))
    })
    .await
}

/// A request body: at most [`MAX_BODY`] bytes (413 past it).
pub type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn body(b: Body) -> ApiResult<Bytes> {
    match b {
        Ok(b) if b.len() > MAX_BODY => Err(too_large()),
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(e.body_text())),
    }
}

fn json_body<T: for<'de> Deserialize<'de> + Default>(b: &[u8]) -> ApiResult<T> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("body: malformed JSON: {e}")))
}

/// The body of `/kill`.
#[derive(Debug, Default, Deserialize)]
struct KillBody {
    signal: Option<Value>,
}

/// The query of `POST /api/tasks/{id}/send`.
#[derive(Debug, Default, Deserialize)]
pub struct SendQuery {
    /// Close the task's stdin after writing the body.
    #[serde(default)]
    eof: bool,
}

/// `POST /api/tasks/{id}/{action}`: kill, terminate, pause, resume, restart, send, meta.
pub async fn control(
    St(s): S,
    Path((id, action)): Path<(String, String)>,
    q: Result<Query<SendQuery>, QueryRejection>,
    b: Body,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(query_error)?;
    let b = body(b)?;
    blocking(move || {
        let t = task(&s, &id)?;
        match action.as_str() {
            "kill" => {
                let k: KillBody = json_body(&b)?;
                let sig = match k.signal {
                    None => nix::sys::signal::Signal::SIGTERM,
                    Some(Value::String(n)) => taskpool::signal::parse_signal(&n)?,
                    Some(Value::Number(n)) => taskpool::signal::parse_signal(&n.to_string())?,
                    Some(_) => return Err(ApiError::bad_request("signal: a name or a number")),
                };
                t.kill(sig)?;
            }
            "terminate" => return Ok(Json(t.terminate_supervisor(None)?.to_json())),
            "pause" => t.pause()?,
            "resume" => t.resume()?,
            "restart" => return Ok(Json(t.restart()?.info()?.to_json())),
            "send" => {
                if !b.is_empty() {
                    t.write(&b)?;
                }
                if q.eof {
                    t.close_stdin()?;
                }
            }
            "meta" => {
                let patch: Map<String, Value> = serde_json::from_slice(&b).map_err(|e| {
                    ApiError::bad_request(format!("body: a JSON object is needed: {e}"))
                })?;
                return Ok(Json(t.apply_meta(&patch)?.to_json()));
            }
            other => return Err(ApiError::not_found(format!("no action {other:?}"))),
        }
        Ok(Json(t.info()?.to_json()))
    })
    .await
}

/// `POST /api/tasks`: spawn a job (only with `--allow-spawn`).
pub async fn spawn(St(s): S, b: Body) -> ApiResult<(StatusCode, Json<Value>)> {
    if !s.allow_spawn {
        return Err(ApiError::forbidden(
            "refused: spawning over HTTP is off (start the server with --allow-spawn)",
        ));
    }
    let b = body(b)?;
    blocking(move || {
        let job = taskpool::job::Job::parse(&b)?;
        let opts = job.to_options(&s.base_dir)?;
        let t = s.pool.spawn(&opts)?;
        Ok((StatusCode::CREATED, Json(t.info()?.to_json())))
    })
    .await
}
