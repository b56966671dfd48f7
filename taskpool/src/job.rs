//! Job files: every spawn option as one JSON object (`taskpool spawn --file`, `taskpool watch`),
//! so any language can submit a task by writing JSON. The schema is `docs/job.schema.json`, the
//! guide `docs/jobs.md`. This module also owns the textual forms that job files and the command
//! line share: sizes ([`parse_size`](crate::units::parse_size)) and exit-code lists ([`parse_codes`]); durations and backoff
//! ranges are in [`crate::schedule`].
//!
//! Relative paths (`cwd`, `lockfile`, `stdin.file`) are resolved against the `base_dir` given to
//! [`Job::to_options`]: the directory holding the job file for `spawn --file`, the watched
//! directory for `watch`. Without `cwd` the task runs in the submitter's working directory.

use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Hooks, RestartPolicy};
use crate::record::{Behavior, Command, Stdin};
use crate::schedule;
use crate::spawn::SpawnOptions;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest job file read: 1 MiB.
pub const MAX_JOB_FILE: u64 = 1024 * 1024;

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// What a job runs: a shell string (`/bin/sh -c`) or an argv.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum JobCommand {
    /// Run with `/bin/sh -c`.
    Shell(String),
    /// Executed directly (the program searched on `PATH` when it has no slash).
    Argv(Vec<String>),
}

/// A duration or size: a number (seconds, or bytes) or a string with units (`"1h30m"`, `"1M"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// Seconds, or bytes.
    Number(serde_json::Number),
    /// A number with units.
    Text(String),
}

impl Amount {
    fn text(&self) -> String {
        match self {
            Amount::Number(n) => n.to_string(),
            Amount::Text(s) => s.clone(),
        }
    }

    fn duration(&self, key: &str) -> Result<std::time::Duration> {
        schedule::parse_duration(&self.text()).map_err(|e| e.context(key))
    }

    fn positive_duration(&self, key: &str) -> Result<std::time::Duration> {
        schedule::parse_positive_duration(&self.text()).map_err(|e| e.context(key))
    }

    fn size(&self, key: &str) -> Result<u64> {
        parse_size(&self.text()).map_err(|e| e.context(key))
    }
}

