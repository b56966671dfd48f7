//! The per-task supervisor of taskpool: one small, single-threaded process per task that runs the
//! task's command, captures its output, answers clients on a unix socket, and records the end.
//! The `taskpool-supervisor` program (built from the `taskpool-cli` package) is a three-line
//! `main` that calls [`main`]; the `taskpool` library starts it, never forks itself.
//!
//! # Theory of operation
//!
//! **Launch** ([`launch`]). The library runs `taskpool-supervisor --pool DIR` (or, started
//! ahead of need by [`taskpool::spawn::prestart_supervisor`], with no arguments: the launch line
//! then names the pool) with a pipe on
//! stdin carrying one JSON [`Launch`](taskpool::protocol::Launch) line, and a pipe on stdout on
//! which the supervisor writes exactly one [`LaunchReply`] line: `ready` once it holds the
//! task's lock, listens, and the command has been executed, or `error` with the real reason. The
//! supervisor reads its orders, opens the pool, sets its umask (077, or 007 in a group-shared
//! pool), and detaches as the task's behavior says: a *daemon* calls `setsid` then forks (the
//! parent exits at once; the child, in a new session but not its leader, can never get a
//! controlling terminal); a *background* supervisor opens a pidfd on its caller's process-group
//! leader, forks, and ends the task when that pidfd becomes readable; a *foreground* one stays
//! the caller's child. It then becomes a child subreaper and changes into the task's directory,
//! so that the socket is bound by a short relative name whatever the pool's path length.
//!
//! **In a batch** ([`batch`]). For many new tasks at once the library runs one
//! `taskpool-supervisor --pool DIR --batch` and writes a launch line per task; this batch
//! launcher forks (without `exec`) one child per line, a few at once, and passes each child's reply
//! on. The child points its stdin at `/dev/null` and its stdout at a reply pipe of its own, closes
//! whatever else it inherited, and from its orders on is the supervisor described here: it
//! detaches, accepts and starts its task exactly as a supervisor started alone does.
//!
//! **In a scheduler's job** (`--pool DIR --in-job ID`, the command a Slurm task's batch script
//! execs; see `docs/slurm.md`). There is no launch line and no reply: the orders are the task's
//! record, written queued at submission. The supervisor does not detach (it is the job's one
//! process), waits for the task's lock (the submitter holds it until the job id is recorded),
//! records its node, reads SIGUSR2 too (the wake of a request from another node, [`control`]),
//! and otherwise carries on as below. It exits 0 only when the task ended `success` or
//! `warning`, so that the scheduler's `afterok` means `--after`.
//!
//! **Ending a task that can never run** (a launch line with `restore` and `skip`): a reader
//! that finds a scheduler task's job ended before its supervisor started hands the end to a
//! local supervisor, which takes the lock, checks the record is still live, and skips the task
//! at its gate (report, hooks, durable final record) exactly as it would a local task whose
//! predecessor failed.
//!
//! **Accept** ([`start::accept`]). Take the task's `lock` (an OFD lock: liveness probes never
//! take it), build the record (or, on restart or restore, load it under the lock), store it live,
//! bind `sock.tmp`, listen, and rename it to `sock` (a socket that exists always listens), block
//! SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGPIPE and open a signalfd for the first four.
//!
//! **First step** ([`state::Core::first_step`]). The task's plan is checked at its gate
//! ([`state::gate`]): predecessors, start time, group slot, lock file. When nothing stands in the way
//! the run starts at once ([`start::start_run`]: create `run-N/{stdout,stderr,chunks}`, make the
//! pipes (or, with `--pty`, a pseudo-terminal: [`pty`]), start the command ([`child::spawn`]: a `CLONE_VFORK` child, as `posix_spawn` makes) in
//! its own process group with `PR_SET_PDEATHSIG`) and the
//! reply is `ready`; when something does, the record is stored durably and the reply is
//! `accepted` (the task is `queued`, `waiting` or `scheduled`). If anything fails, what was made is
//! removed and the error is the reply. Then stdout (and stderr, unless in the foreground) are
//! pointed at `/dev/null`.
//!
//! **Loop** ([`event_loop`]). One `poll` over the signalfd, the listener, the output pipes, the
//! stdin pipe (only while bytes are queued for it), the background caller's pidfd, the wall-clock
//! timerfd of a scheduled or recurring task, the pidfds of the predecessors it waits for, and the
//! clients, with one timeout: the earliest deadline of the drain after the main process exits, a
//! terminate's next signal, a `--timeout`, a hook's timeout, the SIGKILL of leftovers, or the end
//! of a linger. After every batch of events the plan is moved on ([`state::Core::advance`]). With no deadline
//! the supervisor sleeps in `poll` with no timeout: an idle task costs nothing, and holds little
//! memory: start-up's freed heap is returned to the kernel before the loop, and the read buffer
//! ([`pagebuf`]) is only backed by memory once it is used. Output ([`capture`]) is spliced from
//! the pipes into the stream's file (through a relay pipe once the task writes fast), with one
//! chunk entry per splice in `chunks`; no byte passes through the supervisor's memory, and the
//! memory buffer is the page cache's copy of the log's tail. Only a stream whose log stops taking
//! bytes (a full disk) or a filesystem that cannot splice falls back to copying, into a [`ring`]
//! allocated then. Requests ([`requests`]) are answered from one flat `match`; follow
//! subscriptions are fed from the run's files (with `sendfile(2)`), not from memory, so a
//! follower costs O(1) memory however far behind it is. Every state change goes through [`state::Core`] (the state in
//! [`state`], each phase's transitions in its own file: [`state::gate`], [`state::run`],
//! [`state::hooks`], [`state::finish`], [`state::timer`]), and every phase change through one
//! method, which keeps the record in step (replaced atomically; fsync'd only for the final record).
//!
//! **End of a run** ([`state::run`]). A run has ended when the main process has been reaped and both pipes are
//! at end of file, or [`state::DRAIN_AFTER_EXIT`] after the main process was reaped, whichever
//! comes first (a grandchild holding stdout must not keep `wait` hanging). The supervisor then
//! reads what is left in the pipes, closes them, records the exit code or signal, status (with
//! `--warn-codes` and `--timeout` taken into account), end time and final counters, releases the
//! user's lock file and the group slot (waking the next queued task), writes the completion
//! report, and sends `end` to followers once they have had every byte. Whatever is left in the
//! task's process group gets SIGTERM, and SIGKILL after the grace, and so do the supervisor's own
//! remaining children other than its hooks and lock waiter: as a subreaper it inherits what the
//! task orphaned, including a daemon that left the group ([`child::orphans`]). Then a restart
//! is planned (after its backoff), or the hooks run ([`state::hooks`], [`hooks`], one at a time, each its own
//! process group with a timeout) and a recurring task's next firing is planned; otherwise the task
//! has ended for good: the final record is stored durably, waiters get `end`, and the supervisor
//! removes its socket and exits, unless asked to linger. `terminate` (or SIGTERM, SIGINT or SIGHUP
//! to the supervisor, or a background caller's exit) cancels a waiting task, or sends SIGINT to
//! the group, then SIGTERM and SIGKILL a grace apart, with no restart or further firing, and
//! ignores the linger.
//!
//! **If the supervisor dies.** The main process gets SIGKILL (`PR_SET_PDEATHSIG`). Its own
//! children in the task's process group are not signalled by the kernel: they are re-parented to
//! the nearest subreaper (or init) and keep running until they exit, or die of SIGPIPE when they
//! next write to a pipe whose reader (the supervisor) is gone. The record still says live; any
//! reader that finds the task's lock free marks it `lost`.
//!
//! # Pitfalls: pipes and signals
//!
//! - **Pipes stay open as long as any process holds a write end.** The supervisor keeps no copy
//!   of the child's ends (they are closed as soon as the command is started), and every
//!   descriptor it owns is close-on-exec, or the task would inherit the socket, the lock, the
//!   signalfd. A grandchild that inherits stdout keeps the pipe open after the main process
//!   exits: hence the bounded drain rather than waiting for end of file.
//! - **A full pipe blocks its writer.** The supervisor reads the output pipes whenever they are
//!   readable and never blocks on a client, so a client that does not read cannot stall the
//!   task: its output buffer is bounded, and while it is full the supervisor stops serving that
//!   client instead. The stdin pipe is written nonblocking from a bounded queue; a task that never
//!   reads its stdin makes writers wait, not the supervisor.
//! - **Writing to a closed pipe or socket raises SIGPIPE**, which kills by default. SIGPIPE is
//!   blocked, sockets are written with `MSG_NOSIGNAL`, and EPIPE is handled where it arrives.
//! - **Signals are read from a signalfd, not handled asynchronously**: they are blocked first,
//!   so none is lost between start-up and the first `poll`, and the loop sees them in order with
//!   everything else. The child must not inherit the blocked mask (a mask survives `exec`), nor
//!   signals ignored by whoever started the
//!   supervisor (a shell's background job ignores SIGINT, which would make `terminate`'s first
//!   signal a no-op): the child empties its mask and resets every disposition before `exec`. The
//!   supervisor resets its own dispositions of the signals it reads, since an ignored signal is
//!   discarded before a signalfd can see it.
//! - **SIGCHLD coalesces**: one signal may stand for several exits, so every SIGCHLD reaps in a
//!   `waitpid(-1, WNOHANG)` loop. As a subreaper the supervisor also reaps the task's orphans.
//! - **A terminal's master reads `EIO`, not end of file**, once every process holding the slave
//!   has closed it (`--pty`): the capture takes it as the end of the output. The supervisor opens
//!   the slave with `O_NOCTTY` (it must never get a controlling terminal) and closes its copy once
//!   the child has it; the child becomes a session leader (`setsid`) and takes the slave as its
//!   controlling terminal (`TIOCSCTTY`), so the kernel's job control and SIGHUP work as in a
//!   terminal window. A terminal cannot be spliced: its bytes take the copy path.
//! - **A process group id names a group only while it has members.** The supervisor signals the
//!   group (`kill(-pgid)`) while the run lasts and, after the end, only as long as a member
//!   remains (`kill(-pgid, 0)`).
//! - **A stopped group does not act on SIGINT or SIGTERM** until continued: terminating a paused
//!   task sends SIGCONT after each signal.

