//! The launch handshake and detaching. The library starts `taskpool-supervisor --pool DIR` with a
//! [`Launch`] line on stdin and waits for one [`LaunchReply`] line on stdout; between the two the
//! supervisor reads its orders, detaches from the caller as the task's behavior says (daemon,
//! background or foreground), and starts the task.

use nix::unistd::{ForkResult, Pid};
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use taskpool::protocol::{Launch, LaunchReply};
use taskpool::record::{Behavior, Record};
use taskpool::{Error, ErrorKind, Pool, Result};

/// The longest launch line accepted.
pub const LAUNCH_MAX: u64 = 16 << 20;

/// What the supervisor was asked to do, read and checked before detaching.
pub struct Orders {
    /// The pool.
    pub pool: Pool,
    /// The launch message.
    pub launch: Launch,
    /// The behavior (from the launch's spec, or the record of a task being restarted).
    pub behavior: Behavior,
    /// Started by a scheduler's batch script (`--in-job ID`): the orders are the task's record,
    /// written at submission; the supervisor stays in the foreground, the job's one process.
    pub in_job: bool,
}

/// How the supervisor watches its caller (background tasks only).
pub enum Leader {
    /// Not watched (daemon, foreground).
    Ignored,
    /// A pidfd of the caller's process-group leader: readable once it has exited.
    Watch(OwnedFd),
    /// The leader had already exited: end the task at once.
    Gone,
}

/// The program's arguments: `[--pool DIR] [--in-job ID | --batch]`.
pub struct Args {
    /// `--pool DIR`.
    pub pool: Option<PathBuf>,
    /// `--in-job ID`: started by a scheduler's batch script.
    pub in_job: Option<u64>,
    /// `--batch`: a batch launcher ([`crate::batch`]), one launch line per task on stdin.
    pub batch: bool,
}

/// Parse the program's arguments.
pub fn args() -> Result<Args> {
    parse_args(std::env::args_os().skip(1))
}

/// Read the launch line (or, in a scheduler's job, the task's record), open the pool and set
/// the umask.
pub fn read_orders(args: Args) -> Result<Orders> {
    if let Some(id) = args.in_job {
        let pool_dir = args
            .pool
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "--in-job needs --pool"))?;
        let pool = Pool::open(&pool_dir)?;
        set_umask(&pool);
        return Ok(Orders {
            pool,
            launch: Launch {
                id,
                spec: None,
                meta: Default::default(),
                restart: false,
                restore: true,
                pool: None,
                skip: None,
            },
            behavior: Behavior::Foreground,
            in_job: true,
        });
    }
    let launch = read_launch()?;
    orders_for(args.pool, launch)
}

/// The orders of a parsed launch line: open the pool (`pool_arg`, else the one the line names)
/// and set the umask; learn how to detach.
pub fn orders_for(pool_arg: Option<PathBuf>, launch: Launch) -> Result<Orders> {
    // A prestarted supervisor learns its pool from the launch line.
    let pool_dir = pool_arg.or_else(|| launch.pool.clone()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "no pool: neither --pool nor the launch message names one",
        )
    })?;
    let pool = Pool::open(&pool_dir)?;
    set_umask(&pool);
    let behavior = match (&launch.spec, launch.restart || launch.restore) {
        // A restored task's caller (`taskpool restore` at boot) is not its owner: it lives on
        // as a daemon whatever it was spawned as.
        _ if launch.restore => Behavior::Daemon,
        (Some(spec), false) => spec.behavior,
        (_, true) => {
            // Unlocked, only to learn how to detach; it is read again under the lock.
            let path = pool.record_path(launch.id);
            Record::load(&path)
                .map_err(|e| match e.kind() {
                    ErrorKind::NotFound => {
                        Error::new(ErrorKind::NotFound, format!("task {} not found", launch.id))
                    }
                    _ => e,
                })?
                .spec
                .behavior
        }
        (None, false) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the launch message has no spec for a new task",
            ))
        }
    };
    Ok(Orders {
        pool,
        launch,
        behavior,
        in_job: false,
    })
}

