//! Spawning: [`SpawnOptions`] describe a task; [`Pool::spawn`] validates them, allocates an id and
//! starts a supervisor. The library never forks its (possibly multi-threaded) caller to run Rust
//! code: it executes the supervisor program, hands it a [`Launch`] line on its stdin, and reads one
//! [`LaunchReply`] line from its stdout. The reply comes once the supervisor holds the task's lock,
//! listens on its socket and has executed the command, or carries the real reason it could not;
//! on failure nothing is left behind (no process, no socket, no record).

use crate::engine::Engine;
use crate::error::{kind_from_name, Error, ErrorKind, Result};
use crate::plan::{Backoff, Hooks, Plan, Repeat, RestartPolicy};
use crate::pool::Pool;
use crate::protocol::{encode_line, Launch, LaunchReply};
use crate::record::{Behavior, Command, Spec, Stdin, Timestamp};
use crate::task::Task;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// A supervisor program started ahead of need by [`prestart_supervisor`], waiting for its launch
/// line.
static PRESTARTED: std::sync::Mutex<Option<std::process::Child>> = std::sync::Mutex::new(None);

/// Start a supervisor program now, before the task (or even the pool) is known, so that its
/// start-up (loading, linking, runtime) overlaps the caller's own work on another core; the next
/// daemon or background spawn, restart or restore in this process hands it its orders instead of
/// starting one. The `taskpool` command calls this first thing when it is about to spawn. A
/// prestarted supervisor is only used by pools without a supervisor program or environment of
/// their own ([`Pool::set_supervisor_cmd`], [`Pool::set_supervisor_env`]); one that is not used
/// is told to go by the next launch (or sees end of file when this process exits) and exits.
/// At most one waits at a time: a second call does nothing.
pub fn prestart_supervisor() -> Result<()> {
    let mut slot = PRESTARTED.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() {
        return Ok(());
    }
    let argv = crate::pool::default_supervisor_cmd()?;
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| cannot_start(&argv[0], e))?;
    *slot = Some(child);
    Ok(())
}

/// Let a prestarted supervisor go unused: it sees end of file, exits, and is reaped here. For a
/// program that learns, after [`prestart_supervisor`], that it will not spawn after all.
pub fn discard_prestarted() {
    if let Some(c) = take_prestarted() {
        dismiss(c);
    }
}

/// Let a started supervisor go: it sees end of file on its stdin, exits, and is reaped here.
fn dismiss(mut c: std::process::Child) {
    drop(c.stdin.take());
    let _ = c.wait();
}

/// The error for a supervisor program that could not be started.
pub(crate) fn cannot_start(program: &std::ffi::OsStr, e: std::io::Error) -> Error {
    // The hint only helps when the program is missing (not, say, out of descriptors).
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            "; set TASKPOOL_SUPERVISOR to its path"
        }
        _ => "",
    };
    Error::new(
        ErrorKind::Supervisor,
        format!(
            "cannot start the supervisor {}: {e}{hint}",
            program.to_string_lossy()
        ),
    )
}

