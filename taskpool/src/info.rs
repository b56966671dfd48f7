//! [`Info`]: the stable JSON view of a task that `info`, `ls --json`, `search` and the protocol
//! return. It is derived from the [`Record`] (and, for a live task asked directly, the supervisor's
//! fresh counters). Its JSON Schema is `docs/info.schema.json`.

use crate::engine::{Engine, JobRecord};
use crate::record::{Behavior, Record, State, Status, Streams, Timestamp, WaitingFor};
use crate::report::Report;
use crate::wire;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

/// One task as users see it. Field names and meanings are stable; new fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// The task id.
    pub id: u64,
    /// The optional name given at spawn.
    pub name: Option<String>,
    /// Where the task is in its life.
    pub state: State,
    /// How it ended; `null` while live.
    pub status: Option<Status>,
    /// The argv executed (a shell string shows as `/bin/sh -c STRING`).
    #[serde(with = "wire::os_vec")]
    pub command: Vec<OsString>,
    /// The working directory.
    #[serde(with = "wire::path")]
    pub cwd: PathBuf,
    /// The main process's pid, also its process group id.
    pub pid: Option<i32>,
    /// The supervisor's pid.
    pub supervisor_pid: Option<i32>,
    /// How the supervisor relates to its caller.
    pub behavior: Behavior,
    /// When the task was spawned.
    pub created_at: Timestamp,
    /// When the current or latest run started.
    pub started_at: Option<Timestamp>,
    /// When the latest run was over.
    pub ended_at: Option<Timestamp>,
    /// Seconds from start to end (or to now while running).
    pub duration: Option<f64>,
    /// The exit code; `null` when killed by a signal or still live.
    pub exit_code: Option<i32>,
    /// The signal that killed the main process, e.g. `SIGKILL`.
    pub signal: Option<String>,
    /// The current or latest run number (from 1).
    pub run: u32,
    /// Free-form metadata.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The lock file held while running, if any.
    #[serde(with = "wire::opt_path")]
    pub lockfile: Option<PathBuf>,
    /// Why the task ended as it did, when there is more to say than the status.
    pub reason: Option<String>,
    /// The resource limits set on the task (`null` values are unlimited); the others are the
    /// supervisor's own, inherited from the caller.
    #[serde(default)]
    pub limits: crate::limits::Limits,
    /// The task's nice value, when set at spawn.
    #[serde(default)]
    pub nice: Option<i32>,
    /// The task's OOM score adjustment, when set at spawn.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// How the task tells it is ready, when it does (`--ready-fd`, `--notify`).
    #[serde(default)]
    pub readiness: Option<crate::ready::Readiness>,
    /// The task runs on a pseudo-terminal of this size (`--pty`); `null` when it has pipes.
    #[serde(default)]
    pub pty: Option<crate::pty::PtySize>,
    /// The current or latest run has said it is ready.
    #[serde(default)]
    pub ready: bool,
    /// When it said so.
    #[serde(default)]
    pub ready_at: Option<Timestamp>,
    /// Output counters of the current or latest run.
    pub streams: Streams,
    /// The group whose limit the task counts against.
    pub group: Option<String>,
    /// What a `queued` or `waiting` task waits for.
    pub waiting_for: Option<WaitingFor>,
    /// When a `scheduled` task starts next.
    pub next_start: Option<Timestamp>,
    /// The current or latest run's attempt (2 and up: restarts).
    pub attempt: u32,
    /// Firings of a recurring task skipped because the previous run was still going.
    pub overlaps: u32,
    /// Every run so far, oldest first.
    pub runs: Vec<RunSummary>,
    /// The completion report of the latest end.
    pub report: Option<Box<Report>>,
    /// Who started the supervisor (`local`, `slurm`; see [`crate::engine`]).
    #[serde(default)]
    pub engine: Engine,
    /// A Slurm task's job: `job_id`, `node`, and Slurm's `state` and `reason` when the pool
    /// asked it (absent for other engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<JobRecord>,
}

/// One run in a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run number, from 1 (`output --run N`).
    pub run: u32,
    /// The attempt it was (2 and up: restarts).
    pub attempt: u32,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<String>,
    /// Its status, once over.
    pub status: Option<Status>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
}

impl Info {
    /// The view of a record as it stands on disk.
    pub fn from_record(rec: &Record) -> Info {
        let run = rec.current();
        let started_at = run.and_then(|r| r.started_at);
        let ended_at = run.and_then(|r| r.ended_at);
        let duration = started_at.map(|s| {
            let end = ended_at.unwrap_or_else(|| {
                if rec.state.is_live() {
                    crate::record::now()
                } else {
                    s
                }
            });
            (end - s).num_milliseconds().max(0) as f64 / 1000.0
        });
        Info {
            id: rec.id,
            name: rec.spec.name.clone(),
            state: rec.state,
            status: rec.status(),
            command: rec.spec.command.argv(),
            cwd: rec.spec.cwd.clone(),
            pid: run.and_then(|r| r.pid),
            supervisor_pid: rec.supervisor_pid,
            behavior: rec.spec.behavior,
            created_at: rec.created_at,
            started_at,
            ended_at,
            duration,
            exit_code: run.and_then(|r| r.exit_code),
            signal: run.and_then(|r| r.signal.clone()),
            run: run.map(|r| r.run).unwrap_or(0),
            meta: rec.meta.clone(),
            lockfile: rec.spec.lockfile.clone(),
            reason: rec.reason.clone(),
            limits: rec.spec.limits.clone(),
            nice: rec.spec.nice,
            oom_score_adj: rec.spec.oom_score_adj,
            readiness: rec.spec.readiness,
            pty: rec.spec.pty,
            ready: run.is_some_and(|r| r.ready_at.is_some()),
            ready_at: run.and_then(|r| r.ready_at),
            streams: run.map(|r| r.streams).unwrap_or_default(),
            group: rec.spec.plan.group.clone(),
            waiting_for: rec.waiting_for.clone(),
            next_start: rec.next_start,
            attempt: run.map(|r| r.attempt).unwrap_or(0),
            overlaps: rec.overlaps,
            runs: rec
                .runs
                .iter()
                .map(|r| RunSummary {
                    run: r.run,
                    attempt: r.attempt,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    exit_code: r.exit_code,
                    signal: r.signal.clone(),
                    status: r.status,
                    duration: r.duration(),
                })
                .collect(),
            report: rec.report.clone(),
            engine: rec.spec.engine,
            slurm: (rec.spec.engine == Engine::Slurm).then(|| rec.job.clone().unwrap_or_default()),
        }
    }

    /// True while a supervisor is responsible for the task.
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }

    /// The info as a JSON value (for pattern matching and printing).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The exit status a shell would report for this task: the exit code, `128 + signal` when
    /// killed, 124 (as `timeout(1)`) when ended by `--timeout`; `None` while live, when lost, or
    /// when skipped (it never ran).
    pub fn shell_status(&self) -> Option<i32> {
        match self.status {
            None | Some(Status::Lost) | Some(Status::Skipped) => return None,
            Some(Status::Timeout) => return Some(124),
            _ => {}
        }
        if let Some(c) = self.exit_code {
            return Some(c);
        }
        let sig = self.signal.as_deref()?;
        let n = crate::signal::parse_signal(sig).ok()?;
        Some(128 + n as i32)
    }
}
