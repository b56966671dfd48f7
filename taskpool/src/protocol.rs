//! The wire protocol spoken on each supervisor's unix socket, and the launch handshake between the
//! library and a starting supervisor. Every type that crosses a process boundary lives here.
//!
//! Messages are JSON objects, one per line (`\n`-terminated), tagged by `"type"`. Output and stdin
//! bytes travel as raw binary frames: a `data` reply (or a `write` request) carries `len`, and
//! exactly `len` raw bytes follow its newline. On connect the supervisor first sends a `hello`
//! carrying [`PROTOCOL_VERSION`]. See `docs/protocol.md` for the full description.

use crate::error::{kind_from_name, kind_name, Error, ErrorKind, Result};
use crate::info::Info;
use crate::record::{Spec, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Read};

/// The protocol version sent in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line a supervisor accepts, newline included.
pub const MAX_LINE: usize = 64 * 1024;
/// The longest reply line a client accepts, newline included. Replies carry a task's whole info
/// (its command line, environment, meta and run history), which may be longer than a request
/// line; this bound only protects a client from a runaway peer.
pub const MAX_REPLY_LINE: usize = 16 * 1024 * 1024;
/// The most bytes one `write` request may carry, and one `data` reply holds.
pub const MAX_FRAME: u64 = 1024 * 1024;

/// An output stream, or the combined view of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The task's standard output.
    Stdout,
    /// The task's standard error.
    Stderr,
    /// Both, in the order the supervisor read them, with offsets of its own.
    Combined,
}

impl Stream {
    /// The lower-case name, also the file name of the stream's log.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Combined => "combined",
        }
    }
}

/// A signal given by number or by name (`"TERM"`, `"SIGTERM"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignalArg {
    /// A signal number.
    Number(i32),
    /// A signal name, with or without `SIG`.
    Name(String),
}

impl SignalArg {
    /// Resolve to a signal.
    pub fn resolve(&self) -> Result<nix::sys::signal::Signal> {
        match self {
            SignalArg::Number(n) => crate::signal::parse_signal(&n.to_string()),
            SignalArg::Name(s) => crate::signal::parse_signal(s),
        }
    }
}

/// A client's request to a supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Reply `info` with fresh counters.
    Info,
    /// Merge `patch` into the meta (RFC 7396), reply `info`.
    Meta {
        /// A JSON merge patch object.
        patch: Map<String, Value>,
    },
    /// Send a signal to the task's process group; reply `ok`.
    Signal {
        /// The signal.
        signal: SignalArg,
    },
    /// Stop the task's process group (SIGSTOP); reply `ok`.
    Pause,
    /// Continue a paused task (SIGCONT); reply `ok`.
    Resume,
    /// Read output of the current run; reply one `data` frame.
    Read {
        /// `stdout`, `stderr` or `combined`.
        stream: Stream,
        /// Where to start; default: the stream's consume position.
        #[serde(default)]
        offset: Option<u64>,
        /// The most bytes to return; default and cap: [`MAX_FRAME`].
        #[serde(default)]
        count: Option<u64>,
        /// Leave the bytes in place (`true`, the default) or consume them (`false`): the
        /// consume position moves past what was returned.
        #[serde(default = "yes")]
        peek: bool,
    },
    /// Write to the task's stdin; `len` raw bytes follow the line. Reply `ok` once queued.
    Write {
        /// How many raw bytes follow.
        len: u64,
    },
    /// Close the task's stdin once queued bytes are written; reply `ok`. On a terminal
    /// (`--pty`) the terminal's end-of-file character (VEOF) is queued instead, and it stays open.
    CloseStdin,
    /// Set the window size of the task's terminal (`--pty`); the kernel sends SIGWINCH to its
    /// foreground process group when the size changes. Reply `ok`.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Subscribe to output and state events from combined offset `from` (default 0). The reply is
    /// a sequence of `data` and `state` messages ending with `end` once the task is over and
    /// every byte has been sent.
    Follow {
        /// The combined offset to start from.
        #[serde(default)]
        from: u64,
    },
    /// Reply `end` once the task has ended for good (a recurring or restarting task: once it
    /// has stopped).
    Wait,
    /// Reply `ready` once the current run has said it is ready (at once if it has), or `end`
    /// if the task ends first. A task spawned without `--ready-fd` or `--notify` gets
    /// `invalid_input`.
    WaitReady,
    /// Look again at what a deferred task waits for (a group slot may have freed, a limit
    /// changed); reply `ok`. Sent by supervisors and `taskpool group set` to queued tasks.
    Wake,
    /// End the task (INT, TERM, KILL with a grace between), record the end and exit. Reply `ok`
    /// at once; the connection closes when the supervisor exits.
    Terminate {
        /// The grace between signals, in milliseconds (default: the task's).
        #[serde(default)]
        grace_ms: Option<u64>,
    },
}

