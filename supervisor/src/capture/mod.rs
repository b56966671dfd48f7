//! Output capture: the read ends of the task's stdout and stderr pipes, and where their bytes go.
//! This file holds the streams, their counters, the `chunks` entries and the log cap; the two
//! ways bytes reach a file are beside it: `splice.rs` (the normal path) and `copy.rs` (the
//! fall-back into a [`Ring`]).
//!
//! Normally (`Route::Splice`) the bytes go from a pipe straight into the stream's file in the
//! run directory with `splice(2)`, at an explicit offset, without passing through the supervisor's
//! memory; then the splice's entry goes to `chunks` (so a reader that finds an entry always finds
//! its bytes). The stream's memory buffer is then the page cache's copy of the file's tail: the
//! newest `buffer_size` bytes are read back from the file, and the log cap never punches into them.
//!
//! When a splice fails for a reason other than "nothing yet" (a full disk, an I/O error, a
//! filesystem that cannot splice), that stream falls back for the rest of the run to
//! `Route::Copy`: `read` into the supervisor's buffer, `pwrite` to the file, and a copy into a
//! [`Ring`] that starts at that offset. When a write fails, the file stops growing (so every byte it
//! holds stays at its offset) and the ring keeps the newest bytes, counted as `unstored`.
//!
//! The files hold every byte at its absolute offset; with a log cap the oldest bytes are punched
//! out of the file in batches (offsets stay absolute, the stream's `start` and `dropped` move
//! forward). Readers of the files use [`OutputLog`], opened once per run.
//!
//! Each chunk entry written to `chunks` may be stamped in `times` with when it arrived: one entry
//! per millisecond at most, the monotonic clock against one realtime anchor (the format is in
//! [`taskpool::times`]); with a log cap the oldest entries are punched out too.

mod copy;
mod splice;
mod stamps;

use crate::ring::Ring;
use copy::{ring_cap, Moved};
use nix::fcntl::FallocateFlags;
use splice::{unappend, Relay, Stop};
use stamps::Stamps;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use taskpool::output::{chunk_entry, OutputLog};
use taskpool::protocol::Stream;
use taskpool::record::{StreamStats, Streams};

/// Block size punched holes are aligned to, so whole blocks are freed.
const PUNCH_ALIGN: u64 = 4096;

/// How a stream's bytes reach its file.
#[derive(Debug)]
enum Route {
    /// `splice(2)` from the pipe into the file: no copy in user space, nothing kept in memory.
    Splice,
    /// `read` into the supervisor's buffer, then `pwrite` to the file and a copy into the ring
    /// (which holds the newest bytes from the offset where splicing stopped).
    Copy(Ring),
}

/// One output stream.
#[derive(Debug)]
pub struct StreamCapture {
    /// The pipe's read end (nonblocking), until end of file.
    pub pipe: Option<OwnedFd>,
    file: File,
    route: Route,
    /// The newest bytes that can always be read while the task runs.
    buffer_size: u64,
    /// First offset still in the file.
    start: u64,
    /// One past the newest byte: the stream's length.
    end: u64,
    /// Bytes not written to the file; once non-zero, the file stops growing.
    unstored: u64,
    /// The consume position (`read` with `peek: false`): only moves forward.
    consumed: u64,
    /// The pipe was enlarged (or that was tried) after it was first found full.
    grown: bool,
    /// A busy stream's private pipe between the task's pipe and the file (see [`Relay`]).
    relay: Option<Relay>,
}

impl StreamCapture {
    fn new(pipe: Option<OwnedFd>, file: File, buffer_size: u64) -> StreamCapture {
        // The run's files are opened for appending, which splice refuses: write at explicit
        // offsets instead. If that cannot be changed, copy (a `pwrite` on an append-only file
        // appends, which is the same place, since the file only ever grows at its end).
        let route = match unappend(&file) {
            Ok(()) => Route::Splice,
            Err(_) => Route::Copy(Ring::at(ring_cap(buffer_size), 0)),
        };
        StreamCapture {
            pipe,
            file,
            route,
            buffer_size: buffer_size.max(1),
            start: 0,
            end: 0,
            unstored: 0,
            consumed: 0,
            grown: false,
            relay: None,
        }
    }

    /// The stream's counters; `live` includes the memory buffer's start.
    pub fn stats(&self, live: bool) -> StreamStats {
        StreamStats {
            start: self.start,
            end: self.end,
            dropped: self.start,
            buffer_start: live.then(|| self.buffer_start()),
            unstored: self.unstored,
        }
    }

    /// The first offset of the newest bytes that can be read while the task runs: the last
    /// `buffer_size` bytes (from the file, or from the ring for bytes the file could not take).
    fn buffer_start(&self) -> u64 {
        let window = self.end.saturating_sub(self.buffer_size).max(self.start);
        match &self.route {
            // The file stopped short of the ring: only the ring's bytes are there.
            Route::Copy(ring) if ring.start() > self.stored() => ring.start(),
            _ => window,
        }
    }

