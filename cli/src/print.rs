//! Writing to our stdout: JSON documents, lines, and raw output bytes. Every write's error is
//! returned as a bare `std::io::Error`, so `main` can tell a closed stdout (broken pipe: stop
//! quietly) from a real failure.

use serde::Serialize;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;

/// Print a value as pretty JSON on its own line(s).
pub fn json(value: &impl Serialize) -> io::Result<()> {
    // Stdout is line-buffered: writing pretty JSON straight to it costs one write(2) per line
    // (about 40 per task in `ls --json`). Build the document, then write it at once.
    let mut doc = serde_json::to_vec_pretty(value)?;
    doc.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&doc)?;
    out.flush()
}

/// Print a value as one compact JSON line (for streams of events) and flush it.
pub fn json_line(value: &impl Serialize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Print one line of text.
pub fn line(text: impl std::fmt::Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Write bytes exactly as they are and flush them (output is streamed, not buffered up).
pub fn raw(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    out.flush()
}

/// Output bytes in JSON: a string when they are UTF-8, else `{"base64": "..."}` (the library's
/// byte-exact form, see `docs/protocol.md`).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Data(#[serde(with = "taskpool::wire::os")] pub OsString);

impl Data {
    /// Wrap output bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Data(OsString::from_vec(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_text_or_base64() {
        let t = serde_json::to_string(&Data::new(b"hi\n".to_vec())).unwrap();
        assert_eq!(t, r#""hi\n""#);
        let b = serde_json::to_string(&Data::new(vec![0xff, b'a', 0])).unwrap();
        assert_eq!(b, r#"{"base64":"/2EA"}"#);
    }
}
