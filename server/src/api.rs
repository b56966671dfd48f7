//! The JSON API's handlers, each a thin layer over the `taskpool` library.

use crate::auth::{too_large, MAX_BODY};
use crate::error::{ApiError, ApiResult};
use crate::State;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as St};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures_util::stream::Stream as FStream;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use taskpool::task::ReadOptions;
use taskpool::{Event, Stream, Task};

type S = St<Arc<State>>;

/// Run blocking library work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

fn task(state: &State, id: &str) -> ApiResult<Task> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task {id:?}: ids are numbers"),
        )
    })?;
    Ok(state.pool.task(id)?)
}

/// The query of `GET /api/tasks`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "where")]
    where_: Option<String>,
    state: Option<String>,
}

/// `GET /api/tasks`.
pub async fn list(St(s): S, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let mut pattern = match &q.where_ {
        Some(w) => match serde_json::from_str::<Value>(w) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "where: the pattern must be a JSON object",
                ))
            }
            Err(e) => return Err(ApiError::bad_request(format!("where: not JSON: {e}"))),
        },
        None => Map::new(),
    };
    if let Some(st) = &q.state {
        if serde_json::from_value::<taskpool::State>(Value::String(st.clone())).is_err() {
            return Err(ApiError::bad_request(format!(
                "state: unknown state {st:?}"
            )));
        }
        pattern.insert("state".into(), Value::String(st.clone()));
    }
    blocking(move || {
        let infos = s.pool.search(&Value::Object(pattern))?;
        Ok(Json(serde_json::to_value(infos).unwrap_or_default()))
    })
    .await
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

fn parse_stream(s: Option<&str>) -> ApiResult<Stream> {
    match s.unwrap_or("combined") {
        "stdout" => Ok(Stream::Stdout),
        "stderr" => Ok(Stream::Stderr),
        "combined" => Ok(Stream::Combined),
        other => Err(ApiError::bad_request(format!(
            "stream: {other:?} is not stdout, stderr or combined"
        ))),
    }
}

/// The query of the output routes.
#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    stream: Option<String>,
    offset: Option<u64>,
    len: Option<u64>,
}

/// The header giving the offset of the first byte answered.
pub const H_OFFSET: &str = "x-taskpool-offset";
/// The header giving the stream's current end.
pub const H_END: &str = "x-taskpool-end";

/// `GET /api/tasks/{id}/output`: raw bytes, with `X-Taskpool-Offset` (the first byte's offset)
/// and `X-Taskpool-End` (the stream's end now).
pub async fn output(
    St(s): S,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
) -> ApiResult<Response> {
    let stream = parse_stream(q.stream.as_deref())?;
    blocking(move || {
        let t = task(&s, &id)?;
        let offset = q.offset.unwrap_or(0);
        let end = {
            // The end: the offset after the last byte, found by reading from the start.
            let whole = t.read(&ReadOptions {
                offset: Some(0),
                ..ReadOptions::new(stream)
            })?;
            whole.offset + whole.data.len() as u64
        };
        if offset > end {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "offset_past_end",
                format!(
                    "offset {offset} is past the end of {} ({end})",
                    stream.as_str()
                ),
            ));
        }
        let chunk = t.read(&ReadOptions {
            offset: Some(offset),
            count: q.len,
            ..ReadOptions::new(stream)
        })?;
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(H_OFFSET, HeaderValue::from(chunk.offset));
        h.insert(
            H_END,
            HeaderValue::from(end.max(chunk.offset + chunk.data.len() as u64)),
        );
        Ok((h, chunk.data).into_response())
    })
    .await
}

fn sse_output(data: &[u8], at: u64) -> SseEvent {
    let body = match std::str::from_utf8(data) {
        Ok(t) => serde_json::json!({"text": t}),
        Err(_) => {
            serde_json::json!({"base64": base64::engine::general_purpose::STANDARD.encode(data)})
        }
    };
    SseEvent::default()
        .event("output")
        .id(at.to_string())
        .data(body.to_string())
}