    /// First offset that can still be read from the file.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the newest byte: how many bytes the stream has had in all.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// One past the last byte the file holds (it stops growing at the first failed write).
    pub fn stored(&self) -> u64 {
        self.end - self.unstored
    }

    /// The consume position: where a `read` without an offset starts.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Move the consume position forward to `offset` (never backward, never past the end).
    pub fn consume_to(&mut self, offset: u64) {
        self.consumed = self.consumed.max(offset.min(self.end));
    }

    /// Up to `max` bytes from `offset` when they are held in memory only (the stream fell back to
    /// copying and its ring holds `offset`), as two slices; `None` means: read the file.
    pub fn held(&self, offset: u64, max: usize) -> Option<(&[u8], &[u8])> {
        match &self.route {
            Route::Copy(ring) if ring.holds(offset) => Some(ring.peek(offset, max)),
            _ => None,
        }
    }

    /// True while the bytes go from the pipe to the file with `splice(2)`.
    pub fn splicing(&self) -> bool {
        matches!(self.route, Route::Splice)
    }

    /// Bytes of memory the stream's ring uses (zero while splicing).
    pub fn allocated(&self) -> usize {
        match &self.route {
            Route::Copy(ring) => ring.allocated(),
            Route::Splice => 0,
        }
    }
}

/// What a read from a pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// This many bytes were captured.
    Bytes(usize),
    /// Nothing to read right now.
    Nothing,
    /// End of file: the pipe is closed.
    Eof,
}

/// Both streams of the current run.
#[derive(Debug)]
pub struct Capture {
    /// Standard output.
    pub stdout: StreamCapture,
    /// Standard error (its pipe is `None` from the start with `merge_stderr`).
    pub stderr: StreamCapture,
    chunks: File,
    /// One past the last byte of the combined view.
    pub combined_end: u64,
    /// The combined view's consume position.
    pub combined_consumed: u64,
    /// Read access to the run's files, shared by every reader.
    pub log: OutputLog,
    log_max: Option<u64>,
    punch_ok: bool,
    /// Set when writing a log file failed (the bytes are still in memory and counted).
    pub write_error: Option<String>,
    /// Bytes of the combined view without a `chunks` entry; once non-zero, `chunks` stops growing.
    combined_unstored: u64,
    /// When the chunks arrived (see [`taskpool::times`]).
    times: Stamps,
}

/// The files and pipes a run's capture is made of.
pub struct CaptureFiles {
    /// Read end of the stdout pipe.
    pub stdout_pipe: OwnedFd,
    /// Read end of the stderr pipe (`None` with `merge_stderr`).
    pub stderr_pipe: Option<OwnedFd>,
    /// The run's `stdout` file.
    pub stdout: File,
    /// The run's `stderr` file.
    pub stderr: File,
    /// The run's `chunks` file.
    pub chunks: File,
    /// The run's `times` file (empty; the capture writes its header).
    pub times: File,
    /// Readers of the same files.
    pub log: OutputLog,
}

impl Capture {
    /// Capture into `files`, keeping the newest `buffer_size` bytes per stream readable and at
    /// most `log_max` bytes per stream on disk (never fewer than `buffer_size`: the cap does not
    /// punch into the newest bytes).
    pub fn new(files: CaptureFiles, buffer_size: u64, log_max: Option<u64>) -> Capture {
        Capture {
            stdout: StreamCapture::new(Some(files.stdout_pipe), files.stdout, buffer_size),
            stderr: StreamCapture::new(files.stderr_pipe, files.stderr, buffer_size),
            chunks: files.chunks,
            combined_end: 0,
            combined_consumed: 0,
            log: files.log,
            log_max: log_max.map(|m| m.max(buffer_size)),
            punch_ok: true,
            write_error: None,
            combined_unstored: 0,
            times: Stamps::new(files.times, log_max),
        }
    }

    /// One stream (stdout or stderr).
    pub fn stream(&self, s: Stream) -> &StreamCapture {
        match s {
            Stream::Stderr => &self.stderr,
            _ => &self.stdout,
        }
    }

    /// One stream, mutably.
    pub fn stream_mut(&mut self, s: Stream) -> &mut StreamCapture {
        match s {
            Stream::Stderr => &mut self.stderr,
            _ => &mut self.stdout,
        }
    }

    /// True when a log cap punches the oldest bytes out of the files.
    pub fn log_capped(&self) -> bool {
        self.log_max.is_some()
    }

    /// True once both pipes have reached end of file.
    pub fn pipes_closed(&self) -> bool {
        self.stdout.pipe.is_none() && self.stderr.pipe.is_none()
    }

