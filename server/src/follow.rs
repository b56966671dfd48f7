//! Live output shared by every SSE client of a task: one subscription to the task's supervisor
//! per (task, run), however many clients follow it, fanned out in the server.
//!
//! A [`Hubs`] entry holds the one [`taskpool::Follow`] of a run (read by its own thread) and a
//! broadcast channel of what it delivers. Each client keeps its own cursor (a byte offset in the
//! stream it asked for) and takes from a piece only the bytes past it. What it does not get from
//! the channel (it joined late, resumed at an old offset, or fell behind and the channel moved on)
//! it reads from the run's log files, which hold every byte a follow sends before it is sent,
//! until it reaches the live position again. So nothing is lost or repeated, a slow client holds
//! only its own stream (the channel never waits for it), and the supervisor sends each byte once.
//! The subscription ends when the run does, or when its last client goes.

use axum::body::Bytes;
use base64::Engine as _;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use taskpool::output::OutputLog;
use taskpool::reader::RunReader;
use taskpool::{ErrorKind, Event, FollowStop, Pool, Stream};
use tokio::sync::broadcast::{self, error::RecvError};

/// Pieces a run's channel keeps for clients that have not taken them yet; one further behind
/// reads the files instead.
const CHANNEL: usize = 32;
/// The most bytes one catch-up read from the files (one `output` event) carries.
const FILE_CHUNK: u64 = 1 << 20;
/// A comment line sent on a quiet stream, so proxies and clients see it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One piece of a run's output, as its subscription delivered it, with its event text made
/// once for all the clients that take it whole.
#[derive(Debug)]
pub struct Piece {
    stream: Stream,
    /// Offset of the first byte in `stream`.
    offset: u64,
    /// Offset of the first byte in the combined view.
    combined: u64,
    data: Vec<u8>,
    /// The event for a client of the combined view, and for one of `stream` alone.
    as_combined: OnceLock<Bytes>,
    as_stream: OnceLock<Bytes>,
}

/// What a run's subscription delivers.
#[derive(Debug)]
pub enum Msg {
    /// Output bytes.
    Output(Piece),
    /// A state change, as its event.
    State(Bytes),
    /// The run is over and every byte was delivered: the final info's event.
    End(Bytes),
    /// The subscription failed: its error event.
    Error(Bytes),
}

#[derive(Debug)]
struct Entry {
    /// Tells entries of the same (task, run) apart over time.
    generation: u64,
    tx: broadcast::Sender<Arc<Msg>>,
    stop: FollowStop,
    clients: usize,
}

/// The live subscriptions, one per (task, run) with clients.
#[derive(Debug, Default)]
pub struct Hubs {
    map: Mutex<HashMap<(u64, u32), Entry>>,
    next_generation: std::sync::atomic::AtomicU64,
}

/// A client's hold on a run's subscription: dropping it lets the subscription go with its last
/// client.
#[derive(Debug)]
pub struct Member {
    hubs: Arc<Hubs>,
    key: (u64, u32),
    generation: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut map = self.hubs.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(&self.key) {
            if e.generation == self.generation {
                e.clients -= 1;
                if e.clients == 0 {
                    if let Some(e) = map.remove(&self.key) {
                        e.stop.stop();
                    }
                }
            }
        }
    }
}

impl Hubs {
    /// Join the subscription of `run` of task `id`, starting it if it has no client yet (at the
    /// current end of the run's files: what came before, each client reads there). Blocks
    /// while connecting to the supervisor.
    pub fn join(self: &Arc<Hubs>, pool: &Pool, id: u64, run: u32) -> taskpool::Result<Source> {
        if let Some(j) = self.join_existing(id, run) {
            return Ok(j);
        }
        let end = OutputLog::open(&pool.run_dir(id, run))
            .map(|l| l.len(Stream::Combined))
            .unwrap_or(0);
        let follow = pool.task(id)?.follow(end)?;
        let (tx, rx) = broadcast::channel(CHANNEL);
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.contains_key(&(id, run)) {
                // Another client started one meanwhile: use that.
                drop(map);
                follow.stopper().stop();
                return self.join(pool, id, run);
            }
            map.insert(
                (id, run),
                Entry {
                    generation,
                    tx: tx.clone(),
                    stop: follow.stopper(),
                    clients: 1,
                },
            );
        }
        let hubs = self.clone();
        std::thread::Builder::new()
            .name(format!("follow-{id}"))
            .spawn(move || hubs.pump(follow, tx, (id, run), generation))
            .map_err(|e| taskpool::Error::io("starting a follow thread", e))?;
        Ok(Source::Live(
            rx,
            Member {
                hubs: self.clone(),
                key: (id, run),
                generation,
            },
        ))
    }

    fn join_existing(self: &Arc<Hubs>, id: u64, run: u32) -> Option<Source> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get_mut(&(id, run))?;
        e.clients += 1;
        Some(Source::Live(
            e.tx.subscribe(),
            Member {
                hubs: self.clone(),
                key: (id, run),
                generation: e.generation,
            },
        ))
    }

    /// The subscription's thread: everything it delivers goes to the channel. Its last message
    /// is sent with the entry already gone, under the lock, so a client either joined before
    /// and gets it, or starts a new subscription.
    fn pump(
        &self,
        follow: taskpool::Follow,
        tx: broadcast::Sender<Arc<Msg>>,
        key: (u64, u32),
        generation: u64,
    ) {
        for ev in follow {
            let last = match ev {
                Ok(Event::Output {
                    stream,
                    offset,
                    combined,
                    data,
                }) => {
                    let _ = tx.send(Arc::new(Msg::Output(Piece {
                        stream,
                        offset,
                        combined,
                        data,
                        as_combined: OnceLock::new(),
                        as_stream: OnceLock::new(),
                    })));
                    continue;
                }
                Ok(Event::State(st)) => {
                    let _ = tx.send(Arc::new(Msg::State(sse(
                        "state",
                        None,
                        &serde_json::json!({"state": st.as_str()}).to_string(),
                    ))));
                    continue;
                }
                Ok(Event::End(info)) => Msg::End(end_event(&info)),
                Err(e) => Msg::Error(error_event(&e)),
            };
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&key).is_some_and(|e| e.generation == generation) {
                map.remove(&key);
            }
            let _ = tx.send(Arc::new(last));
            return;
        }
        // Stopped: its last client went, and took the entry with it.
    }
}

