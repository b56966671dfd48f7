//! `taskpool serve`: a pool as a JSON API over HTTP and a live web page, built on the `taskpool`
//! library alone. See `docs/http.md`.
//!
//! One module per resource: [`tasks`] (lists, info, control, spawning), `output` (bytes and live
//! output; `follow` shares one subscription per run among its clients), `events` (pool changes
//! from inotify), `page` (the embedded web page); [`auth`] guards every route, [`error`] is the
//! one JSON error body.

#![deny(missing_docs)]

mod api;
pub mod auth;
pub mod error;
mod events;
mod follow;
mod output;
mod page;
pub mod tasks;

use axum::routing::{any, get, post};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;
use taskpool::Pool;

/// The most SSE streams open at once by default (`--max-streams`); the next gets 503.
pub const MAX_STREAMS: usize = 256;

/// A change of the pool, as `/api/events` sends it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A task appeared or its record changed: its info.
    Task(Arc<serde_json::Value>),
    /// A task's directory went away.
    Removed(u64),
    /// Changes were lost (the kernel's event queue overflowed): clients should list again.
    Resync,
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
    pub streams: Arc<tokio::sync::Semaphore>,
    /// How many SSE streams may be open at once.
    pub max_streams: usize,
    /// Pool changes, for `/api/events`.
    pub changes: tokio::sync::broadcast::Sender<Change>,
    /// The live follows, one per (task, run), shared by their SSE clients.
    pub follows: Arc<follow::Hubs>,
    /// The clients of `/api/events`, and the look at scheduler tasks while there are any.
    pub scheduler: events::SchedulerWatch,
}

/// The whole application: routes, access guard and request log.
pub fn app(state: Arc<State>) -> Router {
    let api = Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/api/server", get(page::server))
        .route("/api/tasks", get(tasks::list).post(tasks::spawn))
        .route("/api/tasks/{id}", get(tasks::info))
        .route("/api/tasks/{id}/output", get(output::output))
        .route("/api/tasks/{id}/report", get(tasks::report))
        .route("/api/tasks/{id}/follow", get(output::follow))
        .route("/api/tasks/{id}/{action}", post(tasks::control))
        .route("/api/events", get(events::events))
        .route("/api/groups", get(tasks::groups))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/{*rest}", any(api::not_found))
        .fallback(page::not_found);
    api.layer(axum::extract::DefaultBodyLimit::max(auth::MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(auth::headers))
        .layer(axum::middleware::from_fn(auth::log))
        .with_state(state)
}

/// How a server is configured.
#[derive(Debug, Clone)]
pub struct Options {
    /// The token every request must carry.
    pub token: String,
    /// Refuse every request that would change something.
    pub read_only: bool,
    /// Accept `POST /api/tasks`.
    pub allow_spawn: bool,
    /// How many SSE streams may be open at once.
    pub max_streams: usize,
}

/// Build the shared state for `pool`, and start watching the pool for changes.
pub fn state(pool: Pool, opts: Options) -> anyhow::Result<Arc<State>> {
    let (changes, _) = tokio::sync::broadcast::channel(1024);
    events::watch(pool.clone(), changes.clone())?;
    Ok(Arc::new(State {
        pool,
        token: opts.token,
        read_only: opts.read_only,
        allow_spawn: opts.allow_spawn,
        base_dir: std::env::current_dir()?,
        streams: Arc::new(tokio::sync::Semaphore::new(opts.max_streams)),
        max_streams: opts.max_streams,
        changes,
        follows: Arc::default(),
        scheduler: events::SchedulerWatch::default(),
    }))
}

/// A unix listener that drops connections from any uid but this process's own.
#[derive(Debug)]
pub struct PeerChecked(pub tokio::net::UnixListener);

impl axum::serve::Listener for PeerChecked {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let me = nix::unistd::geteuid().as_raw();
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