/// `GET /api/tasks/{id}/follow`: SSE, `event: output` with `id:` the offset after the chunk,
/// then `event: end` with the final info. `Last-Event-ID` (or `?offset=`) resumes.
pub async fn follow(
    St(s): S,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl FStream<Item = Result<SseEvent, Infallible>>>> {
    let stream = parse_stream(q.stream.as_deref())?;
    let from = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID: not a byte offset"))?,
        None => q.offset.unwrap_or(0),
    };
    let permit = s.followers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "too many event streams are open",
        )
    })?;
    let t = blocking({
        let s = s.clone();
        move || task(&s, &id)
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(16);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // Combined offsets resume directly; a single stream is filtered from the start.
        let start = if stream == Stream::Combined { from } else { 0 };
        let follow = match t.follow(start) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(
                    SseEvent::default()
                        .event("error")
                        .data(e.message()),
                );
                return;
            }
        };
        for ev in follow {
            let sent = match ev {
                Ok(Event::Output {
                    stream: st,
                    offset,
                    combined,
                    data,
                }) => {
                    let base = match stream {
                        Stream::Combined => combined,
                        x if x == st => offset,
                        _ => continue,
                    };
                    let end = base + data.len() as u64;
                    if end <= from {
                        continue;
                    }
                    let skip = from.saturating_sub(base) as usize;
                    tx.blocking_send(sse_output(&data[skip..], end))
                }
                Ok(Event::State(st)) => tx.blocking_send(
                    SseEvent::default()
                        .event("state")
                        .data(serde_json::json!({"state": st.as_str()}).to_string()),
                ),
                Ok(Event::End(info)) => {
                    let _ = tx.blocking_send(
                        SseEvent::default()
                            .event("end")
                            .data(info.to_json().to_string()),
                    );
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(
                        SseEvent::default()
                            .event("error")
                            .data(e.message()),
                    );
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default()))
}

/// An mpsc receiver as a stream of SSE events.
pub fn receiver_stream(
    rx: tokio::sync::mpsc::Receiver<SseEvent>,
) -> impl FStream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

/// `GET /api/events`: SSE of pool changes (`event: task`, `event: removed`).
pub async fn events(St(s): S) -> ApiResult<Sse<impl FStream<Item = Result<SseEvent, Infallible>>>> {
    let permit = s.followers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "too many event streams are open",
        )
    })?;
    let mut sub = s.changes.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let ev = match sub.recv().await {
                Ok(crate::Change::Task(info)) => {
                    SseEvent::default().event("task").data(info.to_string())
                }
                Ok(crate::Change::Removed(id)) => SseEvent::default()
                    .event("removed")
                    .data(serde_json::json!({"id": id}).to_string()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    SseEvent::default().event("resync").data("{}")
                }
                Err(_) => return,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default()))
}

/// A body of at most 1 MiB (413 past it).
async fn body(b: Result<Bytes, axum::extract::rejection::BytesRejection>) -> ApiResult<Bytes> {
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

/// `POST /api/tasks/{id}/{action}`.
pub async fn control(
    St(s): S,
    Path((id, action)): Path<(String, String)>,
    b: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<Value>> {
    let b = body(b).await?;
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
            "terminate" => {
                return Ok(Json(t.terminate_supervisor(None)?.to_json()));
            }
            "pause" => t.pause()?,
            "resume" => t.resume()?,
            "restart" => return Ok(Json(t.restart()?.info()?.to_json())),
            "send" => t.write(&b)?,
            "meta" => {
                let patch: Map<String, Value> = serde_json::from_slice(&b).map_err(|e| {
                    ApiError::bad_request(format!("body: a JSON object is needed: {e}"))
                })?;
                return Ok(Json(t.apply_meta(&patch)?.to_json()));
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no action {other:?}"),
                ))
            }
        }
        Ok(Json(t.info()?.to_json()))
    })
    .await
}

/// `POST /api/tasks`: spawn a job (only with `--allow-spawn`).
pub async fn spawn(
    St(s): S,
    b: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !s.allow_spawn {
        return Err(ApiError::forbidden(
            "refused: spawning over HTTP is off (start the server with --allow-spawn)",
        ));
    }
    let b = body(b).await?;
    blocking(move || {
        let job = taskpool::job::Job::parse(&b)?;
        let opts = job.to_options(&s.base_dir)?;
        let t = s.pool.spawn(&opts)?;
        Ok((StatusCode::CREATED, Json(t.info()?.to_json())))
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

/// `GET /api/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// Any other path under `/api/`.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
