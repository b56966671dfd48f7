//! The splice path of output capture: bytes go from the task's pipe into the stream's file with
//! `splice(2)` at an explicit offset, never through the supervisor's memory. A stream whose pipe
//! is found full gets a larger pipe and a [`Relay`], so the task goes on writing while the file
//! takes the bytes. When a splice fails for a reason other than "nothing yet", the stream falls
//! back to copying ([`super::copy`]) for the rest of the run.

use super::StreamCapture;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A pipe's default capacity on Linux.
const DEFAULT_PIPE: usize = 64 << 10;
/// The capacity asked for a pipe found full (the default `pipe-max-size`), and the most one splice
/// moves: whatever the pipe holds.
const LARGE_PIPE: usize = 1 << 20;

/// A private pipe the bytes of a busy stream pass through on their way to the file. Splicing
/// into a file holds the source pipe's lock while the file takes the bytes (the page cache copy,
/// block allocation), and a task writing to that pipe meanwhile waits. Moving the task's pages
/// into the relay first is quick (references, no copy), so the task goes on writing while the
/// relay is spliced into the file.
#[derive(Debug)]
pub(super) struct Relay {
    pub(super) read: OwnedFd,
    pub(super) write: OwnedFd,
    /// Bytes in the relay (moved from the task's pipe, not yet in the file).
    pub(super) held: usize,
}

impl Relay {
    /// A nonblocking pipe as large as a grown task pipe; `None` if it cannot be had.
    fn new() -> Option<Relay> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        // The whole of a grown task pipe must fit, or the relay would only slow things down.
        let size = nix::fcntl::fcntl(write.as_fd(), FcntlArg::F_SETPIPE_SZ(LARGE_PIPE as i32));
        match size {
            Ok(n) if n as usize >= LARGE_PIPE => Some(Relay {
                read,
                write,
                held: 0,
            }),
            _ => None,
        }
    }
}

impl StreamCapture {
    /// Give the pipe a larger capacity (and a relay, while splicing) the first time it is found
    /// full.
    pub(super) fn maybe_grow(&mut self, moved: usize) {
        if moved < DEFAULT_PIPE || self.grown {
            return;
        }
        // A pipe found full belongs to a task that writes a lot: give it a larger pipe, so it and
        // the supervisor wake less often. Only then: a larger pipe for every task would exhaust
        // the user's pipe-user-pages-soft, and new pipes would shrink.
        self.grown = true;
        if let Some(p) = self.pipe.as_ref() {
            let _ = nix::fcntl::fcntl(p.as_fd(), FcntlArg::F_SETPIPE_SZ(LARGE_PIPE as i32));
        }
        if self.splicing() {
            self.relay = Relay::new();
        }
    }

    /// Splice what the pipe holds into the file at the stream's end (through the relay, if the
    /// stream has one).
    pub(super) fn splice(&mut self) -> Round {
        let Some(pipe) = self.pipe.as_ref() else {
            return Round::stop(Stop::Eof);
        };
        let Some(relay) = self.relay.as_mut() else {
            return match splice_into(pipe, &self.file, self.end, LARGE_PIPE) {
                Ok(0) => Round::stop(Stop::Eof),
                Ok(n) => Round {
                    stored: n,
                    moved: n,
                    stop: Stop::Done,
                },
                Err(Errno::EAGAIN) => Round::stop(Stop::Nothing),
                Err(e) => Round::stop(Stop::Failed(e)),
            };
        };
        let mut moved = 0;
        if relay.held == 0 {
            // SAFETY: both descriptors are open for the call (borrowed from owned values); no
            // offsets (pipes have none).
            let r = retry(|| unsafe {
                libc::splice(
                    pipe.as_raw_fd(),
                    std::ptr::null_mut(),
                    relay.write.as_raw_fd(),
                    std::ptr::null_mut(),
                    LARGE_PIPE,
                    libc::SPLICE_F_NONBLOCK,
                )
            });
            match r {
                Ok(0) => return Round::stop(Stop::Eof),
                Ok(n) => moved = n,
                Err(Errno::EAGAIN) => return Round::stop(Stop::Nothing),
                Err(e) => return Round::stop(Stop::Failed(e)),
            }
            relay.held = moved;
        }
        let mut stored = 0;
        while relay.held > 0 {
            let at = self.end + stored as u64;
            match splice_into(&relay.read, &self.file, at, relay.held) {
                Ok(0) => return Round::partial(stored, moved, Errno::EIO),
                Ok(n) => {
                    stored += n;
                    relay.held -= n;
                }
                Err(e) => return Round::partial(stored, moved, e),
            }
        }
        Round {
            stored,
            moved,
            stop: Stop::Done,
        }
    }
}

/// What one round of splicing did.
pub(super) struct Round {
    /// Bytes that reached the file.
    pub(super) stored: usize,
    /// Bytes taken from the task's pipe.
    pub(super) moved: usize,
    /// Why it stopped.
    pub(super) stop: Stop,
}

pub(super) enum Stop {
    /// What the pipe held is in the file.
    Done,
    /// The pipe is empty.
    Nothing,
    /// The pipe is at end of file.
    Eof,
    /// A splice failed (not for want of bytes): fall back to copying.
    Failed(Errno),
}

impl Round {
    fn stop(stop: Stop) -> Round {
        Round {
            stored: 0,
            moved: 0,
            stop,
        }
    }

    fn partial(stored: usize, moved: usize, e: Errno) -> Round {
        Round {
            stored,
            moved,
            stop: Stop::Failed(e),
        }
    }
}

/// Call `f` again while it fails with EINTR.
fn retry(mut f: impl FnMut() -> libc::ssize_t) -> nix::Result<usize> {
    loop {
        match Errno::result(f()) {
            Err(Errno::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Splice up to `len` bytes from pipe `from` into `file` at offset `at`.
fn splice_into(from: &OwnedFd, file: &File, at: u64, len: usize) -> nix::Result<usize> {
    let mut off = at as libc::loff_t;
    // SAFETY: both descriptors are open for the call (borrowed from owned values), and `off` is
    // a valid loff_t the kernel reads and updates.
    retry(|| unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            file.as_raw_fd(),
            &mut off,
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    })
}

/// Clear `O_APPEND`, so the file can be written at explicit offsets (and spliced into).
pub(super) fn unappend(file: &File) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_GETFL)?);
    if flags.contains(OFlag::O_APPEND) {
        nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_SETFL(flags - OFlag::O_APPEND))?;
    }
    Ok(())
}
