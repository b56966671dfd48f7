//! The task's standard input, when it is a pipe the supervisor holds: a bounded queue of bytes that
//! clients `write`, flushed into the pipe as the task reads, and closed on `close_stdin` once the
//! queue is empty. The pipe's write end is nonblocking, so a task that never reads its stdin
//! cannot block the supervisor; a full queue makes the supervisor stop reading from the writing
//! client instead (back-pressure reaches the client, not the task or other clients). On a
//! terminal (`--pty`) the same queue is written into the terminal's master, as if typed.

use nix::errno::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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

    /// The write end while it is open (on a terminal, the master: also where the window size
    /// is set).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            StdinSink::Open { pipe, .. } => Some(pipe.as_fd()),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{FcntlArg, OFlag};
    use std::io::Read;

    fn sink() -> (StdinSink, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        nix::fcntl::fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        (StdinSink::pipe(w), std::fs::File::from(r))
    }

    #[test]
    fn the_queue_is_bounded_and_drains_into_the_pipe() {
        let (mut s, mut r) = sink();
        assert_eq!(s.queue(&vec![b'a'; QUEUE_MAX + 10]), QUEUE_MAX);
        assert_eq!(s.room(), 0);
        s.flush(); // the pipe takes what it can
        assert!(s.room() > 0 && s.wants_write().is_some());
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        while total < QUEUE_MAX {
            total += r.read(&mut buf).unwrap();
            s.flush();
        }
        assert_eq!(total, QUEUE_MAX);
        assert!(s.wants_write().is_none());
        assert_eq!(s.room(), QUEUE_MAX);
    }

    #[test]
    fn close_waits_for_the_queue_and_a_gone_reader_closes_it() {
        let (mut s, mut r) = sink();
        s.queue(b"last words");
        s.close_when_flushed();
        assert!(matches!(s, StdinSink::Closed) && !s.accepts());
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap(); // EOF: the write end is closed
        assert_eq!(got, "last words");
        let (mut s, r) = sink();
        drop(r);
        s.queue(b"nobody reads this");
        s.flush();
        assert!(matches!(s, StdinSink::Closed));
    }
}