fn yes() -> bool {
    true
}

/// A supervisor's message to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Sent first on every connection.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The task id.
        id: u64,
        /// The supervisor's pid.
        supervisor_pid: i32,
    },
    /// The request was carried out.
    Ok,
    /// A task's info.
    Info {
        /// The info.
        info: Box<Info>,
    },
    /// Output: `len` raw bytes follow the line.
    Data {
        /// Which stream the bytes belong to (`combined` in reply to a combined `read`).
        stream: Stream,
        /// The offset of the first byte in that stream.
        offset: u64,
        /// The offset of the first byte in the combined view (follow frames).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        combined: Option<u64>,
        /// How many raw bytes follow.
        len: u64,
    },
    /// The task's state changed (follow).
    State {
        /// The new state.
        state: State,
    },
    /// The task has ended (wait, follow).
    End {
        /// Its final info.
        info: Box<Info>,
    },
    /// The current run is ready (wait_ready).
    Ready {
        /// The task's info at that moment.
        info: Box<Info>,
    },
    /// The request failed.
    Error {
        /// A stable machine-readable kind (`not_found`, `invalid_input`, `state`, …).
        kind: String,
        /// A one-line human message.
        message: String,
    },
}

impl Response {
    /// An error reply from a library error.
    pub fn error(e: &Error) -> Response {
        Response::Error {
            kind: e.kind_name().to_owned(),
            message: e.message().to_owned(),
        }
    }

    /// An error reply of `kind` with `message`.
    pub fn error_of(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind: kind_name(kind).to_owned(),
            message: message.into(),
        }
    }

    /// Turn an `error` reply into `Err`, anything else into `Ok(self)`.
    pub fn into_result(self) -> Result<Response> {
        match self {
            Response::Error { kind, message } => Err(Error::new(kind_from_name(&kind), message)),
            other => Ok(other),
        }
    }
}

/// The library's launch message to a starting supervisor, written as one JSON line to its stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// The task id (its directory already exists).
    pub id: u64,
    /// What to run; `None` when restarting (the supervisor reads it from the record).
    pub spec: Option<Spec>,
    /// The initial meta (new tasks).
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Re-run an ended task as a new run.
    #[serde(default)]
    pub restart: bool,
    /// Re-arm a deferred or recurring task whose supervisor was lost (`taskpool restore`): the
    /// record is kept and the plan carried on.
    #[serde(default)]
    pub restore: bool,
    /// With `restore`: end the live task `skipped` with this reason, without running it, as the
    /// gate does for a task that can never run (report, hooks for `skipped`, durable final
    /// record). For a scheduler task whose job ended before its supervisor started: the reader
    /// that finds it so hands the end to a local supervisor to run the hooks (docs/slurm.md).
    /// Refused when the task is no longer live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
    /// The pool's directory, for a supervisor started without `--pool` before its task was known
    /// ([`crate::spawn::prestart_supervisor`]).
    #[serde(
        default,
        with = "crate::wire::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool: Option<std::path::PathBuf>,
}

/// A starting supervisor's one-line answer on its stdout: ready, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LaunchReply {
    /// The lock is held, the socket listens and the command was executed.
    Ready {
        /// The supervisor's pid.
        supervisor_pid: i32,
        /// The task's main pid.
        pid: i32,
        /// The run number.
        run: u32,
    },
    /// The task was durably accepted and waits (state `queued`, `waiting` or `scheduled`).
    Accepted {
        /// The supervisor's pid.
        supervisor_pid: i32,
        /// The state it waits in.
        state: State,
    },
    /// The task could not be started; nothing was left behind.
    Error {
        /// A stable kind, as in [`Response::Error`].
        kind: String,
        /// A one-line message naming the thing at fault.
        message: String,
    },
}

/// A batch launcher's answer for one of its launch lines (`taskpool-supervisor --batch`, started
/// by [`crate::Pool::spawn_many`]): which line, counted from 0, and what the supervisor forked for
/// it replied; `None` when it ended without replying (the launcher gives its exit status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReply {
    /// The launch line answered, counted from 0.
    pub n: usize,
    /// The supervisor's reply, or `None` if it ended without one.
    pub reply: Option<LaunchReply>,
    /// How a supervisor that did not reply ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// Encode a message as one JSON line, appended to `out`.
pub fn encode_line<T: Serialize>(msg: &T, out: &mut Vec<u8>) {
    // Serializing these types to a Vec cannot fail: all map keys are strings.
    serde_json::to_writer(&mut *out, msg).expect("protocol messages always serialize");
    out.push(b'\n');
}

/// The request types that take no field but `type`. serde does not refuse unknown fields of a
/// unit variant in an internally tagged enum, so [`parse_request`] checks these itself.
const FIELDLESS: [&str; 7] = [
    "info",
    "pause",
    "resume",
    "close_stdin",
    "wake",
    "wait",
    "wait_ready",
];

