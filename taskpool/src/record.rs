//! The on-disk record of a task (`tasks/ID/record.json`): what to run (the [`Spec`]), its free-form
//! meta, its lifecycle [`State`] and the history of its runs. The supervisor owns the record while it
//! is live and replaces it atomically (write `record.json.tmp`, rename); readers never see a torn
//! record. Everything about an ended task is answered from this file without a live supervisor.

pub use crate::engine::{Engine, JobRecord};
use crate::error::{Error, ErrorKind, Result};
pub use crate::plan::Plan;
pub use crate::status::{now, State, Status, Timestamp};
use crate::wire;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The record format written by this version. Readers accept this and older formats.
pub const RECORD_FORMAT: u32 = 1;

/// What the task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// A shell string, run by `/bin/sh -c`.
    Shell(String),
    /// An argv, executed directly (searched on `PATH` when it has no slash).
    Exec(#[serde(with = "wire::os_vec")] Vec<OsString>),
}

impl Command {
    /// The argv that is executed.
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.into()],
            Command::Exec(v) => v.clone(),
        }
    }
}

/// Where the task's standard input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stdin {
    /// A pipe the supervisor holds; clients write to it with `send`.
    #[default]
    Pipe,
    /// `/dev/null`.
    Null,
    /// A file, opened read-only.
    File(#[serde(with = "wire::path")] PathBuf),
}

/// How the supervisor relates to the process that spawned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// A new session: survives the caller and its terminal.
    #[default]
    Daemon,
    /// Detached, but the task is ended when the caller's process group leader exits.
    Background,
    /// The supervisor stays the caller's child (for debugging).
    Foreground,
}

impl Behavior {
    /// The lower-case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Daemon => "daemon",
            Behavior::Background => "background",
            Behavior::Foreground => "foreground",
        }
    }
}

/// Everything needed to run (and re-run) a task, fixed at spawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// What to run.
    pub command: Command,
    /// The task's complete environment (resolved at spawn; the supervisor adds `TASKPOOL_*`).
    #[serde(with = "wire::env")]
    pub env: Vec<(OsString, OsString)>,
    /// The working directory (absolute).
    #[serde(with = "wire::path")]
    pub cwd: PathBuf,
    /// An optional human name.
    pub name: Option<String>,
    /// Where standard input comes from.
    #[serde(default)]
    pub stdin: Stdin,
    /// A lock file the task must hold while it runs (`flock`); its holder's pid is written in it.
    #[serde(default, with = "wire::opt_path")]
    pub lockfile: Option<PathBuf>,
    /// Bytes of each stream held in memory.
    pub buffer_size: u64,
    /// Cap on each stream's on-disk log; the oldest bytes go beyond it.
    #[serde(default)]
    pub log_max: Option<u64>,
    /// Send stderr into the stdout pipe, for exact ordering.
    #[serde(default)]
    pub merge_stderr: bool,
    /// How long the supervisor keeps serving after the end, in milliseconds.
    #[serde(default)]
    pub linger_ms: Option<u64>,
    /// How the supervisor relates to its caller.
    #[serde(default)]
    pub behavior: Behavior,
    /// Grace between INT, TERM and KILL when terminating, in milliseconds.
    pub grace_ms: u64,
    /// When and under which conditions the command runs, how often, and what follows its end.
    #[serde(default, skip_serializing_if = "Plan::is_default")]
    pub plan: Plan,
    /// Resource limits set on the task before `exec`, keyed by [`crate::limits::NAMES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: crate::limits::Limits,
    /// The task's nice value (and, for a daemon, its session's autogroup's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
    /// The task's `/proc/PID/oom_score_adj`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// How the task tells it is ready (`--ready-fd`, `--notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<crate::ready::Readiness>,
    /// Run the task on a pseudo-terminal of this size (`--pty`); see [`crate::pty`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<crate::pty::PtySize>,
    /// Who starts the supervisor (see [`crate::engine`]).
    #[serde(default, skip_serializing_if = "is_local")]
    pub engine: Engine,
    /// Arguments added to the scheduler's submission (`--slurm-arg`), after the mapped ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slurm_args: Vec<String>,
}

fn is_local(e: &Engine) -> bool {
    *e == Engine::Local
}