#![deny(missing_docs)]

pub mod batch;
pub mod capture;
pub mod child;
pub mod clients;
pub mod control;
pub mod event_loop;
pub mod fd;
pub mod hooks;
pub mod launch;
pub mod pagebuf;
pub mod pty;
pub mod ready;
pub mod report;
pub mod requests;
pub mod ring;
pub mod start;
pub mod state;
pub mod stdin;
pub mod waker;

use taskpool::protocol::LaunchReply;
use taskpool::record::Behavior;

/// Run the supervisor; returns the process exit code: 0 when the task ended `success` or
/// `warning`, 1 otherwise (it failed, was killed, timed out, was skipped, or could not be
/// started). A scheduler's `afterok` dependency means what `--after` means because of this.
pub fn main() -> i32 {
    close_inherited_fds();
    let args = match launch::args() {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if args.batch {
        return batch::run(args);
    }
    let orders = match launch::read_orders(args) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    supervise(orders)
}

/// Be the supervisor of the task `orders` name: detach, accept it, start it, reply, and serve
/// until it has ended; returns the exit code, as [`main`]. A batch launcher's forked child
/// ([`batch`]) comes here with the orders of its launch line.
pub(crate) fn supervise(orders: launch::Orders) -> i32 {
    let leader = match launch::detach(orders.behavior) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    // Orphans of the task come back to us, to be reaped and signalled with it.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let dir = orders.pool.task_dir(orders.launch.id);
    if let Err(e) = std::env::set_current_dir(&dir) {
        return fail(&taskpool::Error::path(&dir, e).context(format!("task {}", orders.launch.id)));
    }
    let in_job = orders.in_job;
    let fail = |e: &taskpool::Error| {
        if in_job {
            // Nobody reads a reply: the job's output file (Slurm's) is where this goes.
            note(&format!("task {}: {}", orders.launch.id, e.message()));
            1
        } else {
            fail(e)
        }
    };
    let accepted = match start::accept(&orders) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let mut undo = accepted.undo;
    let mut core = state::Core::new(accepted.pool, accepted.record, accepted.lock);
    if let Some(why) = &orders.launch.skip {
        core.skip_at_gate(why.clone());
    }
    let reply = match core.first_step() {
        Ok(state::FirstStep::Started(pid, run)) => LaunchReply::Ready {
            supervisor_pid: std::process::id() as i32,
            pid: pid.as_raw(),
            run,
        },
        Ok(state::FirstStep::Deferred(state)) => LaunchReply::Accepted {
            supervisor_pid: std::process::id() as i32,
            state,
        },
        Err(e) => {
            core.abandon();
            // The record and socket go first, while the task's lock is still held.
            drop(undo);
            drop(core);
            return fail(&e);
        }
    };
    undo.disarm();
    if !in_job {
        launch::reply(&reply);
    }
    launch::release_stdio(orders.behavior == Behavior::Foreground);
    let (watch, gone) = match leader {
        launch::Leader::Watch(fd) => (Some(fd), false),
        launch::Leader::Gone => (None, true),
        launch::Leader::Ignored => (None, false),
    };
    let mut sup = event_loop::Supervisor::new(core, accepted.listener, accepted.signals, watch);
    if gone {
        sup.terminate_now("terminated: the caller's process group leader had already exited");
    }
    drop(orders);
    release_startup_memory();
    sup.run()
}

/// Start-up is over: give back to the kernel the heap pages it used and freed (the launch line,
/// the record's JSON, the serializer's buffers), so an idle supervisor keeps only what it uses.
/// Without this the allocator keeps them, dirty and private to this process, for its whole life.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's own arenas to the kernel;
    // no live allocation is moved or invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Close every descriptor above stderr that the caller let us inherit: the supervisor may live
/// long, and must not hold (or pass on to the task) someone else's pipes. Also what a batch
/// launcher's forked child ([`batch`]) does with the launcher's descriptors.
fn close_inherited_fds() {
    // SAFETY: nothing that runs from here on owns a descriptor above 2: at the start of `main`
    // nothing has been opened yet, and in a batch launcher's child the launcher's owners (its
    // reply pipes, its input) are never used or dropped again (the child ends in `exit`), so
    // closing them cannot invalidate a live OwnedFd or File. A kernel without close_range
    // (before 5.9) just returns ENOSYS.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
}

fn fail(e: &taskpool::Error) -> i32 {
    launch::reply(&launch::error_reply(e));
    1
}

/// Report something unexpected on stderr (the caller's terminal in the foreground, else
/// `/dev/null`): the supervisor has no one else to tell.
pub(crate) fn note(msg: &str) {
    eprintln!("taskpool-supervisor[{}]: {msg}", std::process::id());
}
