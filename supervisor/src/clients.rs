//! Client connections: accepting them (and checking who they are), and each one's bounded buffers.
//!
//! A [`Client`] has an input buffer of at most [`MAX_LINE`] bytes, from which request lines (and
//! the raw payload of `write` requests) are taken, and an output buffer of pending replies that is
//! only added to while it holds less than [`OUT_HIGH`] bytes: a client that does not read its
//! replies stops being served (its requests stay unread in the kernel, its follow stops pulling)
//! until it drains, so it can never make the supervisor grow, block, or starve others. Every
//! socket is nonblocking and written with `MSG_NOSIGNAL`.
//!
//! Follow data can also be queued as a span of a log file ([`Client::queue_file`]): only the
//! frame's header is buffered, and the bytes go from the file (the page cache) to the socket with
//! `sendfile(2)` when their turn comes, without a copy through the supervisor's memory. The file
//! must not change under a queued span (the log cap's punching would; see `requests::feed`).

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, MsgFlags, SockFlag};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use taskpool::output::Cursor;
use taskpool::protocol::{encode_line, Response, MAX_LINE};

/// Stop serving a client (reading requests, pulling follow data) while this much is pending.
pub const OUT_HIGH: usize = 1 << 20;
/// Pull more follow data only while less than this is pending.
pub const FOLLOW_LOW: usize = 256 << 10;
/// The most clients served at once; more are told so and disconnected.
pub const MAX_CLIENTS: usize = 1024;

/// `SO_PEERGROUPS` (Linux 4.13+; the asm-generic value, which x86 and arm share).
const SO_PEERGROUPS: libc::c_int = 59;

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

/// Bytes of a file to send once the output buffer has been sent up to `at`.
struct FileSpan {
    /// Index in the output buffer the span comes after.
    at: usize,
    file: Arc<File>,
    offset: u64,
    len: usize,
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

