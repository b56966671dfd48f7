//! Client connections: who they are, what each is doing, and its bounded buffers.
//!
//! A [`Client`] has an input buffer of at most [`MAX_LINE`] bytes, from which request lines (and
//! the raw payload of `write` requests) are taken (`input.rs`), and an output buffer of pending
//! replies (`output.rs`) that is only added to while it holds less than [`OUT_HIGH`] bytes: a
//! client that does not read its replies stops being served (its requests stay unread in the
//! kernel, its follow stops pulling) until it drains, so it can never make the supervisor grow,
//! block, or starve others. Every socket is nonblocking and written with `MSG_NOSIGNAL`.
//! Accepting connections and checking the peer's credentials is `accept.rs`.
//!
//! This file holds the connection itself: its [`Mode`] (answering requests, waiting for the end
//! or for readiness, following output, closing), the [`Payload`] a `write` still expects, and the
//! poll events it waits for.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use taskpool::output::Cursor;
use taskpool::protocol::MAX_LINE;

mod accept;
mod input;
mod output;
#[cfg(test)]
mod tests;

pub use accept::accept_all;
use output::FileSpan;

/// Stop serving a client (reading requests, pulling follow data) while this much is pending.
pub const OUT_HIGH: usize = 1 << 20;
/// Pull more follow data only while less than this is pending.
pub const FOLLOW_LOW: usize = 256 << 10;
/// The most clients served at once; more are told so and disconnected.
pub const MAX_CLIENTS: usize = 1024;
/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answering requests in order.
    Requests,
    /// A `wait` is pending: `end` goes out when the run ends.
    Waiting,
    /// A `wait_ready` is pending: `ready` goes out when the run is ready, `end` if it ends.
    WaitingReady,
    /// Subscribed to the output from this position.
    Following(Cursor),
    /// Subscribed from this combined offset to a run that has not started yet.
    FollowLater(u64),
    /// Done: close once the pending output is sent.
    Closing,
}

/// Raw bytes that follow a `write` request's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// None expected.
    None,
    /// This many bytes still go to the task's stdin.
    ToStdin(u64),
    /// This many bytes are to be dropped; reply `ok` after them when `ok_after`.
    Discard {
        /// Bytes left.
        left: u64,
        /// Reply `state` error (the stdin closed meanwhile) after them.
        error_after: bool,
    },
}

/// One connection.
pub struct Client {
    sock: OwnedFd,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    /// Dropping the rest of an oversized line.
    discarding: bool,
    /// Raw bytes expected.
    pub payload: Payload,
    out: Vec<u8>,
    sent: usize,
    /// File spans interleaved with `out`, in order.
    spans: VecDeque<FileSpan>,
    /// Bytes of `spans` not sent yet.
    span_bytes: usize,
    /// The last send hit a full socket: wait for POLLOUT.
    blocked: bool,
    /// What the connection is doing.
    pub mode: Mode,
    /// The client shut its side down.
    pub read_eof: bool,
    /// The connection failed or is finished; drop it.
    pub dead: bool,
}

impl Client {
    fn new(sock: OwnedFd) -> Client {
        Client {
            sock,
            inbuf: Vec::new(),
            in_pos: 0,
            in_len: 0,
            discarding: false,
            payload: Payload::None,
            out: Vec::new(),
            sent: 0,
            spans: VecDeque::new(),
            span_bytes: 0,
            blocked: false,
            mode: Mode::Requests,
            read_eof: false,
            dead: false,
        }
    }

    /// The socket.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }

    /// Bytes waiting to be sent (buffered, or in queued file spans).
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent + self.span_bytes
    }

    /// The poll events this client waits for.
    pub fn interest(&self, stdin_room: usize) -> libc::c_short {
        let mut ev = 0;
        let reading = match self.mode {
            // Requests after follow are read and dropped.
            Mode::Following(_) | Mode::FollowLater(_) => true,
            Mode::Requests => {
                self.pending() < OUT_HIGH
                    && self.in_len - self.in_pos < MAX_LINE
                    && !(matches!(self.payload, Payload::ToStdin(_)) && stdin_room == 0)
            }
            Mode::Waiting | Mode::WaitingReady | Mode::Closing => false,
        };
        if reading && !self.read_eof {
            ev |= libc::POLLIN;
        }
        if self.blocked && self.pending() > 0 {
            ev |= libc::POLLOUT;
        }
        ev
    }

    /// Handle poll results for this client.
    pub fn on_events(&mut self, revents: libc::c_short) {
        if revents & libc::POLLOUT != 0 {
            self.blocked = false;
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.fill();
        }
        if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            // Both directions are shut: nothing more can be sent to this client.
            self.dead = true;
        }
    }

    /// Before the supervisor exits: send what the socket takes, and read what the client sent so
    /// that closing does not reset the connection under unread replies.
    pub fn last_words(&mut self) {
        self.flush();
        self.drain_input();
    }
}
