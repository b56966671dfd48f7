//! The words every other record-shaped type is built from: where a task is in its life
//! ([`State`]), how a run ended ([`Status`]), and the [`Timestamp`] they are stamped with. They sit
//! below the record, the plan and the completion report, which all use them, so that none of
//! those needs another to name a time or a status.

use serde::{Deserialize, Serialize};

/// A point in time, serialized as RFC 3339 with the local UTC offset.
pub type Timestamp = chrono::DateTime<chrono::FixedOffset>;

/// The current local time as a [`Timestamp`].
pub fn now() -> Timestamp {
    chrono::Local::now().fixed_offset()
}

/// Where a task is in its life. `Queued`, `Waiting`, `Scheduled`, `Running` and `Paused` are live
/// (a supervisor answers for the task); `Exited`, `Skipped` and `Lost` are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a slot in its group (`--group`); `waiting_for` names the group.
    Queued,
    /// Waiting for a lock file (`--wait-lock`) or for predecessors (`--after…`); `waiting_for`
    /// says which.
    Waiting,
    /// Waiting for a time: a delayed, recurring or retried task; `next_start` gives it.
    Scheduled,
    /// The command is running.
    Running,
    /// The command's process group is stopped (`pause`); `resume` continues it.
    Paused,
    /// The command ran and ended (for good: no retry or firing follows).
    Exited,
    /// The task ended without running (again): a condition could not be met, or it was
    /// cancelled while deferred; `reason` says why.
    Skipped,
    /// The supervisor vanished without recording the end.
    Lost,
}

impl State {
    /// Every state, in life order.
    pub const ALL: [State; 8] = [
        State::Queued,
        State::Waiting,
        State::Scheduled,
        State::Running,
        State::Paused,
        State::Exited,
        State::Skipped,
        State::Lost,
    ];

    /// True while a supervisor is responsible for the task.
    pub fn is_live(self) -> bool {
        !matches!(self, State::Exited | State::Skipped | State::Lost)
    }

    /// True for the live states in which the command is not running: the task waits for a
    /// slot, a lock, its predecessors or a time.
    pub fn is_deferred(self) -> bool {
        matches!(self, State::Queued | State::Waiting | State::Scheduled)
    }

    /// The lower-case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Waiting => "waiting",
            State::Scheduled => "scheduled",
            State::Running => "running",
            State::Paused => "paused",
            State::Exited => "exited",
            State::Skipped => "skipped",
            State::Lost => "lost",
        }
    }
}

/// How a task's run ended; set once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Exit code 0.
    Success,
    /// An exit code listed in `--warn-codes`: success, with warnings.
    Warning,
    /// A non-zero exit code, or the command could not be started.
    Failure,
    /// Ended by a signal.
    Killed,
    /// Ended by `--timeout`: the run lasted too long and its process group was terminated.
    Timeout,
    /// Never ran: a condition could not be met, or it was cancelled while deferred.
    Skipped,
    /// The supervisor vanished; the outcome is unknown.
    Lost,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 7] = [
        Status::Success,
        Status::Warning,
        Status::Failure,
        Status::Killed,
        Status::Timeout,
        Status::Skipped,
        Status::Lost,
    ];

    /// The lower-case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Warning => "warning",
            Status::Failure => "failure",
            Status::Killed => "killed",
            Status::Timeout => "timeout",
            Status::Skipped => "skipped",
            Status::Lost => "lost",
        }
    }

    /// True for `success` and `warning`: what `--after` requires of a predecessor.
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Success | Status::Warning)
    }

    /// True for `failure`, `killed`, `timeout` and `lost`: what `--after-failure` and
    /// `--on-failure` take for a failure.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Status::Failure | Status::Killed | Status::Timeout | Status::Lost
        )
    }
}
