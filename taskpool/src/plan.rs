//! The [`Plan`] of a task: everything beyond "run this command now" — a group slot to wait for, a
//! lock file to wait for, predecessors, a start time, a recurrence, restarts, a timeout, which exit
//! codes are warnings, and the hooks that run after the end. It is part of the task's
//! [`Spec`](crate::record::Spec), fixed at spawn, and carried out by the task's supervisor. An
//! empty plan (the default) is a task that runs at once, once.

use crate::status::Timestamp;
use serde::{Deserialize, Serialize};

/// The default `--hook-timeout`: 60 s.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 60_000;
/// The default `--backoff`: 1 s doubling up to 5 min.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    initial_ms: 1000,
    max_ms: 300_000,
};

/// When, under which conditions, how often, and with what follow-up a task runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Plan {
    /// The group whose limit the task's runs count against (`--group`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Queue priority within the group: higher starts first; equal priorities start in spawn
    /// order (`--priority`).
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// Wait for the spec's lock file instead of failing when it is held (`--wait-lock`).
    #[serde(skip_serializing_if = "is_false")]
    pub wait_lock: bool,
    /// Predecessors that must all end `success` or `warning` (`--after`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<u64>,
    /// Predecessors that must all end, whatever their status (`--after-any`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_any: Vec<u64>,
    /// Predecessors that must all end `failure`, `killed`, `timeout` or `lost`
    /// (`--after-failure`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_failure: Vec<u64>,
    /// The first start, no earlier than this (`--delay`, `--at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Timestamp>,
    /// Run again and again (`--cron`, `--every`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
    /// Stop a recurring task after this many runs (`--max-runs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u32>,
    /// Exit codes after which a recurring task stops (`--stop-on`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_on: Vec<i32>,
    /// When a run is started again (`--restart`).
    #[serde(skip_serializing_if = "RestartPolicy::is_never")]
    pub restart: RestartPolicy,
    /// The most restarts after one start (`--max-restarts`; default: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The delay before each restart (`--backoff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// The longest a run may last before its process group is terminated (`--timeout`), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Exit codes that mean success with warnings (`--warn-codes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warn_codes: Vec<i32>,
    /// Commands run after the end.
    #[serde(skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Plan {
    /// True for the empty plan: run at once, once.
    pub fn is_default(&self) -> bool {
        *self == Plan::default()
    }

    /// Every predecessor named, in the order given, without repeats.
    pub fn predecessors(&self) -> Vec<u64> {
        let mut all: Vec<u64> = Vec::new();
        for id in self
            .after
            .iter()
            .chain(&self.after_any)
            .chain(&self.after_failure)
        {
            if !all.contains(id) {
                all.push(*id);
            }
        }
        all
    }

    /// The backoff in force.
    pub fn backoff(&self) -> Backoff {
        self.backoff.unwrap_or(DEFAULT_BACKOFF)
    }
}

/// A recurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repeat {
    /// At the times a cron expression matches, in local time (`--cron`).
    Cron(String),
    /// Every so many milliseconds; the first run one interval after spawn, or at once with
    /// `now` (`--every`, `--now`).
    Every {
        /// The interval in milliseconds.
        every_ms: u64,
        /// Run once at once too.
        #[serde(default, skip_serializing_if = "is_false")]
        now: bool,
    },
}

/// When a run that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    Never,
    /// When the run ended `failure`, `killed` or `timeout`.
    OnFailure,
    /// Whatever the status (until `--max-restarts`, or the task is terminated).
    Always,
}

impl RestartPolicy {
    fn is_never(&self) -> bool {
        *self == RestartPolicy::Never
    }

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

/// Exponential backoff between restarts: `initial`, doubling each time, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first delay, in milliseconds.
    pub initial_ms: u64,
    /// The largest delay, in milliseconds.
    pub max_ms: u64,
}

impl Backoff {
    /// The delay before restart number `n` (1 for the first restart).
    pub fn delay_ms(&self, n: u32) -> u64 {
        let shift = n.saturating_sub(1).min(63);
        self.initial_ms
            .saturating_mul(1u64.checked_shl(shift).unwrap_or(u64::MAX))
            .min(self.max_ms.max(self.initial_ms))
    }
}

/// Commands run by `/bin/sh -c` after a run's end, with the completion report in the environment
/// and as JSON on stdin. They never change the task's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Hooks {
    /// Run when the status is `success` or `warning`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// Run when the status is `failure`, `killed` or `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Run after every end, after the other hooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<String>,
    /// How long a hook may run before its process group is killed, in milliseconds (default
    /// [`DEFAULT_HOOK_TIMEOUT_MS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl Hooks {
    /// The hooks to run for an end with `status`, in order, as `(which, command)`:
    /// `on_success` for `success` and `warning`, `on_failure` for `failure`, `killed` and
    /// `timeout`, then `on_exit` for every status (`skipped` and `lost` included).
    pub fn for_status(&self, status: crate::status::Status) -> Vec<(&'static str, String)> {
        use crate::status::Status;
        let first = match status {
            Status::Success | Status::Warning => {
                self.on_success.as_ref().map(|c| ("on_success", c))
            }
            Status::Failure | Status::Killed | Status::Timeout => {
                self.on_failure.as_ref().map(|c| ("on_failure", c))
            }
            Status::Skipped | Status::Lost => None,
        };
        first
            .into_iter()
            .chain(self.on_exit.as_ref().map(|c| ("on_exit", c)))
            .map(|(which, c)| (which, c.clone()))
            .collect()
    }

    /// True when no hook is set.
    pub fn is_empty(&self) -> bool {
        self.on_success.is_none()
            && self.on_failure.is_none()
            && self.on_exit.is_none()
            && self.timeout_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1000,
        };
        let d: Vec<u64> = (1..=6).map(|n| b.delay_ms(n)).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay_ms(200), 1000);
    }

    #[test]
    fn an_empty_plan_is_not_written() {
        let json = serde_json::to_value(Plan::default()).unwrap();
        assert_eq!(json, serde_json::json!({}));
    }
}
