//! A client's output: queued replies and `data` frames, and sending them as the socket takes
//! them.
//!
//! Follow data can also be queued as a span of a log file ([`Client::queue_file`]): only the
//! frame's header is buffered, and the bytes go from the file (the page cache) to the socket with
//! `sendfile(2)` when their turn comes, without a copy through the supervisor's memory. The file
//! must not change under a queued span (the log cap's punching would; see `requests::feed`).

use super::{Client, Mode, Payload};
use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use taskpool::protocol::{encode_line, Response};

/// Bytes of a file to send once the output buffer has been sent up to `at`.
pub(super) struct FileSpan {
    /// Index in the output buffer the span comes after.
    pub(super) at: usize,
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl Client {
    /// Queue a reply.
    pub fn queue(&mut self, r: &Response) {
        encode_line(r, &mut self.out);
    }

    /// Queue a `data` frame: its header, then its bytes (given in up to two slices).
    pub fn queue_data(&mut self, header: &Response, a: &[u8], b: &[u8]) {
        encode_line(header, &mut self.out);
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b);
    }

    /// Queue a `data` frame whose `len` bytes are sent from `file` at `offset` (with
    /// `sendfile(2)`, when their turn comes): the file must hold them and keep them until then.
    pub fn queue_file(&mut self, header: &Response, file: &Arc<File>, offset: u64, len: usize) {
        encode_line(header, &mut self.out);
        if len > 0 {
            self.spans.push_back(FileSpan {
                at: self.out.len(),
                file: Arc::clone(file),
                offset,
                len,
            });
            self.span_bytes += len;
        }
    }

    /// Send what is pending, as much as the socket takes.
    pub fn flush(&mut self) {
        while self.pending() > 0 && !self.blocked && !self.dead {
            let upto = self.spans.front().map_or(self.out.len(), |f| f.at);
            if self.sent < upto {
                let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
                match socket::send(self.sock.as_raw_fd(), &self.out[self.sent..upto], flags) {
                    Ok(n) => self.sent += n,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => self.blocked = true,
                    Err(_) => self.dead = true,
                }
            } else if let Some(span) = self.spans.front_mut() {
                match send_file(&self.sock, span) {
                    Ok(0) => self.dead = true, // the file is shorter than promised
                    Ok(n) => {
                        self.span_bytes -= n;
                        if span.len == 0 {
                            self.spans.pop_front();
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => self.blocked = true,
                    Err(_) => self.dead = true,
                }
            }
        }
        if self.sent == self.out.len() && self.spans.is_empty() {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > 512 << 10 {
                self.out.shrink_to(64 << 10);
            }
        } else if self.sent >= 64 << 10 {
            self.out.drain(..self.sent);
            for span in self.spans.iter_mut() {
                span.at -= self.sent;
            }
            self.sent = 0;
        }
        if self.pending() == 0 && self.mode == Mode::Closing {
            self.dead = true;
            self.drain_input();
        }
        if self.read_eof && self.pending() == 0 && self.mode == Mode::Requests {
            // The client is done sending and everything it asked was answered.
            if self.take_line_ready().is_none() && self.payload == Payload::None {
                self.dead = true;
            }
        }
    }
}

/// Send the start of `span` from its file to the socket (nonblocking: the socket is), and move
/// the span past what went.
fn send_file(sock: &OwnedFd, span: &mut FileSpan) -> nix::Result<usize> {
    let mut off = span.offset as libc::off_t;
    // SAFETY: both descriptors are open for the call (borrowed from owned values), and `off` is a
    // valid off_t the kernel reads and updates. SIGPIPE is blocked in the supervisor, so a gone
    // peer is an EPIPE here.
    let r = unsafe { libc::sendfile(sock.as_raw_fd(), span.file.as_raw_fd(), &mut off, span.len) };
    let n = Errno::result(r)? as usize;
    span.offset += n as u64;
    span.len -= n;
    Ok(n)
}
