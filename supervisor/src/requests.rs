//! Serving a client: its request lines are parsed and dispatched from one flat `match` to one
//! handler per request kind; `write` payloads are moved into the stdin queue; follow subscriptions
//! are fed from the run's files (sent with `sendfile(2)` when no log cap can punch them out
//! meanwhile); waiters and followers get `end` once the run is over.

use crate::capture::Capture;
use crate::clients::{Client, Mode, Payload, FOLLOW_LOW, OUT_HIGH};
use crate::state::Core;
use std::time::Duration;
use taskpool::output::Cursor;
use taskpool::protocol::{parse_request, Request, Response, SignalArg, Stream, MAX_FRAME};
use taskpool::pty::PtySize;
use taskpool::{Error, ErrorKind};

/// Make all the progress possible for one client: answer buffered requests, move payload bytes,
/// pull follow data, deliver `end`, and send. `scratch` is the supervisor's reusable buffer.
pub fn serve(core: &mut Core, c: &mut Client, scratch: &mut [u8]) {
    loop {
        let before = (c.pending(), c.input().len(), c.mode);
        match c.mode {
            Mode::Requests => answer_requests(core, c),
            Mode::Waiting if core.ended() => {
                c.queue(&Response::End {
                    info: Box::new(core.info()),
                });
                c.mode = Mode::Requests;
            }
            Mode::WaitingReady if core.ready_now() => {
                c.queue(&Response::Ready {
                    info: Box::new(core.info()),
                });
                c.mode = Mode::Requests;
            }
            Mode::WaitingReady if core.ended() => {
                c.queue(&Response::End {
                    info: Box::new(core.info()),
                });
                c.mode = Mode::Requests;
            }
            Mode::Following(cur) => feed(core, c, cur, scratch),
            Mode::FollowLater(_) if core.ended() => {
                c.queue(&Response::End {
                    info: Box::new(core.info()),
                });
                c.mode = Mode::Closing;
            }
            Mode::Waiting | Mode::WaitingReady | Mode::Closing | Mode::FollowLater(_) => {}
        }
        c.flush();
        if c.dead || (c.pending(), c.input().len(), c.mode) == before {
            break;
        }
    }
}

/// A run has started: followers still on the previous run's output get `end` (its output is
/// over), and followers waiting for a run begin on this one.
pub fn run_started(core: &Core, clients: &mut [Client]) {
    let Some(cap) = &core.capture else { return };
    for c in clients.iter_mut() {
        match c.mode {
            Mode::Following(_) => {
                c.queue(&Response::End {
                    info: Box::new(core.info()),
                });
                c.mode = Mode::Closing;
            }
            Mode::FollowLater(from) => match cap.log.seek(from) {
                Ok(cur) => c.mode = Mode::Following(cur),
                Err(e) => {
                    c.queue(&Response::error(&e));
                    c.mode = Mode::Closing;
                }
            },
            _ => {}
        }
    }
}

/// Tell every follower that the state changed.
pub fn broadcast_state(core: &Core, clients: &mut [Client]) {
    let state = core.record.state;
    for c in clients.iter_mut() {
        if let Mode::Following(_) | Mode::FollowLater(_) = c.mode {
            if c.pending() >= 2 * OUT_HIGH {
                // It reads nothing; events must not grow its buffer without bound.
                c.dead = true;
                continue;
            }
            c.queue(&Response::State { state });
        }
    }
}

