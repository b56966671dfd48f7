//! Output capture: the read ends of the task's stdout and stderr pipes, and where their bytes go.
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

use crate::ring::Ring;
use nix::errno::Errno;
use nix::fcntl::{FallocateFlags, FcntlArg, OFlag};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use taskpool::output::{chunk_entry, OutputLog};
use taskpool::protocol::Stream;
use taskpool::record::{StreamStats, Streams};

/// Block size punched holes are aligned to, so whole blocks are freed.
const PUNCH_ALIGN: u64 = 4096;

/// A pipe's default capacity on Linux.
const DEFAULT_PIPE: usize = 64 << 10;
/// The capacity asked for a pipe found full (the default `pipe-max-size`), and the most one splice
/// moves: whatever the pipe holds.
const LARGE_PIPE: usize = 1 << 20;

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

/// A private pipe the bytes of a busy stream pass through on their way to the file. Splicing
/// into a file holds the source pipe's lock while the file takes the bytes (the page cache copy,
/// block allocation), and a task writing to that pipe meanwhile waits. Moving the task's pages
/// into the relay first is quick (references, no copy), so the task goes on writing while the
/// relay is spliced into the file.
#[derive(Debug)]
struct Relay {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes in the relay (moved from the task's pipe, not yet in the file).
    held: usize,
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

    /// Give the pipe a larger capacity (and a relay, while splicing) the first time it is found
    /// full.
    fn maybe_grow(&mut self, moved: usize) {
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
    fn splice(&mut self) -> Round {
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

    /// Stop splicing: from now on the bytes are read, written and kept in a ring.
    fn fall_back(&mut self) {
        self.route = Route::Copy(Ring::at(ring_cap(self.buffer_size), self.end));
    }

    /// Read what the relay still holds (once, after splicing failed), else what the pipe holds,
    /// into `scratch`.
    fn read(&mut self, scratch: &mut [u8]) -> Moved {
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
                Err(_) => return Moved::Eof, // treat a broken pipe as its end
            }
        }
    }

    /// Keep `data` (read from the pipe): into the ring, and to the file at the stream's end while
    /// the file takes every byte. Returns how many bytes the file took, and the error that
    /// stopped it.
    fn keep(&mut self, data: &[u8]) -> (usize, Option<std::io::Error>) {
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
enum Moved {
    Bytes(usize),
    Nothing,
    Eof,
}

/// What one round of splicing did.
struct Round {
    /// Bytes that reached the file.
    stored: usize,
    /// Bytes taken from the task's pipe.
    moved: usize,
    /// Why it stopped.
    stop: Stop,
}

enum Stop {
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
fn unappend(file: &File) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_GETFL)?);
    if flags.contains(OFlag::O_APPEND) {
        nix::fcntl::fcntl(file.as_fd(), FcntlArg::F_SETFL(flags - OFlag::O_APPEND))?;
    }
    Ok(())
}

fn ring_cap(buffer_size: u64) -> usize {
    usize::try_from(buffer_size).unwrap_or(usize::MAX)
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
                (_, None) => indexed = stored,
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

/// Write as much of `data` as the file takes at offset `at`: the count written, and the error
/// that stopped it.
fn write_counted(file: &File, data: &[u8], at: u64) -> (usize, Option<std::io::Error>) {
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
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    /// A run directory with its three files opened as the supervisor opens them (appending).
    struct Run {
        dir: PathBuf,
        writer: File,
        cap: Capture,
    }

    impl Drop for Run {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn run(name: &str, buffer: u64, log_max: Option<u64>) -> Run {
        let dir =
            std::env::temp_dir().join(format!("taskpool-capture-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let open = |n: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.join(n))
                .unwrap()
        };
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let files = CaptureFiles {
            stdout_pipe: r,
            stderr_pipe: None,
            stdout: open("stdout"),
            stderr: open("stderr"),
            chunks: open("chunks"),
            log: OutputLog::open(&dir).unwrap(),
        };
        Run {
            writer: File::from(w),
            cap: Capture::new(files, buffer, log_max),
            dir,
        }
    }

    fn pattern(from: u64, n: usize) -> Vec<u8> {
        (from..from + n as u64)
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    /// Write `data` to the pipe (nonblocking: as much as fits, pulling between) until all is in
    /// and captured.
    fn feed(r: &mut Run, data: &[u8], scratch: &mut [u8]) {
        let mut done = 0;
        while done < data.len() {
            match r.writer.write(&data[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            while let Pulled::Bytes(_) = r.cap.pull(Stream::Stdout, scratch) {}
        }
    }

    fn file(dir: &Path, name: &str) -> Vec<u8> {
        std::fs::read(dir.join(name)).unwrap()
    }

    fn set_append(f: &File) {
        let flags = OFlag::from_bits_truncate(fcntl_getfl(f));
        nix::fcntl::fcntl(f.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_APPEND)).unwrap();
    }

    fn fcntl_getfl(f: &File) -> i32 {
        nix::fcntl::fcntl(f.as_fd(), FcntlArg::F_GETFL).unwrap()
    }

    #[test]
    fn bytes_are_spliced_to_the_file_with_one_entry_per_splice_and_nothing_in_memory() {
        let mut r = run("splice", 1 << 20, None);
        let mut scratch = vec![0u8; 1 << 20];
        let mut all = Vec::new();
        for (i, n) in [5usize, 1, 70_000, 4099, 300_000, 3]
            .into_iter()
            .enumerate()
        {
            let piece = pattern(all.len() as u64, n);
            feed(&mut r, &piece, &mut scratch);
            all.extend_from_slice(&piece);
            let sc = &r.cap.stdout;
            assert!(sc.splicing(), "step {i}: fell back");
            eq(
                (sc.end(), sc.stored(), sc.allocated()),
                (all.len() as u64, all.len() as u64, 0),
            );
        }
        // The busy stream got a relay after its pipe was found full.
        assert!(r.cap.stdout.relay.is_some());
        eq(file(&r.dir, "stdout"), all.clone());
        let entries: u64 = file(&r.dir, "chunks")
            .chunks(4)
            .map(|e| taskpool::output::decode_entry(e.try_into().unwrap()).1 as u64)
            .sum();
        eq(entries, all.len() as u64);
        eq(r.cap.combined_end, all.len() as u64);
        // The newest bytes are read back from the file.
        eq(r.cap.stdout.held(all.len() as u64 - 3, 3), None);
        let stats = r.cap.stdout.stats(true);
        eq(
            stats.buffer_start,
            Some(all.len() as u64 - (1 << 20).min(all.len() as u64)),
        );
    }

    #[test]
    fn a_failed_splice_falls_back_to_copying_without_losing_a_byte() {
        let mut r = run("fallback", 4096, None);
        let mut scratch = vec![0u8; 1 << 20];
        // Enough to grow the pipe and get a relay, so the failure comes after the bytes left
        // the task's pipe.
        let first = pattern(0, 200_000);
        feed(&mut r, &first, &mut scratch);
        assert!(r.cap.stdout.relay.is_some() && r.cap.stdout.splicing());
        // The kernel refuses to splice into an append-only file: the next splice fails.
        set_append(&r.cap.stdout.file);
        let second = pattern(200_000, 150_001);
        feed(&mut r, &second, &mut scratch);
        let sc = &r.cap.stdout;
        assert!(!sc.splicing(), "still splicing");
        eq((sc.end(), sc.stored()), (350_001, 350_001));
        eq(file(&r.dir, "stdout"), [first, second].concat());
        // The ring holds the newest bytes from where splicing stopped.
        let (a, b) = sc.held(350_001 - 10, 10).expect("held in memory");
        eq([a, b].concat(), pattern(350_001 - 10, 10));
        assert!(sc.allocated() <= 4096);
        eq(sc.held(100, 10), None);
        // Copying goes on, and end of file is still seen.
        feed(&mut r, b"tail", &mut scratch);
        drop(std::mem::replace(
            &mut r.writer,
            File::open("/dev/null").unwrap(),
        ));
        eq(r.cap.pull(Stream::Stdout, &mut scratch), Pulled::Eof);
        eq(file(&r.dir, "stdout").len(), 350_005);
    }

    #[test]
    fn the_log_cap_never_punches_into_the_newest_buffer_size_bytes() {
        let buffer = 256 << 10;
        let mut r = run("cap", buffer, Some(16 << 10));
        let mut scratch = vec![0u8; 1 << 20];
        let all = pattern(0, 3 << 20);
        feed(&mut r, &all, &mut scratch);
        let s = r.cap.stdout.stats(true);
        eq(s.end, 3 << 20);
        assert!(s.start > 0, "nothing punched");
        assert!(
            s.start <= s.end - buffer,
            "start {} punches the buffer",
            s.start
        );
        eq(s.buffer_start, Some(s.end - buffer));
        let tail = r
            .cap
            .log
            .read(Stream::Stdout, s.end - buffer, buffer as usize);
        eq(tail.unwrap(), all[all.len() - buffer as usize..].to_vec());
    }

    fn eq<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) {
        assert!(
            actual == expected,
            "\nexpected: {expected:?}\n  actual: {actual:?}"
        );
    }
}
