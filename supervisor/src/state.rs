//! The task's lifecycle as the supervisor sees it ([`Life`]), and [`Core`]: everything the
//! supervisor knows about its task except its sockets. Every transition (pause, resume, the main
//! process exiting, the end of the run, terminate and its escalation, the clean-up of leftovers,
//! lingering) happens in a method here, which also keeps the on-disk record in step.

use crate::capture::Capture;
use crate::child::ProcessGroup;
use crate::stdin::StdinSink;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use taskpool::lock::UserLock;
use taskpool::record::{self, Record, State, Status};
use taskpool::{Info, Pool};

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

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
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
    /// The run is over and recorded.
    Ended {
        /// How the main process ended.
        exit: Exit,
    },
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

/// The supervisor's knowledge of its task.
pub struct Core {
    /// The pool.
    pub pool: Pool,
    /// The task id.
    pub id: u64,
    /// The live record (the last run is the current one).
    pub record: Record,
    record_path: PathBuf,
    /// Where the run is.
    pub life: Life,
    /// What to signal.
    pub group: ProcessGroup,
    /// The output.
    pub capture: Capture,
    /// The task's stdin.
    pub stdin: StdinSink,
    /// The user's lock file, held while the run lasts.
    pub user_lock: Option<UserLock>,
    /// The task's liveness lock, held until the supervisor exits.
    _lock: File,
    escalation: Option<Escalation>,
    grace: Duration,
    terminating: bool,
    leftovers: Leftovers,
    linger_until: Option<Instant>,
    /// A state change that followers have not been told about yet.
    pub state_changed: bool,
}

/// What a run was started with, to build the [`Core`].
pub struct Started {
    /// The pool.
    pub pool: Pool,
    /// The record, with the new run as its last.
    pub record: Record,
    /// The main pid.
    pub pid: Pid,
    /// The output capture.
    pub capture: Capture,
    /// The stdin.
    pub stdin: StdinSink,
    /// The user lock.
    pub user_lock: Option<UserLock>,
    /// The liveness lock.
    pub lock: File,
}

impl Core {
    /// The core of a run whose command has just been started.
    pub fn new(s: Started) -> Core {
        let grace = Duration::from_millis(s.record.spec.grace_ms);
        Core {
            id: s.record.id,
            // Relative to the task directory, our working directory: the record is still
            // written where the task is if the pool directory is renamed under it.
            record_path: PathBuf::from("record.json"),
            pool: s.pool,
            record: s.record,
            life: Life::Running {
                pid: s.pid,
                started: Instant::now(),
                paused: false,
            },
            group: ProcessGroup::led_by(s.pid),
            capture: s.capture,
            stdin: s.stdin,
            user_lock: s.user_lock,
            _lock: s.lock,
            escalation: None,
            grace,
            terminating: false,
            leftovers: Leftovers::NotYet,
            linger_until: None,
            state_changed: false,
        }
    }

    /// True once the run has ended.
    pub fn ended(&self) -> bool {
        matches!(self.life, Life::Ended { .. })
    }

