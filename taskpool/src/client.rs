//! The client side of one connection to a supervisor: connect (through a short path when the
//! pool's is too long for a unix socket), read the `hello`, send requests with their binary
//! payloads, and read replies with the pool's timeout, turning a silent supervisor into a clear
//! [`ErrorKind::Timeout`] that names it.

use crate::error::{Error, ErrorKind, Result};
use crate::pool::Pool;
use crate::protocol::{encode_line, read_response, Request, Response, PROTOCOL_VERSION};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connection to a supervisor.
pub(crate) struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: Vec<u8>,
    pub(crate) data: Vec<u8>,
    id: u64,
    supervisor_pid: i32,
}

impl Conn {
    pub(crate) fn open(pool: &Pool, id: u64, timeout: Option<Duration>) -> Result<Conn> {
        let path = pool.connect_path(id);
        let stream = UnixStream::connect(&path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Unreachable,
            };
            Error::new(
                kind,
                format!("task {id}: cannot connect to its supervisor: {e}"),
            )
        })?;
        stream
            .set_read_timeout(timeout)
            .and_then(|_| stream.set_write_timeout(timeout))
            .map_err(|e| Error::io(format!("task {id}"), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| Error::io(format!("task {id}"), e))?;
        let mut c = Conn {
            reader: BufReader::new(stream),
            writer,
            line: Vec::new(),
            data: Vec::new(),
            id,
            supervisor_pid: 0,
        };
        let hello = match c.recv() {
            Err(e) if e.kind() == ErrorKind::Timeout => {
                // Name the supervisor we were waiting for.
                c.supervisor_pid = pool
                    .load_record(id)
                    .ok()
                    .and_then(|r| r.supervisor_pid)
                    .unwrap_or(0);
                return Err(c.io_err(e));
            }
            other => other?,
        };
        match hello {
            Some(Response::Hello {
                protocol,
                supervisor_pid,
                ..
            }) => {
                if protocol != PROTOCOL_VERSION {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!("task {id}: supervisor speaks protocol {protocol}, this library {PROTOCOL_VERSION}"),
                    ));
                }
                c.supervisor_pid = supervisor_pid;
            }
            Some(Response::Error { kind, message }) => {
                return Err(Error::new(
                    crate::error::kind_from_name(&kind),
                    format!("task {id}: {message}"),
                ))
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    format!("task {id}: supervisor closed the connection"),
                ))
            }
        }
        Ok(c)
    }

    fn io_err(&self, e: Error) -> Error {
        if e.kind() == ErrorKind::Timeout {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "task {}: supervisor (pid {}) did not answer in time (is it stopped?)",
                    self.id, self.supervisor_pid
                ),
            )
        } else {
            e.context(format!("task {}", self.id))
        }
    }

    pub(crate) fn send(&mut self, req: &Request, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(128 + payload.len());
        encode_line(req, &mut buf);
        buf.extend_from_slice(payload);
        self.writer
            .write_all(&buf)
            .map_err(|e| Error::io("writing to supervisor", e))
            .map_err(|e| self.io_err(e))
    }

    /// The next message; its raw bytes (for `data`) are in `self.data`.
    pub(crate) fn recv(&mut self) -> Result<Option<Response>> {
        read_response(&mut self.reader, &mut self.line, &mut self.data).map_err(|e| self.io_err(e))
    }

    pub(crate) fn request(&mut self, req: &Request, payload: &[u8]) -> Result<Response> {
        self.send(req, payload)?;
        match self.recv()? {
            // Supervisors name their task in error messages themselves.
            Some(r) => r.into_result(),
            None => Err(Error::new(
                ErrorKind::Unreachable,
                format!("task {}: supervisor hung up", self.id),
            )),
        }
    }

    /// Another handle on the socket (to shut it down from another thread).
    pub(crate) fn try_clone_stream(&self) -> std::io::Result<UnixStream> {
        self.writer.try_clone()
    }

    pub(crate) fn set_timeout(&self, t: Option<Duration>) {
        let _ = self.writer.set_read_timeout(t);
    }
}