/// A job file: every spawn option as JSON. Unknown keys are refused; see `docs/jobs.md`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// What to run (required unless the command line gives it).
    pub command: Option<JobCommand>,
    /// A human name.
    pub name: Option<String>,
    /// The working directory (relative: to the base directory).
    pub cwd: Option<PathBuf>,
    /// Environment variables to add.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start from an empty environment.
    #[serde(default)]
    pub clear_env: bool,
    /// Initial meta (an object).
    pub meta: Option<Map<String, Value>>,
    /// `"pipe"`, `"null"` or `{"file": PATH}`.
    pub stdin: Option<Stdin>,
    /// A lock file held while the task runs.
    pub lockfile: Option<PathBuf>,
    /// Wait for the lock file instead of failing (needs `lockfile`).
    #[serde(default)]
    pub wait_lock: bool,
    /// Bytes of each stream kept in memory.
    pub buffer: Option<Amount>,
    /// Cap on each stream's on-disk log.
    pub log_max: Option<Amount>,
    /// Merge stderr into stdout.
    #[serde(default)]
    pub merge_stderr: bool,
    /// Resource limits: `{"nofile": 16, "cpu": "10:20", "memory": "1G"}` (`SOFT[:HARD]`).
    #[serde(default)]
    pub limits: BTreeMap<String, Amount>,
    /// The nice value (-20 to 19).
    pub nice: Option<i32>,
    /// The OOM score adjustment (-1000 to 1000).
    pub oom_score_adj: Option<i32>,
    /// `--ready-fd N`.
    pub ready_fd: Option<i32>,
    /// `--notify`.
    #[serde(default)]
    pub notify: bool,
    /// `--pty`: run on a pseudo-terminal (its stdin is the terminal: no `stdin` key with it).
    #[serde(default)]
    pub pty: bool,
    /// `--pty-size`: the terminal's size, `"COLSxROWS"` (implies `pty`).
    pub pty_size: Option<String>,
    /// Keep the supervisor serving this long after the end.
    pub linger: Option<Amount>,
    /// Grace between INT, TERM and KILL.
    pub grace: Option<Amount>,
    /// `daemon`, `background` or `foreground`.
    pub behavior: Option<Behavior>,
    /// The group whose limit the task counts against.
    pub group: Option<String>,
    /// Queue priority within the group.
    #[serde(default)]
    pub priority: i32,
    /// Predecessors that must end `success` or `warning`.
    #[serde(default)]
    pub after: Vec<u64>,
    /// Predecessors that must end, whatever the status.
    #[serde(default)]
    pub after_any: Vec<u64>,
    /// Predecessors that must end `failure`, `killed`, `timeout` or `lost`.
    #[serde(default)]
    pub after_failure: Vec<u64>,
    /// Start no earlier than this long after submission (exclusive with `at`).
    pub delay: Option<Amount>,
    /// Start no earlier than this time ([`schedule::parse_at`] forms; exclusive with `delay`).
    pub at: Option<String>,
    /// Run whenever this cron expression matches (exclusive with `every`).
    pub cron: Option<String>,
    /// Run every so long (exclusive with `cron`).
    pub every: Option<Amount>,
    /// With `every`: run once at once too.
    #[serde(default)]
    pub now: bool,
    /// Stop a recurring task after this many runs.
    pub max_runs: Option<u32>,
    /// Exit codes after which a recurring task stops.
    #[serde(default)]
    pub stop_on: Vec<i32>,
    /// `never`, `on-failure` or `always`.
    pub restart: Option<RestartPolicy>,
    /// The most restarts after one start.
    pub max_restarts: Option<u32>,
    /// `"INITIAL..MAX"`, e.g. `"1s..5m"`.
    pub backoff: Option<String>,
    /// Terminate a run that lasts longer (status `timeout`).
    pub timeout: Option<Amount>,
    /// Exit codes meaning success with warnings.
    #[serde(default)]
    pub warn_codes: Vec<i32>,
    /// Hook run after a `success` or `warning` end.
    pub on_success: Option<String>,
    /// Hook run after a `failure`, `killed` or `timeout` end.
    pub on_failure: Option<String>,
    /// Hook run after every end.
    pub on_exit: Option<String>,
    /// How long a hook may run.
    pub hook_timeout: Option<Amount>,
    /// `"local"` or `"slurm"` (see [`crate::engine`]).
    pub engine: Option<crate::engine::Engine>,
    /// Arguments added to sbatch, after the mapped ones.
    #[serde(default)]
    pub slurm_args: Vec<String>,
}

impl Job {
    /// Parse a job file's bytes (UTF-8 JSON, one object). Errors are one line naming the key or
    /// the position at fault.
    pub fn parse(bytes: &[u8]) -> Result<Job> {
        serde_json::from_slice(bytes).map_err(|e| {
            let text = e.to_string();
            // serde lists every known key after an unknown one: keep the line short.
            let text = match (text.find("unknown field"), text.find(", expected")) {
                (Some(_), Some(cut)) => {
                    let at = text.rfind(" at line ").map_or("", |i| &text[i..]);
                    format!("{}{at}", &text[..cut])
                }
                _ => text,
            };
            invalid(format!("bad job file: {text}"))
        })
    }

