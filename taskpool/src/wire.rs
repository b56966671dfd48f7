//! Byte-exact JSON forms for values that are not always UTF-8: arguments, environment entries and
//! paths. A value that is valid UTF-8 is a plain JSON string; anything else is the object
//! `{"base64": "..."}` holding its exact bytes. Both forms are documented in `docs/protocol.md`.

use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

#[derive(Serialize)]
#[serde(untagged)]
enum Form {
    Text(String),
    Raw { base64: String },
}

/// Read by hand rather than derived: an untagged derive buffers every value and tries each form
/// in turn, and a record holds two of these per environment variable, so `ls` paid for that on
/// every task. A string is `Text`; a map is `Raw` (its `base64` key; other keys are ignored).
impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Form, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Form;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or {\"base64\": \"...\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Form, E> {
                Ok(Form::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Form, E> {
                Ok(Form::Text(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Form, A::Error> {
                let mut base64 = None;
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "base64" {
                        base64 = Some(m.next_value::<String>()?);
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                base64
                    .map(|base64| Form::Raw { base64 })
                    .ok_or_else(|| A::Error::missing_field("base64"))
            }
        }
        d.deserialize_any(Visit)
    }
}

fn to_form(s: &OsStr) -> Form {
    match s.to_str() {
        Some(t) => Form::Text(t.to_owned()),
        None => Form::Raw {
            base64: base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
        },
    }
}

fn from_form<E: serde::de::Error>(f: Form) -> Result<OsString, E> {
    match f {
        Form::Text(t) => Ok(OsString::from(t)),
        Form::Raw { base64 } => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map(OsString::from_vec)
            .map_err(|e| E::custom(format!("bad base64 value: {e}"))),
    }
}

/// Serde helpers for one `OsString` (`#[serde(with = "wire::os")]`).
pub mod os {
    use super::*;
    /// Serialize an `OsStr` in its byte-exact form.
    pub fn serialize<S: Serializer>(v: &OsStr, s: S) -> Result<S::Ok, S::Error> {
        to_form(v).serialize(s)
    }
    /// Deserialize an `OsString` from either form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OsString, D::Error> {
        from_form(Form::deserialize(d)?)
    }
}

/// Serde helpers for an optional path (`#[serde(with = "wire::opt_path")]`).
pub mod opt_path {
    use super::*;
    /// Serialize an optional path in its byte-exact form, `null` when absent.
    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|p| to_form(p.as_os_str())).serialize(s)
    }
    /// Deserialize an optional path from either form or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Option::<Form>::deserialize(d)?
            .map(|f| from_form(f).map(PathBuf::from))
            .transpose()
    }
}

/// Serde helpers for a path (`#[serde(with = "wire::path")]`).
pub mod path {
    use super::*;
    /// Serialize a path in its byte-exact form.
    pub fn serialize<S: Serializer>(v: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
        to_form(v.as_os_str()).serialize(s)
    }
    /// Deserialize a path from either form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        from_form(Form::deserialize(d)?).map(PathBuf::from)
    }
}

/// Serde helpers for a list of `OsString`s, such as an argv (`#[serde(with = "wire::os_vec")]`).
pub mod os_vec {
    use super::*;
    /// Serialize each element in its byte-exact form.
    pub fn serialize<S: Serializer>(v: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| to_form(x)))
    }
    /// Deserialize a list of elements in either form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        Vec::<Form>::deserialize(d)?
            .into_iter()
            .map(from_form)
            .collect()
    }
}

/// Serde helpers for environment pairs, as a list of `[name, value]` (`#[serde(with = "wire::env")]`).
pub mod env {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static SKIP: Cell<bool> = const { Cell::new(false) };
    }

    /// While a guard lives, environments on this thread deserialize as empty: their JSON is
    /// skipped, not parsed. For listings, which show everything in a record but its environment
    /// (most of its bytes: two strings per variable).
    pub(crate) struct SkipGuard(bool);

    impl SkipGuard {
        pub(crate) fn new() -> SkipGuard {
            SkipGuard(SKIP.with(|s| s.replace(true)))
        }
    }

    impl Drop for SkipGuard {
        fn drop(&mut self) {
            SKIP.with(|s| s.set(self.0));
        }
    }

    /// Serialize each pair as a two-element array.
    pub fn serialize<S: Serializer>(v: &[(OsString, OsString)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(k, x)| (to_form(k), to_form(x))))
    }
    /// Deserialize a list of two-element arrays.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(OsString, OsString)>, D::Error> {
        if SKIP.with(|s| s.get()) {
            serde::de::IgnoredAny::deserialize(d)?;
            return Ok(Vec::new());
        }
        Vec::<(Form, Form)>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((from_form(k)?, from_form(v)?)))
            .collect::<Result<_, _>>()
            .map_err(|e: serde_json::Error| D::Error::custom(e))
    }
}

/// Render bytes for a terminal: valid UTF-8 stays as is except control characters, which are
/// escaped (`\n`, `\t`, `\x1b`…); invalid bytes become `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "os_vec")]
        argv: Vec<OsString>,
    }

    #[test]
    fn non_utf8_round_trips_exactly() {
        let t = T {
            argv: vec![
                OsString::from("echo"),
                OsString::from_vec(vec![0xff, b'a', 0]),
            ],
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"argv":["echo",{"base64":"/2EA"}]}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
    }

    #[test]
    fn escape_shows_controls_and_bad_bytes() {
        assert_eq!(escape_bytes(b"a\x1b[31mb\xffc\n"), "a\\u{1b}[31mb\\xffc\\n");
    }
}
