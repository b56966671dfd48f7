//! The output routes: raw bytes with offsets (`GET /api/tasks/{id}/output`) and live output as
//! Server-Sent Events (`GET /api/tasks/{id}/follow`), resumable at a byte offset.

use crate::api::{blocking, parse_stream, query_error, receiver_stream, stream_permit, task, S};
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as St};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::stream::Stream as FStream;
use serde::Deserialize;
use std::convert::Infallible;
use taskpool::output::OutputLog;
use taskpool::task::ReadOptions;
use taskpool::{Event, Stream, Task};

/// The most bytes one `output` answer carries; a client reads on from the offset it reached.
pub const MAX_READ: u64 = 8 * 1024 * 1024;

/// The query of the output routes.
#[derive(Debug, Deserialize)]
pub struct OutputQuery {
    stream: Option<String>,
    offset: Option<u64>,
    len: Option<u64>,
    run: Option<u32>,
}

/// The header giving the offset of the first byte answered.
pub const H_OFFSET: &str = "x-taskpool-offset";
/// The header giving the stream's current end.
pub const H_END: &str = "x-taskpool-end";

/// The end of `stream` in `run` (default: the latest) of `t` now: the offset after its last byte.
fn stream_end(t: &Task, run: Option<u32>, stream: Stream) -> ApiResult<(u32, u64)> {
    let latest = t.info()?.run;
    let run = run.unwrap_or(latest);
    if run == 0 {
        return Ok((0, 0));
    }
    if run > latest {
        return Err(ApiError::not_found(format!(
            "task {} has no run {run}",
            t.id()
        )));
    }
    let log = OutputLog::open(&t.pool().run_dir(t.id(), run))?;
    Ok((run, log.len(stream)))
}

fn past_end(offset: u64, stream: Stream, end: u64) -> ApiError {
    ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "offset_past_end",
        format!(
            "offset {offset} is past the end of {} ({end})",
            stream.as_str()
        ),
    )
}

/// `GET /api/tasks/{id}/output`: raw bytes, with `X-Taskpool-Offset` (the first byte's offset:
/// later than asked when the log cap dropped bytes there) and `X-Taskpool-End` (the stream's
/// end now).
pub async fn output(
    St(s): S,
    Path(id): Path<String>,
    q: Result<Query<OutputQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(query_error)?;
    let stream = parse_stream(q.stream.as_deref())?;
    blocking(move || {
        let t = task(&s, &id)?;
        let offset = q.offset.unwrap_or(0);
        let (run, end) = stream_end(&t, q.run, stream)?;
        if offset > end {
            return Err(past_end(offset, stream, end));
        }
        let (first, data) = if run == 0 {
            (0, Vec::new())
        } else {
            let c = t.read(&ReadOptions {
                run: Some(run),
                offset: Some(offset),
                count: Some(q.len.unwrap_or(MAX_READ).min(MAX_READ)),
                ..ReadOptions::new(stream)
            })?;
            (c.offset, c.data)
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(H_OFFSET, HeaderValue::from(first));
        h.insert(H_END, HeaderValue::from(end.max(first + data.len() as u64)));
        Ok((h, data).into_response())
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

fn sse_error(e: &taskpool::Error) -> SseEvent {
    SseEvent::default().event("error").data(
        serde_json::json!({"error": {"code": e.kind_name(), "message": e.message()}}).to_string(),
    )
}

/// `GET /api/tasks/{id}/follow`: SSE, `event: output` with `id:` the offset in the chosen stream
/// after the chunk, `event: state`, then `event: end` with the final info. `Last-Event-ID` (or
/// `?offset=`) resumes at that offset.
pub async fn follow(
    St(s): S,
    Path(id): Path<String>,
    q: Result<Query<OutputQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl FStream<Item = Result<SseEvent, Infallible>>>> {
    let Query(q) = q.map_err(query_error)?;
    let stream = parse_stream(q.stream.as_deref())?;
    let from = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID: not a byte offset"))?,
        None => q.offset.unwrap_or(0),
    };
    let permit = stream_permit(&s)?;
    let follow = blocking(move || {
        let t = task(&s, &id)?;
        let (_, end) = stream_end(&t, None, stream)?;
        if from > end {
            return Err(past_end(from, stream, end));
        }
        // Combined offsets resume directly; a single stream is filtered from the start.
        let start = if stream == Stream::Combined { from } else { 0 };
        Ok(t.follow(start)?)
    })
    .await?;
    let stop = follow.stopper();
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(16);
    // The client going away ends the follow even while it waits for output; `done` says the
    // follow ended by itself (this sender must not outlive it, or the stream would never end).
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let closed = tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = closed.closed() => stop.stop(),
            _ = done_rx => {}
        }
    });
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _done = done_tx;
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
                    let _ = tx.blocking_send(sse_error(&e));
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