/// Parse one request line (without or with its newline). Unknown types, unknown fields (also on
/// requests that take none) and malformed JSON are [`ErrorKind::InvalidInput`].
pub fn parse_request(line: &[u8]) -> Result<Request> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::InvalidInput, format!("bad request: {e}"))
    };
    let value: Value = serde_json::from_slice(line).map_err(|e| bad(&e))?;
    if let Value::Object(m) = &value {
        if let Some(Value::String(t)) = m.get("type") {
            if FIELDLESS.contains(&t.as_str()) {
                if let Some(k) = m.keys().find(|k| *k != "type") {
                    return Err(bad(&format!("unknown field `{k}`: `{t}` takes no fields")));
                }
            }
        }
    }
    Request::deserialize(value).map_err(|e| bad(&e))
}

/// Read one line of at most [`MAX_REPLY_LINE`] bytes; `Ok(None)` at a clean end of stream.
pub fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<Option<()>> {
    buf.clear();
    let n = r
        .take(MAX_REPLY_LINE as u64)
        .read_until(b'\n', buf)
        .map_err(|e| Error::io("reading from supervisor", e))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(Error::new(
            ErrorKind::Protocol,
            "supervisor sent a truncated or oversized line",
        ));
    }
    buf.pop();
    Ok(Some(()))
}

/// Read one reply (and the raw bytes of a `data` frame into `data`); `Ok(None)` at end of stream.
pub fn read_response<R: BufRead>(
    r: &mut R,
    line: &mut Vec<u8>,
    data: &mut Vec<u8>,
) -> Result<Option<Response>> {
    if read_line(r, line)?.is_none() {
        return Ok(None);
    }
    let resp: Response = serde_json::from_slice(line).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("bad reply from supervisor: {e}"),
        )
    })?;
    data.clear();
    if let Response::Data { len, .. } = &resp {
        if *len > MAX_FRAME {
            return Err(Error::new(
                ErrorKind::Protocol,
                "supervisor sent an oversized frame",
            ));
        }
        data.resize(*len as usize, 0);
        r.read_exact(data)
            .map_err(|e| Error::io("reading output from supervisor", e))?;
    }
    Ok(Some(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_round_trip() {
        let reqs = [
            Request::Info,
            Request::Signal {
                signal: SignalArg::Name("TERM".into()),
            },
            Request::Read {
                stream: Stream::Stderr,
                offset: Some(5),
                count: None,
                peek: false,
            },
            Request::Follow { from: 0 },
            Request::Resize {
                cols: 100,
                rows: 30,
            },
            Request::Terminate { grace_ms: None },
        ];
        for r in reqs {
            let mut out = Vec::new();
            encode_line(&r, &mut out);
            assert_eq!(out.last(), Some(&b'\n'));
            assert_eq!(parse_request(&out).unwrap(), r);
        }
        assert_eq!(
            parse_request(br#"{"type":"read","stream":"stdout"}"#).unwrap(),
            Request::Read {
                stream: Stream::Stdout,
                offset: None,
                count: None,
                peek: true
            }
        );
        assert!(parse_request(br#"{"type":"bogus"}"#).is_err());
        for t in FIELDLESS {
            let line = format!(r#"{{"type":"{t}","x":1}}"#);
            let e = parse_request(line.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{line}");
            assert!(e.message().contains("unknown field `x`"), "{line}: {e}");
            let plain = format!(r#"{{"type":"{t}"}}"#);
            assert!(parse_request(plain.as_bytes()).is_ok(), "{plain}");
        }
        assert!(parse_request(br#"{"type":"read","stream":"stdout","x":1}"#).is_err());
        assert!(parse_request(b"not json").is_err());
    }

    #[test]
    fn data_frame_carries_raw_bytes() {
        let mut wire = Vec::new();
        encode_line(
            &Response::Data {
                stream: Stream::Stdout,
                offset: 0,
                combined: Some(0),
                len: 3,
            },
            &mut wire,
        );
        wire.extend_from_slice(&[0xff, b'\n', 0]);
        encode_line(&Response::Ok, &mut wire);
        let mut r = std::io::BufReader::new(&wire[..]);
        let (mut line, mut data) = (Vec::new(), Vec::new());
        let first = read_response(&mut r, &mut line, &mut data)
            .unwrap()
            .unwrap();
        assert!(matches!(first, Response::Data { len: 3, .. }));
        assert_eq!(data, [0xff, b'\n', 0]);
        let second = read_response(&mut r, &mut line, &mut data)
            .unwrap()
            .unwrap();
        assert_eq!(second, Response::Ok);
        assert!(read_response(&mut r, &mut line, &mut data)
            .unwrap()
            .is_none());
    }
}
