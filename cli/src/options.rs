//! From command-line text to validated values the library understands: the value parsers clap
//! calls for sizes, durations, signals, `K=V` pairs, environment entries and JSON, and the one
//! conversion of [`SpawnArgs`] into [`SpawnOptions`]. Parsers return clap-friendly `String`
//! errors, so a bad value is a usage error (exit status 2) naming the option at fault.

use crate::args::{CommandArgs, SpawnArgs};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;
use taskpool::{Behavior, SpawnOptions, State, Status, Stdin};

/// A SIZE: bytes (`65536`) or binary multiples (`64K`, `1M`, `1MiB`, `2g`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{e} (expected bytes such as 65536, or 64K, 1M, 1MiB)"))
}

/// A memory buffer size: a SIZE of at least one byte.
pub fn parse_buffer_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the buffer must hold at least 1 byte".into()),
        n => Ok(n),
    }
}

/// A duration: plain seconds (`90`, `1.5`) or a number with units (`500ms`, `10s`, `5m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| format!("{s:?} is not a number of seconds"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{e} (expected seconds such as 90, or 500ms, 10s, 5m, 1h)"))
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    taskpool::signal::parse_signal(s).map_err(|e| e.message().to_owned())
}

/// One `--meta KEY=VALUE` (VALUE as JSON when it parses, else a string).
pub fn parse_meta_assignment(s: &str) -> Result<(String, Value), String> {
    taskpool::meta::parse_assignment(s).map_err(|e| e.message().to_owned())
}

/// A JSON text that must be an object.
pub fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
    taskpool::meta::parse_object(s).map_err(|e| {
        // The library's message speaks of meta; this parser also serves --where.
        e.message().replacen("meta ", "the value ", 1)
    })
}

/// `--stdin pipe|null|FILE` (a file literally named `pipe` is `./pipe`).
pub fn parse_stdin(s: &str) -> Result<Stdin, String> {
    Ok(match s {
        "pipe" => Stdin::Pipe,
        "null" => Stdin::Null,
        "" => return Err("expected pipe, null or a file name".into()),
        path => Stdin::File(path.into()),
    })
}

/// `--behavior daemon|background|foreground`.
pub fn behavior_parser() -> impl TypedValueParser<Value = Behavior> {
    PossibleValuesParser::new(["daemon", "background", "foreground"]).map(|s| match s.as_str() {
        "background" => Behavior::Background,
        "foreground" => Behavior::Foreground,
        _ => Behavior::Daemon,
    })
}

/// `--state` of `ls`.
pub fn state_parser() -> impl TypedValueParser<Value = State> {
    PossibleValuesParser::new(["running", "paused", "exited", "lost"]).map(|s| match s.as_str() {
        "running" => State::Running,
        "paused" => State::Paused,
        "exited" => State::Exited,
        _ => State::Lost,
    })
}

/// `--status` of `ls`.
pub fn status_parser() -> impl TypedValueParser<Value = Status> {
    PossibleValuesParser::new(["success", "failure", "killed", "lost"]).map(|s| match s.as_str() {
        "success" => Status::Success,
        "failure" => Status::Failure,
        "killed" => Status::Killed,
        _ => Status::Lost,
    })
}

/// Split `NAME=VALUE` at the first `=`, keeping both sides' bytes exactly.
pub fn split_env(arg: &OsStr) -> Result<(OsString, OsString), String> {
    let bytes = arg.as_bytes();
    match bytes.iter().position(|&b| b == b'=') {
        Some(0) => Err(format!("{arg:?} has an empty variable name")),
        Some(i) => Ok((
            OsString::from_vec(bytes[..i].to_vec()),
            OsString::from_vec(bytes[i + 1..].to_vec()),
        )),
        None => Err(format!("{arg:?} is not of the form NAME=VALUE")),
    }
}

/// The value parser of `--env`: like [`split_env`], on the raw argument (not necessarily UTF-8).
#[derive(Debug, Clone, Copy)]
pub struct EnvParser;

