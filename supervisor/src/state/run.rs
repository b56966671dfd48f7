//! The run: starting the command, pause, resume and signals while it runs, the main process
//! exiting, the drain of its pipes, and the end of the run with its status, after which the task
//! is restarted (back to the gate after the backoff) or goes on to its hooks. A run that could not
//! start is recorded as a failed run and goes the same way.

use super::{Core, Exit, Leftovers, Life, Phase, DRAIN_AFTER_EXIT, FINAL_DRAIN_MAX};
use crate::child::ProcessGroup;
use crate::stdin::StdinSink;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use taskpool::plan::RestartPolicy;
use taskpool::record::{self, RunRecord, State, Status};
use taskpool::Error;

impl Core {
    pub(super) fn begin_run(&mut self) -> taskpool::Result<()> {
        if let Leftovers::Signalled { .. } = self.leftovers {
            // The previous run's leftovers have had their SIGTERM; a new run is not started
            // beside them.
            if let Some(g) = self.group {
                let _ = g.signal(Signal::SIGKILL);
            }
            crate::child::signal_orphans(Signal::SIGKILL, &self.helpers());
            self.leftovers = Leftovers::Done;
        }
        self.sent_kill = false;
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
        self.record.next_start = None;
        self.record.waiting_for = None;
        self.record.reason = None;
        self.record.state = State::Running;
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
        self.ready = started.ready;
        self.escalation = None;
        self.leftovers = Leftovers::NotYet;
        self.timed_out = false;
        self.timeout_at = self
            .record
            .spec
            .plan
            .timeout_ms
            .map(|ms| now + Duration::from_millis(ms));
        self.enter(Phase::Run);
        Ok(())
    }

    /// A run could not start (its program vanished, its lock file was held): it is recorded as
    /// a failed run with the reason, and the plan goes on (a restart, the next firing).
    pub(super) fn failed_start(&mut self, e: Error) {
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

    /// The readiness channel has input: the run may now be ready (stored in its `ready_at`),
    /// and a `STATUS=` goes into meta `status`.
    pub fn on_ready_input(&mut self) {
        let Some(ep) = &mut self.ready else { return };
        let heard = ep.read(nix::unistd::geteuid().as_raw());
        if heard.closed {
            self.ready = None;
        }
        let mut changed = false;
        if let Some(status) = heard.status {
            let mut patch = serde_json::Map::new();
            patch.insert("status".into(), status.into());
            changed |= taskpool::meta::apply_patch(&mut self.record.meta, &patch).is_ok();
        }
        if heard.ready && self.run_active() {
            if let Some(r) = self.record.current_mut().filter(|r| r.ready_at.is_none()) {
                r.ready_at = Some(record::now());
                changed = true;
            }
        }
        if changed {
            self.state_changed = true;
            self.store(false);
        }
    }

    /// The current run is going on and has said it is ready.
    pub fn ready_now(&self) -> bool {
        self.run_active() && self.record.current().is_some_and(|r| r.ready_at.is_some())
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
        self.sent_kill |= sig == Signal::SIGKILL;
        match self.group {
            Some(g) => g.signal(sig).map_err(|e| {
                taskpool::Error::io(format!("task {}: signalling", self.id), e.into())
            }),
            None => Ok(()),
        }
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

    pub(super) fn end_run(&mut self, exit: Exit, scratch: &mut [u8]) {
        let mut write_error = None;
        let mut streams = Default::default();
        if let Some(cap) = &mut self.capture {
            cap.drain_and_close(scratch, FINAL_DRAIN_MAX);
            streams = cap.streams(false);
            write_error = cap.write_error.take();
        }
        self.stdin = StdinSink::Closed;
        self.ready = None;
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
        if let (Exit::Signal(s), false, false) = (exit, self.timed_out, self.sent_kill) {
            let name = taskpool::signal::signal_name(s);
            if let Some(why) =
                taskpool::limits::killed_by_limit(&self.record.spec.limits, name, self.main_cpu)
            {
                self.record.reason = Some(why);
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
    pub(super) fn run_over(&mut self, status: Status) {
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
        self.enter(Phase::Hooks);
    }
}
