//! The copy path of output capture, the fall-back when splicing fails (a full disk, an I/O
//! error, a filesystem that cannot splice), and the only path for a terminal (`--pty`): bytes are `read` into the supervisor's buffer,
//! written to the file with `pwrite`, and kept in a [`Ring`] that starts where splicing stopped.
//! Once a write fails, the file stops growing and the ring keeps the newest bytes.

use super::{Route, StreamCapture};
use crate::ring::Ring;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

impl StreamCapture {
    /// Stop splicing: from now on the bytes are read, written and kept in a ring.
    pub(super) fn fall_back(&mut self) {
        self.route = Route::Copy(Ring::at(ring_cap(self.buffer_size), self.end));
    }

    /// Read what the relay still holds (once, after splicing failed), else what the pipe holds,
    /// into `scratch`.
    pub(super) fn read(&mut self, scratch: &mut [u8]) -> Moved {
        if let Some(relay) = self.relay.as_mut() {
            if let Ok(n @ 1..) = nix::unistd::read(relay.read.as_fd(), scratch) {
                relay.held = relay.held.saturating_sub(n);
                if relay.held == 0 {
                    self.relay = None;
                }
                return Moved::Bytes(n);
            }
            self.relay = None;
        }
        let Some(pipe) = self.pipe.as_ref() else {
            return Moved::Eof;
        };
        loop {
            match nix::unistd::read(pipe.as_fd(), scratch) {
                Ok(0) => return Moved::Eof,
                Ok(n) => return Moved::Bytes(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Moved::Nothing,
                // A broken pipe is its end; so is EIO on a terminal's master once the task's
                // side is closed by every process that held it.
                Err(_) => return Moved::Eof,
            }
        }
    }

    /// Keep `data` (read from the pipe): into the ring, and to the file at the stream's end while
    /// the file takes every byte. Returns how many bytes the file took, and the error that
    /// stopped it.
    pub(super) fn keep(&mut self, data: &[u8]) -> (usize, Option<std::io::Error>) {
        let at = self.end;
        self.end += data.len() as u64;
        if let Route::Copy(ring) = &mut self.route {
            ring.push(data);
        }
        let (stored, failed) = if self.unstored == 0 {
            write_counted(&self.file, data, at)
        } else {
            (0, None)
        };
        self.unstored += (data.len() - stored) as u64;
        (stored, failed)
    }
}

/// What a read from a pipe found.
pub(super) enum Moved {
    Bytes(usize),
    Nothing,
    Eof,
}

pub(super) fn ring_cap(buffer_size: u64) -> usize {
    usize::try_from(buffer_size).unwrap_or(usize::MAX)
}

/// Write as much of `data` as the file takes at offset `at`: the count written, and the error
/// that stopped it.
pub(super) fn write_counted(file: &File, data: &[u8], at: u64) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match file.write_at(&data[done..], at + done as u64) {
            Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}