fn answer_requests(core: &mut Core, c: &mut Client) {
    while c.mode == Mode::Requests && c.pending() < OUT_HIGH && !c.dead {
        match c.payload {
            Payload::ToStdin(left) => {
                if !core.stdin.accepts() {
                    c.payload = Payload::Discard {
                        left,
                        error_after: true,
                    };
                    continue;
                }
                let avail = &c.input()[..c.input().len().min(left as usize)];
                let n = core.stdin.queue(avail);
                c.advance(n);
                if n as u64 == left {
                    c.payload = Payload::None;
                    c.queue(&Response::Ok);
                    core.stdin.flush();
                } else {
                    c.payload = Payload::ToStdin(left - n as u64);
                    core.stdin.flush();
                    return; // wait for more bytes, or for room in the queue
                }
            }
            Payload::Discard { left, error_after } => {
                let n = c.input().len().min(left as usize);
                c.advance(n);
                if n as u64 == left {
                    c.payload = Payload::None;
                    if error_after {
                        c.queue(&Response::error(&stdin_closed(core)));
                    }
                } else {
                    c.payload = Payload::Discard {
                        left: left - n as u64,
                        error_after,
                    };
                    return;
                }
            }
            Payload::None => {
                let Some(line) = c.take_line() else { return };
                match parse_request(c.line(line)) {
                    Ok(req) => dispatch(core, c, req),
                    Err(e) => c.queue(&Response::error(&e)),
                }
            }
        }
    }
}

/// One handler per request kind.
fn dispatch(core: &mut Core, c: &mut Client, req: Request) {
    match req {
        Request::Info => on_info(core, c),
        Request::Meta { patch } => on_meta(core, c, &patch),
        Request::Signal { signal } => on_signal(core, c, &signal),
        Request::Pause => on_pause(core, c),
        Request::Resume => on_resume(core, c),
        Request::Read {
            stream,
            offset,
            count,
            peek,
        } => on_read(core, c, stream, offset, count, peek),
        Request::Write { len } => on_write(core, c, len),
        Request::CloseStdin => on_close_stdin(core, c),
        Request::Resize { cols, rows } => on_resize(core, c, PtySize { cols, rows }),
        Request::Follow { from } => on_follow(core, c, from),
        Request::Wait => on_wait(c),
        Request::WaitReady => on_wait_ready(core, c),
        Request::Wake => {
            core.wake();
            c.queue(&Response::Ok);
        }
        Request::Terminate { grace_ms } => on_terminate(core, c, grace_ms),
    }
}

fn reply(c: &mut Client, r: taskpool::Result<Response>) {
    match r {
        Ok(r) => c.queue(&r),
        Err(e) => c.queue(&Response::error(&e)),
    }
}

fn on_info(core: &mut Core, c: &mut Client) {
    c.queue(&Response::Info {
        info: Box::new(core.info()),
    });
}

fn on_meta(core: &mut Core, c: &mut Client, patch: &serde_json::Map<String, serde_json::Value>) {
    if let Err(e) = taskpool::meta::apply_patch(&mut core.record.meta, patch) {
        return reply(c, Err(e.context(format_args!("task {}", core.record.id))));
    }
    // The final record is stored durably at the end; an ended task's meta is final now.
    core.store(core.ended());
    on_info(core, c);
}

fn on_signal(core: &mut Core, c: &mut Client, signal: &SignalArg) {
    let r = signal
        .resolve()
        .and_then(|s| core.signal(s))
        .map(|()| Response::Ok);
    reply(c, r);
}

fn on_pause(core: &mut Core, c: &mut Client) {
    let r = core.pause().map(|()| Response::Ok);
    reply(c, r);
}

fn on_resume(core: &mut Core, c: &mut Client) {
    let r = core.resume().map(|()| Response::Ok);
    reply(c, r);
}

