//! Output capture: the read ends of the task's stdout and stderr pipes, and where their bytes go.
//!
//! Every chunk read from a pipe is appended to its stream's file in the run directory, then its
//! entry to `chunks` (so a reader that finds an entry always finds its bytes), then copied into the
//! stream's [`Ring`]. The files hold every byte at its absolute offset; with a log cap the oldest
//! bytes are punched out of the file in batches (offsets stay absolute, the stream's `start` and
//! `dropped` move forward). Readers of the files use [`OutputLog`], opened once per run.

use crate::ring::Ring;
use nix::errno::Errno;
use nix::fcntl::FallocateFlags;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use taskpool::output::{chunk_entry, OutputLog};
use taskpool::protocol::Stream;
use taskpool::record::{StreamStats, Streams};

/// Block size punched holes are aligned to, so whole blocks are freed.
const PUNCH_ALIGN: u64 = 4096;

/// A pipe's default capacity on Linux.
const DEFAULT_PIPE: usize = 64 << 10;
/// The capacity asked for a pipe found full (the default `pipe-max-size`).
const LARGE_PIPE: libc::c_int = 1 << 20;

/// One output stream.
#[derive(Debug)]
pub struct StreamCapture {
    /// The pipe's read end (nonblocking), until end of file.
    pub pipe: Option<OwnedFd>,
    file: File,
    /// The newest bytes, in memory.
    pub ring: Ring,
    /// First offset still in the file.
    start: u64,
    /// Bytes not written to the file; once non-zero, the file stops growing.
    unstored: u64,
    /// The pipe was enlarged (or that was tried) after it was first found full.
    grown: bool,
}

impl StreamCapture {
    fn new(pipe: Option<OwnedFd>, file: File, buffer_size: u64) -> StreamCapture {
        StreamCapture {
            pipe,
            file,
            ring: Ring::new(usize::try_from(buffer_size).unwrap_or(usize::MAX)),
            start: 0,
            unstored: 0,
            grown: false,
        }
    }

    /// The stream's counters; `live` includes the memory buffer's start.
    pub fn stats(&self, live: bool) -> StreamStats {
        StreamStats {
            start: self.start,
            end: self.ring.end(),
            dropped: self.start,
            buffer_start: live.then(|| self.ring.start()),
            unstored: self.unstored,
        }
    }

    /// First offset that can still be read from the file.
    pub fn start(&self) -> u64 {
        self.start
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
    /// Capture into `files`, keeping `buffer_size` bytes per stream in memory and at most
    /// `log_max` bytes per stream on disk.
    pub fn new(files: CaptureFiles, buffer_size: u64, log_max: Option<u64>) -> Capture {
        Capture {
            stdout: StreamCapture::new(Some(files.stdout_pipe), files.stdout, buffer_size),
            stderr: StreamCapture::new(files.stderr_pipe, files.stderr, buffer_size),
            chunks: files.chunks,
            combined_end: 0,
            combined_consumed: 0,
            log: files.log,
            log_max,
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

    /// True once both pipes have reached end of file.
    pub fn pipes_closed(&self) -> bool {
        self.stdout.pipe.is_none() && self.stderr.pipe.is_none()
    }

    /// Read once from stream `s`'s pipe into `scratch` and capture what came.
    pub fn pull(&mut self, s: Stream, scratch: &mut [u8]) -> Pulled {
        let Some(pipe) = self.stream(s).pipe.as_ref() else {
            return Pulled::Eof;
        };
        let n = loop {
            match nix::unistd::read(pipe.as_fd(), scratch) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Pulled::Nothing,
                Err(_) => break 0, // treat a broken pipe as its end
            }
        };
        if n == 0 {
            self.stream_mut(s).pipe = None;
            return Pulled::Eof;
        }
        if n >= DEFAULT_PIPE && !self.stream(s).grown {
            // A pipe found full belongs to a task that writes a lot: give it a larger pipe, so
            // it and the supervisor wake less often. Only then: a larger pipe for every task
            // would exhaust the user's pipe-user-pages-soft, and new pipes would shrink.
            self.stream_mut(s).grown = true;
            if let Some(p) = self.stream(s).pipe.as_ref() {
                let _ =
                    nix::fcntl::fcntl(p.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(LARGE_PIPE));
            }
        }
        self.append(s, &scratch[..n]);
        Pulled::Bytes(n)
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

    /// Capture `data`: to the stream's file, its entry to `chunks`, and into the ring. When a
    /// write fails (the disk is full), that file stops growing for the rest of the run and what
    /// it misses is counted as `unstored`: bytes written later, once space is freed, would land
    /// at the wrong offsets.
    fn append(&mut self, s: Stream, data: &[u8]) {
        let sc = self.stream_mut(s);
        sc.ring.push(data);
        let (stored, mut failed) = if sc.unstored == 0 {
            write_counted(&mut sc.file, data)
        } else {
            (0, None)
        };
        sc.unstored += (data.len() - stored) as u64;
        let mut indexed = 0;
        if stored > 0 && self.combined_unstored == 0 {
            let entry = chunk_entry(s, stored as u32);
            match write_counted(&mut self.chunks, &entry) {
                (_, None) => indexed = stored,
                (_, Some(e)) => failed = failed.or(Some(e)),
            }
        }
        self.combined_unstored += (data.len() - indexed) as u64;
        if let Some(e) = failed {
            if self.write_error.is_none() {
                self.write_error = Some(format!(
                    "writing the {} log failed: {e}; from then on output is kept in memory only \
                     (streams.*.unstored counts it)",
                    s.as_str()
                ));
            }
        }
        self.combined_end += data.len() as u64;
        self.enforce_cap(s);
    }

    /// Punch the oldest bytes out of a stream's file once it holds more than the cap by a batch.
    fn enforce_cap(&mut self, s: Stream) {
        let Some(max) = self.log_max else { return };
        if !self.punch_ok {
            return;
        }
        let batch = (max / 4).clamp(PUNCH_ALIGN * 4, 64 << 20);
        let sc = self.stream_mut(s);
        let end = sc.ring.end();
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

/// Write as much of `data` as the file takes: the count written, and the error that stopped it.
fn write_counted(file: &mut File, data: &[u8]) -> (usize, Option<std::io::Error>) {
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
