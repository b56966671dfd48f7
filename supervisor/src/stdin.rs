//! The task's standard input, when it is a pipe the supervisor holds: a bounded queue of bytes that
//! clients `write`, flushed into the pipe as the task reads, and closed on `close_stdin` once the
//! queue is empty. The pipe's write end is nonblocking, so a task that never reads its stdin
//! cannot block the supervisor; a full queue makes the supervisor stop reading from the writing
//! client instead (back-pressure reaches the client, not the task or other clients).

use nix::errno::Errno;
use std::os::fd::{AsFd, OwnedFd};

/// The most bytes queued for the task's stdin.
pub const QUEUE_MAX: usize = 4 << 20;

/// Where the task's stdin stands.
#[derive(Debug)]
pub enum StdinSink {
    /// Not a pipe (`/dev/null` or a file): nothing can be written.
    NotAPipe,
    /// A pipe the supervisor writes.
    Open {
        /// The write end (nonblocking).
        pipe: OwnedFd,
        /// Bytes waiting for the task to read them; `queue[sent..]` is pending.
        queue: Vec<u8>,
        /// How much of `queue` has been written.
        sent: usize,
        /// Close once the queue is empty.
        closing: bool,
    },
    /// Closed by `close_stdin`, or because the task closed its end.
    Closed,
}

impl StdinSink {
    /// A sink writing into `pipe`.
    pub fn pipe(pipe: OwnedFd) -> StdinSink {
        StdinSink::Open {
            pipe,
            queue: Vec::new(),
            sent: 0,
            closing: false,
        }
    }

    /// True while bytes can still be queued.
    pub fn accepts(&self) -> bool {
        matches!(self, StdinSink::Open { closing: false, .. })
    }

    /// How many more bytes can be queued now.
    pub fn room(&self) -> usize {
        match self {
            StdinSink::Open { queue, sent, .. } => QUEUE_MAX - (queue.len() - sent),
            _ => 0,
        }
    }

    /// Queue bytes (at most [`StdinSink::room`] of them are taken); returns how many were.
    pub fn queue(&mut self, data: &[u8]) -> usize {
        let room = self.room();
        match self {
            StdinSink::Open { queue, sent, .. } => {
                if *sent > 0 && *sent == queue.len() {
                    queue.clear();
                    *sent = 0;
                }
                let n = data.len().min(room);
                queue.extend_from_slice(&data[..n]);
                n
            }
            _ => 0,
        }
    }

    /// Close once everything queued has been written.
    pub fn close_when_flushed(&mut self) {
        if let StdinSink::Open { closing, .. } = self {
            *closing = true;
        }
        self.flush();
    }

    /// The pipe, while the supervisor should wait for it to become writable.
    pub fn wants_write(&self) -> Option<&OwnedFd> {
        match self {
            StdinSink::Open {
                pipe, queue, sent, ..
            } if *sent < queue.len() => Some(pipe),
            _ => None,
        }
    }

    /// Write what the pipe takes without blocking; close it when asked and flushed, or when the
    /// task closed its end (queued bytes are then dropped).
    pub fn flush(&mut self) {
        let StdinSink::Open {
            pipe,
            queue,
            sent,
            closing,
        } = self
        else {
            return;
        };
        while *sent < queue.len() {
            match nix::unistd::write(pipe.as_fd(), &queue[*sent..]) {
                Ok(n) => *sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    // EPIPE: nobody reads the task's stdin any more.
                    *self = StdinSink::Closed;
                    return;
                }
            }
        }
        if *sent == queue.len() {
            queue.clear();
            *sent = 0;
            if queue.capacity() > 256 << 10 {
                queue.shrink_to(0);
            }
            if *closing {
                *self = StdinSink::Closed;
            }
        }
    }
}