fn on_read(
    core: &mut Core,
    c: &mut Client,
    stream: Stream,
    offset: Option<u64>,
    count: Option<u64>,
    peek: bool,
) {
    let count = count.unwrap_or(MAX_FRAME).min(MAX_FRAME) as usize;
    let Some(cap) = &mut core.capture else {
        // No run yet: nothing to read.
        c.queue_data(&data_header(stream, offset.unwrap_or(0), 0), &[], &[]);
        return;
    };
    if stream == Stream::Combined {
        let offset = offset.unwrap_or(cap.combined_consumed);
        // Bytes the log cap dropped cannot be read: start at the first one kept.
        let kept = [cap.stdout.start(), cap.stderr.start()];
        match cap.log.read_kept(Stream::Combined, offset, count, &kept) {
            Ok((offset, bytes)) => {
                if !peek {
                    cap.combined_consumed = cap.combined_consumed.max(offset + bytes.len() as u64);
                }
                let header = data_header(stream, offset, bytes.len());
                c.queue_data(&header, &bytes, &[]);
            }
            Err(e) => c.queue(&Response::error(&e)),
        }
        return;
    }
    let sc = cap.stream_mut(stream);
    // Bytes the log cap dropped cannot be read: start at the first one kept.
    let offset = offset.unwrap_or(sc.consumed()).max(sc.start());
    let n = count.min(sc.end().saturating_sub(offset) as usize);
    if !peek {
        sc.consume_to(offset + n as u64);
    }
    // Bytes the log could not take (a full disk) are only in memory; the rest is in the file,
    // the newest of it in the page cache.
    if let Some((a, b)) = sc.held(offset, n) {
        let header = data_header(stream, offset, a.len() + b.len());
        c.queue_data(&header, a, b);
        return;
    }
    match cap.log.read(stream, offset, n) {
        Ok(bytes) => c.queue_data(&data_header(stream, offset, bytes.len()), &bytes, &[]),
        Err(e) => c.queue(&Response::error(&e)),
    }
}

fn data_header(stream: Stream, offset: u64, len: usize) -> Response {
    Response::Data {
        stream,
        offset,
        combined: None,
        len: len as u64,
    }
}

fn stdin_closed(core: &Core) -> Error {
    use crate::stdin::StdinSink;
    let why = match core.stdin {
        StdinSink::NotAPipe => "is not a pipe (spawned with stdin null or a file)",
        _ if core.ended() => "is closed: the task has ended",
        _ if !core.run_active() => "is closed: no run is going on",
        _ => "is closed",
    };
    Error::new(ErrorKind::State, format!("task {}: stdin {why}", core.id))
}

fn on_write(core: &mut Core, c: &mut Client, len: u64) {
    if len > MAX_FRAME {
        c.queue(&Response::error_of(
            ErrorKind::InvalidInput,
            format!("a write carries at most {MAX_FRAME} bytes"),
        ));
        c.mode = Mode::Closing; // the payload cannot be told apart from requests
        return;
    }
    if core.stdin.accepts() {
        c.payload = Payload::ToStdin(len);
    } else {
        c.queue(&Response::error(&stdin_closed(core)));
        c.payload = Payload::Discard {
            left: len,
            error_after: false,
        };
    }
}

fn on_close_stdin(core: &mut Core, c: &mut Client) {
    use crate::stdin::StdinSink;
    match core.stdin {
        StdinSink::NotAPipe => c.queue(&Response::error(&stdin_closed(core))),
        // A terminal stays open: its end of file is a character typed (at the start of a line,
        // in canonical mode, a reader sees end of file).
        _ if core.record.spec.pty.is_some() => match core.stdin.fd().map(crate::pty::veof) {
            // The run is over: as with a pipe, there is nothing left to close.
            None => c.queue(&Response::Ok),
            Some(veof) if core.stdin.queue(&[veof]) == 1 => {
                core.stdin.flush();
                c.queue(&Response::Ok);
            }
            Some(_) => c.queue(&Response::error_of(
                ErrorKind::State,
                format!("task {}: its terminal's input queue is full", core.id),
            )),
        },
        _ => {
            core.stdin.close_when_flushed();
            c.queue(&Response::Ok);
        }
    }
}

fn on_resize(core: &mut Core, c: &mut Client, size: PtySize) {
    let id = core.id;
    let r = if size.cols == 0 || size.rows == 0 {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("resize to {size}: columns and rows must be at least 1"),
        ))
    } else if core.record.spec.pty.is_none() {
        Err(Error::new(
            ErrorKind::State,
            format!("task {id} was not spawned with --pty: it has no terminal to resize"),
        ))
    } else if let Some(master) = core.stdin.fd() {
        crate::pty::set_size(master, size)
            .map(|()| Response::Ok)
            .map_err(|e| Error::io(format!("task {id}: resizing its terminal"), e.into()))
    } else {
        Err(stdin_closed(core))
    };
    reply(c, r);
}

