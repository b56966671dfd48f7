//! The task's lifecycle as the supervisor sees it, and [`Core`]: everything the supervisor knows
//! about its task except its sockets. The supervisor carries out the task's
//! [`Plan`](taskpool::Plan) as a small state machine: a [`Phase`], and within the run phase a
//! [`Life`]. This file holds the state and its invariants, the one place where the phase changes
//! (`enter`, which also keeps the on-disk record and the timer in step), and the two
//! dispatchers the event loop calls: [`Core::advance`] after every batch of events and
//! [`Core::on_time`] when a deadline is due. Each phase's transitions live in their own file:
//!
//! - [`gate`]: before each run, the conditions are checked in order — predecessors (first run
//!   only), the start time, the group slot, the lock file. Each one that is not met makes the task
//!   wait in a live state (`waiting`, `scheduled`, `queued`) for the event that can change it.
//!   Nothing is polled. A condition that can no longer be met ends the task `skipped`.
//! - [`timer`]: the start time, the firings of a recurring task and their overlaps.
//! - [`run`]: the command runs; pause, resume, the main process exiting, the drain, and the end
//!   of the run, after which it is restarted (back to the gate) or goes on to its hooks.
//! - [`hooks`]: the completion report and the hooks, then the next firing (back to the gate) or
//!   the end.
//! - [`finish`]: `terminate`, the final record, the leftovers and the linger.
//!
//! The legal moves, by phase and event (every other pair leaves the phase as it is):
//!
//! | phase | event | goes to |
//! |---|---|---|
//! | Gate | every condition met ([`Core::advance`]) | Run (`begin_run`) |
//! | Gate | the run cannot start (program gone, lock held without `--wait-lock`) | Hooks, or Gate for a restart (`failed_start`) |
//! | Gate | a condition can never be met, `terminate`, a signal request | Hooks (`skip`) |
//! | Gate | predecessor gone, timer, `wake`, slot holder gone, lock waiter done | Gate, looked at again |
//! | Run | main process reaped | Run, draining (`main_exited`) |
//! | Run | pipes at end of file or the drain is over | Gate for a restart, else Hooks (`run_over`) |
//! | Run | `--timeout`, `terminate` | Run, escalating (`escalate_now`) |
//! | Hooks | hook reaped, or none left ([`Core::advance`]) | the next hook, Gate for the next firing, or Done (`after_hooks`) |
//! | Hooks | `terminate` | Hooks, the running hook killed, no next firing |
//! | Run, Hooks | timer (a firing comes) | the same phase, one more overlap |
//! | Done | leftovers gone, linger over, `terminate` | the supervisor exits ([`Core::finished`]) |

pub mod finish;
pub mod gate;
pub mod hooks;
pub mod run;
pub mod timer;

use crate::capture::Capture;
use crate::child::ProcessGroup;
use crate::hooks::HookRun;
use crate::stdin::StdinSink;
use crate::waker::Waker;
use nix::sys::signal::Signal;
use nix::sys::timerfd::TimerFd;
use nix::unistd::Pid;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use taskpool::lock::UserLock;
use taskpool::record::{Record, State, Timestamp, WaitingFor};
use taskpool::{group, Error, Info, Pool};

/// How long the supervisor keeps reading the pipes after the main process exited. A grandchild
/// that inherited stdout may hold the pipe open for ever; the run ends regardless after this.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// The most bytes read from each pipe in the final drain at the end of a run.
const FINAL_DRAIN_MAX: usize = 16 << 20;

/// How the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

/// Where the current run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// No run is going on (before the first, between runs, or after the last).
    Idle,
    /// The main process runs (stopped, when `paused`).
    Running {
        /// The main pid.
        pid: Pid,
        /// When it was started.
        started: Instant,
        /// Stopped by `pause`.
        paused: bool,
    },
    /// The main process has exited; the pipes are read until end of file or `until`.
    Draining {
        /// How it ended.
        exit: Exit,
        /// When the run ends even if a pipe is still open.
        until: Instant,
    },
}

/// Where the task is in its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Checking (or waiting for) the conditions of the next run.
    Gate,
    /// A run is going on.
    Run,
    /// A run (or the task) has ended; its hooks are running.
    Hooks,
    /// The task has ended for good.
    Done,
}