/// Take the prestarted supervisor, if any.
fn take_prestarted() -> Option<std::process::Child> {
    PRESTARTED.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Where a program named without a slash is searched when the task's environment has no `PATH`
/// (at spawn, and by the supervisor when it executes it).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The default size of each stream's memory buffer: 1 MiB.
pub const DEFAULT_BUFFER: u64 = 1024 * 1024;
/// The default grace between INT, TERM and KILL when terminating.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Everything that describes a new task. Build with [`SpawnOptions::shell`] or
/// [`SpawnOptions::exec`] and the chained setters.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnOptions {
    /// What to run.
    pub command: Command,
    /// Variables added to (or, with `clear_env`, making up) the task's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment instead of the caller's.
    pub clear_env: bool,
    /// The working directory (default: the caller's).
    pub cwd: Option<PathBuf>,
    /// A human name.
    pub name: Option<String>,
    /// Initial free-form metadata.
    pub meta: Map<String, Value>,
    /// Where stdin comes from (default: a pipe, writable with `send`).
    pub stdin: Stdin,
    /// A lock file the task must hold while it runs.
    pub lockfile: Option<PathBuf>,
    /// Bytes of each stream held in memory (default 1 MiB).
    pub buffer_size: u64,
    /// Cap on each stream's on-disk log (default: unlimited).
    pub log_max: Option<u64>,
    /// Merge stderr into stdout at the source, for exact order.
    pub merge_stderr: bool,
    /// Keep the supervisor serving this long after the end.
    pub linger: Option<Duration>,
    /// How the supervisor relates to the caller (default: daemon).
    pub behavior: Behavior,
    /// Grace between INT, TERM and KILL when terminating (default 2 s).
    pub grace: Duration,
    /// Groups, locks, chains, schedules, restarts, timeout, warning codes and hooks.
    pub plan: Plan,
    /// Resource limits (see [`crate::limits`]).
    pub limits: crate::limits::Limits,
    /// The nice value.
    pub nice: Option<i32>,
    /// The OOM score adjustment.
    pub oom_score_adj: Option<i32>,
    /// How the task tells it is ready (see [`crate::ready`]).
    pub readiness: Option<crate::ready::Readiness>,
    /// Run on a pseudo-terminal of this size (see [`crate::pty`]).
    pub pty: Option<crate::pty::PtySize>,
    /// Who starts the supervisor (default: [`Engine::Local`]; see [`crate::engine`]).
    pub engine: Engine,
    /// Arguments added to the scheduler's submission, after the mapped ones (`--slurm-arg`).
    pub slurm_args: Vec<String>,
}

impl SpawnOptions {
    fn new(command: Command) -> Self {
        SpawnOptions {
            command,
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            name: None,
            meta: Map::new(),
            stdin: Stdin::Pipe,
            lockfile: None,
            buffer_size: DEFAULT_BUFFER,
            log_max: None,
            merge_stderr: false,
            linger: None,
            behavior: Behavior::Daemon,
            grace: DEFAULT_GRACE,
            plan: Plan::default(),
            limits: Default::default(),
            nice: None,
            oom_score_adj: None,
            readiness: None,
            pty: None,
            engine: Engine::Local,
            slurm_args: Vec::new(),
        }
    }

