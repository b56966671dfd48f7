//! Readiness: how a task tells its supervisor it is ready (`--ready-fd N`, `--notify`), and the
//! notification datagram's format. Readiness is per run: the run record keeps `ready_at`, and
//! `info` shows `ready` and `ready_at` for the current run.
//!
//! - `--ready-fd N`, like s6's notification-fd: the task inherits the write end of a pipe as fd
//!   N and writes a newline to it when ready (anything before the newline is ignored; closing
//!   the fd without one means it never became ready in this run).
//! - `--notify`, like systemd's `NOTIFY_SOCKET`: the task finds in `NOTIFY_SOCKET` the address
//!   of a datagram socket (a path in the task's directory, or `@NAME` in the abstract namespace
//!   when the path is too long for a socket address) and sends newline-separated `KEY=VALUE`
//!   assignments: `READY=1` makes the run ready, `STATUS=TEXT` sets meta `status`; other keys are
//!   ignored. Only datagrams whose sender's uid is the owner's are read, up to
//!   [`MAX_DATAGRAM`] bytes; file descriptors passed along are closed.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// The largest notification datagram read; a longer one is dropped whole.
pub const MAX_DATAGRAM: usize = 4096;

/// The environment variable naming the notification socket (as systemd's).
pub const ENV_NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// How a task signals readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// A newline written to this fd of the task (`--ready-fd N`).
    Fd(i32),
    /// `READY=1` sent to `NOTIFY_SOCKET` (`--notify`).
    Notify,
}

impl Readiness {
    /// Check a `--ready-fd` number: 3 or above (0–2 are the standard streams) and below 1024.
    pub fn fd(n: i32) -> Result<Readiness> {
        if !(3..1024).contains(&n) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "ready fd {n}: must be from 3 to 1023 (0, 1 and 2 are the standard streams)"
                ),
            ));
        }
        Ok(Readiness::Fd(n))
    }
}

/// What one notification datagram says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `READY=1` was among its assignments.
    pub ready: bool,
    /// The last `STATUS=` value, if any.
    pub status: Option<String>,
}

/// Parse a notification datagram: newline-separated `KEY=VALUE`; unknown keys and lines that are
/// not assignments are ignored, and so is text that is not UTF-8 in a `STATUS`.
pub fn parse_notice(datagram: &[u8]) -> Notice {
    let mut n = Notice::default();
    for line in datagram.split(|&b| b == b'\n') {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        match key {
            b"READY" => n.ready |= value == b"1",
            b"STATUS" => {
                if let Ok(s) = std::str::from_utf8(value) {
                    n.status = Some(s.to_owned());
                }
            }
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_take_ready_and_status_and_ignore_the_rest() {
        let n = parse_notice(b"STATUS=loading\nMAINPID=4\nREADY=1\nnonsense\n");
        assert_eq!(
            n,
            Notice {
                ready: true,
                status: Some("loading".into())
            }
        );
        assert!(!parse_notice(b"READY=0").ready);
        assert!(!parse_notice(b"READY=11").ready);
        assert_eq!(parse_notice(b"STATUS=a=b").status.as_deref(), Some("a=b"));
        assert_eq!(parse_notice(b"STATUS=\xff").status, None);
    }

    #[test]
    fn ready_fds_exclude_the_standard_streams() {
        assert!(Readiness::fd(3).is_ok());
        for bad in [-1, 0, 2, 1024] {
            let e = Readiness::fd(bad).unwrap_err();
            assert!(e.message().contains(&format!("ready fd {bad}")), "{e}");
        }
    }
}
