//! Accepting a task and starting its runs, once detached and inside the task's directory.
//! [`accept`] takes the task's lock, builds or loads the record, stores it, listens on the socket
//! and blocks the signals the event loop reads from a signalfd; [`start_run`] creates a run's
//! directory and files, makes the pipes (or, with `--pty`, a terminal), and starts the command.
//! What fails is undone: no socket, no run directory is left behind, and a restarted task's record
//! is put back.

use crate::capture::{Capture, CaptureFiles};
use crate::child::{self, ChildStdio};
use crate::fd::{pipe, set_nonblocking};
use crate::launch::Orders;
use crate::stdin::StdinSink;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use taskpool::output::OutputLog;
use taskpool::record::{self, Record, State, Stdin, RECORD_FORMAT};
use taskpool::{Error, ErrorKind, Pool, Result};

/// The socket's name while it is being set up; renamed to `sock` once it listens.
const SOCK_TMP: &str = "sock.tmp";
/// The socket's name, relative to the task directory (the process's working directory).
pub const SOCK: &str = "sock";
/// Space set aside for the final record while the run lasts, relative to the task directory: if
/// the task's output fills the disk, this file is deleted to make room for the record.
pub const RESERVE: &str = "reserve";
/// The least space [`RESERVE`] keeps (more when the record is larger).
const RESERVE_MIN: u64 = 64 << 10;

/// What acceptance hands to the event loop: the task is ours, its record stored, its socket
/// listening; no run has started yet.
pub struct Accepted {
    /// The pool.
    pub pool: Pool,
    /// The record (a restarted task's with its history; a restored one's as it was).
    pub record: Record,
    /// The task's liveness lock, held until the supervisor exits.
    pub lock: File,
    /// The listening socket (nonblocking, close-on-exec).
    pub listener: OwnedFd,
    /// The signals the loop handles.
    pub signals: SignalFd,
    /// Removes what acceptance made, unless disarmed.
    pub undo: Undo,
}

/// What a started run hands to the core.
pub struct RunStart {
    /// The main pid.
    pub pid: Pid,
    /// The output capture.
    pub capture: Capture,
    /// The stdin.
    pub stdin: StdinSink,
    /// The readiness channel (`--ready-fd`, `--notify`).
    pub ready: Option<crate::ready::Endpoint>,
}

/// Removes what a failed start made: the socket, the record (or puts a restarted task's back).
#[derive(Default)]
pub struct Undo {
    socket: bool,
    /// The record stored for this start, and the one it replaced (a restart's), to put back.
    record: Option<(PathBuf, Option<Record>)>,
}

