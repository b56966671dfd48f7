//! [`Follow`]: the iterator behind [`Task::follow`](crate::Task::follow)(crate::Task::follow). It reads a live
//! supervisor's subscription (`data`, `state`, `end`), and when the supervisor goes away, or the
//! task has already ended, it carries on from the run's files, from the last byte delivered.

use crate::client::Conn;
use crate::error::{Error, Result};
use crate::info::Info;
use crate::output::{Cursor, OutputLog};
use crate::pool::Pool;
use crate::protocol::{Request, Response, Stream};
use crate::record::State;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One event of [`Task::follow`](crate::Task::follow).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Output bytes.
    Output {
        /// The stream they came from.
        stream: Stream,
        /// Offset of the first byte in that stream.
        offset: u64,
        /// Offset of the first byte in the combined view.
        combined: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The task's state changed (paused, running).
    State(State),
    /// The task has ended and all its output has been delivered.
    End(Box<Info>),
}

enum Source {
    Live(Conn),
    Files {
        log: OutputLog,
        cur: Cursor,
        info: Option<Box<Info>>,
        /// The first offset of stdout and stderr still in the files: a log cap punched out
        /// (and zeroed) what came before.
        kept: [u64; 2],
    },
    /// A scheduler task whose supervisor cannot be reached from here (its job is pending, or
    /// runs on another node): its files, looked at again every [`crate::engine::SCHEDULER_POLL`]
    /// while nothing is new (another node's writes wake no inotify here), until the record
    /// says it ended, or its socket answers (then it is followed live).
    Remote {
        /// The current run's files and the cursor in them, once the run has started.
        log: Option<(u32, OutputLog, Cursor)>,
    },
    Done,
}

/// An iterator of output chunks and state events, ending with [`Event::End`] once the task has
/// ended and its output is drained. Created by [`Task::follow`](crate::Task::follow).
pub struct Follow {
    pool: Pool,
    id: u64,
    src: Source,
    delivered: u64,
    stopped: Arc<AtomicBool>,
}

/// Ends a [`Follow`] from another thread (see [`Follow::stopper`]): its blocked `next` returns
/// `None` at once, and the supervisor drops the subscription.
#[derive(Debug)]
pub struct FollowStop {
    stopped: Arc<AtomicBool>,
    socket: Option<UnixStream>,
}

impl FollowStop {
    /// Stop the follow: the iterator ends at its next (or current, blocked) call.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(s) = &self.socket {
            // Wakes a reader blocked on the socket with end-of-file.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow").field("id", &self.id).finish()
    }
}

impl Follow {
    /// A handle that ends this follow from another thread, even while `next` blocks waiting
    /// for output (a server whose client went away).
    pub fn stopper(&self) -> FollowStop {
        FollowStop {
            stopped: self.stopped.clone(),
            socket: match &self.src {
                Source::Live(c) => c.try_clone_stream().ok(),
                _ => None,
            },
        }
    }

    /// Follow through a connection whose `follow` request was sent.
    pub(crate) fn live(pool: Pool, id: u64, conn: Conn, from: u64) -> Follow {
        Follow {
            pool,
            id,
            src: Source::Live(conn),
            delivered: from,
            stopped: Arc::default(),
        }
    }

    /// Follow a scheduler task from its record, its files and its socket once it answers.
    pub(crate) fn remote(pool: Pool, id: u64, from: u64) -> Follow {
        Follow {
            pool,
            id,
            src: Source::Remote { log: None },
            delivered: from,
            stopped: Arc::default(),
        }
    }

    /// One step of a [`Source::Remote`] follow: the next piece of output, or the switch to a
    /// live or final source, or a pause and another look.
    fn remote_step(&mut self) -> Result<Option<Event>> {
        loop {
            let Source::Remote { log } = &mut self.src else {
                return self.next_event();
            };
            if let Some((_, l, cur)) = log {
                if let Some(p) = l.next_piece(cur, 256 * 1024)? {
                    self.delivered = p.combined + p.data.len() as u64;
                    return Ok(Some(Event::Output {
                        stream: p.stream,
                        offset: p.offset,
                        combined: p.combined,
                        data: p.data,
                    }));
                }
            }
            let rec = self.pool.load_record(self.id)?;
            let run = rec.current().map(|r| r.run);
            if !rec.state.is_live() {
                let same = matches!((&log, run), (Some((r, _, _)), Some(now)) if *r == now);
                let from = if same || log.is_none() {
                    self.delivered
                } else {
                    0
                };
                let f = Follow::from_files(self.pool.clone(), self.id, from)?;
                self.src = f.src;
                return self.next_event();
            }
            if let Ok(mut c) = Conn::open(&self.pool, self.id, Some(self.pool.timeout())) {
                if c.send(
                    &Request::Follow {
                        from: self.delivered,
                    },
                    &[],
                )
                .is_ok()
                {
                    c.set_timeout(None);
                    self.src = Source::Live(c);
                    return self.next_event();
                }
            }
            match (run, &log) {
                (Some(now), Some((r, _, _))) if *r == now => {}
                (Some(now), _) => {
                    let l = OutputLog::open(&self.pool.run_dir(self.id, now))?;
                    let cur = l.seek(self.delivered)?;
                    *log = Some((now, l, cur));
                    continue;
                }
                (None, _) => {}
            }
            if self.stopped.load(Ordering::SeqCst) {
                self.src = Source::Done;
                return Ok(None);
            }
            std::thread::sleep(crate::engine::SCHEDULER_POLL);
        }
    }

