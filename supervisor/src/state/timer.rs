//! Time in the plan: when the first (or a restored task's next) run may start, the firings of a
//! recurring task, and the one wall-clock timer (a `CLOCK_REALTIME` timerfd, absolute, so a changed
//! clock or a suspend is taken into account) armed for whatever is due next. A firing that comes
//! while the previous one is still served (waiting at the gate, running, restarting, in its
//! hooks) is counted as an overlap and skipped.

use super::{Core, Phase};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::AsFd;
use taskpool::plan::Repeat;
use taskpool::record::{self, State, Timestamp};

impl Core {
    /// Work out when the first (or, for a restored task, the next) run may start.
    pub(super) fn plan_first_start(&mut self) {
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
    pub(super) fn firing_after(&self, t: Timestamp) -> Option<Timestamp> {
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

    /// The timer fired.
    pub fn timer_fired(&mut self) {
        if let Some(t) = &self.timer {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(t.as_fd(), &mut buf);
        }
        self.timer_at = None;
        let now = record::now();
        if let Some(f) = self.next_firing {
            if f <= now {
                // A firing while the previous one is still served: its run waits at the gate
                // (for a slot, a lock, a restart's backoff), runs, or its hooks do.
                self.record.overlaps += 1;
                self.next_firing = self.firing_after(now);
                self.store(false);
            }
        }
        self.rearm();
    }

    /// The gate is past the start time: the firing the next run is for has come. For a
    /// recurring task's first attempt, plan the next firing now, so that one coming while the
    /// run still waits (for a slot or a lock) counts as an overlap, as it does while it runs.
    pub(super) fn firing_came(&mut self) {
        if self.record.spec.plan.repeat.is_some()
            && self.restarts == 0
            && self.next_firing.is_none()
        {
            let now = record::now();
            let from = self.record.next_start.unwrap_or(now);
            self.next_firing = self.firing_after(from.max(now));
            self.rearm();
        }
    }

    /// Arm the timer for what is due next: in the gate, the start time while it is ahead (a
    /// start time that has passed is never armed again: the timer would fire at once, for
    /// ever); in the gate, the run and the hooks, a recurring task's next firing.
    pub(super) fn rearm(&mut self) {
        let at = match self.phase {
            Phase::Gate => {
                let now = record::now();
                let start = self.record.next_start.filter(|&s| s > now);
                start.into_iter().chain(self.next_firing).min()
            }
            Phase::Run | Phase::Hooks => self.next_firing,
            Phase::Done => None,
        };
        self.arm_timer(at);
    }

    pub(super) fn arm_timer(&mut self, at: Option<Timestamp>) {
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

    /// Wait in the gate (state `scheduled`) for the next run at `at`.
    pub(super) fn schedule(&mut self, at: Timestamp) {
        self.record.next_start = Some(at);
        self.record.state = State::Scheduled;
        self.enter(Phase::Gate);
    }
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
