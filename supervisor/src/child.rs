//! Starting the task's command, and [`ProcessGroup`]: what to signal.
//!
//! The command is started with `std::process::Command`, which forks and reports `exec` errors back
//! through its own close-on-exec pipe, so a missing program is a spawn error here rather than an
//! exit code 127 later. The child runs in a process group of its own (`process_group(0)`). A
//! `pre_exec` hook empties its signal mask and resets every disposition to the default (the
//! supervisor blocks the signals it reads from a signalfd, and the task must inherit neither that
//! nor signals ignored by whoever started the supervisor; `Command` itself only resets SIGPIPE),
//! and asks the kernel to SIGKILL the child should the supervisor die (`PR_SET_PDEATHSIG`).

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use taskpool::record::Spec;
use taskpool::{Error, ErrorKind, Result};

/// The task's process group: the main process and whatever it starts (unless they leave the
/// group). Its id is the main process's pid. Every signal the supervisor sends goes to the whole
/// group, the way a shell's job control does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup(Pid);

impl ProcessGroup {
    /// The group led by `pid` (a child started with `process_group(0)`).
    pub fn led_by(pid: Pid) -> ProcessGroup {
        ProcessGroup(pid)
    }

    /// The group id, also the main process's pid.
    pub fn id(self) -> Pid {
        self.0
    }

    /// Send `sig` to every process of the group (`kill(-pgid, sig)`). A group that no longer has
    /// any member is not an error.
    pub fn signal(self, sig: Signal) -> nix::Result<()> {
        match killpg(self.0, sig) {
            Err(Errno::ESRCH) => Ok(()),
            r => r,
        }
    }

    /// True while any process (zombies included) is still in the group.
    pub fn exists(self) -> bool {
        !matches!(killpg(self.0, None), Err(Errno::ESRCH))
    }
}

/// The supervisor's own children once the main process is reaped: processes the task left
/// behind whose parent exited. The supervisor is a child subreaper, so a daemon that forked
/// twice and started its own session (leaving the task's process group) is found here too.
pub fn orphans() -> Vec<Pid> {
    // Single-threaded: the main thread's id is the pid.
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/self/task/{me}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

/// Send `sig` to every process in [`orphans`] except those in `spare` (the supervisor's own
/// helpers: a hook, a lock waiter, a new run's main process).
pub fn signal_orphans(sig: Signal, spare: &[Option<Pid>]) {
    for pid in orphans() {
        if !spare.contains(&Some(pid)) {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

/// The standard streams the child gets.
pub struct ChildStdio {
    /// Its standard input.
    pub stdin: Stdio,
    /// Its standard output.
    pub stdout: Stdio,
    /// Its standard error.
    pub stderr: Stdio,
}

/// In a forked child, before exec (the task's command, a hook): an empty signal mask and
/// default dispositions (the supervisor blocks the signals it reads from its signalfd, and may
/// have been started with some ignored: a shell's background job ignores INT and QUIT), and
/// SIGKILL when `parent` dies (exit at once if it already has).
///
/// # Safety
/// Only between `fork` and `exec`; it makes async-signal-safe system calls only.
pub unsafe fn reset_in_child(parent: Pid) {
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    for sig in 1..libc::SIGRTMIN() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    // The supervisor may have died before the death signal was armed.
    if libc::getppid() != parent.as_raw() {
        libc::_exit(127);
    }
}

/// Start `spec`'s command for task `id` of the pool at `pool_dir`; returns the main pid. Failures
/// carry the kind the caller sees: `program_not_found`, `cannot_execute`, `not_found` (the cwd).
pub fn start(spec: &Spec, id: u64, pool_dir: &std::path::Path, stdio: ChildStdio) -> Result<Pid> {
    let argv = spec.command.argv();
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(Error::new(ErrorKind::InvalidInput, "the command is empty"));
    };
    if !spec.cwd.is_dir() {
        return Err(missing_cwd(spec));
    }
    let supervisor = nix::unistd::getpid();
    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(taskpool::ENV_POOL, pool_dir)
        .env(taskpool::ENV_TASK_ID, id.to_string())
        .env(
            taskpool::ENV_SUPERVISOR_PID,
            OsString::from(supervisor.to_string()),
        )
        .current_dir(&spec.cwd)
        .process_group(0)
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    // SAFETY: the hook runs in the forked child before exec and only makes async-signal-safe
    // system calls (see `reset_in_child`); it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            reset_in_child(supervisor);
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(child) => Ok(Pid::from_raw(child.id() as i32)),
        Err(e) => Err(spawn_error(spec, program, e)),
    }
}

fn missing_cwd(spec: &Spec) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "cwd {} does not exist or is not a directory",
            spec.cwd.display()
        ),
    )
}

fn spawn_error(spec: &Spec, program: &OsString, e: std::io::Error) -> Error {
    let name = program.to_string_lossy();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) if !spec.cwd.is_dir() => missing_cwd(spec),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => Error::new(
            ErrorKind::ProgramNotFound,
            format!("program {name} not found"),
        ),
        Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) | Some(libc::EPERM) => {
            Error::new(
                ErrorKind::CannotExecute,
                format!("program {name} cannot be executed: {e}"),
            )
        }
        _ => Error::io(format!("starting {name}"), e),
    }
}

/// Start a child that blocks in `flock(LOCK_EX)` on `file`'s open file description and exits
/// once it has the lock (status 0) or cannot wait (status 1). A `flock` lock belongs to the open
/// file description, which the child shares with the supervisor: when the child has exited, the
/// supervisor holds the lock. This waits for a lock file without a thread and without polling.
/// The child dies with the supervisor (`PR_SET_PDEATHSIG`).
pub fn wait_for_flock(file: &std::fs::File) -> Result<Pid> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let parent = nix::unistd::getpid();
    // SAFETY: the supervisor is single-threaded, so the child may run arbitrary code; it only
    // makes async-signal-safe system calls and leaves with _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent.as_raw() {
                libc::_exit(1);
            }
            loop {
                if libc::flock(fd, libc::LOCK_EX) == 0 {
                    libc::_exit(0);
                }
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(1);
                }
            }
        },
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child),
        Err(e) => Err(Error::io("forking the lock waiter", e.into())),
    }
}
