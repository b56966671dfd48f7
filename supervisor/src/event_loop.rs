//! The event loop: one `poll` over a fixed set of descriptors — the signalfd, the listener, the
//! output pipes, the stdin pipe (only while bytes are queued), the background caller's pidfd, the
//! wall-clock timer of a scheduled task, the socket of a `wake` in flight to the group's queue
//! ([`crate::waker`]), the run's readiness channel ([`crate::ready`]), the pidfds of the predecessors it waits for, and the
//! clients — with a single timeout, the earliest of the [`Core`]'s deadlines. With nothing due
//! the timeout is infinite: an idle task costs no wake-ups. The pollfd vector, the read buffer and
//! the clients' buffers are reused, so the steady state allocates nothing.

use crate::capture::Pulled;
use crate::clients::{self, Client};
use crate::pagebuf::PageBuf;
use crate::requests;
use crate::state::{Core, Exit};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;
use taskpool::protocol::{Response, Stream, PROTOCOL_VERSION};

/// Bytes read from a pipe at once, and the size of the follow pieces.
const READ_CHUNK: usize = 1 << 20;

// Fixed slots of the pollfd vector; clients follow.
const SIGNALS: usize = 0;
const LISTENER: usize = 1;
const STDOUT: usize = 2;
const STDERR: usize = 3;
const STDIN: usize = 4;
const LEADER: usize = 5;
const TIMER: usize = 6;
const WAKER: usize = 7;
const READY: usize = 8;
/// Then one slot per watched predecessor, then the clients.
const WATCHED: usize = 9;

/// The running supervisor.
pub struct Supervisor {
    core: Core,
    listener: OwnedFd,
    /// False while accepting is impossible (out of descriptors) until a client leaves.
    accepting: bool,
    signals: SignalFd,
    leader: Option<OwnedFd>,
    clients: Vec<Client>,
    pollfds: Vec<libc::pollfd>,
    /// Where the slot holders' pidfds start in `pollfds`.
    holders_at: usize,
    /// Where the clients start in `pollfds`.
    clients_at: usize,
    scratch: PageBuf,
    hello: Response,
}

impl Supervisor {
    /// A supervisor for the run in `core`, serving on `listener`.
    pub fn new(
        core: Core,
        listener: OwnedFd,
        signals: SignalFd,
        leader: Option<OwnedFd>,
    ) -> Supervisor {
        let hello = Response::Hello {
            protocol: PROTOCOL_VERSION,
            id: core.id,
            supervisor_pid: std::process::id() as i32,
        };
        Supervisor {
            core,
            listener,
            accepting: true,
            signals,
            leader,
            clients: Vec::new(),
            pollfds: Vec::with_capacity(WATCHED + 4),
            holders_at: WATCHED,
            clients_at: WATCHED,
            scratch: PageBuf::new(READ_CHUNK),
            hello,
        }
    }

    /// End the task at once (the background caller was already gone at start).
    pub fn terminate_now(&mut self, why: &str) {
        self.core.terminate(None, why);
    }

