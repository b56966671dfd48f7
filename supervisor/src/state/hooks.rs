//! After a run (or a skip): the completion report, the hooks it calls for run one at a time
//! ([`crate::hooks`] starts and finishes each), then the next firing of a recurring task is
//! planned (back to the gate) or the task ends for good (`finish`, in [`super::finish`]).

use super::{Core, Exit};
use std::path::PathBuf;
use taskpool::record::{self, Status};

impl Core {
    pub(super) fn write_report(&mut self, status: Status) {
        let run_dir = self
            .record
            .current()
            .filter(|r| r.started_at.is_some())
            .map(|r| self.pool.run_dir(self.id, r.run));
        let mut report = crate::report::build(&self.record, run_dir.as_deref());
        report.status = status;
        self.record.report = Some(Box::new(report));
    }

    /// The hooks that `status` calls for, to run one after the other.
    pub(super) fn queue_hooks(&mut self, status: Status) {
        self.pending_hooks = crate::hooks::hooks_for(&self.record.spec.plan.hooks, status);
        self.pending_hooks.reverse(); // popped from the end
    }

    pub(super) fn start_next_hook(&mut self) -> bool {
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
    pub(super) fn after_hooks(&mut self) {
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
}