    /// A task running `script` with `/bin/sh -c`.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(Command::Shell(script.into()))
    }

    /// A task executing `argv` directly (the program is searched on `PATH` without a slash).
    pub fn exec<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::new(Command::Exec(argv.into_iter().map(Into::into).collect()))
    }

    /// Add an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Start from an empty environment.
    pub fn clear_env(mut self, yes: bool) -> Self {
        self.clear_env = yes;
        self
    }

    /// Set the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Set the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replace the initial meta.
    pub fn meta(mut self, meta: Map<String, Value>) -> Self {
        self.meta = meta;
        self
    }

    /// Set one meta key.
    pub fn meta_value(mut self, key: impl Into<String>, value: Value) -> Self {
        self.meta.insert(key.into(), value);
        self
    }

    /// Set where stdin comes from.
    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = stdin;
        self
    }

    /// Require a lock file.
    pub fn lockfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.lockfile = Some(path.into());
        self
    }

    /// Set the per-stream memory buffer size.
    pub fn buffer_size(mut self, bytes: u64) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// Cap each stream's on-disk log.
    pub fn log_max(mut self, bytes: u64) -> Self {
        self.log_max = Some(bytes);
        self
    }

    /// Merge stderr into stdout at the source.
    pub fn merge_stderr(mut self, yes: bool) -> Self {
        self.merge_stderr = yes;
        self
    }

    /// Keep the supervisor serving for `d` after the end.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = Some(d);
        self
    }

    /// Set the behavior.
    pub fn behavior(mut self, b: Behavior) -> Self {
        self.behavior = b;
        self
    }

    /// Set the termination grace.
    pub fn grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// Count the task's runs against `group`'s limit, queueing it until a slot is free.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.plan.group = Some(group.into());
        self
    }

    /// Set the queue priority within the group (higher starts first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.plan.priority = priority;
        self
    }

    /// Wait for the lock file instead of failing while another process holds it.
    pub fn wait_lock(mut self, yes: bool) -> Self {
        self.plan.wait_lock = yes;
        self
    }

    /// Start once every task in `ids` has ended `success` or `warning`.
    pub fn after(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.plan.after.extend(ids);
        self
    }

    /// Start once every task in `ids` has ended, whatever its status.
    pub fn after_any(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.plan.after_any.extend(ids);
        self
    }

    /// Start only once every task in `ids` has ended `failure`, `killed`, `timeout` or `lost`.
    pub fn after_failure(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        self.plan.after_failure.extend(ids);
        self
    }

    /// Start no earlier than `d` from now.
    pub fn delay(mut self, d: Duration) -> Self {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.plan.start_at = Some(crate::record::now() + d);
        self
    }

    /// Start no earlier than `at` (refused at spawn when in the past).
    pub fn at(mut self, at: Timestamp) -> Self {
        self.plan.start_at = Some(at);
        self
    }

    /// Run at every time the cron expression matches (local time).
    pub fn cron(mut self, expr: impl Into<String>) -> Self {
        self.plan.repeat = Some(Repeat::Cron(expr.into()));
        self
    }

    /// Run every `d`; the first run one interval after spawn, or at once with `now`.
    pub fn every(mut self, d: Duration, now: bool) -> Self {
        self.plan.repeat = Some(Repeat::Every {
            every_ms: d.as_millis() as u64,
            now,
        });
        self
    }

    /// Stop a recurring task after `n` runs.
    pub fn max_runs(mut self, n: u32) -> Self {
        self.plan.max_runs = Some(n);
        self
    }

    /// Stop a recurring task after a run that exits with one of `codes`.
    pub fn stop_on(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.plan.stop_on.extend(codes);
        self
    }

    /// Restart runs that end as `policy` says, at most `max` times in a row (`None`: no limit).
    pub fn restart(mut self, policy: RestartPolicy, max: Option<u32>) -> Self {
        self.plan.restart = policy;
        self.plan.max_restarts = max;
        self
    }

    /// Wait `initial`, doubling up to `max`, before each restart.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.plan.backoff = Some(Backoff {
            initial_ms: initial.as_millis() as u64,
            max_ms: max.as_millis() as u64,
        });
        self
    }

    /// Terminate a run that lasts longer than `d` (status `timeout`).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.plan.timeout_ms = Some(d.as_millis() as u64);
        self
    }

    /// Exit codes that mean success with warnings (status `warning`).
    pub fn warn_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.plan.warn_codes.extend(codes);
        self
    }

    /// Set the hooks run after the end.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.plan.hooks = hooks;
        self
    }

    /// Set a resource limit (a name of [`crate::limits::NAMES`], or `memory` for `as`).
    pub fn limit(mut self, name: &str, limit: crate::limits::Limit) -> Self {
        let name = if name == "memory" { "as" } else { name };
        self.limits.insert(name.to_owned(), limit);
        self
    }

    /// Run the task at nice value `n` (-20 to 19; lower than the caller's needs CAP_SYS_NICE).
    pub fn nice(mut self, n: i32) -> Self {
        self.nice = Some(n);
        self
    }

    /// Set the task's OOM score adjustment (-1000 to 1000; lower than the caller's needs
    /// CAP_SYS_RESOURCE).
    pub fn oom_score_adj(mut self, n: i32) -> Self {
        self.oom_score_adj = Some(n);
        self
    }

    /// The task tells it is ready by `how` (see [`crate::ready`]); wait for it with
    /// [`crate::Task::wait_ready`].
    pub fn readiness(mut self, how: crate::ready::Readiness) -> Self {
        self.readiness = Some(how);
        self
    }

    /// Run the task on a pseudo-terminal of `size` (see [`crate::pty`]): its stdin, stdout and
    /// stderr are the terminal, its output one stream (stdout). Its stdin cannot also be `null`
    /// or a file.
    pub fn pty(mut self, size: crate::pty::PtySize) -> Self {
        self.pty = Some(size);
        self
    }

    /// Choose who starts the supervisor. A scheduler engine makes the default stdin (a pipe,
    /// which nothing could write to from another node) `/dev/null`; a stdin set afterwards stays.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.set_engine(engine);
        self
    }

    /// [`SpawnOptions::engine`] in place.
    pub fn set_engine(&mut self, engine: Engine) {
        if engine.is_scheduler() && self.stdin == Stdin::Pipe {
            self.stdin = Stdin::Null;
        }
        self.engine = engine;
    }

    /// Add an argument to the scheduler's submission (e.g. `--partition=gpu`), after the mapped
    /// ones.
    pub fn slurm_arg(mut self, arg: impl Into<String>) -> Self {
        self.slurm_args.push(arg.into());
        self
    }

    /// Validate the options and resolve them into a [`Spec`]: the complete environment, an
    /// absolute working directory that exists.
    pub fn to_spec(&self) -> Result<Spec> {
        let invalid = |m: String| Error::new(ErrorKind::InvalidInput, m);
        match &self.command {
            Command::Exec(argv) if argv.is_empty() || argv[0].is_empty() => {
                return Err(invalid("exec needs a program to run".into()))
            }
            Command::Shell(s) if s.is_empty() => {
                return Err(invalid("the shell command is empty".into()))
            }
            _ => {}
        }
        if self.buffer_size == 0 {
            return Err(invalid("buffer size must be at least 1 byte".into()));
        }
        if self.log_max == Some(0) {
            return Err(invalid("log cap must be at least 1 byte".into()));
        }
        let cwd = match &self.cwd {
            Some(d) => std::path::absolute(d).map_err(|e| Error::path(d, e).context("cwd"))?,
            None => std::env::current_dir().map_err(|e| Error::io("current directory", e))?,
        };
        if !cwd.is_dir() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("cwd {} does not exist or is not a directory", cwd.display()),
            ));
        }
        if self.pty.is_some() && self.engine.is_scheduler() {
            return Err(invalid(format!(
                "--pty cannot be mapped to the {} engine: a terminal on another node cannot be attached to; run without --pty (the output is captured either way)",
                self.engine.as_str()
            )));
        }
        if self.pty.is_some() && self.stdin != Stdin::Pipe {
            return Err(invalid(
                "--pty: the task's stdin is its terminal; it cannot also be null or a file (--stdin)"
                    .into(),
            ));
        }
        if let Stdin::File(p) = &self.stdin {
            std::fs::File::open(p).map_err(|e| Error::path(p, e).context("stdin file"))?;
        }
        crate::schedule::check_plan(&self.plan)?;
        crate::meta::check_size(&self.meta)?;
        crate::limits::check(&self.limits, self.nice, self.oom_score_adj)?;
        if let Some(crate::ready::Readiness::Fd(n)) = self.readiness {
            crate::ready::Readiness::fd(n)?;
        }
        if self.plan.wait_lock && self.lockfile.is_none() {
            return Err(invalid("--wait-lock needs a lock file (--lockfile)".into()));
        }
        if let Command::Exec(argv) = &self.command {
            resolve_program(&argv[0], &cwd, &self.env, self.clear_env)?;
        }
        let lockfile = self
            .lockfile
            .as_ref()
            .map(|p| std::path::absolute(p).map_err(|e| Error::path(p, e).context("lockfile")))
            .transpose()?;
        for (k, _) in &self.env {
            if k.is_empty() || k.as_encoded_bytes().contains(&b'=') {
                return Err(invalid(format!("bad environment variable name {k:?}")));
            }
        }
        let mut env: Vec<(OsString, OsString)> = if self.clear_env {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        Ok(Spec {
            command: self.command.clone(),
            env,
            cwd,
            name: self.name.clone(),
            stdin: match &self.stdin {
                Stdin::File(p) => Stdin::File(
                    std::path::absolute(p).map_err(|e| Error::path(p, e).context("stdin"))?,
                ),
                s => s.clone(),
            },
            lockfile,
            buffer_size: self.buffer_size,
            log_max: self.log_max,
            merge_stderr: self.merge_stderr,
            linger_ms: self.linger.map(|d| d.as_millis() as u64),
            behavior: self.behavior,
            grace_ms: self.grace.as_millis() as u64,
            plan: self.plan.clone(),
            limits: self.limits.clone(),
            nice: self.nice,
            oom_score_adj: self.oom_score_adj,
            readiness: self.readiness,
            pty: self.pty,
            engine: self.engine,
            slurm_args: self.slurm_args.clone(),
        })
    }
}