/// Per-stream byte counters: offsets are absolute positions in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamStats {
    /// The first offset that can still be read (after the log cap dropped older bytes).
    pub start: u64,
    /// One past the last byte captured: the stream's total length.
    pub end: u64,
    /// Bytes captured but no longer readable anywhere.
    pub dropped: u64,
    /// The first offset held in the supervisor's memory buffer (live tasks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_start: Option<u64>,
    /// Bytes captured that could not be written to the log (the disk was full, or writing failed):
    /// from the first failure on, the log stops growing, so every byte it holds is at its offset.
    /// They are only in the supervisor's memory buffer while it lasts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unstored: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The three output views of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Streams {
    /// The task's standard output.
    pub stdout: StreamStats,
    /// The task's standard error.
    pub stderr: StreamStats,
    /// Both, in the order the supervisor read them, with offsets of its own.
    pub combined: StreamStats,
}

/// One run of the task's command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run number, from 1.
    pub run: u32,
    /// The main process's pid, also its process group id.
    pub pid: Option<i32>,
    /// When the command was executed.
    pub started_at: Option<Timestamp>,
    /// When the run was over (process reaped and output drained).
    pub ended_at: Option<Timestamp>,
    /// The exit code, `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the main process (e.g. `SIGTERM`).
    pub signal: Option<String>,
    /// The run's status once over.
    pub status: Option<Status>,
    /// Output counters (final once the run is over).
    #[serde(default)]
    pub streams: Streams,
    /// The attempt this run was, from 1: 2 and up are restarts by `--restart`.
    #[serde(default = "one")]
    pub attempt: u32,
    /// When the run said it was ready (with `--ready-fd` or `--notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
}

fn one() -> u32 {
    1
}

impl RunRecord {
    /// A fresh, not yet started run.
    pub fn new(run: u32) -> Self {
        RunRecord {
            run,
            pid: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            signal: None,
            status: None,
            streams: Streams::default(),
            attempt: 1,
            ready_at: None,
        }
    }

    /// Seconds from start to end, once both are known.
    pub fn duration(&self) -> Option<f64> {
        let (s, e) = (self.started_at?, self.ended_at?);
        Some((e - s).num_milliseconds().max(0) as f64 / 1000.0)
    }
}

/// The whole durable state of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The record format ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The task id, unique in the pool and never reused.
    pub id: u64,
    /// What to run.
    pub spec: Spec,
    /// Free-form JSON metadata (an object).
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// When the task was spawned.
    pub created_at: Timestamp,
    /// Where the task is in its life.
    pub state: State,
    /// The supervisor's pid (of the latest run).
    pub supervisor_pid: Option<i32>,
    /// Why the task ended the way it did, when there is more to say than the status.
    #[serde(default)]
    pub reason: Option<String>,
    /// The runs, oldest first; the last one is the current or latest run.
    pub runs: Vec<RunRecord>,
    /// What a `queued` or `waiting` task waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitingFor>,
    /// When a `scheduled` task starts next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Timestamp>,
    /// Firings of a recurring task that were skipped because the previous run was still going.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub overlaps: u32,
    /// The completion report of the latest end (written at every end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<crate::report::Report>>,
    /// The state the task was in when its supervisor was found gone (`lost` tasks), so that
    /// `restore` knows what to re-arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_from: Option<State>,
    /// The task's job in its engine's scheduler (engines other than local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRecord>,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// What a deferred task waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitingFor {
    /// A slot in a group (state `queued`).
    Slot {
        /// The group.
        group: String,
        /// The group's limit when last looked at.
        parallel: Option<u32>,
    },
    /// A lock file held by another process (`--wait-lock`).
    Lock {
        /// The lock file.
        #[serde(with = "wire::path")]
        lockfile: PathBuf,
        /// Its holder, as written in the file (usually a pid).
        holder: Option<String>,
    },
    /// Predecessors that have not ended yet (`--after`, `--after-any`, `--after-failure`).
    Tasks {
        /// Their ids.
        ids: Vec<u64>,
    },
}

impl WaitingFor {
    /// A one-line description, e.g. `lockfile /tmp/x (held by 123)`.
    pub fn describe(&self) -> String {
        match self {
            WaitingFor::Slot { group, parallel } => match parallel {
                Some(n) => format!("a slot in group {group} (limit {n})"),
                None => format!("a slot in group {group}"),
            },
            WaitingFor::Lock { lockfile, holder } => match holder {
                Some(h) => format!("lockfile {} (held by {h})", lockfile.display()),
                None => format!("lockfile {}", lockfile.display()),
            },
            WaitingFor::Tasks { ids } => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                format!("task {}", ids.join(", "))
            }
        }
    }
}

