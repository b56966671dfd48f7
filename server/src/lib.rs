//! `taskpool serve`: a pool as a JSON API over HTTP (and, in time, a live web page), built on
//! the `taskpool` library alone. See `docs/http.md`.

#![deny(missing_docs)]

mod api;
pub mod auth;
pub mod error;
mod events;

use axum::routing::{get, post};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use taskpool::Pool;

/// The most SSE streams open at once; the next gets 503.
pub const MAX_STREAMS: usize = 256;

/// A change of the pool, as `/api/events` sends it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A task appeared or its record changed: its info.
    Task(Arc<serde_json::Value>),
    /// A task's directory went away.
    Removed(u64),
}

/// What every handler shares.
#[derive(Debug)]
pub struct State {
    /// The pool served.
    pub pool: Pool,
    /// The token every request must carry.
    pub token: String,
    /// Refuse every request that would change something.
    pub read_only: bool,
    /// Accept `POST /api/tasks`.
    pub allow_spawn: bool,
    /// Relative paths in spawned jobs are taken against this directory.
    pub base_dir: PathBuf,
    /// Bounds the open SSE streams.
    pub followers: Arc<tokio::sync::Semaphore>,
    /// Pool changes, for `/api/events`.
    pub changes: tokio::sync::broadcast::Sender<Change>,
}

/// The whole application: routes, access guard and request log.
pub fn app(state: Arc<State>) -> Router {
    let api = Router::new()
        .route("/api/tasks", get(api::list).post(api::spawn))
        .route("/api/tasks/{id}", get(api::info))
        .route("/api/tasks/{id}/output", get(api::output))
        .route("/api/tasks/{id}/report", get(api::report))
        .route("/api/tasks/{id}/follow", get(api::follow))
        .route("/api/tasks/{id}/{action}", post(api::control))
        .route("/api/events", get(api::events))
        .route("/api/groups", get(api::groups))
        .route("/api/openapi.json", get(api::openapi))
        .fallback(api::not_found);
    api.layer(axum::extract::DefaultBodyLimit::max(auth::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(auth::log))
        .with_state(state)
}

/// Build the shared state for `pool`, and start watching the pool for changes.
pub fn state(
    pool: Pool,
    token: String,
    read_only: bool,
    allow_spawn: bool,
) -> anyhow::Result<Arc<State>> {
    let (changes, _) = tokio::sync::broadcast::channel(1024);
    events::watch(pool.clone(), changes.clone())?;
    Ok(Arc::new(State {
        pool,
        token,
        read_only,
        allow_spawn,
        base_dir: std::env::current_dir()?,
        followers: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        changes,
    }))
}

/// A unix listener that drops connections from any uid but this process's own.
#[derive(Debug)]
pub struct PeerChecked(pub tokio::net::UnixListener);

impl axum::serve::Listener for PeerChecked {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let me = unsafe { libc::geteuid() };
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
            match io.peer_cred() {
                Ok(c) if c.uid() == me => return (io, addr),
                _ => eprintln!("taskpool serve: refused a connection from another user"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
