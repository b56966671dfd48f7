//! The value parsers clap calls for arguments with a syntax of their own: sizes, durations,
//! times, signals, `K=V` pairs, environment entries, JSON, group names, and the `meta` items.
//! They only turn text into values the library understands; they know nothing of the argument
//! structs ([`crate::args`] names them, [`crate::options`] converts the parsed arguments). Parsers
//! return clap-friendly `String` errors, so a bad value is a usage error (exit status 2) naming
//! the option at fault.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;
use taskpool::record::Timestamp;
use taskpool::{Backoff, Behavior, RestartPolicy, State, Status, Stdin};

/// A SIZE: bytes (`65536`) or binary multiples (`64K`, `1M`, `1MiB`, `2g`).
pub fn parse_limit(s: &str) -> Result<(String, taskpool::limits::Limit), String> {
    taskpool::limits::parse_limit(s).map_err(message)
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    taskpool::job::parse_size(s).map_err(message)
}

/// The library error's one-line message, for clap.
fn message(e: taskpool::Error) -> String {
    e.message().to_owned()
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
    taskpool::schedule::parse_duration(s).map_err(message)
}

/// A duration that is not zero (`--every`, `--timeout`, `--hook-timeout`).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    taskpool::schedule::parse_positive_duration(s).map_err(message)
}

/// `--at TIME`: see [`taskpool::schedule::parse_at`] for the forms; in the future.
pub fn parse_at(s: &str) -> Result<Timestamp, String> {
    taskpool::schedule::parse_at(s, chrono::Local::now()).map_err(message)
}

/// `--cron EXPR`: a cron expression that fires again.
pub fn parse_cron(s: &str) -> Result<String, String> {
    taskpool::schedule::check_cron(s).map_err(message)?;
    Ok(s.to_owned())
}

/// `--backoff INITIAL..MAX`.
pub fn parse_backoff(s: &str) -> Result<Backoff, String> {
    taskpool::schedule::parse_backoff(s).map_err(message)
}

/// `--group NAME`.
pub fn parse_group(s: &str) -> Result<String, String> {
    taskpool::schedule::check_group_name(s).map_err(message)?;
    Ok(s.to_owned())
}

/// One exit code of `--stop-on` and `--warn-codes` (the lists are split at commas by clap).
pub fn parse_exit_code(s: &str) -> Result<i32, String> {
    match taskpool::job::parse_codes(s).map_err(message)?[..] {
        [code] => Ok(code),
        _ => Err(format!("{s:?} is not one exit code")),
    }
}

/// `--restart never|on-failure|always`.
pub fn restart_parser() -> impl TypedValueParser<Value = RestartPolicy> {
    let all = [
        RestartPolicy::Never,
        RestartPolicy::OnFailure,
        RestartPolicy::Always,
    ];
    PossibleValuesParser::new(all.map(RestartPolicy::as_str)).map(move |s| {
        all.into_iter()
            .find(|p| p.as_str() == s)
            .expect("a possible value")
    })
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

/// `attach --detach-key`: a control character, as `ctrl-X` or `^X` (X one of `@`, a letter,
/// `[`, `\\`, `]`, `^`, `_`), returned as the byte the terminal sends for it.
pub fn parse_detach_key(s: &str) -> Result<u8, String> {
    let lower = s.to_ascii_lowercase();
    let key = lower
        .strip_prefix("ctrl-")
        .or_else(|| lower.strip_prefix('^'))
        .filter(|k| k.len() == 1)
        .map(|k| k.as_bytes()[0].to_ascii_uppercase());
    match key {
        Some(k @ b'@'..=b'_') => Ok(k - b'@'),
        _ => Err(format!(
            "detach key {s:?}: expected a control key such as ctrl-] or ^A"
        )),
    }
}

/// `--pty-size COLSxROWS`.
pub fn parse_pty_size(s: &str) -> Result<taskpool::pty::PtySize, String> {
    s.parse()
        .map_err(|e: taskpool::Error| e.message().to_owned())
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
    PossibleValuesParser::new(State::ALL.map(State::as_str)).map(|s| {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .expect("a possible value")
    })
}

/// `--status` of `ls`.
pub fn status_parser() -> impl TypedValueParser<Value = Status> {
    PossibleValuesParser::new(Status::ALL.map(Status::as_str)).map(|s| {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .expect("a possible value")
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

/// A group NAME (`--group`, `group set NAME`).
pub fn parse_name(s: &str) -> Result<String, String> {
    taskpool::group::check_name(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.message().to_owned())
}

/// An engine name: `local` or `slurm`.
pub fn parse_engine(s: &str) -> Result<taskpool::Engine, String> {
    taskpool::Engine::parse(s).map_err(|e| e.message().to_owned())
}

/// A pool's engine setting: an engine, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSetting(pub Option<taskpool::Engine>);

/// `local`, `slurm`, or `none` (no setting).
pub fn parse_engine_setting(s: &str) -> Result<EngineSetting, String> {
    if s == "none" {
        return Ok(EngineSetting(None));
    }
    taskpool::Engine::parse(s)
        .map(|e| EngineSetting(Some(e)))
        .map_err(|_| format!("unknown engine {s:?} (expected local, slurm or none)"))
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

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_name("nightly").unwrap(), "nightly");
        assert!(parse_name("a/b").unwrap_err().contains("bad group name"));
    }
}