impl Undo {
    /// Keep everything: the task is accepted for good.
    pub fn disarm(&mut self) {
        self.socket = false;
        self.record = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        match self.record.take() {
            Some((path, Some(previous))) => {
                let _ = previous.store(&path, false);
            }
            Some((path, None)) => {
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
        if self.socket {
            let _ = std::fs::remove_file(SOCK_TMP);
            let _ = std::fs::remove_file(SOCK);
        }
    }
}

/// Take the task: its lock, its record (stored, live), its socket (listening), the signals.
/// The working directory is the task's.
pub fn accept(orders: &Orders) -> Result<Accepted> {
    let pool = &orders.pool;
    let id = orders.launch.id;
    let mut undo = Undo::default();
    let lock = if orders.in_job {
        wait_task_lock(id)?
    } else {
        take_task_lock(id)?
    };
    let mut record = initial_record(orders)?;
    let me = std::process::id();
    // Whoever finds the socket, or the task's environment, must find a live record: store it
    // before listening and before the command can ask for its own task.
    let record_path = pool.record_path(id);
    let previous = if orders.launch.restart || orders.launch.restore {
        Some(Record::load(&record_path)?)
    } else {
        None
    };
    // Before the record says the supervisor is here: a wake (SIGUSR2 in a scheduler's job) sent
    // once it does must not kill it.
    let signals = block_signals(orders.in_job)?;
    if orders.launch.skip.is_none() {
        record.state = State::Running;
    }
    record.supervisor_pid = Some(me as i32);
    record.reason = None;
    record.lost_from = None;
    if orders.in_job {
        in_job_record(&mut record);
    }
    undo.record = Some((record_path.clone(), previous));
    record.store(&record_path, false)?;
    let listener = listen(pool.shared_gid().is_some(), &mut undo)?;

    Ok(Accepted {
        pool: pool.clone(),
        record,
        lock,
        listener,
        signals,
        undo,
    })
}

/// Start the record's current (last) run: create `run-N/`, make the pipes and start the command.
/// On failure the run directory is removed again.
pub fn start_run(pool: &Pool, record: &Record) -> Result<RunStart> {
    let id = record.id;
    let run = record.current().map(|r| r.run).unwrap_or(1);
    let run_dir = pool.run_dir(id, run);
    let mut made = MadeDir(None);
    let files = make_run_dir(&run_dir, &mut made)?;
    let spec = &record.spec;
    let ends = match spec.pty {
        Some(size) => terminal_ends(size)?,
        None => pipe_ends(spec)?,
    };
    let stdio = ChildStdio {
        stdin: ends.child[0].as_fd(),
        stdout: ends.child[1].as_fd(),
        stderr: ends.child[2].as_fd(),
        terminal: spec.pty.is_some(),
    };
    let mut ready = spec
        .readiness
        .map(|how| crate::ready::Endpoint::new(how, &pool.task_dir(id), id))
        .transpose()?;
    let pid = child::start(spec, id, pool.path(), stdio, ready.as_ref())?;
    if let Some(r) = &mut ready {
        r.child_started();
    }
    // The child has its copies; the supervisor keeps none of the child's ends.
    drop(ends.child);
    made.0 = None;
    let capture = Capture::new(
        CaptureFiles {
            stdout_pipe: ends.stdout,
            stderr_pipe: ends.stderr,
            terminal: spec.pty.is_some(),
            stdout: files.stdout,
            stderr: files.stderr,
            chunks: files.chunks,
            times: files.times,
            log: files.log,
        },
        record.spec.buffer_size,
        record.spec.log_max,
    );
    Ok(RunStart {
        pid,
        capture,
        stdin: ends.sink,
        ready,
    })
}

/// A run's standard streams: the child's three, and the supervisor's ends of them.
struct Ends {
    /// The child's stdin, stdout and stderr (closed once it has started).
    child: [OwnedFd; 3],
    /// Where its output is read.
    stdout: OwnedFd,
    /// Where its stderr is read, when it is not merged into stdout.
    stderr: Option<OwnedFd>,
    /// Where `send` writes.
    sink: StdinSink,
}

/// Pipes: one per output stream (one for both with `merge_stderr`), and stdin from a pipe,
/// `/dev/null` or a file.
fn pipe_ends(spec: &taskpool::record::Spec) -> Result<Ends> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = if spec.merge_stderr {
        (None, out_w.try_clone().map_err(|e| Error::io("pipe", e))?)
    } else {
        let (r, w) = pipe()?;
        (Some(r), w)
    };
    let (child_stdin, sink): (OwnedFd, _) = match &spec.stdin {
        Stdin::Pipe => {
            let (r, w) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
            // Only the supervisor's end is nonblocking: the task reads its stdin as usual.
            set_nonblocking(&w)?;
            (r, StdinSink::pipe(w))
        }
        Stdin::Null => {
            let f = File::open("/dev/null").map_err(|e| Error::io("/dev/null", e))?;
            (f.into(), StdinSink::NotAPipe)
        }
        Stdin::File(p) => {
            // O_NOCTTY: a terminal named here must not become anyone's controlling terminal.
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| Error::path(p, e).context("stdin file"))?;
            (f.into(), StdinSink::NotAPipe)
        }
    };
    Ok(Ends {
        child: [child_stdin, out_w, err_w],
        stdout: out_r,
        stderr: err_r,
        sink,
    })
}

