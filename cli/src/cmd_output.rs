//! `taskpool output`: a task's output as raw bytes on our stdout (or as JSON). By default the
//! combined view of the latest run, read from the run's files in the pool (which hold everything,
//! whatever the supervisor's memory buffer still has). `--tail N` starts N lines from the end,
//! `--from` at a byte offset; `--follow` then keeps streaming until the task has ended;
//! `--consume` takes what the live supervisor holds past its consume position instead.

use crate::args::{GlobalArgs, OutputCmd};
use crate::output_times::{read_range, Timed};
use crate::print::{self, Data};
use crate::select;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::io::Write;
use taskpool::output::OutputLog;
use taskpool::protocol::MAX_FRAME;
use taskpool::task::ReadOptions;
use taskpool::{Error, ErrorKind, Event, Info, State, Stream, Task};

/// How far back `--tail` looks at a time.
const TAIL_WINDOW: usize = 64 * 1024;

pub fn output(global: &GlobalArgs, cmd: &OutputCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let task = select::task(&pool, &cmd.task)?;
    let stream = if cmd.stdout {
        Stream::Stdout
    } else if cmd.stderr {
        Stream::Stderr
    } else {
        Stream::Combined
    };
    if cmd.consume {
        return consume(global, &task, stream);
    }
    let timed = Timed::of(cmd)?;
    if timed.is_some() && global.json {
        return Err(anyhow!(
            "--timestamps, --since and --until print lines of text: they do not combine with --json"
        ));
    }
    let rec = task.record()?;
    let latest = rec.current().map_or(0, |r| r.run);
    let run = cmd.run.unwrap_or(latest);
    if latest == 0 && cmd.run.is_none() && rec.state.is_live() {
        // A deferred task that has not run yet: nothing to print, or follow its first run.
        if cmd.follow {
            let view = View {
                json: global.json,
                id: task.id(),
                run: 1,
                stream,
            };
            return follow(&view, &task, 0);
        }
        return Ok(0);
    }
    let Some(run_rec) = rec.runs.iter().find(|r| r.run == run) else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("task {} has no run {run}", task.id()),
        )
        .into());
    };
    let log = OutputLog::open(&pool.run_dir(task.id(), run))?;
    let end = log.len(stream);
    // Bytes the log cap dropped are not output: the record and the files say where the kept
    // part of each stream starts.
    let files = log.kept();
    let kept = [
        files[0].max(run_rec.streams.stdout.start),
        files[1].max(run_rec.streams.stderr.start),
    ];
    let first = log.kept_start(stream, &kept)?;
    let from = match (cmd.tail, cmd.from) {
        (Some(n), _) => tail_start(|o, c| Ok(log.read(stream, o, c)?), first, end, n)?,
        (None, Some(f)) => f,
        (None, None) => 0,
    }
    .max(first);
    let view = View {
        json: global.json,
        id: task.id(),
        run,
        stream,
    };
    if cmd.follow && run == latest {
        return follow(&view, &task, from);
    }
    if let Some(timed) = timed {
        let dir = pool.run_dir(task.id(), run);
        let plain = || {
            let mut out = std::io::stdout().lock();
            read_range(&log, stream, &kept, from, end, |_, piece| {
                print::raw(&mut out, piece)
            })
        };
        timed.print(&dir, task.id(), run, &log, stream, &kept, from, end, plain)?;
        return Ok(0);
    }
    let mut data = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut offset = None;
    read_range(&log, stream, &kept, from, end, |at, piece| {
        offset.get_or_insert(at);
        if view.json {
            data.extend_from_slice(piece);
            Ok(())
        } else {
            print::raw(&mut out, piece)
        }
    })?;
    drop(out);
    if view.json {
        print::json_line(&Piece {
            id: view.id,
            run,
            stream,
            offset: offset.unwrap_or(from),
            start: first,
            data: Data::new(data),
        })?;
    }
    Ok(0)
}

/// `output --json`: the bytes read, and where they start.
#[derive(Serialize)]
struct Piece {
    id: u64,
    run: u32,
    stream: Stream,
    /// Where `data` starts (in the combined view for `combined`).
    offset: u64,
    /// Where the kept part starts: the log cap dropped what came before.
    start: u64,
    data: Data,
}

/// One line of `output --follow --json`.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum FollowEvent {
    /// Output bytes: `offset` in their `stream`, `combined` in the combined view.
    Output {
        id: u64,
        run: u32,
        stream: Stream,
        offset: u64,
        combined: u64,
        data: Data,
    },
    /// The task was paused or resumed.
    State { id: u64, state: State },
    /// The task has ended and all its output was printed.
    End { id: u64, info: Box<Info> },
}

/// What is being printed, and how.
struct View {
    json: bool,
    id: u64,
    run: u32,
    stream: Stream,
}

