//! The gate: the conditions checked before each run, in order — predecessors (first run only),
//! the start time, the group slot, the lock file — and the waits they cause. Each condition that
//! is not met leaves the task in a live state (`waiting`, `scheduled`, `queued`) with the event
//! that can change it watched: a predecessor's supervisor exiting (a pidfd), the wall-clock timer
//! ([`super::timer`]), a `wake` or a slot holder's exit, a lock-waiter child returning. A condition
//! that can never be met ends the task `skipped` (`skip`).

use super::{Core, FirstStep, Gate, Phase, Watched};
use nix::sys::signal::Signal;
use std::os::fd::{FromRawFd, OwnedFd};
use taskpool::lock::UserLock;
use taskpool::plan::Repeat;
use taskpool::record::{self, State, Status, WaitingFor};
use taskpool::{group, Error, ErrorKind};

impl Core {
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
        // No loop follows: what the queue is owed is sent now.
        self.waker.finish_blocking(&self.pool);
    }

    /// End the task `skipped` with `why` at the first step, without running it: its
    /// scheduler job ended before a supervisor started it (a launch's `skip`).
    pub fn skip_at_gate(&mut self, why: String) {
        self.skip_now = Some(why);
    }

    pub(super) fn gate(&mut self) -> taskpool::Result<Gate> {
        if let Some(why) = self.skip_now.take() {
            return Ok(Gate::Skip(why));
        }
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
                self.rearm();
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
        self.firing_came();
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
                            self.waker.kick(&self.pool, &name);
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
    pub(super) fn check_predecessors(&mut self) -> Option<String> {
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
    pub(super) fn look_at(&self, id: u64) -> Result<Result<Status, Watched>, String> {
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

    pub(super) fn stop_lock_waiter(&mut self) {
        if let Some((pid, _)) = self.lock_waiter.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }

    pub(super) fn dequeue(&mut self) {
        self.holders.clear();
        if self.queued {
            if let Some(name) = &self.record.spec.plan.group {
                let _ = group::dequeue(&self.pool, name, self.id, self.record.spec.plan.priority);
                self.waker.kick(&self.pool, name);
            }
            self.queued = false;
        }
    }

    /// Release what a run holds: the user's lock file and the group slot (waking the next in
    /// line).
    pub(super) fn release_run_resources(&mut self) {
        self.user_lock = None;
        if self.slot.take().is_some() {
            if let Some(name) = &self.record.spec.plan.group {
                self.waker.kick(&self.pool, name);
            }
        }
        self.slot_check = true;
    }

    /// The task can never run (again): end it `skipped` (or, when it ran before, with its last
    /// run's status), running the hooks that apply.
    pub(super) fn skip(&mut self, why: &str) {
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
        self.enter(Phase::Hooks);
    }

    /// Cancel a task that waits: it ends without running (again).
    pub(super) fn cancel(&mut self, why: &str) {
        if self.phase == Phase::Gate {
            self.skip(why);
        }
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
