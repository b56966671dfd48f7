//! The two units every option reads: a SIZE in bytes and a DURATION. They live below the job,
//! schedule and limits modules so that each of those can read them without importing another.

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// A SIZE: bytes (`65536`) or binary multiples (`64K`, `1M`, `1MiB`, `2g`).
pub fn parse_size(s: &str) -> Result<u64> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| {
            invalid(format!(
                "bad size {s:?}: {e} (expected bytes such as 65536, or 64K, 1M, 1MiB)"
            ))
        })
}

/// A duration: plain seconds (`90`, `1.5`) or numbers with units (`500ms`, `10s`, `5m`, `1h`,
/// `1h30m`, `2days`), as the `humantime` crate reads them.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| invalid(format!("{s:?} is not a number of seconds")));
    }
    humantime::parse_duration(t).map_err(|e| {
        invalid(format!(
            "bad duration {s:?}: {e} (expected seconds such as 90, or 500ms, 10s, 5m, 1h)"
        ))
    })
}
