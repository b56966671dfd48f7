//! Starting the task's command (and hooks), and [`ProcessGroup`]: what to signal.
//!
//! [`spawn`] starts a program the way `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)` on a
//! small stack of its own, so neither the supervisor's page tables are copied nor its memory
//! faulted in copy-on-write (a `fork` costs about twice as long here), and the supervisor resumes
//! once the child has executed the program or failed. Unlike `posix_spawn` it can also ask the
//! kernel to SIGKILL the child should the supervisor die (`PR_SET_PDEATHSIG`). Everything the
//! child needs (paths, argv, envp) is prepared before the clone: the child allocates nothing and
//! makes async-signal-safe system calls only. It resets every signal disposition to the default
//! and empties its signal mask (the supervisor blocks the signals it reads from a signalfd, and
//! the task must inherit neither that nor signals ignored by whoever started the supervisor),
//! enters a process group of its own, takes its standard streams, changes directory, and
//! searches `PATH` (the task's) as `execvp` does, a file without a `#!` line running under
//! `/bin/sh`. A failure's `errno` comes back through the shared memory, so a missing program is a
//! spawn error here rather than an exit code 127 later.
//!
//! What a task's process sets on itself before `exec` (limits, nice, OOM score) is `setup.rs`.

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use taskpool::record::Spec;
use taskpool::{Error, ErrorKind, Result};

mod setup;

use setup::InChild;
pub use setup::Setup;

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

/// The standard streams the child gets (the supervisor keeps its own descriptors).
pub struct ChildStdio<'a> {
    /// Its standard input.
    pub stdin: BorrowedFd<'a>,
    /// Its standard output.
    pub stdout: BorrowedFd<'a>,
    /// Its standard error.
    pub stderr: BorrowedFd<'a>,
}

/// A program to start with [`spawn`].
pub struct Exec<'a> {
    /// The program: a path with a slash, else searched on the `PATH` of `env`.
    pub program: &'a OsStr,
    /// Its arguments after `argv[0]` (which is `program`).
    pub args: &'a [OsString],
    /// Its whole environment (a later duplicate of a name wins).
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory.
    pub cwd: &'a Path,
    /// Its standard streams.
    pub stdio: ChildStdio<'a>,
    /// Limits, priority and OOM score set in the child before `exec`.
    pub setup: Setup,
}

/// The child's stack: what it runs before `exec` needs a few hundred bytes.
const CHILD_STACK: usize = 64 << 10;

/// What the child reads (prepared by the parent: the child allocates nothing) and writes (its
/// `errno` on failure). Shared through `CLONE_VM`.
struct Shared {
    /// Paths to try in order: the program, or each `PATH` directory joined with it.
    candidates: Vec<CString>,
    /// `argv`, null-terminated.
    argv: Vec<*const libc::c_char>,
    /// `argv` for a file without `#!`: `/bin/sh`, the file (set by the child), the arguments.
    sh_argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    fds: [libc::c_int; 3],
    parent: libc::pid_t,
    /// Limits, priority and OOM score, as the child sets them.
    setup: InChild,
    ready_fd: Option<(libc::c_int, libc::c_int)>,
    errno: libc::c_int,
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in an argument",
        )
    })
}

/// Start `exec` in a process group of its own; returns its pid once it has executed the program.
pub fn spawn(exec: &Exec) -> std::io::Result<Pid> {
    let program = exec.program.as_bytes();
    let mut env = BTreeMap::new();
    for (k, v) in &exec.env {
        env.insert(k.as_os_str(), v.as_os_str());
    }
    let mut candidates = Vec::new();
    if program.contains(&b'/') {
        candidates.push(cstring(program)?);
    } else {
        let path = env
            .get(OsStr::new("PATH"))
            .map_or(taskpool::spawn::DEFAULT_PATH.as_bytes(), |p| p.as_bytes());
        for dir in path.split(|&b| b == b':') {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program);
            candidates.push(cstring(&full)?);
        }
    }
    let mut args = vec![cstring(program)?];
    for a in exec.args {
        args.push(cstring(a.as_bytes())?);
    }
    let mut vars = Vec::with_capacity(env.len());
    for (k, v) in &env {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        vars.push(cstring(&kv)?);
    }
    let sh = c"/bin/sh";
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut sh_argv = vec![sh.as_ptr(), std::ptr::null()];
    sh_argv.extend(args[1..].iter().map(|a| a.as_ptr()));
    sh_argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = vars.iter().map(|v| v.as_ptr()).collect();
    envp.push(std::ptr::null());
    let fds = [
        exec.stdio.stdin.as_raw_fd(),
        exec.stdio.stdout.as_raw_fd(),
        exec.stdio.stderr.as_raw_fd(),
    ];
    // Moving each onto 0, 1 and 2 in turn must not overwrite one still to be moved.
    if fds.iter().any(|&fd| fd <= 2) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a child's stream must not be the supervisor's own 0, 1 or 2",
        ));
    }
    let mut shared = Shared {
        candidates,
        argv,
        sh_argv,
        envp,
        cwd: cstring(exec.cwd.as_os_str().as_bytes())?,
        fds,
        parent: nix::unistd::getpid().as_raw(),
        setup: InChild::of(&exec.setup),
        ready_fd: exec.setup.ready_fd,
        errno: 0,
    };
    // SAFETY: a fresh private anonymous mapping, unmapped below once the child has left it
    // (CLONE_VFORK: the clone returns when the child has executed or exited).
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CHILD_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: every signal is blocked across the clone, so no handler of the supervisor runs on
    // the child's stack (the child resets them all before unblocking); the child only reads
    // `shared` and writes its `errno`, which outlive it, and the supervisor has one thread.
    let (pid, clone_err) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            (stack as *mut u8).add(CHILD_STACK) as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut shared as *mut Shared as *mut libc::c_void,
        );
        let clone_err = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        libc::munmap(stack, CHILD_STACK);
        (pid, clone_err)
    };
    if pid < 0 {
        return Err(clone_err);
    }
    // SAFETY: the child has exited or executed: nothing writes `shared` any more.
    let err = unsafe { std::ptr::read_volatile(&shared.errno) };
    if err != 0 {
        // It has exited (status 127): reap it here, the loop never heard of it.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        return Err(std::io::Error::from_raw_os_error(err));
    }
    drop(shared);
    drop((args, vars));
    Ok(Pid::from_raw(pid))
}

