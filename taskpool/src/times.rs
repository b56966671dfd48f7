//! When a run's output arrived: the `times` index beside the logs in `tasks/ID/run-N/`.
//!
//! The file starts with a 16-byte header: the magic `TPT1`, four reserved bytes, and the run's
//! realtime anchor (nanoseconds since the Unix epoch, little-endian `i64`) read together with the
//! supervisor's monotonic clock. Then 16-byte entries, each two little-endian `u64`: the number of
//! a chunk entry in `chunks` (see [`crate::output`]) and one more than the monotonic nanoseconds
//! from the anchor to the moment the supervisor read that chunk. An entry says "this chunk and
//! the ones after it, up to the next entry, arrived then": the supervisor writes one only when
//! the millisecond has changed, so the file grows by at most 16 bytes per millisecond of output.
//! Times are the anchor plus monotonic offsets, so they never go backwards, whatever the wall
//! clock does. With a log cap, the oldest entries are punched out as the oldest output is
//! (a punched entry reads as zeros and is skipped).
//!
//! Readers: [`Times::open`], then [`Times::view`] for the arrival time of any byte of a view;
//! [`parse_when`] reads the times `output --since`/`--until` take.

use crate::error::{Error, ErrorKind, Result};
use crate::localtime::{self, Wall};
use crate::output::decode_entry;
use crate::protocol::Stream;
use crate::status::Timestamp;
use chrono::{DateTime, Local, TimeZone, Utc};
use std::path::Path;
use std::time::Duration;

/// The index's file name in a run directory.
pub const TIMES_FILE: &str = "times";
/// The header's size.
pub const HEADER: usize = 16;
/// One entry's size.
pub const ENTRY: usize = 16;
const MAGIC: &[u8; 4] = b"TPT1";

/// The header of a run's index, for a run whose anchor is `anchor_ns` (Unix nanoseconds).
pub fn header(anchor_ns: i64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&anchor_ns.to_le_bytes());
    h
}

/// An entry: chunk number `chunk` arrived `ns` nanoseconds after the anchor.
pub fn entry(chunk: u64, ns: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..8].copy_from_slice(&chunk.to_le_bytes());
    e[8..].copy_from_slice(&(ns.saturating_add(1)).to_le_bytes());
    e
}

fn invalid(m: String) -> Error {
    Error::new(ErrorKind::InvalidInput, m)
}

/// A run's index, read whole.
#[derive(Debug, Clone)]
pub struct Times {
    anchor_ns: i64,
    /// (chunk number, nanoseconds from the anchor), ascending in both.
    entries: Vec<(u64, u64)>,
    /// The run's chunk entries (stream, length), from `chunks`.
    chunks: Vec<(Stream, u32)>,
}

impl Times {
    /// The index of the run whose directory is `dir`; `None` when the run has none (its output
    /// was captured before the index existed).
    pub fn open(dir: &Path) -> Result<Option<Times>> {
        let path = dir.join(TIMES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::path(&path, e)),
        };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{}: not a times index", path.display()),
            ));
        }
        let anchor_ns = i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let mut entries = Vec::with_capacity((bytes.len() - HEADER) / ENTRY);
        for e in bytes[HEADER..].chunks_exact(ENTRY) {
            let chunk = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
            let t = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
            if t == 0 {
                continue; // punched out
            }
            entries.push((chunk, t - 1));
        }
        let cpath = dir.join("chunks");
        let cbytes = std::fs::read(&cpath).map_err(|e| Error::path(&cpath, e))?;
        let chunks = cbytes
            .chunks_exact(4)
            .map(|c| decode_entry(c.try_into().expect("4 bytes")))
            .collect();
        Ok(Some(Times {
            anchor_ns,
            entries,
            chunks,
        }))
    }

    /// When the run's capture began (the anchor), in the local zone.
    pub fn anchor(&self) -> Timestamp {
        localtime::label(&Utc.timestamp_nanos(self.anchor_ns))
    }

    /// Arrival times by offset in `stream`'s view (`Combined`: the combined view's offsets).
    pub fn view(&self, stream: Stream) -> ViewTimes {
        let mut spans: Vec<(u64, u64)> = Vec::new();
        let mut at = 0u64;
        let mut next = 0usize;
        let mut now: Option<u64> = None;
        for (k, &(s, len)) in self.chunks.iter().enumerate() {
            while next < self.entries.len() && self.entries[next].0 <= k as u64 {
                now = Some(self.entries[next].1);
                next += 1;
            }
            if stream != Stream::Combined && s != stream {
                continue;
            }
            if let Some(t) = now {
                if spans.last().is_none_or(|&(_, last)| last != t) {
                    spans.push((at, t));
                }
            }
            at += u64::from(len);
        }
        ViewTimes {
            anchor_ns: self.anchor_ns,
            spans,
        }
    }
}