    pub(crate) fn from_files(pool: Pool, id: u64, from: u64) -> Result<Follow> {
        let rec = pool.load_record(id)?;
        let run = rec.current().map(|r| r.run).unwrap_or(1);
        let log = OutputLog::open(&pool.run_dir(id, run))?;
        let cur = log.seek(from)?;
        let kept = rec
            .current()
            .map(|r| [r.streams.stdout.start, r.streams.stderr.start])
            .unwrap_or_default();
        Ok(Follow {
            pool,
            id,
            src: Source::Files {
                log,
                cur,
                info: Some(Box::new(Info::from_record(&rec))),
                kept,
            },
            delivered: from,
            stopped: Arc::default(),
        })
    }

    fn next_event(&mut self) -> Result<Option<Event>> {
        if self.stopped.load(Ordering::SeqCst) {
            self.src = Source::Done;
            return Ok(None);
        }
        match &mut self.src {
            Source::Done => Ok(None),
            Source::Remote { .. } => self.remote_step(),
            Source::Files {
                log,
                cur,
                info,
                kept,
            } => loop {
                let Some(mut p) = log.next_piece(cur, 256 * 1024)? else {
                    let info = info.take();
                    self.src = Source::Done;
                    return Ok(info.map(Event::End));
                };
                self.delivered = p.combined + p.data.len() as u64;
                // Bytes the log cap dropped are not output: skip them, as the supervisor does.
                // The record says where the kept bytes start as of its last store; the file's
                // holes say it exactly (a supervisor killed since then punched more).
                let first = kept[usize::from(p.stream == Stream::Stderr)].max(data_from(
                    log,
                    p.stream,
                    p.offset,
                    p.data.len(),
                ));
                let skip = first.saturating_sub(p.offset).min(p.data.len() as u64);
                if skip == p.data.len() as u64 {
                    continue;
                }
                p.data.drain(..skip as usize);
                return Ok(Some(Event::Output {
                    stream: p.stream,
                    offset: p.offset + skip,
                    combined: p.combined + skip,
                    data: p.data,
                }));
            },
            // A supervisor that exits (or is killed) mid-frame: finish from the files, from the
            // last byte delivered.
            Source::Live(c) => match c.recv().unwrap_or(None) {
                Some(Response::Data {
                    stream,
                    offset,
                    combined,
                    ..
                }) => {
                    let combined = combined.unwrap_or(self.delivered);
                    let data = std::mem::take(&mut c.data);
                    self.delivered = combined + data.len() as u64;
                    Ok(Some(Event::Output {
                        stream,
                        offset,
                        combined,
                        data,
                    }))
                }
                Some(Response::State { state }) => Ok(Some(Event::State(state))),
                Some(Response::End { info }) => {
                    self.src = Source::Done;
                    Ok(Some(Event::End(info)))
                }
                Some(Response::Error { kind, message }) => {
                    self.src = Source::Done;
                    Err(Error::new(crate::error::kind_from_name(&kind), message))
                }
                Some(_) => Ok(Some(Event::State(State::Running))),
                None if self.stopped.load(Ordering::SeqCst) => {
                    self.src = Source::Done;
                    Ok(None)
                }
                None => {
                    // The supervisor went away: finish from the files.
                    let f = Follow::from_files(self.pool.clone(), self.id, self.delivered)?;
                    self.src = f.src;
                    self.next_event()
                }
            },
        }
    }
}

impl Iterator for Follow {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_event() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.src = Source::Done;
                Some(Err(e))
            }
        }
    }
}

/// The first offset at or after `offset` in `stream`'s file that holds data rather than a hole
/// punched by the log cap (`offset + len` if the rest of the piece is a hole; `offset` when the
/// file system cannot tell).
fn data_from(log: &OutputLog, stream: Stream, offset: u64, len: usize) -> u64 {
    use std::os::fd::AsFd;
    let Some(file) = log.shared(stream) else {
        return offset;
    };
    match nix::unistd::lseek(
        file.as_fd(),
        offset as libc::off_t,
        nix::unistd::Whence::SeekData,
    ) {
        Ok(at) => at as u64,
        Err(nix::errno::Errno::ENXIO) => offset + len as u64,
        Err(_) => offset,
    }
}
