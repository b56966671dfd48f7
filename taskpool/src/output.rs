//! The on-disk output log of one run (`tasks/ID/run-N/`): `stdout` and `stderr` hold each stream's
//! bytes at their absolute offsets (so `tail -f` works on them), and `chunks` records the order in
//! which the supervisor read them. Each chunk entry is a little-endian `u32`: the top bit is set for
//! stderr, the low 31 bits are the chunk's length. The combined view is the chunks in that order,
//! with offsets of its own. With a log cap, the oldest bytes of a stream are punched out of its file
//! (offsets stay absolute) and the stream's `start` moves forward.
//!
//! The supervisor appends with [`chunk_entry`]; readers use [`OutputLog`].

use crate::error::{Error, Result};
use crate::protocol::Stream;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of a stream's log in a run directory.
pub fn stream_file(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
        Stream::Combined => "chunks",
    }
}

/// The largest chunk length an entry can carry.
pub const MAX_CHUNK: u32 = 0x7fff_ffff;

/// Encode a chunk entry.
pub fn chunk_entry(stream: Stream, len: u32) -> [u8; 4] {
    debug_assert!(len <= MAX_CHUNK && stream != Stream::Combined);
    let v = len
        | if stream == Stream::Stderr {
            0x8000_0000
        } else {
            0
        };
    v.to_le_bytes()
}

/// Decode a chunk entry.
pub fn decode_entry(b: [u8; 4]) -> (Stream, u32) {
    let v = u32::from_le_bytes(b);
    let s = if v & 0x8000_0000 != 0 {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    (s, v & MAX_CHUNK)
}

/// A piece of output read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The stream the bytes came from.
    pub stream: Stream,
    /// Offset of the first byte in its stream.
    pub offset: u64,
    /// Offset of the first byte in the combined view.
    pub combined: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Where a piece read by [`OutputLog::next_piece_into`] belongs; its bytes are in the caller's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceAt {
    /// The stream the bytes came from.
    pub stream: Stream,
    /// Offset of the first byte in its stream.
    pub offset: u64,
    /// Offset of the first byte in the combined view.
    pub combined: u64,
    /// How many bytes were read.
    pub len: usize,
}

/// A position in the combined view: the byte offset in `chunks` of the current entry, and the
/// stream offsets reached so far. Walking from the start is linear in the number of chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Byte offset of the current entry in `chunks`.
    pub entry: u64,
    /// Bytes of the current entry already passed.
    pub within: u32,
    /// Combined offset reached.
    pub combined: u64,
    /// Stdout offset reached.
    pub stdout: u64,
    /// Stderr offset reached.
    pub stderr: u64,
}

/// Read access to one run's output log. The files are shared ([`OutputLog::shared`]) with whoever
/// sends their bytes later, so the descriptors outlive this value as long as needed.
#[derive(Debug)]
pub struct OutputLog {
    dir: PathBuf,
    stdout: Option<Arc<File>>,
    stderr: Option<Arc<File>>,
    chunks: Option<Arc<File>>,
}