    /// Read what the socket holds into the input buffer (dropping it when following).
    fn fill(&mut self) {
        if self.in_pos > 0 {
            self.inbuf.copy_within(self.in_pos..self.in_len, 0);
            self.in_len -= self.in_pos;
            self.in_pos = 0;
        }
        if self.in_len == self.inbuf.len() {
            if self.inbuf.len() >= MAX_LINE {
                return;
            }
            let grown = (self.inbuf.len() * 2).clamp(1024, MAX_LINE);
            self.inbuf.resize(grown, 0);
        }
        let space = self.inbuf.len() - self.in_len;
        match nix::unistd::read(self.sock.as_fd(), &mut self.inbuf[self.in_len..]) {
            Ok(0) => self.read_eof = true,
            Ok(n) => {
                self.in_len += n;
                if n == space && self.inbuf.len() < MAX_LINE {
                    // A busy writer (a `write` payload): read bigger pieces from now on.
                    let grown = (self.inbuf.len() * 2).min(MAX_LINE);
                    self.inbuf.resize(grown, 0);
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => self.dead = true,
        }
        if matches!(self.mode, Mode::Following(_) | Mode::Closing) {
            self.in_pos = 0;
            self.in_len = 0;
        }
    }

    /// The unprocessed input bytes.
    pub fn input(&self) -> &[u8] {
        &self.inbuf[self.in_pos..self.in_len]
    }

    /// Mark `n` input bytes as processed.
    pub fn advance(&mut self, n: usize) {
        self.in_pos += n;
        if self.in_pos == self.in_len {
            self.in_pos = 0;
            self.in_len = 0;
        }
    }

    /// The next complete request line (without its newline), if one is buffered. An oversized
    /// line is answered with an error here and dropped as it arrives.
    pub fn take_line(&mut self) -> Option<std::ops::Range<usize>> {
        loop {
            let avail = self.input();
            let nl = avail.iter().position(|&b| b == b'\n');
            if self.discarding {
                match nl {
                    Some(i) => {
                        self.discarding = false;
                        self.advance(i + 1);
                        continue;
                    }
                    None => {
                        let n = avail.len();
                        self.advance(n);
                        return None;
                    }
                }
            }
            return match nl {
                Some(i) => {
                    let start = self.in_pos;
                    self.advance(i + 1);
                    Some(start..start + i)
                }
                None if self.in_len - self.in_pos >= MAX_LINE => {
                    let n = avail.len();
                    self.advance(n);
                    self.discarding = true;
                    self.queue(&Response::error_of(
                        taskpool::ErrorKind::InvalidInput,
                        format!("request line longer than {MAX_LINE} bytes"),
                    ));
                    None
                }
                None => None,
            };
        }
    }

    /// The bytes of a line returned by [`Client::take_line`] (valid until the next read).
    pub fn line(&self, r: std::ops::Range<usize>) -> &[u8] {
        // take_line never compacts, so the range still names the line's bytes.
        &self.inbuf[r]
    }

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

    fn take_line_ready(&self) -> Option<usize> {
        self.input().iter().position(|&b| b == b'\n')
    }

    /// Before the supervisor exits: send what the socket takes, and read what the client sent so
    /// that closing does not reset the connection under unread replies.
    pub fn last_words(&mut self) {
        self.flush();
        self.drain_input();
    }

    /// Read and drop what the client sent: closing a unix socket with unread input makes the
    /// client's next read fail with ECONNRESET instead of returning the replies it was sent.
    fn drain_input(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..64 {
            match nix::unistd::read(self.sock.as_fd(), &mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// Accept every pending connection on `listener`. Peers that are neither this user, root, nor (in
/// a group-shared pool) members of its group get one `permission_denied` error and are closed.
/// Returns `false` when the process is out of file descriptors (stop polling the listener until
/// a client goes away).
pub fn accept_all(
    listener: &OwnedFd,
    shared_gid: Option<u32>,
    hello: &Response,
    clients: &mut Vec<Client>,
) -> bool {
    loop {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = match socket::accept4(listener.as_raw_fd(), flags) {
            // SAFETY: accept4 just returned this descriptor; nothing else owns it.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(Errno::EMFILE) | Err(Errno::ENFILE) | Err(Errno::ENOBUFS) | Err(Errno::ENOMEM) => {
                return false
            }
            Err(_) => return true,
        };
        let mut c = Client::new(fd);
        if !peer_allowed(&c.sock, shared_gid) {
            c.queue(&Response::error_of(
                taskpool::ErrorKind::PermissionDenied,
                "permission denied: this task belongs to another user",
            ));
            c.mode = Mode::Closing;
        } else if clients.len() >= MAX_CLIENTS {
            c.queue(&Response::error_of(
                taskpool::ErrorKind::Unreachable,
                format!("the supervisor already serves {MAX_CLIENTS} clients; try again later"),
            ));
            c.mode = Mode::Closing;
        } else {
            c.queue(hello);
        }
        c.flush();
        if !c.dead {
            clients.push(c);
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

fn peer_allowed(sock: &OwnedFd, shared_gid: Option<u32>) -> bool {
    let Ok(cred) = socket::getsockopt(sock, sockopt::PeerCredentials) else {
        return false;
    };
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        return true;
    }
    match shared_gid {
        Some(gid) => cred.gid() == gid || peer_groups(sock).contains(&gid),
        None => false,
    }
}

/// The peer's supplementary groups (`SO_PEERGROUPS`); empty when they cannot be had.
fn peer_groups(sock: &OwnedFd) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is valid for `len` bytes and the kernel writes at most that many;
        // `len` is a valid socklen_t it updates.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return groups;
        }
        if Errno::last() == Errno::ERANGE && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (Client, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Client::new(OwnedFd::from(ours)), theirs)
    }

    fn lines(c: &mut Client) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = c.take_line() {
            out.push(String::from_utf8_lossy(c.line(r)).into_owned());
        }
        out
    }

    #[test]
    fn request_lines_are_split_across_reads() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"type\":\"info\"}\n{\"ty").unwrap();
        c.on_events(libc::POLLIN);
        assert_eq!(lines(&mut c), vec!["{\"type\":\"info\"}"]);
        peer.write_all(b"pe\":\"wait\"}\n").unwrap();
        c.on_events(libc::POLLIN);
        assert_eq!(lines(&mut c), vec!["{\"type\":\"wait\"}"]);
        assert_eq!(c.input(), b"");
    }

    #[test]
    fn an_oversized_line_gets_an_error_and_is_dropped() {
        let (mut c, mut peer) = pair();
        let writer = std::thread::spawn(move || {
            peer.write_all(&vec![b'x'; MAX_LINE * 3]).unwrap();
            peer.write_all(b"\n{\"type\":\"info\"}\n").unwrap();
            peer
        });
        let mut got = Vec::new();
        while got.is_empty() {
            c.on_events(libc::POLLIN);
            got = lines(&mut c);
        }
        let mut peer = writer.join().unwrap();
        assert_eq!(got, vec!["{\"type\":\"info\"}"]);
        c.flush();
        let mut reply = vec![0u8; c.out.len().max(256)];
        let n = peer.read(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply[..n]);
        assert!(
            text.contains("\"kind\":\"invalid_input\"") && text.contains("longer than"),
            "{text}"
        );
    }

    #[test]
    fn a_client_that_does_not_read_stops_being_served() {
        let (mut c, _peer) = pair();
        assert_ne!(c.interest(0) & libc::POLLIN, 0);
        let big = vec![b'y'; 4 << 20];
        c.queue_data(&Response::Ok, &big, &[]);
        c.flush();
        assert!(
            c.pending() > OUT_HIGH,
            "the socket took {} bytes",
            big.len() - c.pending()
        );
        let ev = c.interest(0);
        assert_eq!(ev & libc::POLLIN, 0, "still reading requests");
        assert_ne!(ev & libc::POLLOUT, 0, "not waiting to send");
        assert!(!c.dead);
    }

    #[test]
    fn a_half_closed_client_is_answered_then_dropped() {
        let (mut c, peer) = pair();
        (&peer).write_all(b"{\"type\":\"info\"}\n").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        c.on_events(libc::POLLIN);
        c.on_events(libc::POLLIN);
        assert!(c.read_eof);
        assert_eq!(lines(&mut c).len(), 1);
        c.queue(&Response::Ok);
        c.flush();
        assert!(c.dead);
    }

    #[test]
    fn file_spans_go_out_in_order_between_buffered_bytes_across_partial_sends() {
        let (mut c, mut peer) = pair();
        let path =
            std::env::temp_dir().join(format!("taskpool-clients-span-{}", std::process::id()));
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
        let mut want = Vec::new();
        let mut expect = |c: &Client, before: usize, extra: &[u8]| {
            want.extend_from_slice(&c.out[before..]);
            want.extend_from_slice(extra);
        };
        // Buffered bytes before a span: partly sent, they are compacted under it.
        c.queue_data(&Response::Ok, &vec![9u8; 300_000], &[]);
        expect(&c, 0, &[]);
        let b = c.out.len();
        c.queue_file(&Response::Ok, &file, 10, 2_000_000);
        expect(&c, b, &body[10..2_000_010]);
        let b = c.out.len();
        c.queue_data(&Response::Ok, b"between", &[]);
        expect(&c, b, &[]);
        let b = c.out.len();
        c.queue_file(&Response::Ok, &file, 2_999_990, 10);
        expect(&c, b, &body[2_999_990..]);
        let b = c.out.len();
        c.queue(&Response::Ok);
        expect(&c, b, &[]);
        eq_pending(&c, want.len());
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; want.len()];
            peer.read_exact(&mut got).unwrap();
            assert!(got == want, "bytes out of order");
        });
        // The socket takes far less than 2 MB at once: the spans are sent in pieces.
        let mut rounds = 0;
        while c.pending() > 0 {
            c.blocked = false;
            c.flush();
            assert!(!c.dead);
            rounds += 1;
            std::thread::yield_now();
        }
        reader.join().unwrap();
        assert!(rounds > 1, "sent in one go");
        assert!(c.spans.is_empty() && c.out.is_empty());
    }

    fn eq_pending(c: &Client, n: usize) {
        assert_eq!(c.pending(), n, "pending");
    }
}
