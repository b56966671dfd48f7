//! [`Pool`]: a view of a pool directory. It checks the directory's ownership and mode, names every
//! file of the on-disk layout, allocates task ids, and finds tasks (by id, by supervisor pid, or by
//! searching their info). Nothing here connects to a supervisor unless asked for a live task.
//!
//! ```text
//! POOL/                      0700 (2770 when group-shared)
//!   next-id                  the next task id (flock'd while allocating)
//!   settings.json            the pool's settings (the default engine; taskpool::settings)
//!   tasks/ID/record.json     the task's record, replaced atomically
//!   tasks/ID/lock            held (OFD lock) by the live supervisor
//!   tasks/ID/sock            the supervisor's socket, present while it listens
//!   tasks/ID/run-N/stdout    run N's standard output, byte for byte
//!   tasks/ID/run-N/stderr    run N's standard error
//!   tasks/ID/run-N/chunks    the order in which the chunks were read (combined view)
//! ```

use crate::engine::JobView;
use crate::error::{Error, ErrorKind, Result};
use crate::info::Info;
use crate::lock::{self, Probe};
use crate::protocol::Stream;
use crate::record::{self, Record, State, Status};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Unix socket paths longer than this cannot be bound or connected to directly.
pub const SOCKET_PATH_MAX: usize = 107;

/// The supervisor program's file name.
pub const SUPERVISOR_PROGRAM: &str = "taskpool-supervisor";

/// How a missing pool directory is created (the seed's `mkdirIfMissing => [mode, uid, gid]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// The directory's mode (default 0700). A mode with the set-gid bit and group write makes a
    /// group-shared pool.
    pub mode: u32,
    /// Owner to give the new directory.
    pub uid: Option<u32>,
    /// Group to give the new directory.
    pub gid: Option<u32>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            mode: 0o700,
            uid: None,
            gid: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Inner {
    dir: PathBuf,
    dir_fd: Arc<OwnedFd>,
    shared_gid: Option<u32>,
    supervisor_cmd: Option<Vec<OsString>>,
    supervisor_env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// A task pool: a directory of tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

fn is_member_of(gid: u32) -> bool {
    if nix::unistd::getegid().as_raw() == gid {
        return true;
    }
    nix::unistd::getgroups()
        .map(|gs| gs.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

/// Check that `dir` may be used as a pool by this user; return the group of a group-shared pool.
fn check_dir(dir: &Path, md: &fs::Metadata) -> Result<Option<u32>> {
    if !md.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("pool {} is not a directory", dir.display()),
        ));
    }
    let mode = md.mode();
    let euid = nix::unistd::geteuid().as_raw();
    let shared = mode & 0o2000 != 0 && mode & 0o020 != 0;
    if mode & 0o002 != 0 {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "pool {} is writable by others (mode {:04o}); run chmod o-w on it",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    if mode & 0o020 != 0 && !shared {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "pool {} is group-writable but not set-gid (mode {:04o}); use chmod g-w, or chmod g+s to share it with its group",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    let shared_gid = shared.then_some(md.gid());
    if md.uid() != euid && euid != 0 && !shared_gid.is_some_and(is_member_of) {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "pool {} is owned by uid {}, not by you (uid {euid})",
                dir.display(),
                md.uid()
            ),
        ));
    }
    Ok(shared_gid)
}

