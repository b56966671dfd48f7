//! `taskpool output --timestamps` / `--since` / `--until`: the output as lines, each with the
//! time its first byte was read (from the run's `times` index, see [`taskpool::times`]), selected
//! by that time and prefixed with it. Also [`read_range`], which reads kept bytes from a run's
//! files for every form of `output`.

use crate::args::{OutputCmd, TimestampForm};
use anyhow::{anyhow, bail, Result};
use chrono::DurationRound;
use std::io::Write;
use taskpool::output::{Kept, OutputLog};
use taskpool::record::Timestamp;
use taskpool::times::{parse_when, Times, ViewTimes};
use taskpool::Stream;

/// Which lines, and how they are shown.
pub struct Timed {
    form: Option<TimestampForm>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

impl Timed {
    /// What `cmd` asks for, or `None` when it asks for no times at all. Bad times are named.
    pub fn of(cmd: &OutputCmd) -> Result<Option<Timed>> {
        if cmd.timestamps.is_none() && cmd.since.is_none() && cmd.until.is_none() {
            return Ok(None);
        }
        let now = chrono::Local::now();
        let when = |opt: &str, v: &Option<String>| -> Result<Option<Timestamp>> {
            v.as_deref()
                .map(|s| parse_when(s, now).map_err(|e| anyhow!("--{opt}: {}", e.message())))
                .transpose()
        };
        Ok(Some(Timed {
            form: cmd.timestamps,
            since: when("since", &cmd.since)?,
            until: when("until", &cmd.until)?,
        }))
    }

    /// Print the lines of `[from, end)` of `stream` of the run in `dir` that are selected, with
    /// their times. A run without an index prints plainly with a note, unless lines are to be
    /// selected by time, which it cannot do.
    #[allow(clippy::too_many_arguments)]
    pub fn print(
        &self,
        dir: &std::path::Path,
        id: u64,
        run: u32,
        log: &OutputLog,
        stream: Stream,
        kept: &Kept,
        from: u64,
        end: u64,
        plain: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let Some(times) = Times::open(dir)? else {
            if self.since.is_some() || self.until.is_some() {
                bail!("task {id} run {run} has no times index (its output was captured before times were recorded): cannot select by time");
            }
            eprintln!(
                "taskpool: task {id} run {run} has no times index; printing without timestamps"
            );
            return plain();
        };
        let view = times.view(stream);
        let mut out = std::io::stdout().lock();
        let mut line: Vec<u8> = Vec::new();
        let mut line_at = from;
        read_range(log, stream, kept, from, end, |at, piece| {
            let mut rest = piece;
            let mut at = at;
            if line.is_empty() {
                line_at = at;
            }
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&rest[..=nl]);
                self.emit(&mut out, &view, line_at, &line)?;
                line.clear();
                at += nl as u64 + 1;
                line_at = at;
                rest = &rest[nl + 1..];
            }
            line.extend_from_slice(rest);
            Ok(())
        })?;
        if !line.is_empty() {
            self.emit(&mut out, &view, line_at, &line)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Print one line if its time is selected.
    fn emit(
        &self,
        out: &mut impl std::io::Write,
        view: &ViewTimes,
        at: u64,
        line: &[u8],
    ) -> std::io::Result<()> {
        // Compared as shown: to the millisecond.
        let when = view.time_of(at).map(|t| {
            t.duration_trunc(chrono::Duration::milliseconds(1))
                .unwrap_or(t)
        });
        let selected = match when {
            Some(t) => self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u),
            // Its entry went with the oldest output: only shown when no time is asked for.
            None => self.since.is_none() && self.until.is_none(),
        };
        if !selected {
            return Ok(());
        }
        match (self.form, when) {
            (None, _) => {}
            (Some(TimestampForm::Absolute), Some(t)) => {
                write!(out, "{} ", t.format("%Y-%m-%dT%H:%M:%S%.3f%:z"))?
            }
            (Some(TimestampForm::Relative), Some(_)) => {
                let d = view.offset_of(at).unwrap_or_default();
                write!(out, "+{}.{:03}s ", d.as_secs(), d.subsec_millis())?
            }
            (Some(_), None) => write!(out, "- ")?,
        }
        out.write_all(line)
    }
}

/// How many bytes are read from the files at a time.
const PIECE: usize = 256 * 1024;

/// Read the kept bytes of `[from, end)` of a stream (or of the combined view) from the files,
/// handing each piece, with the offset of its first byte, to `emit` as it is read. What the log
/// cap dropped (below `kept`) is skipped.
pub fn read_range(
    log: &OutputLog,
    stream: Stream,
    kept: &Kept,
    from: u64,
    end: u64,
    mut emit: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    let mut at = from;
    while at < end {
        let (first, piece) = log.read_kept(stream, at, PIECE.min((end - at) as usize), kept)?;
        if piece.is_empty() {
            break;
        }
        at = first + piece.len() as u64;
        emit(first, &piece)?;
    }
    Ok(())
}