    /// The main pid while it has not been reaped.
    pub fn main_pid(&self) -> Option<Pid> {
        match self.life {
            Life::Running { pid, .. } => Some(pid),
            _ => None,
        }
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
        if !self.ended() {
            info.streams = self.capture.streams(true);
            // A write failure is reported while the run lasts, not only in the final record.
            if info.reason.is_none() {
                info.reason.clone_from(&self.capture.write_error);
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

    /// Stop the process group. Errors: the run is over.
    pub fn pause(&mut self) -> taskpool::Result<()> {
        let Life::Running { paused, .. } = &mut self.life else {
            return Err(self.over("pause"));
        };
        let _ = self.group.signal(Signal::SIGSTOP);
        *paused = true;
        self.set_state(State::Paused);
        Ok(())
    }

    /// Continue a paused process group.
    pub fn resume(&mut self) -> taskpool::Result<()> {
        let Life::Running { paused, .. } = &mut self.life else {
            return Err(self.over("resume"));
        };
        let _ = self.group.signal(Signal::SIGCONT);
        *paused = false;
        self.set_state(State::Running);
        Ok(())
    }

    /// Send `sig` to the process group.
    pub fn signal(&mut self, sig: Signal) -> taskpool::Result<()> {
        if self.ended() {
            return Err(self.over("signal"));
        }
        self.group
            .signal(sig)
            .map_err(|e| taskpool::Error::io(format!("task {}: signalling", self.id), e.into()))
    }

    /// The error for a request that needs a live run.
    pub fn over(&self, what: &str) -> taskpool::Error {
        taskpool::Error::new(
            taskpool::ErrorKind::State,
            format!("task {} has ended; cannot {what} it", self.id),
        )
    }

    /// The main process was reaped.
    pub fn main_exited(&mut self, exit: Exit, now: Instant) {
        if let Life::Running { .. } = self.life {
            self.life = Life::Draining {
                exit,
                until: now + DRAIN_AFTER_EXIT,
            };
        }
    }

    /// End the run if it is time: the main process has exited and the pipes are closed, or the
    /// drain time is over.
    pub fn maybe_end(&mut self, now: Instant, scratch: &mut [u8]) {
        if let Life::Draining { exit, until } = self.life {
            if self.capture.pipes_closed() || now >= until {
                self.end_run(exit, scratch);
            }
        }
    }

    fn end_run(&mut self, exit: Exit, scratch: &mut [u8]) {
        self.capture.drain_and_close(scratch, FINAL_DRAIN_MAX);
        self.stdin = StdinSink::Closed;
        let streams = self.capture.streams(false);
        if let Some(run) = self.record.current_mut() {
            run.ended_at = Some(record::now());
            run.streams = streams;
            match exit {
                Exit::Code(c) => {
                    run.exit_code = Some(c);
                    run.signal = None;
                    run.status = Some(if c == 0 {
                        Status::Success
                    } else {
                        Status::Failure
                    });
                }
                Exit::Signal(s) => {
                    run.exit_code = None;
                    run.signal = Some(taskpool::signal::signal_name(s).to_owned());
                    run.status = Some(Status::Killed);
                }
            }
        }
        if let Some(e) = self.capture.write_error.take() {
            self.record.reason.get_or_insert(e);
        }
        self.record.state = State::Exited;
        self.store(true);
        let _ = std::fs::remove_file(crate::start::RESERVE);
        self.user_lock = None;
        self.life = Life::Ended { exit };
        self.escalation = None;
        let now = Instant::now();
        self.linger_until = self
            .record
            .spec
            .linger_ms
            .map(|ms| now + Duration::from_millis(ms));
        if self.linger_until.is_none() {
            // Gone with the run, not a moment later: a client that finds no socket reads the
            // final record.
            let _ = std::fs::remove_file(crate::start::SOCK);
        }
        self.leftovers = if self.leftovers_exist() {
            let _ = self.group.signal(Signal::SIGTERM);
            let _ = self.group.signal(Signal::SIGCONT);
            crate::child::signal_orphans(Signal::SIGTERM);
            crate::child::signal_orphans(Signal::SIGCONT);
            Leftovers::Signalled {
                kill_at: now + self.grace,
            }
        } else {
            Leftovers::Done
        };
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
    /// children (orphans that left the group, such as a daemon; the main process is reaped).
    fn leftovers_exist(&self) -> bool {
        self.group.exists() || !crate::child::orphans().is_empty()
    }

    /// End the task: INT now, TERM after `grace`, KILL after another `grace` (default: the
    /// task's). Once the run has ended, only makes the supervisor exit without lingering.
    pub fn terminate(&mut self, grace: Option<Duration>, why: &str) {
        if self.terminating {
            return;
        }
        self.terminating = true;
        if let Some(g) = grace {
            self.grace = g;
        }
        if self.ended() {
            return;
        }
        self.record.reason = Some(why.to_owned());
        let _ = self.group.signal(Signal::SIGINT);
        let _ = self.group.signal(Signal::SIGCONT);
        if let Life::Running { paused, .. } = &mut self.life {
            *paused = false;
        }
        self.set_state(State::Running);
        self.escalation = Some(Escalation {
            next: Signal::SIGTERM,
            at: Instant::now() + self.grace,
        });
    }

    /// Carry out whatever is due at `now`.
    pub fn on_time(&mut self, now: Instant, scratch: &mut [u8]) {
        if let Some(esc) = self.escalation {
            if now >= esc.at {
                let _ = self.group.signal(esc.next);
                let _ = self.group.signal(Signal::SIGCONT);
                self.escalation = (esc.next == Signal::SIGTERM).then(|| Escalation {
                    next: Signal::SIGKILL,
                    at: now + self.grace,
                });
            }
        }
        self.maybe_end(now, scratch);
        if let Leftovers::Signalled { kill_at } = self.leftovers {
            if now >= kill_at {
                let _ = self.group.signal(Signal::SIGKILL);
                crate::child::signal_orphans(Signal::SIGKILL);
                self.leftovers = Leftovers::Done;
            }
        }
    }

    /// The next time something is due, if anything is.
    pub fn deadline(&self) -> Option<Instant> {
        let drain = match self.life {
            Life::Draining { until, .. } => Some(until),
            _ => None,
        };
        let kill = match self.leftovers {
            Leftovers::Signalled { kill_at } => Some(kill_at),
            _ => None,
        };
        // The linger counts once the leftovers are gone: until then their SIGKILL is due first,
        // and a linger already over must not make the loop spin.
        let linger = self
            .linger_until
            .filter(|_| !self.terminating && self.leftovers == Leftovers::Done);
        [drain, self.escalation.map(|e| e.at), kill, linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// True when the supervisor's work is done: the run has ended, nothing is left in the
    /// process group, and there is no lingering (or a terminate cut it short).
    pub fn finished(&self, now: Instant) -> bool {
        self.ended()
            && self.leftovers == Leftovers::Done
            && (self.terminating || self.linger_until.is_none_or(|u| now >= u))
    }
}
