//! The batch launcher, `taskpool-supervisor --pool DIR --batch`: what
//! [`taskpool::Pool::spawn_many`] starts, once, for many new tasks, instead of executing the
//! supervisor program once per task. It reads one [`Launch`](taskpool::protocol::Launch) line per
//! task on stdin and, for each, forks (without `exec`) a child with that line; the child points its
//! stdin at `/dev/null` and its stdout at a pipe of its own, closes everything else it inherited,
//! and from there is exactly the supervisor a single launch starts (`supervise` in the crate root): it
//! parses its orders, detaches (`setsid` and a fork for a daemon), takes the lock, stores the
//! record, listens, starts the command and writes its one [`LaunchReply`] line. The launcher
//! passes each reply on as a [`BatchReply`] naming its line, reaps the child it forked (which
//! exits once it has detached), and exits once every line has been answered.
//!
//! A few start at once ([`IN_FLIGHT`]), so their start-ups overlap on the cores while the launcher
//! forks the next. The launcher holds little: the input buffer, one line, a pipe and a few bytes
//! per start in flight; so each forked supervisor starts from a small process, and gives back
//! what its start-up freed as any supervisor does. A failed start (its reply is an error, or a
//! fork fails) stops the batch: the starts in flight are answered, the lines after them are not
//! read, and the library takes back their ids. A foreground task cannot be launched here (its
//! supervisor must stay its caller's child): its line is answered with an error.

use crate::launch::{self, Args};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use taskpool::protocol::{encode_line, BatchReply, LaunchReply};
use taskpool::record::Behavior;
use taskpool::{Error, ErrorKind};

/// Supervisors starting at once: enough to keep the cores busy while the launcher forks the
/// next, few enough that each one's start-up is not spread thin.
pub const IN_FLIGHT: usize = 8;

/// A supervisor forked for one line, not yet answered.
struct Pending {
    /// Its line, counted from 0.
    n: usize,
    /// The process forked (it exits once the supervisor has detached).
    pid: Pid,
    /// The read end of its stdout.
    from: File,
    /// What it has written so far.
    got: Vec<u8>,
}

/// Run the batch launcher; its exit code (0 once every line read has been answered).
pub fn run(args: Args) -> i32 {
    // SAFETY: fds 0 and 1 are open for the process's whole life (the library's pipes) and
    // `ManuallyDrop` keeps these `File`s from closing them.
    let stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    // Unbuffered: a forked child must not inherit bytes meant for the library.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut input = BufReader::with_capacity(16 << 10, &*stdin);
    let mut line = Vec::new();
    let mut pending: Vec<Pending> = Vec::with_capacity(IN_FLIGHT);
    let mut next = 0;
    let mut more = true;
    let mut stopped = false;
    loop {
        if more && !stopped && pending.len() < IN_FLIGHT {
            line.clear();
            match (&mut input)
                .take(launch::LAUNCH_MAX)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => more = false,
                Ok(_) => {
                    match fork_one(next, &line, &args.pool) {
                        Ok(p) => pending.push(p),
                        Err(e) => {
                            let reply = launch::error_reply(&e);
                            stopped = true;
                            let _ = relay(&mut out, next, Some(reply), None);
                        }
                    }
                    next += 1;
                }
            }
            // Answer what has come back, without waiting.
            collect(&mut pending, false, &mut out, &mut stopped);
            continue;
        }
        if pending.is_empty() {
            return 0;
        }
        collect(&mut pending, true, &mut out, &mut stopped);
    }
}

/// Fork the supervisor of line `n`; the child never returns.
fn fork_one(n: usize, line: &[u8], pool: &Option<PathBuf>) -> taskpool::Result<Pending> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("a supervisor's reply pipe", e.into()))?;
    // SAFETY: the launcher is single-threaded (it never starts a thread), so the child may go
    // on running arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            // Closed with the rest of the launcher's descriptors in `child`.
            std::mem::forget(r);
            child(line, w, pool.clone())
        }
        Ok(ForkResult::Parent { child }) => Ok(Pending {
            n,
            pid: child,
            from: File::from(r),
            got: Vec::new(),
        }),
        Err(e) => Err(Error::io("forking a supervisor", e.into())),
    }
}

/// In the forked child: become the supervisor of `line`, replying on `reply_to`.
fn child(line: &[u8], reply_to: OwnedFd, pool: Option<PathBuf>) -> ! {
    let _ = nix::unistd::dup2_stdout(&reply_to);
    launch::stdin_from_null();
    // The pipe's other copy, the launcher's stdin, the other starts' reply pipes: their owners
    // are the launcher's, and never run again here (this process ends in `exit`).
    std::mem::forget(reply_to);
    crate::close_inherited_fds();
    let orders = launch::parse_launch(line)
        .and_then(|l| launch::orders_for(pool, l))
        .and_then(|o| {
            if o.behavior == Behavior::Foreground {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "task {}: a foreground task cannot be launched in a batch",
                        o.launch.id
                    ),
                ));
            }
            Ok(o)
        });
    let code = match orders {
        Ok(o) => crate::supervise(o),
        Err(e) => crate::fail(&e),
    };
    std::process::exit(code)
}

/// Read what the pending starts wrote (waiting for one when `wait`) and answer each start that
/// has replied or ended.
fn collect(pending: &mut Vec<Pending>, wait: bool, out: &mut File, stopped: &mut bool) {
    let ready: Vec<bool> = {
        let mut fds: Vec<PollFd> = pending
            .iter()
            .map(|p| PollFd::new(p.from.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = if wait {
            PollTimeout::NONE
        } else {
            PollTimeout::ZERO
        };
        if nix::poll::poll(&mut fds, timeout).is_err() {
            return;
        }
        fds.iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect()
    };
    // From the last: `swap_remove` only moves an entry already seen.
    for i in (0..pending.len()).rev() {
        if !ready[i] || !read_some(&mut pending[i]) {
            continue;
        }
        let p = pending.swap_remove(i);
        let end = p
            .got
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(p.got.len());
        let reply: Option<LaunchReply> = serde_json::from_slice(&p.got[..end]).ok();
        // The process forked exits once its supervisor has detached (or has failed).
        let status = reap(p.pid);
        let ended = reply.is_none().then_some(status);
        if !matches!(
            reply,
            Some(LaunchReply::Ready { .. } | LaunchReply::Accepted { .. })
        ) {
            *stopped = true;
        }
        if relay(out, p.n, reply, ended).is_err() {
            // The library has gone: start nothing more.
            *stopped = true;
        }
    }
}

/// Read what is there; whether the start is over (a whole line, or end of file).
fn read_some(p: &mut Pending) -> bool {
    let mut buf = [0u8; 4096];
    match p.from.read(&mut buf) {
        Ok(0) => true,
        Ok(k) => {
            p.got.extend_from_slice(&buf[..k]);
            p.got.contains(&b'\n') || p.got.len() as u64 > launch::LAUNCH_MAX
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => false,
        Err(_) => true,
    }
}

/// Wait for the process forked; how it ended, in the words of `std::process::ExitStatus`.
fn reap(pid: Pid) -> String {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return format!("exit status: {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return format!("signal: {} ({})", sig as i32, sig.as_str())
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return format!("not waited for: {e}"),
        }
    }
}

/// Pass one answer on to the library.
fn relay(
    out: &mut File,
    n: usize,
    reply: Option<LaunchReply>,
    ended: Option<String>,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    encode_line(&BatchReply { n, reply, ended }, &mut line);
    out.write_all(&line)
}
