//! The run's `times` index: when each chunk arrived, at most one entry per millisecond, as the
//! monotonic clock's offset from one realtime anchor (the format is in [`taskpool::times`]). With a
//! log cap the oldest entries are punched out, as the oldest output is. A failed write stops the
//! index for the rest of the run; the logs are unaffected.

use super::PUNCH_ALIGN;
use nix::fcntl::FallocateFlags;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Instant;
use taskpool::times;

/// The `times` index of the run: one entry per millisecond in which chunks arrived.
#[derive(Debug)]
pub(super) struct Stamps {
    /// `None` once a write to it failed (the logs are unaffected).
    file: Option<File>,
    /// The monotonic reading taken with the header's realtime anchor.
    anchor: Instant,
    /// The millisecond of the last entry.
    last_ms: u64,
    /// Chunk entries written to `chunks` so far: the next one's number.
    chunks: u64,
    /// Bytes of entries written, and the first of them not punched out (both from the header).
    len: u64,
    start: u64,
    /// Bytes of entries kept at most (with a log cap).
    max: Option<u64>,
}

impl Stamps {
    pub(super) fn new(mut file: File, log_max: Option<u64>) -> Stamps {
        let anchor = Instant::now();
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let ok = file.write_all(&times::header(real)).is_ok();
        Stamps {
            file: ok.then_some(file),
            anchor,
            last_ms: u64::MAX,
            chunks: 0,
            len: 0,
            start: 0,
            // The index's share of the cap: an entry per millisecond is 16 bytes, while the
            // output of a millisecond is usually more.
            max: log_max.map(|m| (m / 16).max(64 * 1024)),
        }
    }

    /// A chunk entry was written to `chunks`: stamp it if the millisecond changed.
    pub(super) fn chunk(&mut self) {
        let k = self.chunks;
        self.chunks += 1;
        let Some(f) = self.file.as_mut() else { return };
        let ns = self.anchor.elapsed().as_nanos() as u64;
        let ms = ns / 1_000_000;
        if ms == self.last_ms {
            return;
        }
        self.last_ms = ms;
        if f.write_all(&times::entry(k, ns)).is_err() {
            self.file = None;
            return;
        }
        self.len += times::ENTRY as u64;
        let Some(max) = self.max else { return };
        let batch = (max / 4).max(PUNCH_ALIGN * 4);
        if self.len - self.start <= max + batch {
            return;
        }
        // Whole blocks of the oldest entries go; a punched entry reads as zeros and is skipped.
        let from = times::HEADER as u64 + self.start;
        let to = (times::HEADER as u64 + self.len - max) / PUNCH_ALIGN * PUNCH_ALIGN;
        if to > from {
            let r = nix::fcntl::fallocate(
                f.as_fd(),
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                from as libc::off_t,
                (to - from) as libc::off_t,
            );
            match r {
                Ok(()) => self.start = to - times::HEADER as u64,
                Err(_) => self.max = None,
            }
        }
    }
}