/// A terminate in progress: the next signal and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Escalation {
    next: Signal,
    at: Instant,
}

/// What is left in the process group after the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// The run has not ended.
    NotYet,
    /// SIGTERM was sent; SIGKILL follows at this time if any remain.
    Signalled { kill_at: Instant },
    /// Nothing left (or SIGKILL sent).
    Done,
}

/// What the gate found.
enum Gate {
    /// Every condition is met: start the run.
    Pass,
    /// Wait (the state and `waiting_for` are set).
    Wait,
    /// The run cannot happen: record a failed run with this reason.
    Fail(Error),
    /// The task can never run (again): end it `skipped` with this reason.
    Skip(String),
}

/// A predecessor still live, watched through a pidfd on its supervisor.
pub struct Watched {
    /// The predecessor's id.
    pub id: u64,
    /// Readable once its supervisor has exited.
    pub pidfd: OwnedFd,
}

/// The supervisor's knowledge of its task.
pub struct Core {
    /// The pool.
    pub pool: Pool,
    /// The task id.
    pub id: u64,
    /// The live record (the last run is the current or latest one).
    pub record: Record,
    record_path: PathBuf,
    /// Where the plan is.
    pub phase: Phase,
    /// Where the current run is.
    pub life: Life,
    /// What to signal: the current or latest run's process group.
    pub group: Option<ProcessGroup>,
    /// The current or latest run's output (`None` before the first run).
    pub capture: Option<Capture>,
    /// The task's stdin (closed between runs).
    pub stdin: StdinSink,
    /// The user's lock file, held while a run lasts.
    pub user_lock: Option<UserLock>,
    /// The group slot, held while a run lasts.
    slot: Option<group::Slot>,
    /// The task has an entry in its group's queue.
    queued: bool,
    /// Try for a slot at the next gate (first look, or a `wake`).
    slot_check: bool,
    /// A child blocked in `flock` on our open file description of the lock file.
    lock_waiter: Option<(Pid, File)>,
    /// Predecessors still live.
    pub watched: Vec<Watched>,
    /// At the head of a group's queue: pidfds of the slots' holders.
    pub holders: Vec<OwnedFd>,
    /// The wakes owed to the group's queue, sent from the loop.
    pub waker: Waker,
    /// The CPU time (user + system, seconds) of the run's main process, once reaped.
    pub main_cpu: Option<f64>,
    /// This run's group got a SIGKILL from us (a kill request, a terminate's or timeout's
    /// escalation): a SIGKILL end is then not the CPU hard limit's.
    pub sent_kill: bool,
    /// The run's readiness channel, until it is ready or over.
    pub ready: Option<crate::ready::Endpoint>,
    /// Look at the predecessors again at the next gate.
    deps_check: bool,
    /// The wall-clock timer for `next_start` and recurring firings (made when first needed).
    timer: Option<TimerFd>,
    timer_at: Option<Timestamp>,
    /// The next firing of a recurring task, planned while a run (or its restarts) goes on.
    next_firing: Option<Timestamp>,
    /// Restarts since the current firing's first attempt.
    restarts: u32,
    /// Cancelled or skipped: no further run.
    stopped: bool,
    /// The run was ended by `--timeout`.
    timed_out: bool,
    timeout_at: Option<Instant>,
    hook: Option<HookRun>,
    /// The running hook ran out of time and was killed.
    hook_timed_out: bool,
    pending_hooks: Vec<(&'static str, String)>,
    /// The task's liveness lock, held until the supervisor exits.
    _lock: File,
    escalation: Option<Escalation>,
    grace: Duration,
    terminating: bool,
    /// End the task `skipped` with this reason at the gate, without running it (a launch's
    /// `skip`: its scheduler job ended before its supervisor started).
    skip_now: Option<String>,
    leftovers: Leftovers,
    linger_until: Option<Instant>,
    /// A state change that followers have not been told about yet.
    pub state_changed: bool,
    /// A run started: followers waiting for one can begin.
    pub run_started: bool,
    /// A run has started whose room for the final record ([`crate::start::RESERVE`]) is not
    /// set aside yet: done once the launch reply is out, off the path to the task running.
    pub reserve_due: bool,
}

/// What [`Core::first_step`] did.
pub enum FirstStep {
    /// The first run started at once: its main pid and run number.
    Started(Pid, u32),
    /// The task waits in this state.
    Deferred(State),
}

impl Core {
    /// The core of a task just accepted (no run started yet).
    pub fn new(pool: Pool, record: Record, lock: File) -> Core {
        let grace = Duration::from_millis(record.spec.grace_ms);
        let mut core = Core {
            id: record.id,
            // Relative to the task directory, our working directory: the record is still
            // written where the task is if the pool directory is renamed under it.
            record_path: PathBuf::from("record.json"),
            pool,
            record,
            phase: Phase::Gate,
            life: Life::Idle,
            group: None,
            capture: None,
            stdin: StdinSink::Closed,
            user_lock: None,
            slot: None,
            queued: false,
            slot_check: true,
            lock_waiter: None,
            watched: Vec::new(),
            main_cpu: None,
            sent_kill: false,
            ready: None,
            holders: Vec::new(),
            waker: Waker::default(),
            deps_check: true,
            timer: None,
            timer_at: None,
            next_firing: None,
            restarts: 0,
            stopped: false,
            timed_out: false,
            timeout_at: None,
            hook: None,
            hook_timed_out: false,
            pending_hooks: Vec::new(),
            _lock: lock,
            escalation: None,
            grace,
            terminating: false,
            skip_now: None,
            leftovers: Leftovers::Done,
            linger_until: None,
            state_changed: false,
            run_started: false,
            reserve_due: false,
        };
        core.plan_first_start();
        core
    }