/// The arrival time of each byte of one view of a run.
#[derive(Debug, Clone)]
pub struct ViewTimes {
    anchor_ns: i64,
    /// (first offset, nanoseconds from the anchor), ascending.
    spans: Vec<(u64, u64)>,
}

impl ViewTimes {
    /// How long after the run's anchor the byte at `offset` was read; `None` when its entry is
    /// gone (punched out with the oldest output).
    pub fn offset_of(&self, offset: u64) -> Option<Duration> {
        let i = self.spans.partition_point(|&(o, _)| o <= offset);
        (i > 0).then(|| Duration::from_nanos(self.spans[i - 1].1))
    }

    /// When the byte at `offset` was read, in the local zone.
    pub fn time_of(&self, offset: u64) -> Option<Timestamp> {
        self.offset_of(offset).map(|d| {
            let ns = self.anchor_ns.saturating_add(d.as_nanos() as i64);
            localtime::label(&Utc.timestamp_nanos(ns))
        })
    }
}

/// A time as `output --since`/`--until` take it, relative to `now`: RFC 3339 with or without
/// fractions (`2027-03-28T03:00:00.250+02:00`), `HH:MM` or `HH:MM:SS` meaning the latest such
/// local time not after `now`, or a DURATION meaning that long before `now` (`10m`, `90`).
pub fn parse_when(s: &str, now: DateTime<Local>) -> Result<Timestamp> {
    let t = s.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(t) {
        return Ok(ts);
    }
    let clock = chrono::NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M:%S"));
    if let Ok(clock) = clock {
        let now = localtime::label(&now);
        let today = localtime::wall_of(&now).date();
        for day in [today, today - chrono::Days::new(1)] {
            let fits = match localtime::resolve(day.and_time(clock)) {
                Wall::Single(a) => vec![a],
                Wall::Twice(a, b) => vec![b, a],
                Wall::Skipped { resumes, .. } => vec![resumes],
            };
            if let Some(t) = fits.into_iter().find(|t| *t <= now) {
                return Ok(t);
            }
        }
    }
    if let Ok(d) = crate::units::parse_duration(t) {
        let d =
            chrono::Duration::from_std(d).map_err(|_| invalid(format!("{s:?} is too long ago")))?;
        return Ok(localtime::label(&(now - d)));
    }
    Err(invalid(format!(
        "bad time {s:?} (expected RFC 3339 such as 2027-03-28T03:00:00.5+02:00, HH:MM, or a duration ago such as 10m)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_views_split_by_stream() {
        let dir = std::env::temp_dir().join(format!("taskpool-times-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = header(1_000_000_000).to_vec();
        t.extend(entry(0, 5_000_000));
        t.extend([0u8; ENTRY]); // a punched entry
        t.extend(entry(2, 9_000_000));
        std::fs::write(dir.join(TIMES_FILE), t).unwrap();
        let mut c = Vec::new();
        for (s, n) in [
            (Stream::Stdout, 3),
            (Stream::Stderr, 4),
            (Stream::Stdout, 2),
        ] {
            c.extend(crate::output::chunk_entry(s, n));
        }
        std::fs::write(dir.join("chunks"), c).unwrap();
        let times = Times::open(&dir).unwrap().unwrap();
        let ms = |v: &ViewTimes, o| v.offset_of(o).map(|d| d.as_millis());
        let out = times.view(Stream::Stdout);
        assert_eq!(
            (ms(&out, 0), ms(&out, 2), ms(&out, 3)),
            (Some(5), Some(5), Some(9))
        );
        let err = times.view(Stream::Stderr);
        assert_eq!(ms(&err, 3), Some(5));
        let all = times.view(Stream::Combined);
        assert_eq!((ms(&all, 6), ms(&all, 7)), (Some(5), Some(9)));
        assert_eq!(times.anchor().timestamp(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn when_takes_rfc3339_past_clock_times_and_durations_ago() {
        let now = Local::now();
        let t = parse_when("2027-03-28T03:00:00.25+02:00", now).unwrap();
        assert_eq!(t.timestamp_millis(), 1_806_195_600_250);
        let ago = parse_when("10m", now).unwrap();
        assert_eq!((now.fixed_offset() - ago).num_seconds(), 600);
        // A clock time is the latest past one: never after now, and within a day of it.
        for delta in [-2i64, 2] {
            let shown = (now + chrono::Duration::minutes(delta))
                .format("%H:%M")
                .to_string();
            let t = parse_when(&shown, now).unwrap();
            assert!(t <= now.fixed_offset(), "{shown} gave {t}");
            assert!(
                (now.fixed_offset() - t).num_hours() <= 25,
                "{shown} gave {t}"
            );
        }
        assert!(parse_when("soon", now).is_err());
    }
}