    /// Move what stream `s`'s pipe holds to its file (through `scratch` once splicing has failed)
    /// and record it.
    pub fn pull(&mut self, s: Stream, scratch: &mut [u8]) -> Pulled {
        let mut got = 0;
        if self.stream(s).splicing() {
            let sc = self.stream_mut(s);
            let round = sc.splice();
            sc.end += round.stored as u64;
            sc.maybe_grow(round.moved);
            if round.stored > 0 {
                self.record(s, round.stored, round.stored, None);
            }
            let sc = self.stream_mut(s);
            match round.stop {
                Stop::Done => return Pulled::Bytes(round.stored),
                Stop::Nothing => return Pulled::Nothing,
                Stop::Eof => {
                    sc.pipe = None;
                    return Pulled::Eof;
                }
                Stop::Failed(e) => {
                    crate::note(&format!(
                        "splicing the {} pipe into its log failed ({e}); copying from now on",
                        s.as_str()
                    ));
                    sc.fall_back();
                    got = round.stored;
                }
            }
        }
        let sc = self.stream_mut(s);
        match sc.read(scratch) {
            Moved::Bytes(n) => {
                sc.maybe_grow(n);
                let (stored, failed) = sc.keep(&scratch[..n]);
                self.record(s, n, stored, failed);
                Pulled::Bytes(got + n)
            }
            Moved::Nothing if got > 0 => Pulled::Bytes(got),
            Moved::Nothing => Pulled::Nothing,
            Moved::Eof => {
                sc.pipe = None;
                Pulled::Eof
            }
        }
    }

    /// Read everything the pipes hold right now (at most `limit` bytes each), then close them.
    pub fn drain_and_close(&mut self, scratch: &mut [u8], limit: usize) {
        for s in [Stream::Stdout, Stream::Stderr] {
            let mut got = 0;
            while got < limit {
                match self.pull(s, scratch) {
                    Pulled::Bytes(n) => got += n,
                    Pulled::Nothing | Pulled::Eof => break,
                }
            }
            self.stream_mut(s).pipe = None;
        }
    }

    /// Record `len` bytes of stream `s` just captured, `stored` of which reached its file: their
    /// entry to `chunks`, the combined counters, the error that stopped a write, and the log cap.
    /// When a write fails (the disk is full), that file stops growing for the rest of the run and
    /// what it misses is counted as `unstored`: bytes written later, once space is freed, would
    /// land at the wrong offsets.
    fn record(&mut self, s: Stream, len: usize, stored: usize, mut failed: Option<std::io::Error>) {
        let mut indexed = 0;
        if stored > 0 && self.combined_unstored == 0 {
            let entry = chunk_entry(s, stored as u32);
            match write_all_counted(&mut self.chunks, &entry) {
                (_, None) => {
                    indexed = stored;
                    self.times.chunk();
                }
                (_, Some(e)) => failed = failed.or(Some(e)),
            }
        }
        self.combined_unstored += (len - indexed) as u64;
        if let Some(e) = failed {
            if self.write_error.is_none() {
                self.write_error = Some(format!(
                    "writing the {} log failed: {e}; from then on output is kept in memory only \
                     (streams.*.unstored counts it)",
                    s.as_str()
                ));
            }
        }
        self.combined_end += len as u64;
        self.enforce_cap(s);
    }

    /// Punch the oldest bytes out of a stream's file once it holds more than the cap by a batch.
    /// The cap is at least the buffer size, so the newest `buffer_size` bytes always stay.
    fn enforce_cap(&mut self, s: Stream) {
        let Some(max) = self.log_max else { return };
        if !self.punch_ok {
            return;
        }
        let batch = (max / 4).clamp(PUNCH_ALIGN * 4, 64 << 20);
        let sc = self.stream_mut(s);
        let end = sc.end;
        if end.saturating_sub(sc.start) <= max + batch {
            return;
        }
        let new_start = (end - max) / PUNCH_ALIGN * PUNCH_ALIGN;
        if new_start <= sc.start {
            return;
        }
        let r = nix::fcntl::fallocate(
            sc.file.as_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            sc.start as libc::off_t,
            (new_start - sc.start) as libc::off_t,
        );
        match r {
            Ok(()) => sc.start = new_start,
            Err(e) => {
                // Unsupported here (or failing): keep every byte rather than lose the offsets.
                self.punch_ok = false;
                crate::note(&format!(
                    "cannot punch holes in the {} log to enforce the log cap ({e}); keeping every byte",
                    s.as_str()
                ));
            }
        }
    }

    /// The counters of all three views.
    pub fn streams(&self, live: bool) -> Streams {
        let (out, err) = (self.stdout.stats(live), self.stderr.stats(live));
        Streams {
            stdout: out,
            stderr: err,
            combined: taskpool::record::StreamStats {
                start: 0,
                end: self.combined_end,
                dropped: out.dropped + err.dropped,
                buffer_start: None,
                unstored: self.combined_unstored,
            },
        }
    }
}

/// Append as much of `data` as the (append-only) file takes.
fn write_all_counted(file: &mut File, data: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

#[cfg(test)]
mod tests;