impl Pool {
    /// Open an existing pool directory. Fails if it is missing, is not a directory, belongs to
    /// another user, or is writable by others (root may open any pool; members may open a
    /// group-shared one).
    pub fn open(path: impl AsRef<Path>) -> Result<Pool> {
        let dir = path.as_ref();
        let md = fs::metadata(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorKind::NotFound,
                    format!("pool {} does not exist", dir.display()),
                )
            } else {
                Error::path(dir, e).context("pool")
            }
        })?;
        let shared_gid = check_dir(dir, &md)?;
        let dir = std::path::absolute(dir).map_err(|e| Error::path(dir, e))?;
        let dir_fd: OwnedFd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(|e| Error::path(&dir, e))?
            .into();
        let tasks = dir.join("tasks");
        if !tasks.is_dir() {
            let mode = if shared_gid.is_some() { 0o2770 } else { 0o700 };
            match fs::DirBuilder::new().mode(mode).create(&tasks) {
                Ok(()) => {
                    let _ = fs::set_permissions(&tasks, fs::Permissions::from_mode(mode));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::path(&tasks, e)),
            }
        }
        Ok(Pool {
            inner: Arc::new(Inner {
                dir,
                dir_fd: Arc::new(dir_fd),
                shared_gid,
                supervisor_cmd: None,
                supervisor_env: Vec::new(),
                timeout: Duration::from_secs(5),
            }),
        })
    }

    /// Open a pool, creating the directory (and its parents) first if it is missing.
    pub fn open_or_create(path: impl AsRef<Path>, create: CreateOptions) -> Result<Pool> {
        let dir = path.as_ref();
        if !dir.exists() {
            if let Some(parent) = dir.parent() {
                if !parent.as_os_str().is_empty() {
                    fs::create_dir_all(parent).map_err(|e| Error::path(parent, e))?;
                }
            }
            match fs::DirBuilder::new().mode(create.mode & 0o777).create(dir) {
                Ok(()) => {
                    fs::set_permissions(dir, fs::Permissions::from_mode(create.mode))
                        .map_err(|e| Error::path(dir, e))?;
                    if create.uid.is_some() || create.gid.is_some() {
                        std::os::unix::fs::chown(dir, create.uid, create.gid)
                            .map_err(|e| Error::path(dir, e))?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::path(dir, e)),
            }
        }
        Self::open(dir)
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// The pool's directory (absolute).
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The group of a group-shared pool, `None` for a private one.
    pub fn shared_gid(&self) -> Option<u32> {
        self.inner.shared_gid
    }

    /// How long requests that expect an immediate reply wait for a supervisor (default 5 s).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Set the request timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.inner_mut().timeout = timeout;
    }

    /// Override the command that starts supervisors (the seed's `supervisorCmd`). The launch
    /// arguments are appended to it.
    pub fn set_supervisor_cmd(&mut self, argv: Vec<OsString>) {
        self.inner_mut().supervisor_cmd = Some(argv);
    }

    /// Replace the variables added to supervisors' environment (the seed's `supervisorEnv`).
    pub fn set_supervisor_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.inner_mut().supervisor_env = env;
    }

    /// Add one variable to supervisors' environment (the seed's `applySupervisorEnv`).
    pub fn apply_supervisor_env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        let (k, v) = (key.into(), value.into());
        let env = &mut self.inner_mut().supervisor_env;
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    }

    /// The variables added to supervisors' environment.
    pub fn supervisor_env(&self) -> &[(OsString, OsString)] {
        &self.inner.supervisor_env
    }

    /// True when a supervisor program was set with [`Pool::set_supervisor_cmd`].
    pub(crate) fn has_supervisor_cmd(&self) -> bool {
        self.inner.supervisor_cmd.is_some()
    }

    /// The command that starts a supervisor: the override, else `$TASKPOOL_SUPERVISOR`, else
    /// `taskpool-supervisor` next to the current executable, else on `PATH`.
    pub fn supervisor_cmd(&self) -> Result<Vec<OsString>> {
        match &self.inner.supervisor_cmd {
            Some(c) => Ok(c.clone()),
            None => default_supervisor_cmd(),
        }
    }

    /// The directory holding every task.
    pub fn tasks_dir(&self) -> PathBuf {
        self.inner.dir.join("tasks")
    }

    /// A task's directory.
    pub fn task_dir(&self, id: u64) -> PathBuf {
        self.tasks_dir().join(id.to_string())
    }

    /// A task's record file.
    pub fn record_path(&self, id: u64) -> PathBuf {
        self.task_dir(id).join("record.json")
    }

    /// A task's liveness lock file.
    pub fn lock_path(&self, id: u64) -> PathBuf {
        self.task_dir(id).join("lock")
    }

    /// A control request for a scheduler task's supervisor from another node (see
    /// [`crate::engine`]): one request line, then SIGUSR2 through the scheduler.
    pub fn control_path(&self, id: u64) -> PathBuf {
        self.task_dir(id).join("control")
    }

    /// The supervisor's reply to the control request: one response line.
    pub fn control_reply_path(&self, id: u64) -> PathBuf {
        self.task_dir(id).join("control.reply")
    }

    /// A task's socket (the seed's `socketPath`).
    pub fn socket_path(&self, id: u64) -> PathBuf {
        self.task_dir(id).join("sock")
    }

    /// A path to connect to a task's socket that fits the unix socket limit: the socket path
    /// itself when short enough, else a path through this process's open descriptor of the pool.
    pub fn connect_path(&self, id: u64) -> PathBuf {
        let p = self.socket_path(id);
        if p.as_os_str().len() <= SOCKET_PATH_MAX {
            p
        } else {
            PathBuf::from(format!(
                "/proc/self/fd/{}/tasks/{id}/sock",
                self.inner.dir_fd.as_raw_fd()
            ))
        }
    }

    /// The directory holding run `run`'s output.
    pub fn run_dir(&self, id: u64, run: u32) -> PathBuf {
        self.task_dir(id).join(format!("run-{run}"))
    }

    /// The log file of one stream of one run (the seed's `outputPath`); `combined` names the
    /// chunk order file.
    pub fn output_path(&self, id: u64, run: u32, stream: Stream) -> PathBuf {
        self.run_dir(id, run)
            .join(crate::output::stream_file(stream))
    }

    /// Allocate a new task id and create its directory. Ids start at 1, are never reused (the
    /// counter survives `rm` and `clean`) and are unique under concurrent spawns (the counter file
    /// is locked while it is bumped).
    pub fn allocate_id(&self) -> Result<u64> {
        Ok(self.allocate_ids(1)?[0])
    }

    /// Allocate `n` ids at once, under one lock of the counter, ascending (and consecutive unless
    /// a directory is in the way), each with its task directory created.
    pub fn allocate_ids(&self, n: usize) -> Result<Vec<u64>> {
        let path = self.inner.dir.join("next-id");
        let mut f = lock::open(&path, true).map_err(|e| Error::path(&path, e))?;
        f.lock().map_err(|e| Error::path(&path, e))?;
        let mut s = String::new();
        f.read_to_string(&mut s)
            .map_err(|e| Error::path(&path, e))?;
        let mut id: u64 = s.trim().parse().unwrap_or(1).max(1);
        let mode = if self.inner.shared_gid.is_some() {
            0o2770
        } else {
            0o700
        };
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            let dir = self.task_dir(id);
            match fs::DirBuilder::new().mode(mode).create(&dir) {
                Ok(()) => {
                    ids.push(id);
                    // The umask may have taken the group bits of a shared pool.
                    if self.inner.shared_gid.is_some() {
                        if let Err(e) = fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                        {
                            self.unallocate(&ids);
                            return Err(Error::path(&dir, e));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.unallocate(&ids);
                    return Err(Error::path(&dir, e));
                }
            }
            id += 1;
        }
        let id = id - 1;
        // Overwritten in place: the counter only grows, so the new text is never shorter than
        // a valid old one (truncating first would cost a journaled metadata change per spawn).
        let next = format!("{}\n", id + 1);
        std::os::unix::fs::FileExt::write_all_at(&f, next.as_bytes(), 0)
            .map_err(|e| Error::path(&path, e))?;
        if s.len() > next.len() {
            f.set_len(next.len() as u64)
                .map_err(|e| Error::path(&path, e))?;
        }
        Ok(ids)
    }

    /// Remove the (still empty) directories of ids allocated but not used.
    pub(crate) fn unallocate(&self, ids: &[u64]) {
        for &id in ids {
            let _ = fs::remove_dir_all(self.task_dir(id));
        }
    }

    /// The ids of every task that has a record, ascending.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let dir = self.tasks_dir();
        let rd = fs::read_dir(&dir).map_err(|e| Error::path(&dir, e))?;
        let mut ids: Vec<u64> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Load a task's record as it stands, judging liveness: a record that says live but whose
    /// supervisor no longer holds the lock is marked `lost` (on disk too, when this user may write).
    pub fn load_record(&self, id: u64) -> Result<Record> {
        self.load_record_as(id, Record::load)
    }

    /// [`Pool::load_record`] reading the record with `load` (listings skip the environment).
    fn load_record_as(&self, id: u64, load: fn(&Path) -> Result<Record>) -> Result<Record> {
        let path = self.record_path(id);
        let rec = load(&path).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(ErrorKind::NotFound, format!("task {id} not found"))
            } else {
                e
            }
        })?;
        if !rec.state.is_live() {
            return Ok(rec);
        }
        let probe = lock::probe(&self.lock_path(id))?;
        if rec.spec.engine.is_scheduler() {
            let jobs: Vec<u64> = rec.job.iter().filter_map(|j| j.job_id).collect();
            let views = rec.spec.engine.query(&jobs);
            return self.settle(rec, probe == Probe::Held, &views);
        }
        match probe {
            Probe::Held => Ok(rec),
            Probe::Free | Probe::Missing => self.mark_lost(id),
        }
    }

    /// Merge the scheduler's view into a live scheduler task's record ([`crate::reconcile`]); when
    /// that ends the task, store the end (under the task's lock, into the full record). When the
    /// scheduler could not be asked, the record stands as it is.
    ///
    /// A task whose job ended before its supervisor started it, and that has a hook for that end
    /// (`on_exit`), is ended by a local supervisor instead ([`Pool::end_by_supervisor`]), which
    /// runs the hooks as for a local task skipped at its gate. Exactly once: only a supervisor
    /// that holds the task's lock and finds the record live ends it, and it stores the end before
    /// letting go of the lock; every later reader finds the record ended and merges nothing.
    fn settle(
        &self,
        mut rec: Record,
        lock_held: bool,
        views: &Result<std::collections::HashMap<u64, JobView>>,
    ) -> Result<Record> {
        let Ok(views) = views else {
            return Ok(rec);
        };
        let view = |rec: &Record| {
            rec.job
                .as_ref()
                .and_then(|j| j.job_id)
                .and_then(|j| views.get(&j))
                .cloned()
        };
        let pred = |p: u64| self.load_record(p).ok().and_then(|r| r.status());
        let v = view(&rec);
        if !crate::reconcile::merge(&mut rec, v.as_ref(), lock_held, &pred) {
            return Ok(rec);
        }
        let id = rec.id;
        let path = self.record_path(id);
        for hand_over in [true, false] {
            let Some(guard) = lock::open(&self.lock_path(id), false)
                .ok()
                .filter(|f| lock::try_lock_ofd(f).ok() == Some(true))
            else {
                // Taken meanwhile: its holder writes the record.
                return Record::load(&path);
            };
            let live = Record::load(&path)?;
            if !live.state.is_live() {
                return Ok(live);
            }
            let mut fresh = live.clone();
            let v = view(&fresh);
            if !crate::reconcile::merge(&mut fresh, v.as_ref(), false, &pred) {
                return Ok(fresh);
            }
            let skipped = fresh.state == State::Skipped && fresh.runs.is_empty();
            let hooks = !fresh.spec.plan.hooks.for_status(Status::Skipped).is_empty();
            if hand_over && skipped && hooks {
                // The job's view is kept; the end is the supervisor's to store.
                let mut kept = live;
                kept.job.clone_from(&fresh.job);
                let _ = kept.store(&path, false);
                drop(guard);
                let why = fresh.reason.clone().unwrap_or_default();
                match self.end_by_supervisor(id, why) {
                    // Ended, or ending: its hooks run and its supervisor holds the lock.
                    Ok(()) => return Record::load(&path),
                    // Another reader's supervisor took it first.
                    Err(e) if e.kind() == ErrorKind::State => return Record::load(&path),
                    // No supervisor could be started here: the end is stored without hooks.
                    Err(_) => continue,
                }
            }
            // A reader without write access still reports the end.
            let _ = fresh.store(&path, true);
            return Ok(fresh);
        }
        Record::load(&path)
    }

    /// Start a local supervisor that ends the live task `id` `skipped` with `why`, without
    /// running it, and runs its hooks for that end (a launch's `skip`). Returns once it has
    /// taken the task.
    fn end_by_supervisor(&self, id: u64, why: String) -> Result<()> {
        let launch = crate::protocol::Launch {
            id,
            spec: None,
            meta: serde_json::Map::new(),
            restart: false,
            restore: true,
            skip: Some(why),
            pool: None,
        };
        self.launch(&launch, crate::record::Behavior::Daemon)
            .map(|_| ())
    }

    fn mark_lost(&self, id: u64) -> Result<Record> {
        let lost = |rec: &mut Record| {
            rec.lost_from = Some(rec.state);
            rec.state = State::Lost;
            if let Some(run) = rec.current_mut() {
                run.status = Some(Status::Lost);
            }
            rec.reason = Some(format!(
                "supervisor (pid {}) vanished without recording the end",
                rec.supervisor_pid.unwrap_or(0)
            ));
        };
        // Take the lock ourselves so that a supervisor starting right now is not overwritten.
        let held = lock::open(&self.lock_path(id), false)
            .ok()
            .and_then(|f| lock::try_lock_ofd(&f).ok().filter(|&ok| ok).map(|_| f));
        match held {
            Some(_guard) => {
                let path = self.record_path(id);
                let mut fresh = Record::load(&path)?;
                if fresh.state.is_live() {
                    lost(&mut fresh);
                    // A reader without write access still reports the task lost.
                    let _ = fresh.store(&path, true);
                }
                Ok(fresh)
            }
            None => {
                let mut fresh = Record::load(&self.record_path(id))?;
                if fresh.state.is_live() && lock::probe(&self.lock_path(id))? != Probe::Held {
                    lost(&mut fresh);
                }
                Ok(fresh)
            }
        }
    }

    /// A handle on task `id`, if it exists.
    pub fn task(&self, id: u64) -> Result<crate::Task> {
        if !self.record_path(id).exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("task {id} not found in pool {}", self.path().display()),
            ));
        }
        Ok(crate::Task::new(self.clone(), id))
    }

    /// The task whose supervisor has pid `pid` (the seed's `taskByPid`): a live one if any.
    pub fn task_by_pid(&self, pid: i32) -> Result<crate::Task> {
        let mut found = None;
        for info in self.list()? {
            if info.supervisor_pid == Some(pid) {
                let live = info.is_live();
                found = Some(info.id);
                if live {
                    break;
                }
            }
        }
        found
            .map(|id| crate::Task::new(self.clone(), id))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no task with supervisor pid {pid} in pool {}",
                        self.path().display()
                    ),
                )
            })
    }

    /// The info of every task, sorted by id, from the records (liveness judged by lock probe; no
    /// supervisor is contacted). Tasks removed while listing are skipped.
    pub fn list(&self) -> Result<Vec<Info>> {
        self.search_with(|_| true)
    }

    /// Every task whose info matches `pattern` as a deep subset (see [`crate::pattern`]).
    pub fn search(&self, pattern: &serde_json::Value) -> Result<Vec<Info>> {
        if pattern.as_object().is_some_and(|o| o.is_empty()) {
            return self.list();
        }
        self.search_with(|info| crate::pattern::matches(pattern, &info.to_json()))
    }

    /// Every task for which `pred` returns true.
    pub fn search_with(&self, mut pred: impl FnMut(&Info) -> bool) -> Result<Vec<Info>> {
        let mut infos = self.infos(&self.ids()?)?;
        infos.retain(|info| pred(info));
        Ok(infos)
    }

    /// The info of each of `ids`, in order, skipping tasks removed meanwhile. Each is a few
    /// system calls and a parse, independent of the others: a large pool is read by one thread
    /// per core (a few at most); the live scheduler tasks among them are asked of
    /// the scheduler in one question (one `squeue`), however many they are.
    pub fn infos(&self, ids: &[u64]) -> Result<Vec<Info>> {
        let one = |id: u64| -> Option<Result<Listed>> {
            // Info does not show the environment: skip parsing it (most of a record's bytes).
            match self.list_one(id) {
                Ok(listed) => Some(Ok(listed)),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => Some(Err(e)),
            }
        };
        let listed = self.list_parallel(ids, &one)?;
        // Live scheduler tasks: one question to the scheduler for all of them.
        let jobs: Vec<u64> = listed
            .iter()
            .filter_map(|l| match l {
                Listed::Ask(rec, _) => rec.job.as_ref().and_then(|j| j.job_id),
                Listed::Done(_) => None,
            })
            .collect();
        let views = if jobs.is_empty() {
            Ok(Default::default())
        } else {
            crate::engine::Engine::Slurm.query(&jobs)
        };
        listed
            .into_iter()
            .map(|l| match l {
                Listed::Done(info) => Ok(info),
                Listed::Ask(rec, held) => self
                    .settle(rec, held, &views)
                    .map(|r| Info::from_record(&r)),
            })
            .collect()
    }

    /// One task of a listing: its info, or a live scheduler task's record (with whether its lock
    /// is held here) to merge with the scheduler's view.
    fn list_one(&self, id: u64) -> Result<Listed> {
        let path = self.record_path(id);
        let rec = Record::load_without_env(&path).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::new(ErrorKind::NotFound, format!("task {id} not found"))
            } else {
                e
            }
        })?;
        if rec.state.is_live() && rec.spec.engine.is_scheduler() {
            let held = lock::probe(&self.lock_path(id))? == Probe::Held;
            return Ok(Listed::Ask(rec, held));
        }
        if !rec.state.is_live() {
            return Ok(Listed::Done(Info::from_record(&rec)));
        }
        match lock::probe(&self.lock_path(id))? {
            Probe::Held => Ok(Listed::Done(Info::from_record(&rec))),
            Probe::Free | Probe::Missing => self
                .mark_lost(id)
                .map(|r| Listed::Done(Info::from_record(&r))),
        }
    }

    /// `one` of each of `ids`, in order, by one thread per core (at most [`LIST_THREADS`]) for a
    /// large pool.
    fn list_parallel(
        &self,
        ids: &[u64],
        one: &(dyn Fn(u64) -> Option<Result<Listed>> + Sync),
    ) -> Result<Vec<Listed>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(LIST_THREADS));
        if threads < 2 || ids.len() < LIST_PARALLEL_FROM {
            return ids.iter().filter_map(|&id| one(id)).collect();
        }
        std::thread::scope(|s| {
            let parts: Vec<_> = ids
                .chunks(ids.len().div_ceil(threads))
                .map(|part| s.spawn(move || part.iter().filter_map(|&id| one(id)).collect()))
                .collect();
            let mut all = Vec::with_capacity(ids.len());
            for part in parts {
                let listed: Result<Vec<Listed>> = part.join().expect("a listing thread panicked");
                all.extend(listed?);
            }
            Ok(all)
        })
    }

    /// Remove the records and output of ended tasks (those ended before `older_than` ago, when
    /// given), except those that live tasks name as predecessors. Returns the ids removed.
    pub fn clean(&self, older_than: Option<Duration>) -> Result<Vec<u64>> {
        let cutoff = older_than
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| record::now() - d);
        let mut removed = Vec::new();
        let all = self.list()?;
        // Records that live tasks still wait on: their dependents read them when they look.
        let needed: std::collections::HashSet<u64> = all
            .iter()
            .filter(|i| i.is_live())
            .filter_map(|i| self.load_record(i.id).ok())
            .flat_map(|r| r.spec.plan.predecessors())
            .collect();
        for info in all {
            if info.is_live() || needed.contains(&info.id) {
                continue;
            }
            let when = info.ended_at.unwrap_or(info.created_at);
            if cutoff.is_some_and(|c| when > c) {
                continue;
            }
            self.task(info.id)?.remove(false)?;
            removed.push(info.id);
        }
        self.clean_abandoned()?;
        Ok(removed)
    }

    /// Remove task directories that never got a record: a spawn whose caller was killed between
    /// taking the id and starting the supervisor. Only those older than [`ABANDONED_AFTER`] whose
    /// lock nobody holds, so a spawn in progress is never touched.
    fn clean_abandoned(&self) -> Result<()> {
        for id in self.ids()? {
            let dir = self.task_dir(id);
            if self.record_path(id).exists() || lock::probe(&self.lock_path(id))? == Probe::Held {
                continue;
            }
            let old = fs::symlink_metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= ABANDONED_AFTER);
            if old && fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&dir).map_err(|e| Error::path(&dir, e))?;
            }
        }
        Ok(())
    }
}

