//! What the handlers share: running blocking library calls, finding a task by its id in the
//! path, the stream parameter, the SSE stream plumbing, and the two routes of the API itself
//! (its OpenAPI document, and 404 for any other path under `/api/`).

use crate::error::{ApiError, ApiResult};
use crate::State;
use axum::http::{header, StatusCode};
use axum::response::sse::Event as SseEvent;
use axum::response::IntoResponse;
use futures_util::stream::Stream as FStream;
use std::convert::Infallible;
use std::sync::Arc;
use taskpool::{Stream, Task};

/// The state extractor of every handler.
pub type S = axum::extract::State<Arc<State>>;

/// Run blocking library work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

/// The task named by `id` in a path: 404 for anything but the id of a task of the pool (so no
/// `..` or other path ever reaches the file system).
pub fn task(state: &State, id: &str) -> ApiResult<Task> {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no task {id:?}: ids are numbers")))?;
    Ok(state.pool.task(n)?)
}

/// 400 for a query string that does not parse (a negative offset, a word for a number).
pub fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("query: {}", e.body_text()))
}

/// The `stream` parameter (default `combined`).
pub fn parse_stream(s: Option<&str>) -> ApiResult<Stream> {
    match s.unwrap_or("combined") {
        "stdout" => Ok(Stream::Stdout),
        "stderr" => Ok(Stream::Stderr),
        "combined" => Ok(Stream::Combined),
        other => Err(ApiError::bad_request(format!(
            "stream: {other:?} is not stdout, stderr or combined"
        ))),
    }
}

/// A permit for one more SSE stream, or 503 when `--max-streams` are open.
pub fn stream_permit(state: &State) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "too many event streams are open (at most {})",
                state.max_streams
            ),
        )
    })
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

/// `GET /api/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// Any other path under `/api/`.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