/// The text of one event.
fn sse(event: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut v = Vec::with_capacity(event.len() + data.len() + 40);
    v.extend_from_slice(b"event: ");
    v.extend_from_slice(event.as_bytes());
    if let Some(id) = id {
        v.extend_from_slice(b"\nid: ");
        v.extend_from_slice(id.as_bytes());
    }
    v.extend_from_slice(b"\ndata: ");
    v.extend_from_slice(data.as_bytes());
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

/// An `output` event: `{"text": …}` for valid UTF-8, else `{"base64": …}`; `id` the offset after
/// it.
fn output_event(data: &[u8], id: &str) -> Bytes {
    #[derive(Serialize)]
    struct Text<'a> {
        text: &'a str,
    }
    #[derive(Serialize)]
    struct Base64 {
        base64: String,
    }
    let body = match std::str::from_utf8(data) {
        Ok(text) => serde_json::to_string(&Text { text }),
        Err(_) => serde_json::to_string(&Base64 {
            base64: base64::engine::general_purpose::STANDARD.encode(data),
        }),
    }
    .unwrap_or_default();
    sse("output", Some(id), &body)
}

/// The `end` event: the task's final info.
pub fn end_event(info: &taskpool::Info) -> Bytes {
    sse("end", None, &info.to_json().to_string())
}

/// An `error` event.
pub fn error_event(e: &taskpool::Error) -> Bytes {
    sse(
        "error",
        None,
        &serde_json::json!({"error": {"code": e.kind_name(), "message": e.message()}}).to_string(),
    )
}

/// Where a client is.
enum Mode {
    /// Reading the files from the cursor, up to an offset (or their end), then handling `then`.
    CatchUp {
        upto: Option<u64>,
        then: Option<Arc<Msg>>,
    },
    /// Taking pieces from the channel.
    Live,
    Done,
}

/// Where a client's output comes from after the files.
pub enum Source {
    /// The run's shared subscription, joined with [`Hubs::join`].
    Live(broadcast::Receiver<Arc<Msg>>, Member),
    /// Nothing: the run is over (an earlier run than the latest); the files, then this `end`
    /// event.
    Files(Bytes),
}