/// A pseudo-terminal (`--pty`): the slave is the child's stdin, stdout and stderr; the master
/// (nonblocking) is read for the output, as one stream, and written by `send` (through a second
/// descriptor of the same open file, so each side has its own owner).
fn terminal_ends(size: taskpool::pty::PtySize) -> Result<Ends> {
    let pair = crate::pty::open(size)?;
    set_nonblocking(&pair.master)?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("pty", e));
    let input = dup(&pair.master)?;
    Ok(Ends {
        child: [dup(&pair.slave)?, dup(&pair.slave)?, pair.slave],
        stdout: pair.master,
        stderr: None,
        sink: StdinSink::pipe(input),
    })
}

/// A run directory made by a start that has not succeeded (yet): removed when dropped.
struct MadeDir(Option<PathBuf>);

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// In a scheduler's job: the task's lock, once its submitter (which holds it while it
/// submits and records the job id) lets go.
fn wait_task_lock(id: u64) -> Result<File> {
    let f = taskpool::lock::open(Path::new("lock"), true)
        .map_err(|e| Error::io(format!("task {id}: lock"), e))?;
    taskpool::lock::lock_ofd_wait(&f)?;
    Ok(f)
}

/// Fill in the job's node (and its id, should the submitter not have recorded it) from the
/// scheduler's environment.
fn in_job_record(record: &mut Record) {
    let job = record.job.get_or_insert_with(Default::default);
    if job.job_id.is_none() {
        job.job_id = std::env::var("SLURM_JOB_ID")
            .ok()
            .and_then(|s| s.parse().ok());
    }
    job.node = std::env::var("SLURMD_NODENAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        });
    job.state = None;
    job.reason = None;
}

fn take_task_lock(id: u64) -> Result<File> {
    let f = taskpool::lock::open(Path::new("lock"), true)
        .map_err(|e| Error::io(format!("task {id}: lock"), e))?;
    if !taskpool::lock::try_lock_ofd(&f)? {
        return Err(Error::new(
            ErrorKind::State,
            format!("task {id} already has a live supervisor"),
        ));
    }
    Ok(f)
}

/// The record of the run about to start: a new one, or the task's record with a run added.
fn initial_record(orders: &Orders) -> Result<Record> {
    let l = &orders.launch;
    if !l.restart && !l.restore {
        let spec = l
            .spec
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the launch message has no spec"))?;
        if spec.buffer_size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "buffer size must be at least 1 byte",
            ));
        }
        return Ok(Record {
            format: RECORD_FORMAT,
            id: l.id,
            spec,
            meta: l.meta.clone(),
            created_at: record::now(),
            state: State::Running,
            supervisor_pid: None,
            reason: None,
            runs: Vec::new(),
            waiting_for: None,
            next_start: None,
            overlaps: 0,
            report: None,
            lost_from: None,
            job: None,
        });
    }
    let path = orders.pool.record_path(l.id);
    let mut rec = Record::load(&path)?;
    if (orders.in_job || l.skip.is_some()) && !rec.state.is_live() {
        return Err(Error::new(
            ErrorKind::State,
            format!(
                "task {} is {} already; its job has nothing to run",
                l.id,
                rec.state.as_str()
            ),
        ));
    }
    if l.restore {
        // Lost (or said live, its supervisor gone: we hold the lock now): carried on as it was.
        return Ok(rec);
    }
    if rec.state.is_live() {
        return Err(Error::new(
            ErrorKind::State,
            format!(
                "task {} is {}; restart is refused while it is live",
                l.id,
                rec.state.as_str()
            ),
        ));
    }
    rec.next_start = None;
    rec.waiting_for = None;
    Ok(rec)
}

