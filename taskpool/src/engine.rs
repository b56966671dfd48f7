//! The engine seam: who starts a task's supervisor. [`Engine::Local`] (the default) starts it on
//! this machine, detached from the caller; [`Engine::Slurm`] submits a batch job whose script
//! execs the supervisor inside the allocation (docs/slurm.md). The engine is chosen once at spawn
//! and recorded in the task's spec. Whatever runs the supervisor, it is the same program doing
//! the same work (lock, capture, record, meta, report, hooks); what differs between engines is
//! behind this type: submitting ([`Engine::submit`]), asking the scheduler about many jobs with
//! one call ([`Engine::query`]) and cancelling ([`Engine::cancel`]). Another scheduler (HTCondor,
//! Kubernetes Jobs) is another variant here and a module like [`crate::slurm`] for its commands;
//! the supervisor does not change.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;

/// How often a scheduler task that cannot be reached through its socket (its job is pending, or
/// runs on another node) is looked at again while waiting or following: its record, its files,
/// and one scheduler query.
pub const SCHEDULER_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Who starts a task's supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// On this machine, at spawn (the default).
    #[default]
    Local,
    /// As a Slurm batch job: `sbatch` submits it, the job's script execs the supervisor.
    Slurm,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Local, Engine::Slurm];

    /// The lower-case name used in JSON, job files, `--engine` and `TASKPOOL_ENGINE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Local => "local",
            Engine::Slurm => "slurm",
        }
    }

    /// The engine named `name` (`local` or `slurm`).
    pub fn parse(name: &str) -> Result<Engine> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown engine {name:?} (expected local or slurm)"),
                )
            })
    }

    /// True for an engine that hands the task to a cluster scheduler.
    pub fn is_scheduler(self) -> bool {
        self != Engine::Local
    }

    /// Start submitting the batch script `script` with the scheduler arguments `args` (the
    /// mapped options first, then the user's own); [`Submitting::job_id`] waits for the job id.
    /// The error is the scheduler's own message, on one line.
    pub fn submit(self, args: &[OsString], script: &[u8]) -> Result<Submitting> {
        match self {
            Engine::Local => Err(not_a_scheduler()),
            Engine::Slurm => crate::slurm::sbatch(args, script).map(Submitting::Slurm),
        }
    }

    /// The scheduler's view of each of `jobs`, with one call however many there are. A job the
    /// scheduler does not know (any more) is absent from the map.
    pub fn query(self, jobs: &[u64]) -> Result<HashMap<u64, JobView>> {
        match self {
            Engine::Local => Err(not_a_scheduler()),
            Engine::Slurm => Ok(crate::slurm::squeue(jobs)?
                .into_iter()
                .map(|(id, q)| {
                    let view = JobView {
                        job_id: q.job_id,
                        state: q.state,
                        reason: q.reason,
                        node: q.node,
                    };
                    (id, view)
                })
                .collect()),
        }
    }

    /// Ask the scheduler to cancel `job` (a pending job never starts; a running one is
    /// signalled as the scheduler does on cancel).
    pub fn cancel(self, job: u64) -> Result<()> {
        match self {
            Engine::Local => Err(not_a_scheduler()),
            Engine::Slurm => crate::slurm::scancel(job),
        }
    }
}

impl Engine {
    /// Wake the supervisor running in `job` to take a control request (SIGUSR2 to the batch
    /// script's process, which is the supervisor).
    pub fn wake(self, job: u64) -> Result<()> {
        match self {
            Engine::Local => Err(not_a_scheduler()),
            Engine::Slurm => crate::slurm::scancel_batch(job, "USR2"),
        }
    }
}

/// A submission under way (the scheduler's command runs).
#[derive(Debug)]
pub enum Submitting {
    /// `sbatch`.
    Slurm(std::process::Child),
}

impl Submitting {
    /// Wait for the submission: the job id once the scheduler has accepted the job (its command
    /// may still be exiting), or the scheduler's error on one line.
    pub fn job_id(self) -> Result<u64> {
        match self {
            Submitting::Slurm(child) => crate::slurm::sbatch_job(child),
        }
    }
}

fn not_a_scheduler() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "the local engine has no scheduler to ask",
    )
}

/// What a task's record knows of its job in a scheduler (`"slurm"` in the record and the info).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobRecord {
    /// The scheduler's job id, once submitted.
    pub job_id: Option<u64>,
    /// The node the supervisor runs (or ran) on, written by the supervisor when it starts.
    pub node: Option<String>,
    /// The scheduler's word for the job's state (`PENDING`, `RUNNING`, `CANCELLED`, …) when the
    /// pool last asked it; `null` when it has not had to.
    pub state: Option<String>,
    /// The scheduler's reason (`Priority`, `Resources`, `JobHeldUser`,
    /// `DependencyNeverSatisfied`, …), with `state`.
    pub reason: Option<String>,
}

/// A scheduler's view of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// The job id.
    pub job_id: u64,
    /// The state, in the scheduler's own word (`PENDING`, `RUNNING`, `COMPLETED`, …).
    pub state: String,
    /// Why it is in that state (`None` when the scheduler has nothing to say).
    pub reason: Option<String>,
    /// The node it runs or ran on, once allocated.
    pub node: Option<String>,
}

/// What a job's scheduler state says of the task's supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet: the supervisor has not run.
    Pending,
    /// Allocated: the supervisor runs, or is starting.
    Running,
    /// Over: the supervisor has exited (or never will run).
    Ended,
}

impl JobView {
    /// The phase this view stands for. Slurm's `COMPLETING` is over for us: the batch script (the
    /// supervisor) has exited.
    pub fn phase(&self) -> Phase {
        match self.state.as_str() {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => {
                Phase::Pending
            }
            "RUNNING" | "CONFIGURING" | "SUSPENDED" | "STOPPED" | "RESIZING" | "SIGNALING"
            | "STAGE_OUT" => Phase::Running,
            _ => Phase::Ended,
        }
    }
}