/// Check that `prog` can be executed, as `execvp` would find it: a path with a slash must name
/// an executable file (relative to `cwd`); a bare name must be found on the task's `PATH`.
/// The error tells a missing program ([`ErrorKind::ProgramNotFound`], naming what was
/// searched) from one that exists but cannot run ([`ErrorKind::CannotExecute`]: a directory, or
/// a file without execute permission).
fn resolve_program(
    prog: &std::ffi::OsStr,
    cwd: &std::path::Path,
    env: &[(OsString, OsString)],
    clear_env: bool,
) -> Result<()> {
    let shown = std::path::Path::new(prog).display();
    if prog.as_encoded_bytes().contains(&b'/') {
        let p = cwd.join(prog);
        return match probe_program(&p) {
            Probe::Runs => Ok(()),
            Probe::Missing => Err(Error::new(
                ErrorKind::ProgramNotFound,
                format!("program {} not found", p.display()),
            )),
            Probe::Refused(why) => Err(Error::new(
                ErrorKind::CannotExecute,
                format!("program {} {why}", p.display()),
            )),
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| {
            if clear_env {
                None
            } else {
                std::env::var_os("PATH")
            }
        })
        .unwrap_or_else(|| DEFAULT_PATH.into());
    // As execvp: the first executable match wins; a match that cannot run is reported only
    // when nothing later on PATH runs.
    let mut refused = None;
    for dir in std::env::split_paths(&path) {
        let p = cwd.join(dir).join(prog);
        match probe_program(&p) {
            Probe::Runs => return Ok(()),
            Probe::Missing => {}
            Probe::Refused(why) => {
                refused.get_or_insert((p, why));
            }
        }
    }
    match refused {
        Some((p, why)) => Err(Error::new(
            ErrorKind::CannotExecute,
            format!(
                "program {shown} found on PATH as {} but it {why}",
                p.display()
            ),
        )),
        None => Err(Error::new(
            ErrorKind::ProgramNotFound,
            format!(
                "program {shown} not found (searched PATH={})",
                std::path::Path::new(&path).display()
            ),
        )),
    }
}

/// What [`resolve_program`] found at one path.
enum Probe {
    Runs,
    Missing,
    Refused(&'static str),
}

fn probe_program(p: &std::path::Path) -> Probe {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_dir() => Probe::Refused("is a directory"),
        Ok(m) if !m.is_file() => Probe::Refused("is not a regular file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Probe::Refused("is not executable (no execute permission)")
        }
        Ok(_) => Probe::Runs,
    }
}

/// What a successful launch reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// The supervisor's pid.
    pub supervisor_pid: i32,
    /// The task's main pid; `None` for a deferred task.
    pub pid: Option<i32>,
    /// The run number (0 for a deferred task that has not run).
    pub run: u32,
}