    /// Read and parse the job file at `path` (at most [`MAX_JOB_FILE`] bytes).
    pub fn load(path: &Path) -> Result<Job> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| Error::path(path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_JOB_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::path(path, e))?;
        if bytes.len() as u64 > MAX_JOB_FILE {
            return Err(invalid(format!(
                "job file {} is larger than 1 MiB",
                path.display()
            )));
        }
        Job::parse(&bytes).map_err(|e| e.context(path.display()))
    }

    /// The spawn options this job describes, relative paths resolved against `base_dir`, times
    /// (`delay`, `at`) against now. Refuses `delay` with `at`, `cron` with `every`, `now`
    /// without `every`, `wait_lock` without `lockfile`, and a missing `command`.
    pub fn to_options(&self, base_dir: &Path) -> Result<SpawnOptions> {
        let command = match &self.command {
            Some(c) => c,
            None => return Err(invalid("the job has no \"command\"".into())),
        };
        self.options_with(
            match command {
                JobCommand::Shell(s) => Command::Shell(s.clone()),
                JobCommand::Argv(v) => Command::Exec(v.iter().map(Into::into).collect()),
            },
            base_dir,
        )
    }

    /// Like [`Job::to_options`], for a job whose command the caller supplies (the command line's
    /// overrides a job file's).
    pub fn options_with(&self, command: Command, base_dir: &Path) -> Result<SpawnOptions> {
        let both = |a: &str, b: &str| invalid(format!("the job has both {a:?} and {b:?}"));
        if self.delay.is_some() && self.at.is_some() {
            return Err(both("delay", "at"));
        }
        if self.cron.is_some() && self.every.is_some() {
            return Err(both("cron", "every"));
        }
        if self.now && self.every.is_none() {
            return Err(invalid("\"now\" needs \"every\"".into()));
        }
        if self.wait_lock && self.lockfile.is_none() {
            return Err(invalid("\"wait_lock\" needs \"lockfile\"".into()));
        }
        let pty = match &self.pty_size {
            Some(s) => Some(s.parse().map_err(|e: Error| e.context("pty_size"))?),
            None => self.pty.then(crate::pty::PtySize::default),
        };
        if pty.is_some() && matches!(self.stdin, Some(Stdin::Null | Stdin::File(_))) {
            return Err(invalid(
                "\"pty\" and \"stdin\": a task on a terminal reads the terminal".into(),
            ));
        }
        let resolve = |p: &PathBuf| base_dir.join(p);
        let mut o = match command {
            Command::Shell(s) => SpawnOptions::shell(s),
            Command::Exec(v) => SpawnOptions::exec(v),
        };
        if let Some(e) = self.engine {
            // First: a scheduler engine changes the default stdin.
            o.set_engine(e);
        }
        o.slurm_args.clone_from(&self.slurm_args);
        o.name.clone_from(&self.name);
        o.cwd = self.cwd.as_ref().map(resolve);
        o.env = self.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        o.clear_env = self.clear_env;
        o.meta = self.meta.clone().unwrap_or_default();
        if let Some(s) = &self.stdin {
            o.stdin = match s {
                Stdin::File(p) => Stdin::File(resolve(p)),
                s => s.clone(),
            };
        }
        o.lockfile = self.lockfile.as_ref().map(resolve);
        if let Some(b) = &self.buffer {
            o.buffer_size = b.size("buffer")?;
        }
        o.log_max = self
            .log_max
            .as_ref()
            .map(|a| a.size("log_max"))
            .transpose()?;
        o.merge_stderr = self.merge_stderr;
        for (name, value) in &self.limits {
            let (name, limit) = crate::limits::parse_limit(&format!("{name}={}", value.text()))
                .map_err(|e| e.context("limits"))?;
            o.limits.insert(name, limit);
        }
        o.nice = self.nice;
        o.oom_score_adj = self.oom_score_adj;
        o.readiness = match (self.ready_fd, self.notify) {
            (Some(_), true) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "ready_fd and notify: choose one",
                ))
            }
            (Some(n), false) => {
                Some(crate::ready::Readiness::fd(n).map_err(|e| e.context("ready_fd"))?)
            }
            (None, true) => Some(crate::ready::Readiness::Notify),
            (None, false) => None,
        };
        o.pty = pty;
        o.linger = self
            .linger
            .as_ref()
            .map(|a| a.duration("linger"))
            .transpose()?;
        if let Some(g) = &self.grace {
            o.grace = g.duration("grace")?;
        }
        if let Some(b) = self.behavior {
            o.behavior = b;
        }
        if let Some(g) = &self.group {
            schedule::check_group_name(g).map_err(|e| e.context("group"))?;
            o = o.group(g.clone());
        }
        o = o
            .priority(self.priority)
            .wait_lock(self.wait_lock)
            .after(self.after.iter().copied())
            .after_any(self.after_any.iter().copied())
            .after_failure(self.after_failure.iter().copied());
        if let Some(d) = &self.delay {
            o = o.delay(d.duration("delay")?);
        }
        if let Some(at) = &self.at {
            o = o.at(schedule::parse_at(at, chrono::Local::now()).map_err(|e| e.context("at"))?);
        }
        if let Some(expr) = &self.cron {
            schedule::check_cron(expr).map_err(|e| e.context("cron"))?;
            o = o.cron(expr.clone());
        }
        if let Some(every) = &self.every {
            o = o.every(every.positive_duration("every")?, self.now);
        }
        o.plan.max_runs = self.max_runs;
        o = o.stop_on(check_codes("stop_on", &self.stop_on)?.iter().copied());
        if self.restart.is_some() || self.max_restarts.is_some() {
            o = o.restart(self.restart.unwrap_or_default(), self.max_restarts);
        }
        if let Some(b) = &self.backoff {
            o.plan.backoff = Some(schedule::parse_backoff(b)?);
        }
        if let Some(t) = &self.timeout {
            o = o.timeout(t.positive_duration("timeout")?);
        }
        o = o.warn_codes(check_codes("warn_codes", &self.warn_codes)?.iter().copied());
        o = o.hooks(Hooks {
            on_success: self.on_success.clone(),
            on_failure: self.on_failure.clone(),
            on_exit: self.on_exit.clone(),
            timeout_ms: self
                .hook_timeout
                .as_ref()
                .map(|a| a.positive_duration("hook_timeout"))
                .transpose()?
                .map(|d| d.as_millis() as u64),
        });
        Ok(o)
    }
}

