//! The output routes: raw bytes with offsets (`GET /api/tasks/{id}/output`) and live output as
//! Server-Sent Events (`GET /api/tasks/{id}/follow`), resumable at a byte offset.

use crate::api::{blocking, parse_stream, query_error, stream_permit, task, S};
use crate::error::{ApiError, ApiResult};
use crate::follow::{end_event, Client, Source};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as St};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use taskpool::output::OutputLog;
use taskpool::task::ReadOptions;
use taskpool::{Stream, Task};

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

/// A `Last-Event-ID`: `RUN:OFFSET` as this server sends them, or a bare offset.
fn parse_event_id(v: &HeaderValue) -> ApiResult<(Option<u32>, u64)> {
    let bad = || ApiError::bad_request("Last-Event-ID: not RUN:OFFSET or a byte offset");
    let v = v.to_str().map_err(|_| bad())?.trim();
    match v.split_once(':') {
        Some((run, at)) => Ok((
            Some(run.parse().map_err(|_| bad())?),
            at.parse().map_err(|_| bad())?,
        )),
        None => Ok((None, v.parse().map_err(|_| bad())?)),
    }
}

/// `GET /api/tasks/{id}/follow`: SSE. First `event: run` naming the run followed and the offset
/// it starts at, then `event: output` with `id:` `RUN:OFFSET` (the offset in the chosen stream
/// after the chunk), `event: state`, and `event: end` with the final info. `Last-Event-ID` (or
/// `?offset=`) resumes; an id of an earlier run than the one followed (the task was restarted
/// since) starts that run at 0. `?run=N` follows run N. Every client of a run shares one
/// subscription to its supervisor (see [`crate::follow`]).
pub async fn follow(
    St(s): S,
    Path(id): Path<String>,
    q: Result<Query<OutputQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(query_error)?;
    let stream = parse_stream(q.stream.as_deref())?;
    let last = headers
        .get("last-event-id")
        .map(parse_event_id)
        .transpose()?;
    if q.run == Some(0) {
        return Err(ApiError::bad_request("run: runs count from 1"));
    }
    let permit = stream_permit(&s)?;
    let client = blocking(move || {
        let t = task(&s, &id)?;
        let info = t.info()?;
        // A task that has not run yet: its first run is the one to follow.
        let latest = info.run.max(1);
        let no_run = |r: u32| ApiError::not_found(format!("task {} has no run {r}", t.id()));
        let run = q.run.unwrap_or(latest);
        if run > latest {
            return Err(no_run(run));
        }
        let from = match last {
            Some((Some(r), _)) if q.run.is_some_and(|p| p != r) => {
                return Err(ApiError::bad_request(format!(
                    "Last-Event-ID names run {r}, but the follow is of run {run}"
                )))
            }
            Some((Some(r), _)) if r > latest => return Err(no_run(r)),
            // Restarted since: the newest run from its start.
            Some((Some(r), _)) if r < run => 0,
            Some((_, at)) => at,
            None => q.offset.unwrap_or(0),
        };
        let end = if info.run == 0 {
            0
        } else {
            OutputLog::open(&t.pool().run_dir(t.id(), run))?.len(stream)
        };
        if from > end {
            return Err(past_end(from, stream, end));
        }
        let source = if run < info.run {
            Source::Files(end_event(&info))
        } else {
            s.follows.join(&s.pool, t.id(), run)?
        };
        Ok(Client::new(
            s.pool.clone(),
            (t.id(), run),
            stream,
            from,
            source,
            permit,
        ))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(client.into_stream()),
    )
        .into_response())
}