/// Stream output and state changes until the task has ended. A single stream is taken from the
/// combined follow, dropping the other stream's chunks and anything before `from`.
fn follow(view: &View, task: &Task, from: u64) -> Result<i32> {
    let combined_from = if view.stream == Stream::Combined {
        from
    } else {
        0
    };
    let mut out = std::io::stdout().lock();
    for event in task.follow(combined_from)? {
        match event? {
            Event::Output {
                stream,
                offset,
                combined,
                data,
            } => {
                let (offset, data) = if view.stream == Stream::Combined {
                    (offset, data)
                } else if stream != view.stream || offset + data.len() as u64 <= from {
                    continue;
                } else {
                    let skip = from.saturating_sub(offset) as usize;
                    (offset + skip as u64, data[skip..].to_vec())
                };
                if view.json {
                    print::json_line(&FollowEvent::Output {
                        id: view.id,
                        run: view.run,
                        stream,
                        offset,
                        combined,
                        data: Data::new(data),
                    })?;
                } else {
                    print::raw(&mut out, &data)?;
                }
            }
            Event::State(state) => {
                if view.json {
                    print::json_line(&FollowEvent::State { id: view.id, state })?;
                }
            }
            Event::End(info) => {
                if view.json {
                    print::json_line(&FollowEvent::End { id: view.id, info })?;
                }
                break;
            }
        }
    }
    out.flush()?;
    Ok(0)
}

/// Take the output the live supervisor holds past its consume position, moving it on.
fn consume(global: &GlobalArgs, task: &Task, stream: Stream) -> Result<i32> {
    let rec = task.record()?;
    if !rec.state.is_live() {
        return Err(anyhow!(
            "task {} is {}: --consume needs a live supervisor (the output is in its files: taskpool output {})",
            task.id(),
            rec.state.as_str(),
            task.id()
        ));
    }
    let run = rec.current().map_or(0, |r| r.run);
    let mut first = None;
    let mut all = Vec::new();
    loop {
        let chunk = task.read(&ReadOptions {
            peek: false,
            ..ReadOptions::new(stream)
        })?;
        first.get_or_insert(chunk.offset);
        let full = chunk.data.len() as u64 >= MAX_FRAME;
        if global.json {
            all.extend_from_slice(&chunk.data);
        } else {
            print::raw(&mut std::io::stdout().lock(), &chunk.data)?;
        }
        // A short reply means the buffer was drained; do not chase a fast writer forever.
        if !full {
            break;
        }
    }
    if global.json {
        let info = task.info()?;
        let log = OutputLog::open(&task.pool().run_dir(task.id(), run))?;
        let kept = [info.streams.stdout.start, info.streams.stderr.start];
        print::json_line(&Piece {
            id: task.id(),
            run,
            stream,
            offset: first.unwrap_or(0),
            start: log.kept_start(stream, &kept)?,
            data: Data::new(all),
        })?;
    }
    Ok(0)
}

/// The offset where the last `lines` lines of `[start, end)` begin; a final newline ends the
/// last line rather than starting an empty one. `read(offset, count)` reads the bytes.
fn tail_start(
    mut read: impl FnMut(u64, usize) -> Result<Vec<u8>>,
    start: u64,
    end: u64,
    lines: u64,
) -> Result<u64> {
    if lines == 0 {
        return Ok(end);
    }
    let mut need = lines;
    let mut pos = end;
    while pos > start {
        let lo = pos.saturating_sub(TAIL_WINDOW as u64).max(start);
        let buf = read(lo, (pos - lo) as usize)?;
        for (i, &b) in buf.iter().enumerate().rev() {
            let at = lo + i as u64;
            if b == b'\n' && at + 1 != end {
                need -= 1;
                if need == 0 {
                    return Ok(at + 1);
                }
            }
        }
        pos = lo;
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(text: &[u8], n: u64) -> String {
        let read = |o: u64, c: usize| Ok(text[o as usize..o as usize + c].to_vec());
        let at = tail_start(read, 0, text.len() as u64, n).unwrap();
        String::from_utf8(text[at as usize..].to_vec()).unwrap()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_of(b"a\nb\nc\n", 1), "c\n");
        assert_eq!(tail_of(b"a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of(b"a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail_of(b"a\nb\nc", 1), "c");
        assert_eq!(tail_of(b"a\nb\nc", 0), "");
        assert_eq!(tail_of(b"", 3), "");
        assert_eq!(tail_of(b"\n\n", 1), "\n");
    }

    #[test]
    fn tail_crosses_windows() {
        let mut text = Vec::new();
        for i in 0..50_000 {
            text.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        assert_eq!(tail_of(&text, 2), "line 49998\nline 49999\n");
        assert_eq!(tail_of(&text, 20_000).lines().count(), 20_000);
    }
}