/// 077, or 007 in a group-shared pool.
fn set_umask(pool: &Pool) {
    let mask = if pool.shared_gid().is_some() {
        0o007
    } else {
        0o077
    };
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

/// `[--pool DIR] [--in-job ID | --batch]`.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Args> {
    let usage = || {
        Error::new(
            ErrorKind::InvalidInput,
            "usage: taskpool-supervisor [--pool DIR] [--batch] (started by the taskpool library, with launch lines on stdin), or taskpool-supervisor --pool DIR --in-job ID (in a scheduler's batch script)",
        )
    };
    let mut out = Args {
        pool: None,
        in_job: None,
        batch: false,
    };
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--pool") => out.pool = Some(PathBuf::from(args.next().ok_or_else(usage)?)),
            Some("--in-job") => {
                let id = args.next().ok_or_else(usage)?;
                out.in_job = Some(id.to_str().and_then(|s| s.parse().ok()).ok_or_else(usage)?);
            }
            Some("--batch") => out.batch = true,
            _ => return Err(usage()),
        }
    }
    if out.batch && (out.in_job.is_some() || out.pool.is_none()) {
        return Err(usage());
    }
    Ok(out)
}

/// Read the launch line (bounded), then point fd 0 at /dev/null.
fn read_launch() -> Result<Launch> {
    let mut line = Vec::new();
    // A reader of our own, not `std::io::stdin()`: that one's 8 KiB buffer is global, and would
    // stay allocated (and dirty) for the supervisor's whole life.
    // SAFETY: fd 0 stays open until it is replaced by /dev/null below, after the read, and
    // `ManuallyDrop` keeps this `File` from closing it.
    let stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let read = std::io::BufReader::new(&*stdin)
        .take(LAUNCH_MAX)
        .read_until(b'\n', &mut line);
    stdin_from_null();
    read.map_err(|e| Error::io("reading the launch message", e))?;
    if line.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "no launch message on stdin (the supervisor is started by the taskpool library)",
        ));
    }
    parse_launch(&line)
}

/// Point fd 0 at /dev/null: the launch pipe is not the supervisor's to keep.
pub fn stdin_from_null() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
}

/// Parse one launch line.
pub fn parse_launch(line: &[u8]) -> Result<Launch> {
    serde_json::from_slice(line)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("bad launch message: {e}")))
}

/// Detach from the caller as `behavior` says. For daemon and background the calling process
/// exits here (the library reaps it) and the child carries on as the supervisor.
pub fn detach(behavior: Behavior) -> Result<Leader> {
    match behavior {
        Behavior::Foreground => Ok(Leader::Ignored),
        Behavior::Daemon => {
            nix::unistd::setsid().map_err(|e| Error::io("starting a new session", e.into()))?;
            fork_and_leave()?;
            Ok(Leader::Ignored)
        }
        Behavior::Background => {
            let leader = pidfd_open(nix::unistd::getpgrp());
            fork_and_leave()?;
            Ok(match leader {
                Some(fd) => Leader::Watch(fd),
                None => Leader::Gone,
            })
        }
    }
}

/// Fork; the parent exits at once, the child returns.
fn fork_and_leave() -> Result<()> {
    // SAFETY: the supervisor is single-threaded here (no thread was ever started), so the child
    // may go on running arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: _exit ends the process without running destructors or atexit handlers,
            // which belong to the child now.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => Ok(()),
        Err(e) => Err(Error::io("forking the supervisor", e.into())),
    }
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created (close-on-exec) and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Write the one-line answer to the library. A caller that has gone away is not an error: the
/// task is durable without it.
pub fn reply(r: &LaunchReply) {
    let mut line = serde_json::to_vec(r).expect("launch replies always serialize");
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&line).and_then(|()| out.flush());
}

/// The error reply for `e`.
pub fn error_reply(e: &Error) -> LaunchReply {
    LaunchReply::Error {
        kind: e.kind_name().to_owned(),
        message: e.message().to_owned(),
    }
}

/// After the reply: point stdout (and stderr, unless in the foreground) at /dev/null, so the
/// caller's pipes close and nothing the supervisor might print reaches the caller's terminal.
pub fn release_stdio(foreground: bool) {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let _ = nix::unistd::dup2_stdout(&null);
    if !foreground {
        let _ = nix::unistd::dup2_stderr(&null);
    }
}