impl Pool {
    /// Start a new task. Returns once the supervisor holds the task's lock, listens, and has
    /// executed the command; on any failure returns the real reason and leaves nothing behind.
    ///
    /// A deferred task (a group, a lock to wait for, predecessors, a start time or a recurrence)
    /// returns once its supervisor has durably accepted it; what fails later ends the task with
    /// status `failure` and the reason in its info.
    pub fn spawn(&self, opts: &SpawnOptions) -> Result<Task> {
        let spec = opts.to_spec()?;
        if spec.engine.is_scheduler() {
            return self.submit(spec, &opts.meta);
        }
        let behavior = spec.behavior;
        // Started first: its start-up overlaps the checks and the id's allocation below.
        let starting = self.start_supervisor(behavior)?;
        let id = match self
            .check_predecessors(&spec)
            .and_then(|()| self.allocate_id())
        {
            Ok(id) => id,
            Err(e) => {
                starting.discard();
                return Err(e);
            }
        };
        self.launch_new(starting, id, spec, &opts.meta)
    }

    /// Hand the new task `id` to the supervisor `starting`; on failure its directory goes.
    pub(crate) fn launch_new(
        &self,
        starting: Starting,
        id: u64,
        spec: Spec,
        meta: &Map<String, Value>,
    ) -> Result<Task> {
        let launch = Launch {
            id,
            spec: Some(spec),
            meta: meta.clone(),
            restart: false,
            restore: false,
            pool: None,
            skip: None,
        };
        match self.finish_launch(starting, &launch) {
            Ok((_, child)) => Ok(Task::with_child(self.clone(), id, child)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.task_dir(id));
                Err(e)
            }
        }
    }

    /// Every predecessor the plan names must exist, and be a local task (a chain cannot mix
    /// engines).
    pub(crate) fn check_predecessors(&self, spec: &Spec) -> Result<()> {
        for id in spec.plan.predecessors() {
            let rec = match crate::record::Record::load_without_env(&self.record_path(id)) {
                Ok(rec) => rec,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "task {id} (a predecessor) not found in pool {}",
                            self.path().display()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            };
            if rec.spec.engine != spec.engine {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "task {id} (a predecessor) is a {} task: a chain cannot mix {} and {} tasks",
                        rec.spec.engine.as_str(),
                        rec.spec.engine.as_str(),
                        spec.engine.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Run an ended task again under the same id, as a new run. Refused while the task is live.
    /// A scheduler task's next run is a new job (docs/slurm.md).
    pub fn restart(&self, id: u64) -> Result<Task> {
        let rec = self.load_record(id)?;
        if rec.state.is_live() {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "task {id} is {}; restart is refused while it is live",
                    rec.state.as_str()
                ),
            ));
        }
        if rec.spec.engine.is_scheduler() {
            // A new job for the next run: its supervisor is the job's to start.
            return self.resubmit(id, &rec);
        }
        // The previous run's supervisor may still be exiting, or lingering: wait for it (tell a
        // lingering one to go) so the new one can take the task's lock.
        let lock_path = self.lock_path(id);
        if let Ok(f) = crate::lock::open(&lock_path, false) {
            if !Task::new(self.clone(), id).lock_after_end(&f, rec.supervisor_pid)? {
                return Err(Error::new(
                    ErrorKind::State,
                    format!("task {id} was restarted meanwhile"),
                ));
            }
        }
        let launch = Launch {
            id,
            spec: None,
            meta: Map::new(),
            restart: true,
            restore: false,
            pool: None,
            skip: None,
        };
        let (_, child) = self.launch(&launch, rec.spec.behavior)?;
        Ok(Task::with_child(self.clone(), id, child))
    }

    /// Re-arm what a reboot (or any loss of supervisors) ended: every task whose supervisor
    /// vanished while it was queued, waiting or scheduled, and every recurring task, gets a new
    /// supervisor that carries on its plan under the same id (as a daemon). A missed one-time
    /// start happens at once; a recurring task's missed firings are skipped, as cron does. Tasks
    /// that were running a one-time command stay `lost`. Returns each task tried, with the
    /// outcome.
    pub fn restore(&self) -> Result<Vec<(u64, Result<Task>)>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            let Ok(rec) = self.load_record(id) else {
                continue;
            };
            let Some(from) = rec.lost_from.filter(|_| rec.state == crate::State::Lost) else {
                continue;
            };
            let recurring = rec.spec.plan.repeat.is_some();
            // A scheduler task's supervisor is its job's to start, never ours.
            if !(from.is_deferred() || recurring) || rec.spec.engine.is_scheduler() {
                continue;
            }
            let launch = Launch {
                id,
                spec: None,
                meta: Map::new(),
                restart: false,
                restore: true,
                pool: None,
                skip: None,
            };
            let r = self
                .launch(&launch, Behavior::Daemon)
                .map(|(_, child)| Task::with_child(self.clone(), id, child));
            out.push((id, r));
        }
        Ok(out)
    }

    /// Start a supervisor for `launch` and read its one-line answer.
    pub(crate) fn launch(
        &self,
        launch: &Launch,
        behavior: Behavior,
    ) -> Result<(Launched, Option<std::process::Child>)> {
        let starting = self.start_supervisor(behavior)?;
        self.finish_launch(starting, launch)
    }

    /// Start a supervisor for a task of `behavior` (or take the one
    /// [`prestart_supervisor`] started, when it suits this pool); it waits for its launch line.
    pub(crate) fn start_supervisor(&self, behavior: Behavior) -> Result<Starting> {
        if let Some(mut ready) = take_prestarted() {
            let usable = behavior != Behavior::Foreground
                && !self.has_supervisor_cmd()
                && self.supervisor_env().is_empty()
                && matches!(ready.try_wait(), Ok(None));
            if usable {
                return Ok(Starting {
                    child: ready,
                    needs_pool: true,
                    program: String::new(),
                    foreground: false,
                });
            }
            dismiss(ready);
        }
        let argv = self.supervisor_cmd()?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .arg("--pool")
            .arg(self.path())
            .envs(self.supervisor_env().iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if behavior == Behavior::Foreground {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let child = cmd.spawn().map_err(|e| cannot_start(&argv[0], e))?;
        Ok(Starting {
            child,
            needs_pool: false,
            program: format!("{} ", argv[0].to_string_lossy()),
            foreground: behavior == Behavior::Foreground,
        })
    }

    /// Hand a started supervisor its launch line and read its one-line answer.
    pub(crate) fn finish_launch(
        &self,
        starting: Starting,
        launch: &Launch,
    ) -> Result<(Launched, Option<std::process::Child>)> {
        let Starting {
            mut child,
            needs_pool,
            program,
            foreground,
        } = starting;
        let mut line = Vec::new();
        if needs_pool {
            let with_pool = Launch {
                pool: Some(self.path().to_owned()),
                ..launch.clone()
            };
            encode_line(&with_pool, &mut line);
        } else {
            encode_line(launch, &mut line);
        }
        let mut stdin = child.stdin.take().expect("stdin was piped");
        // A supervisor that dies early closes its stdin; its reply (or silence) says why.
        let _ = stdin.write_all(&line);
        drop(stdin);
        let reply = read_reply(child.stdout.take().expect("stdout was piped"));
        let mut child = if foreground {
            Some(child)
        } else {
            // The supervisor's first process exits as soon as it has detached.
            let _ = child.wait();
            None
        };
        let Some(reply) = reply else {
            let status = match child.as_mut() {
                Some(c) => c.wait().map(|s| s.to_string()).unwrap_or_default(),
                None => "exited".into(),
            };
            return Err(silent(launch.id, &program, &status));
        };
        launched(reply, child)
    }
}

/// A supervisor process started for a launch, waiting for its launch line on stdin.
pub(crate) struct Starting {
    child: std::process::Child,
    /// Started without `--pool` ([`prestart_supervisor`]): the launch line names the pool.
    needs_pool: bool,
    /// The program, for messages ("" for a prestarted one), followed by a space.
    program: String,
    /// It stays the caller's child (a foreground task).
    foreground: bool,
}

impl Starting {
    /// Let it go unused: it sees end of file, exits, and is reaped.
    pub(crate) fn discard(self) {
        dismiss(self.child);
    }
}

/// The outcome of a launch, from the supervisor's reply.
pub(crate) fn launched(
    reply: LaunchReply,
    child: Option<std::process::Child>,
) -> Result<(Launched, Option<std::process::Child>)> {
    match reply {
        LaunchReply::Ready {
            supervisor_pid,
            pid,
            run,
        } => Ok((
            Launched {
                supervisor_pid,
                pid: Some(pid),
                run,
            },
            child,
        )),
        LaunchReply::Accepted { supervisor_pid, .. } => Ok((
            Launched {
                supervisor_pid,
                pid: None,
                run: 0,
            },
            child,
        )),
        LaunchReply::Error { kind, message } => {
            if let Some(mut c) = child {
                let _ = c.wait();
            }
            Err(Error::new(kind_from_name(&kind), message))
        }
    }
}

/// The error for a supervisor that ended without replying.
pub(crate) fn silent(id: u64, program: &str, status: &str) -> Error {
    Error::new(
        ErrorKind::Supervisor,
        format!("task {id}: the supervisor {program}ended without reporting ({status})"),
    )
}

/// Read the supervisor's one reply line; `None` if it closed the pipe without a valid one.
fn read_reply(from: impl std::io::Read) -> Option<LaunchReply> {
    let mut reply = String::new();
    BufReader::new(from).read_line(&mut reply).ok()?;
    serde_json::from_str(reply.trim_end()).ok()
}