fn open_opt(path: &Path) -> Result<Option<Arc<File>>> {
    match File::open(path) {
        Ok(f) => Ok(Some(Arc::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::path(path, e)),
    }
}

impl OutputLog {
    /// Open the log in run directory `dir`; missing files read as empty.
    pub fn open(dir: &Path) -> Result<OutputLog> {
        Ok(OutputLog {
            dir: dir.to_owned(),
            stdout: open_opt(&dir.join("stdout"))?,
            stderr: open_opt(&dir.join("stderr"))?,
            chunks: open_opt(&dir.join("chunks"))?,
        })
    }

    fn file(&self, stream: Stream) -> Option<&File> {
        self.shared(stream).map(|f| &**f)
    }

    /// The open file of a stream (`combined`: `chunks`), to read from later (the supervisor sends
    /// follow data from it with `sendfile(2)` once the socket has room).
    pub fn shared(&self, stream: Stream) -> Option<&Arc<File>> {
        match stream {
            Stream::Stdout => self.stdout.as_ref(),
            Stream::Stderr => self.stderr.as_ref(),
            Stream::Combined => self.chunks.as_ref(),
        }
    }

    /// The current length of a stream's file (`combined`: of both).
    pub fn len(&self, stream: Stream) -> u64 {
        match stream {
            Stream::Combined => self.len(Stream::Stdout) + self.len(Stream::Stderr),
            s => self
                .file(s)
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len())
                .unwrap_or(0),
        }
    }

    /// True when nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.len(Stream::Combined) == 0
    }

    /// Read up to `count` bytes of a single stream from `offset`.
    pub fn read_stream(&self, stream: Stream, offset: u64, count: usize) -> Result<Vec<u8>> {
        let Some(f) = self.file(stream) else {
            return Ok(Vec::new());
        };
        let mut buf = vec![0u8; count];
        let mut got = 0;
        while got < count {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::path(&self.dir.join(stream_file(stream)), e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn entry(&self, at: u64) -> Result<Option<(Stream, u32)>> {
        let Some(f) = self.chunks.as_ref() else {
            return Ok(None);
        };
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match f.read_at(&mut b[got..], at + got as u64) {
                Ok(0) => return Ok(None),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::path(&self.dir.join("chunks"), e)),
            }
        }
        Ok(Some(decode_entry(b)))
    }

    /// A cursor positioned at combined offset `offset` (or at the end, if the log is shorter).
    pub fn seek(&self, offset: u64) -> Result<Cursor> {
        let mut c = Cursor::default();
        while c.combined < offset {
            let Some((s, len)) = self.entry(c.entry)? else {
                break;
            };
            let step = (offset - c.combined).min(len as u64);
            c.combined += step;
            *stream_pos(&mut c, s) += step;
            if step == len as u64 {
                c.entry += 4;
            } else {
                c.within = step as u32;
            }
        }
        Ok(c)
    }

    /// Read the next piece at `cur` (at most `max` bytes, never crossing a chunk) and advance
    /// `cur`. `None` when the cursor is at the end of what has been written so far.
    pub fn next_piece(&self, cur: &mut Cursor, max: usize) -> Result<Option<Piece>> {
        let mut buf = vec![0u8; max];
        Ok(self.next_piece_into(cur, &mut buf)?.map(|at| {
            buf.truncate(at.len);
            Piece {
                stream: at.stream,
                offset: at.offset,
                combined: at.combined,
                data: buf,
            }
        }))
    }

    /// Like [`OutputLog::next_piece`], but reads the bytes into `buf` (at most `buf.len()` of
    /// them) instead of allocating, for a reader that must not allocate per piece (the
    /// supervisor's followers). The bytes are `buf[..at.len]`.
    pub fn next_piece_into(&self, cur: &mut Cursor, buf: &mut [u8]) -> Result<Option<PieceAt>> {
        let Some((s, len)) = self.current_entry(cur)? else {
            return Ok(None);
        };
        let want = ((len - cur.within) as usize).min(buf.len());
        let offset = *stream_pos(cur, s);
        let n = self.read_stream_into(s, offset, &mut buf[..want])?;
        // Zero: the entry was written before its bytes reached the file: nothing more yet.
        Ok((n > 0).then(|| pass(cur, s, len, n)))
    }

    /// Like [`OutputLog::next_piece_into`], but reads nothing: it moves `cur` over the next piece
    /// (at most `max` bytes, and only bytes before `stored(stream)`, the end of what the stream's
    /// file is known to hold) and says where it is, for a reader that sends the bytes straight
    /// from the file (see [`OutputLog::shared`]).
    pub fn next_span(
        &self,
        cur: &mut Cursor,
        max: usize,
        stored: impl Fn(Stream) -> u64,
    ) -> Result<Option<PieceAt>> {
        let Some((s, len)) = self.current_entry(cur)? else {
            return Ok(None);
        };
        let offset = *stream_pos(cur, s);
        let held = stored(s).saturating_sub(offset);
        let n = ((len - cur.within) as usize).min(max).min(held as usize);
        Ok((n > 0).then(|| pass(cur, s, len, n)))
    }

    /// The entry `cur` is in, skipping entries it has passed entirely (and empty ones).
    fn current_entry(&self, cur: &mut Cursor) -> Result<Option<(Stream, u32)>> {
        loop {
            let Some((s, len)) = self.entry(cur.entry)? else {
                return Ok(None);
            };
            if len > cur.within {
                return Ok(Some((s, len)));
            }
            cur.entry += 4;
            cur.within = 0;
        }
    }

    /// Read a single stream from `offset` into `buf`; returns how many bytes were read (fewer
    /// than `buf.len()` only at the end of what was written).
    pub fn read_stream_into(&self, stream: Stream, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let Some(f) = self.file(stream) else {
            return Ok(0);
        };
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::path(&self.dir.join(stream_file(stream)), e)),
            }
        }
        Ok(got)
    }

    /// Read up to `count` bytes of `stream` from `offset`; for `combined` the bytes of both streams
    /// in combined order.
    pub fn read(&self, stream: Stream, offset: u64, count: usize) -> Result<Vec<u8>> {
        if stream != Stream::Combined {
            return self.read_stream(stream, offset, count);
        }
        let mut cur = self.seek(offset)?;
        let mut out = Vec::new();
        while out.len() < count {
            match self.next_piece(&mut cur, count - out.len())? {
                Some(p) => out.extend_from_slice(&p.data),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Where each stream's kept bytes start: `[stdout, stderr]`. A log cap punches the oldest bytes
/// of a stream out of its file; offsets below these are gone and are not output.
pub type Kept = [u64; 2];

fn kept_of(kept: &Kept, s: Stream) -> u64 {
    kept[usize::from(s == Stream::Stderr)]
}

impl OutputLog {
    /// Where each stream's kept bytes start, as the files tell it: the first byte that is data
    /// rather than a hole the log cap punched (0 where the file system cannot tell). The record's
    /// `streams.*.start` says the same as of its last store; take the larger of the two.
    pub fn kept(&self) -> Kept {
        [Stream::Stdout, Stream::Stderr].map(|s| self.data_start(s))
    }

    fn data_start(&self, stream: Stream) -> u64 {
        use std::os::fd::AsFd;
        let Some(f) = self.file(stream) else {
            return 0;
        };
        match nix::unistd::lseek(f.as_fd(), 0, nix::unistd::Whence::SeekData) {
            Ok(at) => at as u64,
            // Nothing but a hole (or nothing at all): everything written was dropped.
            Err(nix::errno::Errno::ENXIO) => self.len(stream),
            Err(_) => 0,
        }
    }

    /// Read up to `count` kept bytes of `stream` (or of the combined view) from `offset` on,
    /// skipping what the log cap dropped (offsets below `kept`). Returns the offset of the first
    /// byte returned (`offset`, or later when bytes there were dropped) and the bytes, which are
    /// contiguous from it: a combined read stops where the next dropped bytes begin. Empty at the
    /// end of what was written.
    pub fn read_kept(
        &self,
        stream: Stream,
        offset: u64,
        count: usize,
        kept: &Kept,
    ) -> Result<(u64, Vec<u8>)> {
        if stream != Stream::Combined {
            let from = offset.max(kept_of(kept, stream));
            return Ok((from, self.read_stream(stream, from, count)?));
        }
        let mut cur = self.seek(offset)?;
        self.read_kept_from(&mut cur, count, kept)
    }

    /// [`OutputLog::read_kept`] of the combined view from `cur` (which it advances past what it
    /// returns): a reader going on from where it stopped need not [`seek`](OutputLog::seek)
    /// again, which walks the chunk index from the start.
    pub fn read_kept_from(
        &self,
        cur: &mut Cursor,
        count: usize,
        kept: &Kept,
    ) -> Result<(u64, Vec<u8>)> {
        // Pass over dropped bytes without reading them.
        while let Some((s, len)) = self.current_entry(cur)? {
            let (pos, k) = (*stream_pos(cur, s), kept_of(kept, s));
            if pos >= k {
                break;
            }
            let n = u64::from(len - cur.within).min(k - pos) as usize;
            pass(cur, s, len, n);
        }
        let first = cur.combined;
        let mut out = Vec::new();
        while out.len() < count {
            match self.current_entry(cur)? {
                Some((s, _)) if *stream_pos(cur, s) >= kept_of(kept, s) => {}
                _ => break,
            }
            match self.next_piece(cur, count - out.len())? {
                Some(p) => out.extend_from_slice(&p.data),
                None => break,
            }
        }
        Ok((first, out))
    }

    /// Where the kept part of `stream` (or of the combined view) starts: the offset of its first
    /// byte the log cap did not drop (the end, when it dropped everything).
    pub fn kept_start(&self, stream: Stream, kept: &Kept) -> Result<u64> {
        Ok(self.read_kept(stream, 0, 0, kept)?.0)
    }
}

/// Move `cur` over `n` bytes of the entry (of stream `s`, `len` bytes) it is in; where they are.
fn pass(cur: &mut Cursor, s: Stream, len: u32, n: usize) -> PieceAt {
    let at = PieceAt {
        stream: s,
        offset: *stream_pos(cur, s),
        combined: cur.combined,
        len: n,
    };
    cur.combined += n as u64;
    *stream_pos(cur, s) += n as u64;
    cur.within += n as u32;
    if cur.within == len {
        cur.entry += 4;
        cur.within = 0;
    }
    at
}

fn stream_pos(c: &mut Cursor, s: Stream) -> &mut u64 {
    match s {
        Stream::Stderr => &mut c.stderr,
        _ => &mut c.stdout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_log(dir: &Path, chunks: &[(Stream, &[u8])]) {
        let mut out = File::create(dir.join("stdout")).unwrap();
        let mut err = File::create(dir.join("stderr")).unwrap();
        let mut idx = File::create(dir.join("chunks")).unwrap();
        for (s, d) in chunks {
            match s {
                Stream::Stdout => out.write_all(d).unwrap(),
                _ => err.write_all(d).unwrap(),
            }
            idx.write_all(&chunk_entry(*s, d.len() as u32)).unwrap();
        }
    }

    #[test]
    fn kept_reads_skip_what_the_cap_dropped() {
        let dir = std::env::temp_dir().join(format!("taskpool-kept-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // out "aaaa", err "XX", out "bbbb", err "YY": stdout kept from 2, stderr from 2.
        write_log(
            &dir,
            &[
                (Stream::Stdout, b"aaaa"),
                (Stream::Stderr, b"XX"),
                (Stream::Stdout, b"bbbb"),
                (Stream::Stderr, b"YY"),
            ],
        );
        let log = OutputLog::open(&dir).unwrap();
        let kept = [2, 2];
        eq(
            log.read_kept(Stream::Stdout, 0, 100, &kept).unwrap(),
            (2, b"aabbbb"),
        );
        eq(
            log.read_kept(Stream::Stderr, 3, 100, &kept).unwrap(),
            (3, b"Y"),
        );
        // Combined: "aa" at 2..4 kept, "XX" (4..6) dropped, "bbbbYY" (6..12) kept.
        eq(
            log.read_kept(Stream::Combined, 0, 100, &kept).unwrap(),
            (2, b"aa"),
        );
        eq(
            log.read_kept(Stream::Combined, 4, 100, &kept).unwrap(),
            (6, b"bbbbYY"),
        );
        eq(
            log.read_kept(Stream::Combined, 7, 3, &kept).unwrap(),
            (7, b"bbb"),
        );
        eq(
            log.read_kept(Stream::Combined, 12, 3, &kept).unwrap(),
            (12, b""),
        );
        assert_eq!(log.kept_start(Stream::Combined, &[4, 0]).unwrap(), 4);
        assert_eq!(log.kept_start(Stream::Combined, &[9, 9]).unwrap(), 12);
        // Nothing punched here: the files say every byte is kept.
        assert_eq!(log.kept(), [0, 0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn eq(got: (u64, Vec<u8>), want: (u64, &[u8])) {
        assert_eq!(
            (got.0, String::from_utf8_lossy(&got.1).into_owned()),
            (want.0, String::from_utf8_lossy(want.1).into_owned())
        );
    }

    #[test]
    fn combined_view_keeps_read_order() {
        let dir = std::env::temp_dir().join(format!("taskpool-output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_log(
            &dir,
            &[
                (Stream::Stdout, b"one\n"),
                (Stream::Stderr, b"ERR\n"),
                (Stream::Stdout, b"two\n"),
            ],
        );
        let log = OutputLog::open(&dir).unwrap();
        assert_eq!(
            log.read(Stream::Combined, 0, 100).unwrap(),
            b"one\nERR\ntwo\n"
        );
        assert_eq!(log.read(Stream::Combined, 2, 5).unwrap(), b"e\nERR");
        assert_eq!(log.read(Stream::Stdout, 0, 100).unwrap(), b"one\ntwo\n");
        let mut c = log.seek(6).unwrap();
        let p = log.next_piece(&mut c, 100).unwrap().unwrap();
        assert_eq!(
            (p.stream, p.offset, p.combined, &p.data[..]),
            (Stream::Stderr, 2, 6, &b"R\n"[..])
        );
        let p = log.next_piece(&mut c, 100).unwrap().unwrap();
        assert_eq!((p.stream, p.offset, p.combined), (Stream::Stdout, 4, 8));
        assert!(log.next_piece(&mut c, 100).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spans_walk_the_same_pieces_without_reading_and_stop_at_what_is_stored() {
        let dir = std::env::temp_dir().join(format!("taskpool-output-span-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_log(
            &dir,
            &[
                (Stream::Stdout, b"0123456789"),
                (Stream::Stderr, b"abc"),
                (Stream::Stdout, b"xyz"),
            ],
        );
        let log = OutputLog::open(&dir).unwrap();
        let all = |stored: [u64; 2], max: usize| {
            let mut c = log.seek(2).unwrap();
            let mut got = Vec::new();
            while let Some(at) = log
                .next_span(&mut c, max, |s| stored[(s == Stream::Stderr) as usize])
                .unwrap()
            {
                got.push((at.stream, at.offset, at.combined, at.len));
            }
            (got, c.combined)
        };
        let mut pieces = Vec::new();
        let mut c = log.seek(2).unwrap();
        while let Some(p) = log.next_piece(&mut c, 4).unwrap() {
            pieces.push((p.stream, p.offset, p.combined, p.data.len()));
        }
        assert_eq!(all([13, 3], 4), (pieces, 16));
        // Only what the files are known to hold: stdout up to 7, stderr up to 1.
        assert_eq!(all([7, 1], 100), (vec![(Stream::Stdout, 2, 2, 5)], 7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