impl Record {
    /// The current or latest run.
    pub fn current(&self) -> Option<&RunRecord> {
        self.runs.last()
    }

    /// The current or latest run, mutably.
    pub fn current_mut(&mut self) -> Option<&mut RunRecord> {
        self.runs.last_mut()
    }

    /// The task's status: `skipped` for a skipped task, `lost` for a lost one, else that of the
    /// latest run once over; `None` while live.
    pub fn status(&self) -> Option<Status> {
        match self.state {
            State::Skipped => Some(Status::Skipped),
            State::Lost => Some(Status::Lost),
            s if s.is_live() => None,
            _ => self.current().and_then(|r| r.status),
        }
    }

    /// Read and parse a record file.
    pub fn load(path: &Path) -> Result<Record> {
        let bytes = std::fs::read(path).map_err(|e| Error::path(path, e))?;
        Self::parse(&bytes).map_err(|e| e.context(path.display()))
    }

    /// Read and parse a record file, leaving out the spec's environment (`spec.env` is empty):
    /// what a listing needs, since [`Info`](crate::Info) does not show it. Never store the result.
    pub fn load_without_env(path: &Path) -> Result<Record> {
        let bytes = std::fs::read(path).map_err(|e| Error::path(path, e))?;
        let _skip = wire::env::SkipGuard::new();
        Self::parse(&bytes).map_err(|e| e.context(path.display()))
    }

    /// Parse a record from its JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Record> {
        let rec: Record = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("bad record: {e}")))?;
        if rec.format > RECORD_FORMAT {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "record format {} is newer than this version understands",
                    rec.format
                ),
            ));
        }
        Ok(rec)
    }

    /// Replace the record file at `path` atomically: write a temporary file beside it, optionally
    /// fsync it, rename it into place (and fsync the directory when `durable`).
    pub fn store(&self, path: &Path, durable: bool) -> Result<()> {
        self.store_in(Replacement::open(path)?, durable)
    }

    /// [`Record::store`] through a [`Replacement`] of the record file opened beforehand.
    pub fn store_in(&self, file: Replacement, durable: bool) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Io, format!("encoding record: {e}")))?;
        file.commit(&json, durable)
    }
}

/// Write `bytes` to `path` atomically via `path.tmp` and rename. The temporary file is created with
/// `O_NOFOLLOW` and mode 0600 (0660 in a group-shared pool, via the umask), truncating any leftover.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    Replacement::open(path)?.commit(bytes, durable)
}

/// A replacement of a file under way ([`write_atomic`] in two steps): `path.tmp` is created
/// first, the bytes written and renamed into place later. Creating a file is the costly part on
/// some file systems (a new inode): a caller waiting for something else does it meanwhile.
/// Dropped without [`Replacement::commit`], the temporary file is removed.
#[derive(Debug)]
pub struct Replacement {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl Replacement {
    /// Create (or truncate) `path.tmp`, `O_NOFOLLOW`, mode 0660 less the umask.
    pub fn open(path: &Path) -> Result<Replacement> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o660)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
        };
        let f = match open() {
            // A symlink planted at the temporary name: remove the link (never its target) and
            // retry.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                std::fs::remove_file(&tmp).map_err(|e| Error::path(&tmp, e))?;
                open()
            }
            r => r,
        }
        .map_err(|e| Error::path(&tmp, e))?;
        Ok(Replacement {
            path: path.to_owned(),
            tmp,
            file: Some(f),
        })
    }

    /// Write `bytes`, optionally fsync them, and rename the file into place (fsyncing the
    /// directory too when `durable`).
    pub fn commit(mut self, bytes: &[u8], durable: bool) -> Result<()> {
        let mut f = self.file.take().expect("a replacement is committed once");
        let written = f
            .write_all(bytes)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
        drop(f);
        if let Err(e) = written {
            // Out of space, most likely: give back what the partial copy took (on drop).
            return Err(Error::path(&self.tmp, e));
        }
        let path = self.path.clone();
        std::fs::rename(&self.tmp, &path).map_err(|e| Error::path(&path, e))?;
        self.tmp = PathBuf::new();
        if durable {
            if let Some(dir) = path.parent() {
                // A bare file name is relative to the working directory.
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
        }
        Ok(())
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