impl TypedValueParser for EnvParser {
    type Value = (OsString, OsString);

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        split_env(value).map_err(|msg| {
            let name = arg.map(|a| a.to_string()).unwrap_or_else(|| "--env".into());
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}': {msg}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// What `meta`'s positional arguments say: the task (when one argument has no `=`) and the
/// assignments, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaItems {
    /// The task id, if one was given.
    pub id: Option<u64>,
    /// The keys to set (`null` deletes).
    pub patch: Map<String, Value>,
}

/// Tell the id from the assignments by the presence of `=`: at most one argument without `=`,
/// the first one, and it must be a task id.
pub fn split_meta_items(items: &[String]) -> Result<MetaItems, String> {
    let mut id = None;
    let mut patch = Map::new();
    for (i, item) in items.iter().enumerate() {
        if item.contains('=') {
            let (k, v) =
                taskpool::meta::parse_assignment(item).map_err(|e| e.message().to_owned())?;
            patch.insert(k, v);
        } else if i == 0 {
            id = Some(
                item.parse::<u64>()
                    .map_err(|_| format!("{item:?} is neither a task id nor KEY=VALUE"))?,
            );
        } else {
            return Err(format!(
                "{item:?} is not of the form KEY=VALUE (the task id, if any, comes first)"
            ));
        }
    }
    Ok(MetaItems { id, patch })
}

impl SpawnArgs {
    /// The library's options for these arguments; the behavior defaults to daemon.
    pub fn to_options(&self) -> SpawnOptions {
        let mut o = match &self.command {
            CommandArgs {
                shell: Some(script),
                ..
            } => SpawnOptions::shell(script.clone()),
            CommandArgs { argv, .. } => SpawnOptions::exec(argv.iter().cloned()),
        };
        o.name = self.name.clone();
        o.meta = self.meta_json.clone().unwrap_or_default();
        for (k, v) in &self.meta {
            o.meta.insert(k.clone(), v.clone());
        }
        o.env = self.env.clone();
        o.clear_env = self.clear_env;
        o.cwd = self.cwd.clone();
        if let Some(s) = &self.stdin {
            o.stdin = s.clone();
        }
        o.lockfile = self.lockfile.clone();
        if let Some(b) = self.buffer {
            o.buffer_size = b;
        }
        o.log_max = self.log_max;
        o.merge_stderr = self.merge_stderr;
        o.linger = self.linger;
        if let Some(g) = self.grace {
            o.grace = g;
        }
        if let Some(b) = self.behavior {
            o.behavior = b;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_accept_bytes_and_binary_multiples() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1.2.3").is_err());
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigkill"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn env_splits_at_the_first_equals_and_keeps_bytes() {
        assert_eq!(
            split_env(OsStr::new("A=b=c")),
            Ok((OsString::from("A"), OsString::from("b=c")))
        );
        assert_eq!(
            split_env(OsStr::new("EMPTY=")),
            Ok((OsString::from("EMPTY"), OsString::new()))
        );
        let raw = OsString::from_vec(b"K=\xff\x00x".to_vec());
        assert_eq!(
            split_env(&raw),
            Ok((
                OsString::from("K"),
                OsString::from_vec(b"\xff\x00x".to_vec())
            ))
        );
        assert!(split_env(OsStr::new("=v")).is_err());
        assert!(split_env(OsStr::new("NOVALUE")).is_err());
    }

    #[test]
    fn meta_items_tell_the_id_by_the_absence_of_equals() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = split_meta_items(&items(&["7", "progress=40", "note=hi there"])).unwrap();
        assert_eq!(m.id, Some(7));
        assert_eq!(
            Value::Object(m.patch),
            json!({"progress": 40, "note": "hi there"})
        );
        let m = split_meta_items(&items(&["progress=40", "gone=null"])).unwrap();
        assert_eq!(m.id, None);
        assert_eq!(
            Value::Object(m.patch),
            json!({"progress": 40, "gone": null})
        );
        // A value that is itself an assignment stays a value.
        let m = split_meta_items(&items(&["expr=a=b"])).unwrap();
        assert_eq!(Value::Object(m.patch), json!({"expr": "a=b"}));
        assert_eq!(split_meta_items(&items(&["3"])).unwrap().id, Some(3));
        assert!(split_meta_items(&items(&["progress"])).is_err());
        assert!(split_meta_items(&items(&["1", "2"])).is_err());
        assert!(split_meta_items(&items(&["a=1", "5"])).is_err());
        assert!(split_meta_items(&items(&["=1"])).is_err());
    }

    #[test]
    fn stdin_forms() {
        assert_eq!(parse_stdin("pipe"), Ok(Stdin::Pipe));
        assert_eq!(parse_stdin("null"), Ok(Stdin::Null));
        assert_eq!(parse_stdin("./pipe"), Ok(Stdin::File("./pipe".into())));
    }

    #[test]
    fn json_objects_only() {
        assert_eq!(
            parse_json_object(r#"{"a":1}"#).map(Value::Object),
            Ok(json!({"a": 1}))
        );
        assert!(parse_json_object("[1]").is_err());
        assert!(parse_json_object("{").is_err());
    }
}