/// Exit codes must be 0..=255.
fn check_codes<'a>(key: &str, codes: &'a [i32]) -> Result<&'a [i32]> {
    match codes.iter().find(|c| !(0..=255).contains(*c)) {
        Some(c) => Err(invalid(format!(
            "{key}: exit code {c} is not between 0 and 255"
        ))),
        None => Ok(codes),
    }
}

pub use crate::units::parse_size;

/// An exit-code list: comma-separated codes 0..=255 (`1,3`).
pub fn parse_codes(s: &str) -> Result<Vec<i32>> {
    s.split(',')
        .map(|c| {
            c.trim()
                .parse::<u8>()
                .map(i32::from)
                .map_err(|_| invalid(format!("{c:?} in {s:?} is not an exit code (0 to 255)")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Backoff, Repeat};

    /// The example job of `docs/jobs.md`, kept there between the `example-job` markers.
    fn doc_example() -> String {
        let doc = include_str!("../../docs/jobs.md");
        let start = doc
            .find("<!-- example-job -->")
            .expect("marker in docs/jobs.md");
        let body = &doc[start..];
        let open = body.find("```json\n").unwrap() + "```json\n".len();
        let close = body[open..].find("```").unwrap();
        body[open..open + close].to_string()
    }

    #[test]
    fn the_documented_example_parses_and_converts() {
        let job = Job::parse(doc_example().as_bytes()).unwrap();
        let o = job.to_options(Path::new("/srv/jobs")).unwrap();
        assert_eq!(o.name.as_deref(), Some("nightly-backup"));
        assert_eq!(o.plan.group.as_deref(), Some("nightly"));
        assert!(matches!(o.plan.repeat, Some(Repeat::Cron(_))));
        assert_eq!(
            o.plan.backoff,
            Some(Backoff {
                initial_ms: 1000,
                max_ms: 300_000
            })
        );
    }

    #[test]
    fn a_full_job_converts_with_paths_against_the_base_dir() {
        let job = Job::parse(
            br#"{"command": ["prog", "arg"], "name": "n", "cwd": "work",
                 "env": {"K": "V"}, "clear_env": true, "meta": {"a": 1},
                 "stdin": {"file": "in.txt"}, "lockfile": "/tmp/l", "wait_lock": true,
                 "buffer": "64K", "log_max": 4096, "merge_stderr": true, "linger": "10s",
                 "grace": 1.5, "behavior": "background", "priority": -2,
                 "after": [1, 2], "after_any": [3], "after_failure": [4],
                 "delay": "5m", "every": "1h", "now": true, "max_runs": 3,
                 "stop_on": [3], "restart": "on-failure", "max_restarts": 5,
                 "backoff": "1s..5m", "timeout": "2h", "warn_codes": [1],
                 "on_success": "s", "on_failure": "f", "on_exit": "e", "hook_timeout": 60}"#,
        )
        .unwrap();
        let o = job.to_options(Path::new("/base")).unwrap();
        assert_eq!(o.command, Command::Exec(vec!["prog".into(), "arg".into()]));
        assert_eq!(o.cwd, Some(PathBuf::from("/base/work")));
        assert_eq!(o.stdin, Stdin::File("/base/in.txt".into()));
        assert_eq!(o.lockfile, Some(PathBuf::from("/tmp/l")));
        assert_eq!(o.env, vec![("K".into(), "V".into())]);
        assert_eq!(o.buffer_size, 65536);
        assert_eq!(o.log_max, Some(4096));
        assert_eq!(o.grace, std::time::Duration::from_millis(1500));
        assert_eq!(o.behavior, Behavior::Background);
        let p = &o.plan;
        assert_eq!((p.priority, p.wait_lock), (-2, true));
        assert_eq!(
            (&p.after[..], &p.after_any[..], &p.after_failure[..]),
            (&[1, 2][..], &[3][..], &[4][..])
        );
        assert!(p.start_at.is_some());
        assert_eq!(
            p.repeat,
            Some(Repeat::Every {
                every_ms: 3_600_000,
                now: true
            })
        );
        assert_eq!((p.max_runs, p.max_restarts), (Some(3), Some(5)));
        assert_eq!(p.restart, RestartPolicy::OnFailure);
        assert_eq!(p.timeout_ms, Some(7_200_000));
        assert_eq!((&p.stop_on[..], &p.warn_codes[..]), (&[3][..], &[1][..]));
        assert_eq!(p.hooks.on_exit.as_deref(), Some("e"));
        assert_eq!(p.hooks.timeout_ms, Some(60_000));
        let shell = Job::parse(br#"{"command": "echo hi"}"#).unwrap();
        assert_eq!(
            shell.to_options(Path::new("/")).unwrap().command,
            Command::Shell("echo hi".into())
        );
    }

    #[test]
    fn bad_jobs_are_refused_naming_the_fault() {
        let cases: [(&[u8], &str); 12] = [
            (br#"{"command": "x", "colour": "red"}"#, "colour"),
            (br#"{"command": "x", "cron": "61 * * * *"}"#, "cron"),
            (
                br#"{"command": "x", "delay": "1m", "at": "tomorrow 02:00"}"#,
                "\"delay\" and \"at\"",
            ),
            (
                br#"{"command": "x", "cron": "@daily", "every": 60}"#,
                "\"cron\" and \"every\"",
            ),
            (br#"{"command": "x", "now": true}"#, "every"),
            (br#"{"command": "x", "wait_lock": true}"#, "lockfile"),
            (br#"{"command": "x", "every": "0s"}"#, "every"),
            (br#"{"command": "x", "group": ".x"}"#, "group"),
            (br#"{"command": "x", "stop_on": [300]}"#, "stop_on"),
            (br#"{"command": "x", "at": "2001-01-01T00:00:00Z"}"#, "past"),
            (br#"{"name": "x"}"#, "command"),
            (b"[1]", "bad job file"),
        ];
        for (bytes, want) in cases {
            let e = Job::parse(bytes)
                .and_then(|j| j.to_options(Path::new("/")))
                .unwrap_err();
            assert!(
                e.message().contains(want) && !e.message().contains('\n'),
                "expected {want:?} in: {e}"
            );
        }
        let e = Job::parse(br#"{"command": "x", "colour": 1}"#).unwrap_err();
        assert!(!e.message().contains("expected one of"), "{e}");
    }

    #[test]
    fn sizes_and_codes() {
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_codes("1, 3").unwrap(), [1, 3]);
        assert!(parse_codes("1,x").is_err());
        assert!(parse_codes("256").is_err());
    }
}