fn on_follow(core: &mut Core, c: &mut Client, from: u64) {
    let Some(cap) = &core.capture else {
        c.mode = Mode::FollowLater(from);
        return;
    };
    match cap.log.seek(from) {
        Ok(cur) => c.mode = Mode::Following(cur),
        Err(e) => c.queue(&Response::error(&e)),
    }
}

fn on_wait(c: &mut Client) {
    c.mode = Mode::Waiting;
}

fn on_wait_ready(core: &Core, c: &mut Client) {
    if core.record.spec.readiness.is_none() {
        let e = taskpool::Error::new(
            taskpool::ErrorKind::InvalidInput,
            format!(
                "task {} was spawned without --ready-fd or --notify: it cannot say it is ready",
                core.id
            ),
        );
        return reply(c, Err(e));
    }
    c.mode = Mode::WaitingReady;
}

fn on_terminate(core: &mut Core, c: &mut Client, grace_ms: Option<u64>) {
    core.terminate(grace_ms.map(Duration::from_millis), "terminated on request");
    c.queue(&Response::Ok);
}

/// Pull the follower's next pieces from the files while its output buffer is small; send `end`
/// once the run is over and the follower has had every byte.
fn feed(core: &mut Core, c: &mut Client, mut cur: Cursor, scratch: &mut [u8]) {
    let Some(cap) = &core.capture else { return };
    while c.pending() < FOLLOW_LOW && cur.combined < cap.combined_end {
        match feed_piece(cap, c, &mut cur, scratch) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                c.queue(&Response::error(&e));
                c.mode = Mode::Closing;
                return;
            }
        }
    }
    c.mode = Mode::Following(cur);
    if !core.run_active() && (cur.combined >= cap.combined_end || c.pending() < FOLLOW_LOW) {
        // Every byte was sent (or the files end early, say after a write error).
        c.queue(&Response::End {
            info: Box::new(core.info()),
        });
        c.mode = Mode::Closing;
    }
}

/// Queue the follower's next piece (at most `scratch.len()` bytes, only bytes the file holds);
/// false when there is none yet. The piece is queued as a span of its file, sent with
/// `sendfile(2)` without passing through memory; with a log cap it is read into `scratch` and
/// copied instead: a span must still be in the file when its turn comes, and the cap punches the
/// oldest bytes out. A copy skips what the cap punched out before it was read (it reads back as
/// zeros).
fn feed_piece(
    cap: &Capture,
    c: &mut Client,
    cur: &mut Cursor,
    scratch: &mut [u8],
) -> taskpool::Result<bool> {
    let stored = |s| cap.stream(s).stored();
    let Some(at) = cap.log.next_span(cur, scratch.len(), stored)? else {
        return Ok(false);
    };
    let file = cap.log.shared(at.stream);
    if let (Some(file), false) = (file, cap.log_capped()) {
        let header = Response::Data {
            stream: at.stream,
            offset: at.offset,
            combined: Some(at.combined),
            len: at.len as u64,
        };
        c.queue_file(&header, file, at.offset, at.len);
        return Ok(true);
    }
    let n = cap
        .log
        .read_stream_into(at.stream, at.offset, &mut scratch[..at.len])?;
    let skip = cap.stream(at.stream).start().saturating_sub(at.offset);
    let skip = skip.min(n as u64) as usize;
    if skip < n {
        let header = Response::Data {
            stream: at.stream,
            offset: at.offset + skip as u64,
            combined: Some(at.combined + skip as u64),
            len: (n - skip) as u64,
        };
        c.queue_data(&header, &scratch[skip..n], &[]);
    }
    Ok(true)
}