struct RunFiles {
    stdout: File,
    stderr: File,
    chunks: File,
    times: File,
    log: OutputLog,
}

fn make_run_dir(dir: &Path, undo: &mut MadeDir) -> Result<RunFiles> {
    match std::fs::DirBuilder::new().mode(0o770).create(dir) {
        Ok(()) => undo.0 = Some(dir.to_owned()),
        // Left by a start that died half-way: its files are truncated below. Only a real
        // directory: a symlink planted there would lead our writes elsewhere.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_dir() => undo.0 = Some(dir.to_owned()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!("{} exists and is not a directory", dir.display()),
                    ))
                }
            }
        }
        Err(e) => return Err(Error::path(dir, e)),
    }
    let open = |name: &str| {
        let p = dir.join(name);
        OpenOptions::new()
            .append(true)
            .create(true)
            .truncate(false)
            .mode(0o660)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_TRUNC)
            .open(&p)
            .map_err(|e| Error::path(&p, e))
    };
    let files = RunFiles {
        stdout: open("stdout")?,
        stderr: open("stderr")?,
        chunks: open("chunks")?,
        times: open(taskpool::times::TIMES_FILE)?,
        log: OutputLog::open(dir)?,
    };
    Ok(files)
}

/// Set aside room for the final record (see [`RESERVE`]). Best effort: without it, a full disk
/// can only cost the final record, as before.
pub fn reserve_room(record: &Record) {
    let want = serde_json::to_vec_pretty(record)
        .map(|j| (j.len() as u64 * 4).max(RESERVE_MIN))
        .unwrap_or(RESERVE_MIN);
    // Whatever is there (a leftover, or a planted symlink: the link goes, never its target).
    let _ = std::fs::remove_file(RESERVE);
    let made = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(RESERVE)
        .and_then(|f| {
            // Real blocks, not a sparse file: fallocate, else zeros.
            match nix::fcntl::fallocate(
                f.as_fd(),
                nix::fcntl::FallocateFlags::empty(),
                0,
                want as libc::off_t,
            ) {
                Ok(()) => Ok(()),
                Err(_) => std::io::Write::write_all(&mut &f, &vec![0; want as usize]),
            }
        });
    if let Err(e) = made {
        let _ = std::fs::remove_file(RESERVE);
        crate::note(&format!("cannot reserve room for the final record: {e}"));
    }
}

/// Bind under a temporary name, listen, set the mode, then rename into place: a socket that
/// exists is always one that listens.
fn listen(shared: bool, undo: &mut Undo) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(SOCK_TMP);
    undo.socket = true;
    let l = std::os::unix::net::UnixListener::bind(SOCK_TMP)
        .map_err(|e| Error::io("binding the task's socket", e))?;
    let mode = if shared { 0o660 } else { 0o600 };
    std::fs::set_permissions(SOCK_TMP, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting the socket's mode", e))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::io("the task's socket", e))?;
    std::fs::rename(SOCK_TMP, SOCK).map_err(|e| Error::io("placing the task's socket", e))?;
    Ok(OwnedFd::from(l))
}

/// An output pipe: the read end (the supervisor's) nonblocking, the write end (the task's) not.
/// Block the signals the loop handles and read them from a signalfd instead. SIGPIPE is blocked
/// too (writes to a closed pipe or socket return EPIPE). The child's mask is reset before exec
/// ([`child::start`]).
fn block_signals(in_job: bool) -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    if in_job {
        // The wake of a control request from another node (`control`).
        set.add(Signal::SIGUSR2);
    }
    for s in set.iter() {
        // An inherited SIG_IGN would discard the signal before the signalfd sees it (and an
        // ignored SIGCHLD would reap children behind our back).
        // SAFETY: SIG_DFL is a valid disposition; no handler is installed.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) };
    }
    let mut blocked = set;
    blocked.add(Signal::SIGPIPE);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|e| Error::io("blocking signals", e.into()))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::io("signalfd", e.into()))
}