    /// Serve until the run has ended (and any linger is over); returns the exit code.
    pub fn run(mut self) -> i32 {
        loop {
            let now = Instant::now();
            self.core.on_time(now, &mut self.scratch);
            self.core.advance();
            self.serve_clients();
            // A request may have moved the plan on (terminate or kill of a waiting task, a
            // wake): carry that out before sleeping, and tell the clients.
            self.core.advance();
            self.serve_clients();
            if self.core.finished(Instant::now()) {
                break;
            }
            if std::mem::take(&mut self.core.reserve_due) && self.core.run_active() {
                crate::start::reserve_room(&self.core.record);
            }
            self.fill_pollfds();
            let timeout = self.timeout_ms();
            // SAFETY: the pointer and length describe the initialised pollfd vector, which is not
            // touched during the call.
            let n = unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    timeout,
                )
            };
            if n < 0 {
                continue; // EINTR; nothing else can happen with a valid vector
            }
            if n > 0 {
                self.dispatch();
            }
        }
        self.shutdown()
    }

    fn timeout_ms(&self) -> libc::c_int {
        match self.core.deadline() {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Round up, so the loop does not wake just before the deadline.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        }
    }

    fn fill_pollfds(&mut self) {
        let pfd = |fd: Option<i32>, events: libc::c_short| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events,
            revents: 0,
        };
        let pipe = |s: Stream| {
            self.core
                .capture
                .as_ref()
                .and_then(|c| c.stream(s).pipe.as_ref().map(|p| p.as_raw_fd()))
        };
        let stdin = self.core.stdin.wants_write().map(|f| f.as_raw_fd());
        let fixed = [
            pfd(Some(self.signals.as_raw_fd()), libc::POLLIN),
            pfd(
                self.accepting.then(|| self.listener.as_raw_fd()),
                libc::POLLIN,
            ),
            pfd(pipe(Stream::Stdout), libc::POLLIN),
            pfd(pipe(Stream::Stderr), libc::POLLIN),
            pfd(stdin, libc::POLLOUT),
            pfd(self.leader.as_ref().map(|p| p.as_raw_fd()), libc::POLLIN),
            pfd(self.core.timer_fd(), libc::POLLIN),
            match self.core.waker.pollfd() {
                Some((fd, events)) => pfd(Some(fd), events),
                None => pfd(None, 0),
            },
            pfd(self.core.ready.as_ref().map(|r| r.fd()), libc::POLLIN),
        ];
        self.pollfds.clear();
        self.pollfds.extend_from_slice(&fixed);
        for w in &self.core.watched {
            self.pollfds
                .push(pfd(Some(w.pidfd.as_raw_fd()), libc::POLLIN));
        }
        self.holders_at = self.pollfds.len();
        for h in &self.core.holders {
            self.pollfds.push(pfd(Some(h.as_raw_fd()), libc::POLLIN));
        }
        self.clients_at = self.pollfds.len();
        let room = self.core.stdin.room();
        for c in &self.clients {
            self.pollfds.push(pfd(Some(c.fd()), c.interest(room)));
        }
    }

    fn revents(&self, slot: usize) -> libc::c_short {
        self.pollfds[slot].revents
    }

    fn dispatch(&mut self) {
        if self.revents(SIGNALS) != 0 {
            self.on_signals();
        }
        for (slot, s) in [(STDOUT, Stream::Stdout), (STDERR, Stream::Stderr)] {
            if self.revents(slot) != 0 {
                let pulled = self
                    .core
                    .capture
                    .as_mut()
                    .map(|c| c.pull(s, &mut self.scratch));
                if let Some(Pulled::Eof) = pulled {
                    self.core.maybe_end(Instant::now(), &mut self.scratch);
                }
            }
        }
        if self.revents(TIMER) != 0 {
            self.core.timer_fired();
        }
        if self.revents(WAKER) != 0 {
            self.core.waker.on_ready(&self.core.pool);
        }
        if self.revents(READY) != 0 {
            self.core.on_ready_input();
        }
        // Highest first: each one found gone is swap-removed.
        for i in (0..self.holders_at - WATCHED).rev() {
            if self.pollfds[WATCHED + i].revents != 0 {
                self.core.predecessor_gone(i);
            }
        }
        if self.pollfds[self.holders_at..self.clients_at]
            .iter()
            .any(|p| p.revents != 0)
        {
            self.core.wake();
        }
        if self.revents(STDIN) != 0 {
            self.core.stdin.flush();
        }
        if self.revents(LEADER) != 0 {
            self.leader = None;
            self.core
                .terminate(None, "terminated: the caller's process group leader exited");
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            let ev = self.pollfds[self.clients_at + i].revents;
            if ev != 0 {
                c.on_events(ev);
            }
        }
        if self.revents(LISTENER) != 0 {
            // Clients found gone above no longer count against the limit: a newcomer that
            // arrives in the same round as their hangups is served.
            self.clients.retain(|c| !c.dead);
            let shared = self.core.pool.shared_gid();
            self.accepting =
                clients::accept_all(&self.listener, shared, &self.hello, &mut self.clients);
        }
    }

    fn on_signals(&mut self) {
        let mut reap = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => reap = true,
                Ok(s @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP)) => {
                    let why = if self.core.record.spec.engine.is_scheduler() && s == Signal::SIGTERM
                    {
                        // The batch script's process is the supervisor: this is Slurm's.
                        "terminated: Slurm sent the supervisor SIGTERM (scancel, or the job's time limit)".to_owned()
                    } else {
                        format!("terminated: the supervisor received {}", s.as_str())
                    };
                    self.core.terminate(None, &why);
                }
                // Only a supervisor in a scheduler's job reads it (see `control`).
                Ok(Signal::SIGUSR2) => crate::control::take(&mut self.core),
                _ => {}
            }
        }
        if reap {
            self.reap();
        }
    }

    /// Reap every child that has exited: the main process gives the run's outcome; any other is
    /// an orphan of the task that came to us as subreaper.
    fn reap(&mut self) {
        let now = Instant::now();
        loop {
            // wait4 rather than waitpid: the main process's CPU time tells a kill at the `cpu`
            // hard limit from any other SIGKILL.
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value; wait4 writes status and rusage.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are to live locals.
            let raw = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut usage) };
            if raw == 0 {
                break;
            }
            if raw < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    _ => break, // ECHILD: none left
                }
            }
            let pid = Pid::from_raw(raw);
            let exit = if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                match nix::sys::signal::Signal::try_from(libc::WTERMSIG(status)) {
                    Ok(sig) => Exit::Signal(sig),
                    Err(_) => continue,
                }
            } else {
                continue;
            };
            if Some(pid) == self.core.main_pid() {
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                self.core.main_cpu = Some(secs(usage.ru_utime) + secs(usage.ru_stime));
                self.core.main_exited(exit, now);
            } else if Some(pid) == self.core.lock_waiter_pid() {
                self.core.lock_waiter_done(exit == Exit::Code(0));
            } else if Some(pid) == self.core.hook_pid() {
                self.core.hook_exited(exit);
            }
        }
        self.core.reaped();
    }

    fn serve_clients(&mut self) {
        if self.core.run_started {
            self.core.run_started = false;
            requests::run_started(&self.core, &mut self.clients);
        }
        if self.core.state_changed {
            self.core.state_changed = false;
            requests::broadcast_state(&self.core, &mut self.clients);
        }
        for c in self.clients.iter_mut() {
            requests::serve(&mut self.core, c, &mut self.scratch);
        }
        // A request may have changed the state for everyone (pause, resume).
        if self.core.state_changed {
            self.core.state_changed = false;
            requests::broadcast_state(&self.core, &mut self.clients);
            for c in self.clients.iter_mut() {
                c.flush();
            }
        }
        let before = self.clients.len();
        self.clients.retain(|c| !c.dead);
        if self.clients.len() < before {
            self.accepting = true;
        }
    }

    /// Remove the socket, give every client a last chance to get its replies, and exit.
    fn shutdown(mut self) -> i32 {
        let _ = std::fs::remove_file(crate::start::SOCK);
        for c in self.clients.iter_mut() {
            c.last_words();
        }
        match self.core.record.status() {
            Some(s) if s.is_ok() => 0,
            _ => 1,
        }
    }
}