    /// True once the task has ended for good.
    pub fn ended(&self) -> bool {
        self.phase == Phase::Done
    }

    /// True while a run is going on (the main process runs, or its output is being drained).
    pub fn run_active(&self) -> bool {
        !matches!(self.life, Life::Idle)
    }

    /// The main pid while it has not been reaped.
    pub fn main_pid(&self) -> Option<Pid> {
        match self.life {
            Life::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The lock waiter's pid, if one runs.
    pub fn lock_waiter_pid(&self) -> Option<Pid> {
        self.lock_waiter.as_ref().map(|(p, _)| *p)
    }

    /// The running hook's pid, if one runs.
    pub fn hook_pid(&self) -> Option<Pid> {
        self.hook.as_ref().map(|h| h.pid)
    }

    /// The timer's descriptor, while one is armed.
    pub fn timer_fd(&self) -> Option<i32> {
        self.timer_at
            .and(self.timer.as_ref())
            .map(|t| t.as_fd().as_raw_fd())
    }

    /// Store the record (durably for the final one). A failure is noted, not fatal: the
    /// supervisor's duty to the running task comes first.
    pub fn store(&self, durable: bool) {
        let mut stored = self.record.store(&self.record_path, durable);
        if stored.is_err() && durable && std::fs::remove_file(crate::start::RESERVE).is_ok() {
            // The disk is full: the room kept for the final record is used now.
            stored = self.record.store(&self.record_path, durable);
        }
        if let Err(e) = stored {
            crate::note(&format!("task {}: cannot store the record: {e}", self.id));
        }
    }

    /// The task's info with the live counters.
    pub fn info(&self) -> Info {
        let mut info = Info::from_record(&self.record);
        if self.run_active() {
            if let Some(cap) = &self.capture {
                info.streams = cap.streams(true);
                // A write failure is reported while the run lasts, not only in the final record.
                if info.reason.is_none() {
                    info.reason.clone_from(&cap.write_error);
                }
            }
        }
        info
    }

    fn set_state(&mut self, state: State) {
        if self.record.state != state {
            self.record.state = state;
            self.state_changed = true;
            self.store(false);
        }
    }

    /// Wait in `state` for `what`; stored when anything changed.
    fn wait_in(&mut self, state: State, what: Option<WaitingFor>) {
        if self.record.state != state || self.record.waiting_for != what {
            self.record.waiting_for = what;
            self.record.state = state;
            self.state_changed = true;
            self.store(false);
        }
    }

    /// The error for a request that needs a live task.
    pub fn over(&self, what: &str) -> taskpool::Error {
        taskpool::Error::new(
            taskpool::ErrorKind::State,
            format!("task {} has ended; cannot {what} it", self.id),
        )
    }

    fn not_running(&self, what: &str) -> taskpool::Error {
        if self.ended() {
            return self.over(what);
        }
        taskpool::Error::new(
            taskpool::ErrorKind::State,
            format!(
                "task {} is {}, not running; cannot {what} it",
                self.id,
                self.record.state.as_str()
            ),
        )
    }

    /// Go to `phase`: the one place the phase changes. Followers are told, the record is stored
    /// (durably when the task has ended for good), and the timer is armed for what the new phase
    /// waits for.
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.state_changed = true;
        self.store(phase == Phase::Done);
        self.rearm();
    }

    /// Move the plan forward as far as it can go now. Called after every batch of events.
    pub fn advance(&mut self) {
        loop {
            match self.phase {
                Phase::Gate => match self.gate() {
                    Ok(Gate::Pass) => {
                        if let Err(e) = self.begin_run() {
                            self.failed_start(e);
                        }
                    }
                    Ok(Gate::Wait) => return,
                    Ok(Gate::Fail(e)) | Err(e) => self.failed_start(e),
                    Ok(Gate::Skip(why)) => self.skip(&why),
                },
                Phase::Hooks => {
                    if self.hook.is_some() {
                        return;
                    }
                    if !self.start_next_hook() {
                        self.after_hooks();
                    }
                }
                Phase::Run | Phase::Done => return,
            }
        }
    }

    /// Carry out whatever is due at `now`.
    pub fn on_time(&mut self, now: Instant, scratch: &mut [u8]) {
        self.waker.on_time(now, &self.pool);
        if let Some(at) = self.timeout_at {
            if now >= at && matches!(self.life, Life::Running { .. }) {
                self.timeout_at = None;
                self.timed_out = true;
                if self.escalation.is_none() {
                    self.escalate_now();
                    self.set_state(State::Running);
                }
            }
        }
        if let Some(esc) = self.escalation {
            if now >= esc.at {
                if let Some(g) = self.group {
                    let _ = g.signal(esc.next);
                    let _ = g.signal(Signal::SIGCONT);
                }
                self.sent_kill |= esc.next == Signal::SIGKILL;
                self.escalation = (esc.next == Signal::SIGTERM).then(|| Escalation {
                    next: Signal::SIGKILL,
                    at: now + self.grace,
                });
            }
        }
        if let Some(h) = &self.hook {
            if now >= h.deadline() && !self.hook_timed_out {
                self.hook_timed_out = true;
                h.kill();
            }
        }
        self.maybe_end(now, scratch);
        if let Leftovers::Signalled { kill_at } = self.leftovers {
            if now >= kill_at {
                if let Some(g) = self.group {
                    let _ = g.signal(Signal::SIGKILL);
                }
                crate::child::signal_orphans(Signal::SIGKILL, &self.helpers());
                // The lock waiter and a hook are our children too; they are not leftovers.
                self.leftovers = Leftovers::Done;
            }
        }
    }

    /// The next time something is due, if anything is (wall-clock times are the timer's).
    pub fn deadline(&self) -> Option<Instant> {
        let drain = match self.life {
            Life::Draining { until, .. } => Some(until),
            _ => None,
        };
        let kill = match self.leftovers {
            Leftovers::Signalled { kill_at } => Some(kill_at),
            _ => None,
        };
        let hook = self
            .hook
            .as_ref()
            .filter(|_| !self.hook_timed_out)
            .map(|h| h.deadline());
        // The linger counts once the leftovers are gone: until then their SIGKILL is due first,
        // and a linger already over must not make the loop spin.
        let linger = self
            .linger_until
            .filter(|_| !self.terminating && self.leftovers == Leftovers::Done);
        let timeout = self
            .timeout_at
            .filter(|_| matches!(self.life, Life::Running { .. }));
        [
            drain,
            self.escalation.map(|e| e.at),
            kill,
            linger,
            hook,
            timeout,
            self.waker.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
