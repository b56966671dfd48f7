//! The task's lifecycle as the supervisor sees it, and [`Core`]: everything the supervisor knows
//! about its task except its sockets. The supervisor carries out the task's
//! [`Plan`](taskpool::Plan) as a small state machine ([`Phase`]):
//!
//! - **Gate**: before each run, the conditions are checked in order — predecessors (first run
//!   only), the start time, the group slot, the lock file. Each one that is not met makes the task
//!   wait in a live state (`waiting`, `scheduled`, `queued`) for the event that can change it: a
//!   predecessor's supervisor exiting (a pidfd), a wall-clock timer (a `CLOCK_REALTIME` timerfd),
//!   a `wake` message from the task that freed a slot, a lock-waiter child returning. Nothing is
//!   polled. A condition that can no longer be met ends the task `skipped`.
//! - **Run**: the command runs ([`Life`]); pause, resume, the main process exiting, the drain, a
//!   `--timeout` and a terminate's escalation happen here.
//! - **Hooks**: after a run's end (or a skip) the completion report is written and the hooks run,
//!   one after the other. A run that will be restarted gets its report but no hooks.
//! - Then the next run is planned (a restart after the backoff, the next firing of a recurring
//!   task) and the task goes back to the gate, or it is **Done**: the final record is written and
//!   the supervisor exits once the task's leftovers are gone and any linger is over.
//!
//! Every transition happens in a method here, which also keeps the on-disk record in step.