/// The child of [`spawn`], on its own stack, sharing the supervisor's memory until `exec`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive and untouched until this child has executed
    // or exited (CLONE_VFORK). Only async-signal-safe calls follow; nothing allocates.
    unsafe {
        let s = &mut *(arg as *mut Shared);
        let fail = |s: &mut Shared| -> ! {
            s.errno = *libc::__errno_location();
            if s.errno == 0 {
                s.errno = libc::ECHILD;
            }
            libc::_exit(127)
        };
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
        if libc::getppid() != s.parent {
            libc::_exit(127);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(s);
        }
        for (target, &fd) in s.fds.iter().enumerate() {
            if libc::dup2(fd, target as libc::c_int) < 0 {
                fail(s);
            }
        }
        if let Some((ours, its)) = s.ready_fd {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let r = if ours == its {
                libc::fcntl(ours, libc::F_SETFD, 0)
            } else {
                libc::dup2(ours, its)
            };
            if r < 0 {
                fail(s);
            }
        }
        if libc::chdir(s.cwd.as_ptr()) != 0 {
            fail(s);
        }
        if !s.setup.apply() {
            fail(s);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // As execvp: the first candidate that exists is run; a permission problem on one is
        // remembered while the search goes on; a file without `#!` runs under /bin/sh.
        let mut err = libc::ENOENT;
        let mut denied = false;
        for c in &s.candidates {
            libc::execve(c.as_ptr(), s.argv.as_ptr(), s.envp.as_ptr());
            err = *libc::__errno_location();
            match err {
                libc::ENOEXEC => {
                    s.sh_argv[1] = c.as_ptr();
                    libc::execve(c"/bin/sh".as_ptr(), s.sh_argv.as_ptr(), s.envp.as_ptr());
                    err = *libc::__errno_location();
                    break;
                }
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => break,
            }
        }
        if denied && matches!(err, libc::ENOENT | libc::ENOTDIR) {
            err = libc::EACCES;
        }
        *libc::__errno_location() = err;
        fail(s)
    }
}

/// Start `spec`'s command for task `id` of the pool at `pool_dir`; returns the main pid. Failures
/// carry the kind the caller sees: `program_not_found`, `cannot_execute`, `not_found` (the cwd).
pub fn start(
    spec: &Spec,
    id: u64,
    pool_dir: &Path,
    stdio: ChildStdio,
    ready: Option<&crate::ready::Endpoint>,
) -> Result<Pid> {
    let argv = spec.command.argv();
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(Error::new(ErrorKind::InvalidInput, "the command is empty"));
    };
    if !spec.cwd.is_dir() {
        return Err(missing_cwd(spec));
    }
    if let (Some(n), taskpool::record::Behavior::Daemon) = (spec.nice, spec.behavior) {
        // A daemon has a session, so an autogroup, of its own: the scheduler weighs sessions
        // against each other by their autogroup's nice, so that is where --nice counts.
        if let Err(e) = std::fs::write("/proc/self/autogroup", n.to_string()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::note(&format!(
                    "cannot set the session's autogroup nice to {n}: {e}"
                ));
            }
        }
    }
    let supervisor = nix::unistd::getpid();
    let mut env = spec.env.clone();
    env.push((taskpool::ENV_POOL.into(), pool_dir.into()));
    env.push((taskpool::ENV_TASK_ID.into(), id.to_string().into()));
    env.push((
        taskpool::ENV_SUPERVISOR_PID.into(),
        supervisor.to_string().into(),
    ));
    let mut setup = Setup::of(spec);
    if let Some(ep) = ready {
        setup.ready_fd = ep.child_fd();
        if let Some(addr) = ep.notify_socket() {
            env.retain(|(k, _)| k != taskpool::ready::ENV_NOTIFY_SOCKET);
            env.push((taskpool::ready::ENV_NOTIFY_SOCKET.into(), addr.clone()));
        }
    }
    let exec = Exec {
        program,
        args: &argv[1..],
        env,
        cwd: &spec.cwd,
        stdio,
        setup,
    };
    spawn(&exec).map_err(|e| spawn_error(spec, program, e))
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
        // execve(2) says EACCES for a directory; name it as such.
        Some(libc::EACCES) | Some(libc::EISDIR) if spec.cwd.join(program).is_dir() => Error::new(
            ErrorKind::CannotExecute,
            format!("program {name} is a directory"),
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
