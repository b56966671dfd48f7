//! Signal names and numbers: `TERM`, `SIGTERM` and `15` all name the same signal. Parsing is shared
//! by the CLI, the library and the supervisor so that every door accepts the same spellings.

use crate::error::{Error, ErrorKind, Result};
use nix::sys::signal::Signal;
use std::str::FromStr;

/// Parse a signal given by name (with or without `SIG`, any case) or by number.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("unknown signal number {n}"),
            )
        });
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("unknown signal name {s:?}"),
        )
    })
}

/// The conventional name of a signal, e.g. `SIGTERM`.
pub fn signal_name(sig: Signal) -> &'static str {
    sig.as_str()
}

/// The name of a raw signal number, or its number as text when it has no name.
pub fn signal_name_raw(n: i32) -> String {
    Signal::try_from(n)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("2").unwrap(), Signal::SIGINT);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("999").is_err());
    }
}
