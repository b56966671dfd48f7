//! The completion [`Report`]: what a task's supervisor writes into the record at every end, what
//! `taskpool report` prints, and what hooks receive (as JSON on stdin, and in the environment).

use crate::status::{Status, Timestamp};
use serde::{Deserialize, Serialize};

/// The most lines of stderr kept in a report.
pub const STDERR_TAIL_LINES: usize = 20;
/// The most bytes of stderr (and of a hook's output) kept in a report.
pub const TAIL_BYTES: usize = 4096;

/// How a run (or a task that never ran) ended, and what followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The task id.
    pub id: u64,
    /// The task's name.
    pub name: Option<String>,
    /// The status.
    pub status: Status,
    /// The run this report is about (0 when the task never ran).
    pub run: u32,
    /// The exit code, `null` when killed by a signal or never run.
    pub exit_code: Option<i32>,
    /// The signal that killed the main process.
    pub signal: Option<String>,
    /// When the run started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// The attempt this run was (1 without restarts).
    pub attempts: u32,
    /// Why it ended as it did, when there is more to say than the status.
    pub reason: Option<String>,
    /// The last lines of stderr (at most [`STDERR_TAIL_LINES`] lines and [`TAIL_BYTES`] bytes,
    /// lossily decoded as UTF-8).
    pub stderr_tail: String,
    /// Bytes written to stdout.
    pub stdout_bytes: u64,
    /// Bytes written to stderr.
    pub stderr_bytes: u64,
    /// The task's meta at the end.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The hooks that ran, in order.
    #[serde(default)]
    pub hooks: Vec<HookResult>,
}

/// One hook's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookResult {
    /// `on_success`, `on_failure` or `on_exit`.
    pub hook: String,
    /// The shell command.
    pub command: String,
    /// Its exit code, `null` when killed (or not started).
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<String>,
    /// True when it ran out of time and was killed.
    pub timed_out: bool,
    /// Seconds it ran.
    pub duration: f64,
    /// The end of its combined stdout and stderr (at most [`TAIL_BYTES`] bytes).
    pub output: String,
    /// Why it could not be started, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