/// One task of a listing, before the scheduler is asked.
// Both variants are large and each is made and consumed once per task: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Listed {
    /// Its info, judged from the record and the lock.
    Done(Info),
    /// A live scheduler task's record, and whether its lock is held here.
    Ask(Record, bool),
}

/// How old a task directory without a record must be before `clean` takes it for abandoned.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The most threads a listing reads records with.
const LIST_THREADS: usize = 4;
/// Pools with fewer tasks are listed by the calling thread alone.
const LIST_PARALLEL_FROM: usize = 256;

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The supervisor program when no pool sets one: `$TASKPOOL_SUPERVISOR`, else
/// `taskpool-supervisor` beside the running executable (or one directory up), else on `PATH`.
pub(crate) fn default_supervisor_cmd() -> Result<Vec<OsString>> {
    if let Some(v) = std::env::var_os("TASKPOOL_SUPERVISOR").filter(|v| !v.is_empty()) {
        return Ok(vec![v]);
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // Beside the executable; for test harnesses under target/*/deps, one level up too.
        for dir in exe.ancestors().skip(1).take(2) {
            let cand = dir.join(SUPERVISOR_PROGRAM);
            if is_executable(&cand) {
                return Ok(vec![cand.into()]);
            }
            looked.push(dir.display().to_string());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join(SUPERVISOR_PROGRAM);
            if is_executable(&cand) {
                return Ok(vec![cand.into()]);
            }
        }
    }
    looked.push("PATH".into());
    Err(Error::new(
        ErrorKind::Supervisor,
        format!(
            "cannot find the supervisor program {SUPERVISOR_PROGRAM} (looked in {}); install it beside taskpool (cargo install --path cli installs both) or set TASKPOOL_SUPERVISOR to its path",
            looked.join(", ")
        ),
    ))
}