/// One SSE client of a run: its cursor in the stream it follows, the channel, and its hold on
/// the subscription. Its events come from [`Client::next`].
pub struct Client {
    pool: Pool,
    id: u64,
    run: u32,
    stream: Stream,
    /// The offset in `stream` after the last byte sent.
    cursor: u64,
    rx: Option<broadcast::Receiver<Arc<Msg>>>,
    mode: Mode,
    /// The `run` event, sent first.
    first: Option<Bytes>,
    /// The run's files, once opened.
    files: Option<RunReader>,
    _member: Option<Member>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Client {
    /// A client of `stream` of `run` of task `id`, from offset `from` in that stream, holding one
    /// of the server's stream permits. Its first event is `run`, naming the run and the offset.
    pub fn new(
        pool: Pool,
        (id, run): (u64, u32),
        stream: Stream,
        from: u64,
        source: Source,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Client {
        let (rx, member, then) = match source {
            Source::Live(rx, m) => (Some(rx), Some(m), None),
            Source::Files(end) => (None, None, Some(Arc::new(Msg::End(end)))),
        };
        Client {
            pool,
            id,
            run,
            stream,
            cursor: from,
            rx,
            mode: Mode::CatchUp { upto: None, then },
            first: Some(sse(
                "run",
                None,
                &serde_json::json!({"run": run, "offset": from}).to_string(),
            )),
            files: None,
            _member: member,
            _permit: permit,
        }
    }

    /// The events of this client, as the body of its response.
    pub fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
        futures_util::stream::unfold(
            self,
            |mut c| async move { c.next().await.map(|b| (Ok(b), c)) },
        )
    }

    /// The event id of the position `at` (the offset after a chunk): `RUN:OFFSET`.
    fn id_at(&self, at: u64) -> String {
        format!("{}:{at}", self.run)
    }

    /// The next event to send; `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match &mut self.mode {
                Mode::Done => return None,
                Mode::CatchUp { upto, .. } => {
                    let upto = *upto;
                    if upto.is_none_or(|u| self.cursor < u) {
                        match self.read_files(upto).await {
                            Ok(Some(ev)) => return Some(ev),
                            Ok(None) => {}
                            Err(e) => {
                                self.mode = Mode::Done;
                                return Some(error_event(&e));
                            }
                        }
                    }
                    let Mode::CatchUp { then, .. } = std::mem::replace(&mut self.mode, Mode::Live)
                    else {
                        unreachable!("in catch-up")
                    };
                    if let Some(m) = then {
                        if let Some(ev) = self.deliver(&m, true) {
                            return Some(ev);
                        }
                    }
                }
                Mode::Live => {
                    let Some(rx) = &mut self.rx else {
                        self.mode = Mode::Done;
                        return None;
                    };
                    match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                        Err(_) => return Some(Bytes::from_static(b":\n\n")),
                        Ok(Ok(m)) => {
                            if let Some(ev) = self.deliver(&m, false) {
                                return Some(ev);
                            }
                        }
                        // Fell behind: what the channel dropped is in the files.
                        Ok(Err(RecvError::Lagged(_))) => {
                            self.mode = Mode::CatchUp {
                                upto: None,
                                then: None,
                            }
                        }
                        Ok(Err(RecvError::Closed)) => {
                            self.mode = Mode::Done;
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// What to send of a message from the channel (`None`: nothing, or first a catch-up).
    /// `caught_up` says the files were read up to it already.
    fn deliver(&mut self, m: &Arc<Msg>, caught_up: bool) -> Option<Bytes> {
        match &**m {
            Msg::Output(p) => {
                let base = match self.stream {
                    Stream::Combined => p.combined,
                    s if s == p.stream => p.offset,
                    _ => return None,
                };
                let end = base + p.data.len() as u64;
                if base > self.cursor && !caught_up {
                    // Bytes before this piece never came by the channel: read them first.
                    self.mode = Mode::CatchUp {
                        upto: Some(base),
                        then: Some(m.clone()),
                    };
                    return None;
                }
                if end <= self.cursor {
                    return None;
                }
                let id = self.id_at(end);
                if base >= self.cursor {
                    // The files ended before it (they should not): the piece as it came.
                    self.cursor = end;
                    let cell = if self.stream == Stream::Combined {
                        &p.as_combined
                    } else {
                        &p.as_stream
                    };
                    return Some(cell.get_or_init(|| output_event(&p.data, &id)).clone());
                }
                let skip = (self.cursor - base) as usize;
                self.cursor = end;
                Some(output_event(&p.data[skip..], &id))
            }
            Msg::State(ev) => Some(ev.clone()),
            Msg::End(ev) | Msg::Error(ev) if caught_up => {
                self.mode = Mode::Done;
                Some(ev.clone())
            }
            // Send everything the files hold first.
            Msg::End(_) | Msg::Error(_) => {
                self.mode = Mode::CatchUp {
                    upto: None,
                    then: Some(m.clone()),
                };
                None
            }
        }
    }

    /// The next chunk of the files from the cursor (at most up to `upto`) as an event; `None`
    /// when they hold nothing more (yet).
    async fn read_files(&mut self, upto: Option<u64>) -> taskpool::Result<Option<Bytes>> {
        let count = upto.map_or(FILE_CHUNK, |u| (u - self.cursor).min(FILE_CHUNK)) as usize;
        let (pool, id, run, stream, offset) = (
            self.pool.clone(),
            self.id,
            self.run,
            self.stream,
            self.cursor,
        );
        let reader = self.files.take();
        let (reader, read) = tokio::task::spawn_blocking(move || {
            let mut reader = match reader {
                Some(r) => r,
                None => match pool.task(id).and_then(|t| t.run_reader(run)) {
                    Ok(r) => r,
                    // The run has not started yet: nothing to read.
                    Err(e) if e.kind() == ErrorKind::NotFound && pool.task(id).is_ok() => {
                        return (None, Ok(None))
                    }
                    Err(e) => return (None, Err(e)),
                },
            };
            let read = reader.read(stream, offset, count).map(Some);
            (Some(reader), read)
        })
        .await
        .map_err(|e| taskpool::Error::new(ErrorKind::Io, e.to_string()))?;
        self.files = reader;
        let Some(chunk) = read? else {
            return Ok(None);
        };
        if chunk.data.is_empty() {
            return Ok(None);
        }
        let end = chunk.offset + chunk.data.len() as u64;
        self.cursor = end;
        Ok(Some(output_event(&chunk.data, &self.id_at(end))))
    }
}
