//! Terminals: a task spawned with `--pty` runs on a pseudo-terminal its supervisor owns, as the
//! leader of a session of its own with the terminal as its controlling terminal. Its stdin,
//! stdout and stderr are the terminal, so its output is one stream (captured as stdout; stderr is
//! merged by the terminal itself), `send` writes to the terminal as if typed, and `send --eof`
//! types the terminal's end-of-file character (VEOF, normally Ctrl-D). The run's end is the
//! terminal's end: once every process holding it has exited, reading it fails with `EIO`.
//!
//! This module holds what crosses process boundaries: the window size ([`PtySize`], the record's
//! and info's `pty`), and its `COLSxROWS` form.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

/// A terminal's window size, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PtySize {
    /// Columns (characters per line).
    pub cols: u16,
    /// Rows (lines).
    pub rows: u16,
}

impl Default for PtySize {
    /// 80 columns, 24 rows: the size of a terminal nobody has resized.
    fn default() -> Self {
        PtySize { cols: 80, rows: 24 }
    }
}

impl std::fmt::Display for PtySize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.cols, self.rows)
    }
}

impl std::str::FromStr for PtySize {
    type Err = Error;

    /// `COLSxROWS`, each from 1 to 65535: `80x24`, `132x43`.
    fn from_str(s: &str) -> Result<PtySize> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("pty size {s:?}: {why} (the form is COLSxROWS, e.g. 80x24)"),
            )
        };
        let (cols, rows) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| bad("no 'x' between columns and rows"))?;
        let number = |t: &str, what: &str| match t.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("{what} must be a number from 1 to 65535"))),
            Ok(n) => Ok(n),
        };
        Ok(PtySize {
            cols: number(cols, "columns")?,
            rows: number(rows, "rows")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_print_as_cols_x_rows() {
        let s: PtySize = "132x43".parse().unwrap();
        assert_eq!(
            s,
            PtySize {
                cols: 132,
                rows: 43
            }
        );
        assert_eq!(s.to_string(), "132x43");
        assert_eq!(PtySize::default().to_string(), "80x24");
        for bad in [
            "80", "0x24", "80x0", "x24", "80x", "80x24x1", "70000x24", "-1x5",
        ] {
            let e = bad.parse::<PtySize>().unwrap_err();
            assert!(e.message().contains("COLSxROWS"), "{bad}: {e}");
        }
    }
}
