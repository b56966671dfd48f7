//! A client's input: reading its socket into the bounded input buffer, and taking request lines
//! (and `write` payload bytes) from it. A line longer than [`MAX_LINE`] is answered with an
//! error and dropped as it arrives; input after a `follow` is read and dropped.

use super::{Client, Mode};
use nix::errno::Errno;
use std::os::fd::AsFd;
use taskpool::protocol::{Response, MAX_LINE};

impl Client {
    /// Read what the socket holds into the input buffer (dropping it when following).
    pub(super) fn fill(&mut self) {
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

    pub(super) fn take_line_ready(&self) -> Option<usize> {
        self.input().iter().position(|&b| b == b'\n')
    }

    /// Read and drop what the client sent: closing a unix socket with unread input makes the
    /// client's next read fail with ECONNRESET instead of returning the replies it was sent.
    pub(super) fn drain_input(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..64 {
            match nix::unistd::read(self.sock.as_fd(), &mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}