use crate::capture::Capture;
use crate::child::ProcessGroup;
use crate::hooks::HookRun;
use crate::stdin::StdinSink;
use nix::sys::signal::Signal;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::unistd::Pid;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use taskpool::lock::UserLock;
use taskpool::plan::{Repeat, RestartPolicy};
use taskpool::record::{self, Record, RunRecord, State, Status, Timestamp, WaitingFor};
use taskpool::{group, Error, ErrorKind, Info, Pool};

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
            holders: Vec::new(),
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
            leftovers: Leftovers::Done,
            linger_until: None,
            state_changed: false,
            run_started: false,
            reserve_due: false,
        };
        core.plan_first_start();
        core
    }

    /// Work out when the first (or, for a restored task, the next) run may start.
    fn plan_first_start(&mut self) {
        let plan = &self.record.spec.plan;
        let now = record::now();
        if self.record.next_start.is_some() {
            // Restored: a delayed start or a restart that was pending. A recurring task skips the
            // firings it missed, as cron does; a one-time start that was missed happens now.
            if plan.repeat.is_some() && self.record.runs.iter().any(|r| r.attempt == 1) {
                self.record.next_start = None;
            } else {
                return;
            }
        }
        if self.record.runs.is_empty() {
            if let Some(at) = plan.start_at {
                self.record.next_start = Some(at);
                return;
            }
        }
        match &plan.repeat {
            Some(Repeat::Every { now: true, .. }) if self.record.runs.is_empty() => {}
            Some(_) => {
                self.record.next_start = self.firing_after(now);
                if self.record.next_start.is_none() {
                    self.record.reason = Some("the schedule has no future firing".into());
                }
            }
            None => {}
        }
    }

    /// The first firing of the recurrence strictly after `t`.
    fn firing_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self.record.spec.plan.repeat.as_ref()? {
            Repeat::Cron(expr) => taskpool::schedule::cron_next(expr, t).ok().flatten(),
            Repeat::Every { every_ms, .. } => {
                let every = (*every_ms).max(1) as i64;
                let anchor = self
                    .record
                    .spec
                    .plan
                    .start_at
                    .unwrap_or(self.record.created_at);
                let since = (t - anchor).num_milliseconds();
                let k = if since < 0 { 0 } else { since / every + 1 };
                Some(anchor + chrono::Duration::milliseconds(k.saturating_mul(every)))
            }
        }
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

    /// Stop the process group. Errors: no run is going on.
    pub fn pause(&mut self) -> taskpool::Result<()> {
        let Life::Running { paused, .. } = &mut self.life else {
            return Err(self.not_running("pause"));
        };
        *paused = true;
        if let Some(g) = self.group {
            let _ = g.signal(Signal::SIGSTOP);
        }
        self.set_state(State::Paused);
        Ok(())
    }

    /// Continue a paused process group.
    pub fn resume(&mut self) -> taskpool::Result<()> {
        let Life::Running { paused, .. } = &mut self.life else {
            return Err(self.not_running("resume"));
        };
        *paused = false;
        if let Some(g) = self.group {
            let _ = g.signal(Signal::SIGCONT);
        }
        self.set_state(State::Running);
        Ok(())
    }

    /// Send `sig` to the process group. A task that waits (queued, waiting, scheduled) is
    /// cancelled instead: it never runs (again).
    pub fn signal(&mut self, sig: Signal) -> taskpool::Result<()> {
        if self.ended() {
            return Err(self.over("signal"));
        }
        if !self.run_active() {
            if self.phase == Phase::Gate {
                self.cancel(&format!("cancelled by {} before it ran", sig.as_str()));
                return Ok(());
            }
            return Err(self.not_running("signal"));
        }
        match self.group {
            Some(g) => g.signal(sig).map_err(|e| {
                taskpool::Error::io(format!("task {}: signalling", self.id), e.into())
            }),
            None => Ok(()),
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

    // ----- the gate -----

    /// The first step, before the launch reply: start the first run at once when nothing stands
    /// in the way, or wait. An error here is the launch's error (the caller undoes the
    /// acceptance).
    pub fn first_step(&mut self) -> taskpool::Result<FirstStep> {
        match self.gate()? {
            Gate::Pass => {
                self.begin_run()?;
                let pid = self.main_pid().expect("a run was just started");
                let run = self.record.current().map(|r| r.run).unwrap_or(1);
                Ok(FirstStep::Started(pid, run))
            }
            Gate::Wait => {
                // Durably accepted: the record survives a crash of the machine.
                self.store(true);
                Ok(FirstStep::Deferred(self.record.state))
            }
            Gate::Fail(e) => Err(e),
            Gate::Skip(why) => {
                // Accepted, and ended at once: its dependents see why.
                self.skip(&why);
                self.advance();
                self.store(true);
                Ok(FirstStep::Deferred(self.record.state))
            }
        }
    }

    /// Give up what the first step took when it failed (the slot, the queue entry, the waiter).
    pub fn abandon(&mut self) {
        self.release_run_resources();
        self.dequeue();
        self.stop_lock_waiter();
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

    fn gate(&mut self) -> taskpool::Result<Gate> {
        if self.terminating {
            return Ok(Gate::Skip("cancelled before it ran".into()));
        }
        // Predecessors gate the first run only.
        if self.record.runs.is_empty() && !self.record.spec.plan.predecessors().is_empty() {
            if self.deps_check {
                self.deps_check = false;
                if let Some(why) = self.check_predecessors() {
                    return Ok(Gate::Skip(why));
                }
            }
            if !self.watched.is_empty() {
                let ids = self.watched.iter().map(|w| w.id).collect();
                self.wait_in(State::Waiting, Some(WaitingFor::Tasks { ids }));
                return Ok(Gate::Wait);
            }
        }
        if let Some(at) = self.record.next_start {
            if record::now() < at {
                self.arm_timer(Some(at));
                self.wait_in(State::Scheduled, None);
                return Ok(Gate::Wait);
            }
        } else if self.record.spec.plan.repeat.is_some()
            && !matches!(
                self.record.spec.plan.repeat,
                Some(Repeat::Every { now: true, .. })
            )
            && self.record.runs.is_empty()
        {
            // A recurring task whose schedule never fires.
            return Ok(Gate::Skip(
                self.record
                    .reason
                    .clone()
                    .unwrap_or_else(|| "the schedule has no future firing".into()),
            ));
        }
        if let Some(name) = self.record.spec.plan.group.clone() {
            if self.slot.is_none() {
                let prio = self.record.spec.plan.priority;
                if !self.queued {
                    group::enqueue(&self.pool, &name, self.id, prio)?;
                    self.queued = true;
                    self.slot_check = true;
                }
                if self.slot_check {
                    self.slot_check = false;
                    self.holders.clear();
                    match group::take_or_watch(&self.pool, &name, self.id, prio)? {
                        Ok(s) => {
                            self.slot = Some(s);
                            self.queued = false;
                            // Another slot may be free too: the next in line looks.
                            group::kick(&self.pool, &name);
                        }
                        Err(pids) => {
                            // At the head: watch the holders; a holder that dies without a
                            // word (SIGKILL) frees its slot. A holder already gone: look again.
                            for pid in pids {
                                match pidfd_open(pid) {
                                    Some(fd) => self.holders.push(fd),
                                    None => self.slot_check = true,
                                }
                            }
                            if self.slot_check {
                                self.holders.clear();
                                return self.gate();
                            }
                        }
                    }
                }
                if self.slot.is_none() {
                    let parallel = self.pool.group_limit(&name).ok().flatten();
                    self.wait_in(
                        State::Queued,
                        Some(WaitingFor::Slot {
                            group: name,
                            parallel,
                        }),
                    );
                    return Ok(Gate::Wait);
                }
            }
        }
        if let Some(path) = self.record.spec.lockfile.clone() {
            if self.user_lock.is_none() {
                if self.lock_waiter.is_some() {
                    return Ok(Gate::Wait);
                }
                match UserLock::try_acquire(&path, std::process::id())? {
                    Ok(l) => self.user_lock = Some(l),
                    Err((file, holder)) => {
                        if !self.record.spec.plan.wait_lock {
                            let who = holder
                                .as_deref()
                                .map_or("another process".to_owned(), |h| format!("pid {h}"));
                            return Ok(Gate::Fail(Error::new(
                                ErrorKind::LockHeld,
                                format!("lockfile {} is held by {who}", path.display()),
                            )));
                        }
                        let pid = crate::child::wait_for_flock(&file)?;
                        self.lock_waiter = Some((pid, file));
                        self.wait_in(
                            State::Waiting,
                            Some(WaitingFor::Lock {
                                lockfile: path,
                                holder,
                            }),
                        );
                        return Ok(Gate::Wait);
                    }
                }
            }
        }
        Ok(Gate::Pass)
    }

    /// Look at every predecessor: watch the live ones; return why the task can never run when
    /// one ended in a way its condition excludes.
    fn check_predecessors(&mut self) -> Option<String> {
        let plan = self.record.spec.plan.clone();
        let mut old = std::mem::take(&mut self.watched);
        for id in plan.predecessors() {
            if let Some(i) = old.iter().position(|w| w.id == id) {
                // Still watched: its supervisor has not exited.
                self.watched.push(old.swap_remove(i));
                continue;
            }
            let status = match self.look_at(id) {
                Ok(Ok(status)) => status,
                Ok(Err(w)) => {
                    self.watched.push(w);
                    continue;
                }
                Err(why) => return Some(why),
            };
            if plan.after.contains(&id) && !status.is_ok() {
                return Some(format!(
                    "predecessor task {id} ended {} (--after needs success or warning)",
                    status.as_str()
                ));
            }
            if plan.after_failure.contains(&id) && !status.is_failure() {
                return Some(format!(
                    "predecessor task {id} ended {} (--after-failure needs failure, killed, timeout or lost)",
                    status.as_str()
                ));
            }
        }
        None
    }

    /// A predecessor's status once it has ended, or a watch on its live supervisor.
    fn look_at(&self, id: u64) -> Result<Result<Status, Watched>, String> {
        for _ in 0..100 {
            let rec = match self.pool.load_record(id) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(format!("predecessor task {id} no longer exists"));
                }
                Err(e) => return Err(format!("predecessor task {id}: {e}")),
            };
            if !rec.state.is_live() {
                return Ok(Ok(rec.status().unwrap_or(Status::Lost)));
            }
            let Some(pid) = rec.supervisor_pid else {
                continue;
            };
            let Some(fd) = pidfd_open(pid) else {
                continue; // it exited meanwhile: read the record again
            };
            // Its supervisor may have ended between the read and the open (and its pid been
            // reused): keep the pidfd only if the record still names it, live.
            match self.pool.load_record(id) {
                Ok(again) if again.state.is_live() && again.supervisor_pid == Some(pid) => {
                    return Ok(Err(Watched { id, pidfd: fd }));
                }
                _ => continue,
            }
        }
        Err(format!("predecessor task {id}: its state keeps changing"))
    }

    /// A watched predecessor's supervisor exited.
    pub fn predecessor_gone(&mut self, index: usize) {
        if index < self.watched.len() {
            self.watched.swap_remove(index);
        }
        self.deps_check = true;
    }

    /// A `wake` arrived, or a slot holder the task watched exited: look for a slot again.
    pub fn wake(&mut self) {
        self.slot_check = true;
        self.holders.clear();
    }

    /// The timer fired.
    pub fn timer_fired(&mut self) {
        if let Some(t) = &self.timer {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(t.as_fd(), &mut buf);
        }
        self.timer_at = None;
        let now = record::now();
        if let Some(f) = self.next_firing {
            if f <= now && self.phase != Phase::Gate {
                // A firing while the previous run (or its restarts, or its hooks) still goes on.
                self.record.overlaps += 1;
                self.next_firing = self.firing_after(now);
                self.store(false);
            }
        }
        self.rearm();
    }

    /// Arm the timer for what is due next: the gate's start time, or a recurring task's next
    /// firing while a run goes on.
    fn rearm(&mut self) {
        let at = match self.phase {
            Phase::Gate => self.record.next_start,
            Phase::Run | Phase::Hooks => self.next_firing,
            Phase::Done => None,
        };
        self.arm_timer(at);
    }

    fn arm_timer(&mut self, at: Option<Timestamp>) {
        if self.timer_at == at {
            return;
        }
        self.timer_at = at;
        let Some(at) = at else {
            if let Some(t) = &self.timer {
                set_timer(t, None);
            }
            return;
        };
        if self.timer.is_none() {
            self.timer = make_timer();
        }
        match &self.timer {
            Some(t) => set_timer(t, Some(at)),
            None => crate::note("cannot create a timer"),
        }
    }

    /// The lock waiter returned: the lock is ours (or waiting failed).
    pub fn lock_waiter_done(&mut self, ok: bool) {
        let Some((_, file)) = self.lock_waiter.take() else {
            return;
        };
        if ok {
            self.user_lock = Some(UserLock::adopt(file, std::process::id()));
        }
        // Otherwise the gate tries again (and waits again when still held).
    }

    fn stop_lock_waiter(&mut self) {
        if let Some((pid, _)) = self.lock_waiter.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }

    fn dequeue(&mut self) {
        self.holders.clear();
        if self.queued {
            if let Some(name) = &self.record.spec.plan.group {
                let _ = group::dequeue(&self.pool, name, self.id, self.record.spec.plan.priority);
                group::kick(&self.pool, name);
            }
            self.queued = false;
        }
    }

    /// Release what a run holds: the user's lock file and the group slot (waking the next in
    /// line).
    fn release_run_resources(&mut self) {
        self.user_lock = None;
        if self.slot.take().is_some() {
            if let Some(name) = &self.record.spec.plan.group {
                group::kick(&self.pool, name);
            }
        }
        self.slot_check = true;
    }

    // ----- runs -----

    fn begin_run(&mut self) -> taskpool::Result<()> {
        if let Leftovers::Signalled { .. } = self.leftovers {
            // The previous run's leftovers have had their SIGTERM; a new run is not started
            // beside them.
            if let Some(g) = self.group {
                let _ = g.signal(Signal::SIGKILL);
            }
            crate::child::signal_orphans(Signal::SIGKILL, &self.helpers());
            self.leftovers = Leftovers::Done;
        }
        let number = self.record.current().map(|r| r.run).unwrap_or(0) + 1;
        let mut run = RunRecord::new(number);
        run.attempt = self.restarts + 1;
        self.record.runs.push(run);
        let started = match crate::start::start_run(&self.pool, &self.record) {
            Ok(s) => s,
            Err(e) => {
                self.record.runs.pop();
                return Err(e);
            }
        };
        let now = Instant::now();
        if let Some(r) = self.record.current_mut() {
            r.pid = Some(started.pid.as_raw());
            r.started_at = Some(record::now());
        }
        if self.record.spec.plan.repeat.is_some() && self.restarts == 0 {
            // The firing this run is for has come; plan the next one.
            let from = self.record.next_start.unwrap_or_else(record::now);
            self.next_firing = self.firing_after(from.max(record::now()));
        }
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.record.reason = None;
        self.record.state = State::Running;
        self.state_changed = true;
        self.run_started = true;
        self.reserve_due = true;
        self.life = Life::Running {
            pid: started.pid,
            started: now,
            paused: false,
        };
        self.group = Some(ProcessGroup::led_by(started.pid));
        self.capture = Some(started.capture);
        self.stdin = started.stdin;
        self.escalation = None;
        self.leftovers = Leftovers::NotYet;
        self.timed_out = false;
        self.timeout_at = self
            .record
            .spec
            .plan
            .timeout_ms
            .map(|ms| now + Duration::from_millis(ms));
        self.phase = Phase::Run;
        self.store(false);
        self.rearm();
        Ok(())
    }

    /// A run could not start (its program vanished, its lock file was held): it is recorded as
    /// a failed run with the reason, and the plan goes on (a restart, the next firing).
    fn failed_start(&mut self, e: Error) {
        let number = self.record.current().map(|r| r.run).unwrap_or(0) + 1;
        let mut run = RunRecord::new(number);
        run.attempt = self.restarts + 1;
        run.ended_at = Some(record::now());
        run.status = Some(Status::Failure);
        self.record.runs.push(run);
        self.record.reason = Some(e.message().to_owned());
        if self.record.spec.plan.repeat.is_some() && self.restarts == 0 {
            self.next_firing = self.firing_after(record::now());
        }
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.release_run_resources();
        self.run_over(Status::Failure);
    }

    /// The main process was reaped.
    pub fn main_exited(&mut self, exit: Exit, now: Instant) {
        if let Life::Running { .. } = self.life {
            self.life = Life::Draining {
                exit,
                until: now + DRAIN_AFTER_EXIT,
            };
            self.timeout_at = None;
        }
    }

    /// End the run if it is time: the main process has exited and the pipes are closed, or the
    /// drain time is over.
    pub fn maybe_end(&mut self, now: Instant, scratch: &mut [u8]) {
        if let Life::Draining { exit, until } = self.life {
            let closed = self.capture.as_ref().is_none_or(|c| c.pipes_closed());
            if closed || now >= until {
                self.end_run(exit, scratch);
            }
        }
    }

    fn end_run(&mut self, exit: Exit, scratch: &mut [u8]) {
        let mut write_error = None;
        let mut streams = Default::default();
        if let Some(cap) = &mut self.capture {
            cap.drain_and_close(scratch, FINAL_DRAIN_MAX);
            streams = cap.streams(false);
            write_error = cap.write_error.take();
        }
        self.stdin = StdinSink::Closed;
        let plan = &self.record.spec.plan;
        let status = match exit {
            _ if self.timed_out => Status::Timeout,
            Exit::Code(0) => Status::Success,
            Exit::Code(c) if plan.warn_codes.contains(&c) => Status::Warning,
            Exit::Code(_) => Status::Failure,
            Exit::Signal(_) => Status::Killed,
        };
        if let Some(run) = self.record.current_mut() {
            run.ended_at = Some(record::now());
            run.streams = streams;
            run.status = Some(status);
            match exit {
                Exit::Code(c) => {
                    run.exit_code = Some(c);
                    run.signal = None;
                }
                Exit::Signal(s) => {
                    run.exit_code = None;
                    run.signal = Some(taskpool::signal::signal_name(s).to_owned());
                }
            }
        }
        if self.timed_out {
            let ms = self.record.spec.plan.timeout_ms.unwrap_or(0);
            self.record.reason.get_or_insert(format!(
                "timed out after {:.3}s (--timeout)",
                ms as f64 / 1000.0
            ));
        }
        if let Some(e) = write_error {
            self.record.reason.get_or_insert(e);
        }
        let _ = std::fs::remove_file(crate::start::RESERVE);
        self.release_run_resources();
        self.life = Life::Idle;
        self.escalation = None;
        self.timeout_at = None;
        let now = Instant::now();
        self.leftovers = if self.leftovers_exist() {
            if let Some(g) = self.group {
                let _ = g.signal(Signal::SIGTERM);
                let _ = g.signal(Signal::SIGCONT);
            }
            crate::child::signal_orphans(Signal::SIGTERM, &self.helpers());
            crate::child::signal_orphans(Signal::SIGCONT, &self.helpers());
            Leftovers::Signalled {
                kill_at: now + self.grace,
            }
        } else {
            Leftovers::Done
        };
        self.run_over(status);
    }

    /// After a run (or a start that failed): write the report, then restart, or run the hooks.
    fn run_over(&mut self, status: Status) {
        let plan = &self.record.spec.plan;
        let restart = !self.terminating
            && match plan.restart {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => {
                    matches!(status, Status::Failure | Status::Killed | Status::Timeout)
                }
                RestartPolicy::Always => true,
            }
            && plan.max_restarts.is_none_or(|m| self.restarts < m);
        let backoff = plan.backoff();
        self.write_report(status);
        if restart {
            self.restarts += 1;
            let delay = backoff.delay_ms(self.restarts);
            self.schedule(record::now() + chrono::Duration::milliseconds(delay as i64));
            return;
        }
        self.restarts = 0;
        self.queue_hooks(status);
        self.phase = Phase::Hooks;
        self.store(false);
        self.state_changed = true;
    }

    /// Wait in the gate (state `scheduled`) for the next run at `at`.
    fn schedule(&mut self, at: Timestamp) {
        self.record.next_start = Some(at);
        self.phase = Phase::Gate;
        self.record.state = State::Scheduled;
        self.state_changed = true;
        self.store(false);
        self.rearm();
    }

    /// The hooks that `status` calls for, to run one after the other.
    fn queue_hooks(&mut self, status: Status) {
        self.pending_hooks = crate::hooks::hooks_for(&self.record.spec.plan.hooks, status);
        self.pending_hooks.reverse(); // popped from the end
    }

    fn write_report(&mut self, status: Status) {
        let run_dir = self
            .record
            .current()
            .filter(|r| r.started_at.is_some())
            .map(|r| self.pool.run_dir(self.id, r.run));
        let mut report = crate::report::build(&self.record, run_dir.as_deref());
        report.status = status;
        self.record.report = Some(Box::new(report));
    }

    /// The task can never run (again): end it `skipped` (or, when it ran before, with its last
    /// run's status), running the hooks that apply.
    fn skip(&mut self, why: &str) {
        self.record.reason = Some(why.to_owned());
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.stop_lock_waiter();
        self.dequeue();
        self.release_run_resources();
        self.watched.clear();
        // A task that ran before (a recurring or restarting one, cancelled between runs) keeps
        // its last run's report, and its hooks have run.
        self.pending_hooks.clear();
        if self.record.runs.is_empty() {
            self.write_report(Status::Skipped);
            self.queue_hooks(Status::Skipped);
        }
        self.stopped = true;
        self.next_firing = None;
        self.phase = Phase::Hooks;
        self.state_changed = true;
    }

    /// Cancel a task that waits: it ends without running (again).
    fn cancel(&mut self, why: &str) {
        if self.phase == Phase::Gate {
            self.skip(why);
        }
    }

    fn start_next_hook(&mut self) -> bool {
        let Some((which, command)) = self.pending_hooks.pop() else {
            return false;
        };
        let Some(report) = self.record.report.clone() else {
            return false;
        };
        let dir = self
            .record
            .current()
            .filter(|r| r.started_at.is_some())
            .map(|r| self.pool.run_dir(self.id, r.run))
            .unwrap_or_else(|| PathBuf::from("."));
        let pool_dir = self.pool.path().to_owned();
        let ctx = crate::hooks::HookContext::for_task(&self.record.spec, &pool_dir, &dir);
        match crate::hooks::start(which, &command, &report, &ctx) {
            Ok(h) => {
                self.hook = Some(h);
                self.hook_timed_out = false;
                true
            }
            Err(e) => {
                if let Some(r) = self.record.report.as_mut() {
                    r.hooks.push(crate::hooks::not_started(which, &command, &e));
                }
                self.store(false);
                // The next one, if any.
                self.start_next_hook()
            }
        }
    }

    /// The running hook was reaped.
    pub fn hook_exited(&mut self, exit: Exit) {
        let Some(h) = self.hook.take() else { return };
        let timed_out = self.hook_timed_out;
        let (code, sig) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
        };
        let result = h.finish(code, sig, timed_out);
        if let Some(r) = self.record.report.as_mut() {
            r.hooks.push(result);
        }
        self.store(false);
    }

    /// After the hooks: plan the next firing, or end for good.
    fn after_hooks(&mut self) {
        let plan = &self.record.spec.plan;
        let last = self.record.current();
        let firings = self.record.runs.iter().filter(|r| r.attempt == 1).count() as u32;
        let stop_code = last
            .and_then(|r| r.exit_code)
            .is_some_and(|c| plan.stop_on.contains(&c));
        let recurring = plan.repeat.is_some()
            && !self.terminating
            && !self.stopped
            && !stop_code
            && plan.max_runs.is_none_or(|m| firings < m);
        if recurring {
            let now = record::now();
            let next = match self.next_firing.take() {
                Some(f) if f > now => Some(f),
                _ => self.firing_after(now),
            };
            if let Some(next) = next {
                self.schedule(next);
                return;
            }
        }
        if stop_code {
            let code = last.and_then(|r| r.exit_code).unwrap_or(0);
            self.record
                .reason
                .get_or_insert(format!("stopped: exit code {code} is in --stop-on"));
        }
        self.finish();
    }

    /// The task has ended for good: the final record, durably.
    fn finish(&mut self) {
        self.record.state = if self.record.runs.is_empty() {
            State::Skipped
        } else {
            State::Exited
        };
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.next_firing = None;
        self.arm_timer(None);
        self.phase = Phase::Done;
        self.state_changed = true;
        self.store(true);
        let now = Instant::now();
        self.linger_until = self
            .record
            .spec
            .linger_ms
            .map(|ms| now + Duration::from_millis(ms));
        if self.linger_until.is_none() {
            // Gone with the task, not a moment later: a client that finds no socket reads the
            // final record.
            let _ = std::fs::remove_file(crate::start::SOCK);
        }
    }

    /// After reaping: note when the leftovers are gone.
    pub fn reaped(&mut self) {
        if let Leftovers::Signalled { .. } = self.leftovers {
            if !self.leftovers_exist() {
                self.leftovers = Leftovers::Done;
            }
        }
    }

    /// True while the task's process group has members, or processes it left behind are our
    /// children (orphans that left the group, such as a daemon; the main process is reaped;
    /// the lock waiter and a hook are not the task's).
    fn leftovers_exist(&self) -> bool {
        let ours = self.helpers();
        self.group.is_some_and(|g| g.exists())
            || crate::child::orphans()
                .iter()
                .any(|p| !ours.contains(&Some(*p)))
    }

    /// The supervisor's children that are not the task's leftovers.
    fn helpers(&self) -> [Option<Pid>; 3] {
        [self.lock_waiter_pid(), self.hook_pid(), self.main_pid()]
    }

    /// End the task: a waiting task is cancelled; a running one gets INT now, TERM after
    /// `grace`, KILL after another `grace` (default: the task's), and is not restarted or fired
    /// again; running hooks are killed. Once the task has ended, only makes the supervisor exit
    /// without lingering.
    pub fn terminate(&mut self, grace: Option<Duration>, why: &str) {
        if self.terminating {
            return;
        }
        self.terminating = true;
        if let Some(g) = grace {
            self.grace = g;
        }
        match self.phase {
            Phase::Done => {}
            Phase::Gate => self.skip(&format!("{why} before it ran")),
            Phase::Hooks => {
                self.pending_hooks.clear();
                if let Some(h) = &self.hook {
                    h.kill();
                }
                self.next_firing = None;
            }
            Phase::Run => {
                self.record.reason = Some(why.to_owned());
                self.next_firing = None;
                self.escalate_now();
                if matches!(self.life, Life::Running { .. }) {
                    self.set_state(State::Running);
                }
            }
        }
    }

    /// INT to the process group now, then TERM and KILL a grace apart.
    fn escalate_now(&mut self) {
        if let Some(g) = self.group {
            let _ = g.signal(Signal::SIGINT);
            let _ = g.signal(Signal::SIGCONT);
        }
        if let Life::Running { paused, .. } = &mut self.life {
            *paused = false;
        }
        self.escalation = Some(Escalation {
            next: Signal::SIGTERM,
            at: Instant::now() + self.grace,
        });
    }

    /// Carry out whatever is due at `now`.
    pub fn on_time(&mut self, now: Instant, scratch: &mut [u8]) {
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
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True when the supervisor's work is done: the task has ended, nothing is left in the
    /// process group, and there is no lingering (or a terminate cut it short).
    pub fn finished(&self, now: Instant) -> bool {
        self.ended()
            && self.leftovers == Leftovers::Done
            && (self.terminating || self.linger_until.is_none_or(|u| now >= u))
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created (close-on-exec) and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn make_timer() -> Option<TimerFd> {
    TimerFd::new(
        ClockId::CLOCK_REALTIME,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .ok()
}

/// Arm `timer` to fire at the wall-clock time `at` (absolute, so a changed clock or a suspend is
/// taken into account), or disarm it.
fn set_timer(timer: &TimerFd, at: Option<Timestamp>) {
    let r = match at {
        Some(at) => {
            let nanos = at.timestamp_nanos_opt().unwrap_or(i64::MAX).max(1);
            let when = TimeSpec::new(nanos / 1_000_000_000, nanos % 1_000_000_000);
            timer.set(
                Expiration::OneShot(when),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
        }
        None => timer.unset(),
    };
    if let Err(e) = r {
        crate::note(&format!("cannot set the timer: {e}"));
    }
}
