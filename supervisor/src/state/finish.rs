//! The end: `terminate` in every phase (a waiting task is cancelled, a running one gets INT, TERM
//! and KILL a grace apart, hooks are killed), the final record (stored durably), the task's
//! leftovers (SIGTERM after the run's end, SIGKILL after the grace) and the linger, after which
//! the supervisor may exit.

use super::{Core, Escalation, Leftovers, Life, Phase};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use taskpool::record::State;

impl Core {
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
    pub(super) fn escalate_now(&mut self) {
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

    /// The task has ended for good: the final record, durably.
    pub(super) fn finish(&mut self) {
        self.record.state = if self.record.runs.is_empty() {
            State::Skipped
        } else {
            State::Exited
        };
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.next_firing = None;
        self.enter(Phase::Done);
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
    pub(super) fn leftovers_exist(&self) -> bool {
        let ours = self.helpers();
        self.group.is_some_and(|g| g.exists())
            || crate::child::orphans()
                .iter()
                .any(|p| !ours.contains(&Some(*p)))
    }

    /// The supervisor's children that are not the task's leftovers.
    pub(super) fn helpers(&self) -> [Option<Pid>; 3] {
        [self.lock_waiter_pid(), self.hook_pid(), self.main_pid()]
    }

    /// True when the supervisor's work is done: the task has ended, nothing is left in the
    /// process group, and there is no lingering (or a terminate cut it short).
    pub fn finished(&self, now: Instant) -> bool {
        self.ended()
            && self.leftovers == Leftovers::Done
            && !self.waker.busy()
            && (self.terminating || self.linger_until.is_none_or(|u| now >= u))
    }
}
