//! Hooks: the user's commands run after a task's end (`--on-success`, `--on-failure`,
//! `--on-exit`), with the completion report in their environment and as JSON on their stdin.
//!
//! The supervisor is single-threaded and must keep serving clients while a hook runs, so nothing
//! here waits: [`start`] starts one hook and returns a [`HookRun`]; the event loop reaps its pid
//! (it is the supervisor's child), kills it at [`HookRun::deadline`] ([`HookRun::kill`]), and
//! turns the outcome into a [`HookResult`] with [`HookRun::finish`]. Hooks of one end run one
//! after the other, in the order [`hooks_for`] gives. A hook never changes the task's status.
//!
//! A hook runs as the task does: `/bin/sh -c COMMAND` in the task's working directory and
//! environment (plus [`report::env`]), in a process group of its own (so a timeout kills
//! everything it started), with an empty signal mask and default dispositions, and SIGKILLed
//! should the supervisor die (`PR_SET_PDEATHSIG`). Its stdout and stderr both go to
//! `DIR/hook-WHICH.out`, whose tail is kept in the report.

use crate::report;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use taskpool::plan::{Hooks, DEFAULT_HOOK_TIMEOUT_MS};
use taskpool::record::{Spec, Status};
use taskpool::report::{HookResult, Report, TAIL_BYTES};
use taskpool::{Error, Result};

/// The hooks to run for an end with `status`, in order, as `(which, command)`
/// ([`Hooks::for_status`]: `on_success` for `success` and `warning`, `on_failure` for `failure`,
/// `killed` and `timeout`, then `on_exit` for every status, `skipped` included).
pub fn hooks_for(hooks: &Hooks, status: Status) -> Vec<(&'static str, String)> {
    hooks.for_status(status)
}

/// How long each hook may run (`--hook-timeout`, default 60 s).
pub fn timeout(hooks: &Hooks) -> Duration {
    Duration::from_millis(hooks.timeout_ms.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS))
}

/// Where and how the hooks of one end run: the same for each of them.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// The task's environment (its spec's); the report's variables are added to it.
    pub env: &'a [(OsString, OsString)],
    /// The working directory: the task's.
    pub cwd: &'a Path,
    /// The pool directory (`TASKPOOL_DIR`, and the logs' paths in the environment).
    pub pool: &'a Path,
    /// Where the hook's stdin (`hook-WHICH.in`) and output (`hook-WHICH.out`) files go: the run's
    /// directory (the task's directory for a task that never ran).
    pub dir: &'a Path,
    /// How long a hook may run before its process group is killed.
    pub timeout: Duration,
}

impl<'a> HookContext<'a> {
    /// The context for `spec`'s hooks, writing their files into `dir`.
    pub fn for_task(spec: &'a Spec, pool: &'a Path, dir: &'a Path) -> HookContext<'a> {
        HookContext {
            env: &spec.env,
            cwd: &spec.cwd,
            pool,
            dir,
            timeout: timeout(&spec.plan.hooks),
        }
    }
}

/// A hook that was started and has not been accounted for yet.
#[derive(Debug)]
pub struct HookRun {
    /// `on_success`, `on_failure` or `on_exit`.
    pub which: &'static str,
    /// The hook's pid (`/bin/sh`), also its process group id.
    pub pid: Pid,
    started: Instant,
    deadline: Instant,
    command: String,
    out_path: PathBuf,
    in_path: PathBuf,
}

/// A hook's result when it could not be started at all.
pub fn not_started(which: &str, command: &str, error: &Error) -> HookResult {
    HookResult {
        hook: which.to_owned(),
        command: command.to_owned(),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration: 0.0,
        output: String::new(),
        error: Some(error.message().to_owned()),
    }
}

/// Start hook `which` running `command`, with `report` as JSON on its stdin and in its
/// environment. Returns at once; the caller reaps [`HookRun::pid`].
pub fn start(
    which: &'static str,
    command: &str,
    report: &Report,
    ctx: &HookContext,
) -> Result<HookRun> {
    let in_path = ctx.dir.join(format!("hook-{which}.in"));
    let out_path = ctx.dir.join(format!("hook-{which}.out"));
    // One line, newline-terminated, so that `read -r line` in a shell hook gets all of it.
    let mut json = serde_json::to_vec(report)
        .map_err(|e| Error::new(taskpool::ErrorKind::Io, format!("encoding the report: {e}")))?;
    json.push(b'\n');
    let mut input = create(&in_path)?;
    std::io::Write::write_all(&mut input, &json).map_err(|e| Error::path(&in_path, e))?;
    drop(input);
    let stdin = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&in_path)
        .map_err(|e| Error::path(&in_path, e))?;
    let out = create(&out_path)?;
    let err = out.try_clone().map_err(|e| Error::path(&out_path, e))?;
    let supervisor = nix::unistd::getpid();
    let mut env = ctx.env.to_vec();
    env.extend(report::env(report, ctx.pool));
    env.push((
        taskpool::ENV_SUPERVISOR_PID.into(),
        OsString::from(supervisor.to_string()),
    ));
    let args = [OsString::from("-c"), OsString::from(command)];
    let exec = crate::child::Exec {
        program: std::ffi::OsStr::new("/bin/sh"),
        args: &args,
        env,
        cwd: ctx.cwd,
        stdio: crate::child::ChildStdio {
            stdin: stdin.as_fd(),
            stdout: out.as_fd(),
            stderr: err.as_fd(),
            terminal: false,
        },
        setup: Default::default(),
    };
    let started = Instant::now();
    let pid = crate::child::spawn(&exec)
        .map_err(|e| Error::io(format!("starting hook {which} in {}", ctx.cwd.display()), e))?;
    drop((stdin, out, err));
    Ok(HookRun {
        which,
        pid,
        started,
        deadline: started + ctx.timeout,
        command: command.to_owned(),
        out_path,
        in_path,
    })
}

/// Create (or truncate) a hook file: `O_NOFOLLOW`, mode 0660 less the umask.
fn create(path: &Path) -> Result<File> {
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o660)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::path(path, e))
}

impl HookRun {
    /// When the hook has run out of time: kill it then ([`HookRun::kill`]).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// SIGKILL the hook's whole process group (a group already gone is not an error).
    pub fn kill(&self) {
        // ESRCH (nobody left) is the only error killpg can give here.
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// The hook's result once its main process was reaped: `exit_code` or `signal` from its wait
    /// status, `timed_out` when it was killed at the deadline. Reads the tail of its output and
    /// kills whatever it left running in its process group.
    pub fn finish(
        self,
        exit_code: Option<i32>,
        signal: Option<Signal>,
        timed_out: bool,
    ) -> HookResult {
        self.kill();
        let _ = std::fs::remove_file(&self.in_path);
        let output = report::tail(&self.out_path, TAIL_BYTES, None).unwrap_or_default();
        HookResult {
            hook: self.which.to_owned(),
            command: self.command,
            exit_code,
            signal: signal.map(|s| s.as_str().to_owned()),
            timed_out,
            duration: (self.started.elapsed().as_millis() as f64) / 1000.0,
            output,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::record;
    use nix::sys::wait::{waitpid, WaitStatus};
    use taskpool::record::{RunRecord, State};

    fn hooks(s: Option<&str>, f: Option<&str>, e: Option<&str>) -> Hooks {
        Hooks {
            on_success: s.map(Into::into),
            on_failure: f.map(Into::into),
            on_exit: e.map(Into::into),
            timeout_ms: None,
        }
    }

    #[test]
    fn the_status_chooses_the_hooks() {
        let all = hooks(Some("s"), Some("f"), Some("e"));
        let which = |st| -> Vec<&str> { hooks_for(&all, st).iter().map(|h| h.0).collect() };
        assert_eq!(which(Status::Success), ["on_success", "on_exit"]);
        assert_eq!(which(Status::Warning), ["on_success", "on_exit"]);
        for st in [Status::Failure, Status::Killed, Status::Timeout] {
            assert_eq!(which(st), ["on_failure", "on_exit"], "{st:?}");
        }
        assert_eq!(which(Status::Skipped), ["on_exit"]);
        assert_eq!(which(Status::Lost), ["on_exit"]);
        let only_failure = hooks(None, Some("page me"), None);
        assert_eq!(
            hooks_for(&only_failure, Status::Timeout),
            [("on_failure", "page me".to_owned())]
        );
        assert!(hooks_for(&only_failure, Status::Success).is_empty());
        assert_eq!(timeout(&only_failure), Duration::from_secs(60));
    }

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tp-hooks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn report() -> Report {
        let mut run = RunRecord::new(1);
        run.started_at = Some(taskpool::record::now());
        run.ended_at = run.started_at;
        run.exit_code = Some(0);
        run.status = Some(Status::Success);
        crate::report::build(&record(State::Exited, Some(run)), None)
    }

    /// Wait for the hook's main process, as the event loop would when SIGCHLD arrives.
    fn reap(run: &HookRun) -> (Option<i32>, Option<Signal>) {
        match waitpid(run.pid, None).unwrap() {
            WaitStatus::Exited(_, code) => (Some(code), None),
            WaitStatus::Signaled(_, sig, _) => (None, Some(sig)),
            other => panic!("unexpected wait status {other:?}"),
        }
    }

    #[test]
    fn a_hook_sees_the_report_in_its_environment_and_on_stdin() {
        let dir = tmp_dir("run");
        let env = [("FROM_TASK".into(), "yes".into())];
        let ctx = HookContext {
            env: &env,
            cwd: &dir,
            pool: Path::new("/the/pool"),
            dir: &dir,
            timeout: Duration::from_secs(10),
        };
        let rep = report();
        let script =
            "echo $TASKPOOL_STATUS $TASKPOOL_TASK_ID $FROM_TASK $TASKPOOL_DIR; cat; pwd >&2";
        let run = start("on_success", script, &rep, &ctx).unwrap();
        assert!(run.deadline() > Instant::now());
        let (code, sig) = reap(&run);
        let res = run.finish(code, sig, false);
        assert_eq!((res.exit_code, res.signal.as_deref()), (Some(0), None));
        assert_eq!((res.hook.as_str(), res.timed_out), ("on_success", false));
        let mut lines = res.output.lines();
        assert_eq!(lines.next(), Some("success 7 yes /the/pool"));
        let json: Report = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(json, rep);
        assert_eq!(
            lines.next().map(PathBuf::from),
            Some(dir.canonicalize().unwrap())
        );
        assert!(!dir.join("hook-on_success.in").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_hook_past_its_deadline_is_killed_with_its_group() {
        let dir = tmp_dir("timeout");
        let ctx = HookContext {
            env: &[],
            cwd: &dir,
            pool: &dir,
            dir: &dir,
            timeout: Duration::from_millis(100),
        };
        let run = start("on_exit", "sleep 10", &report(), &ctx).unwrap();
        // The event loop's poll timeout: sleep until the deadline.
        std::thread::sleep(run.deadline().saturating_duration_since(Instant::now()));
        run.kill();
        let (code, sig) = reap(&run);
        assert_eq!((code, sig), (None, Some(Signal::SIGKILL)));
        let res = run.finish(code, sig, true);
        assert!(res.timed_out);
        assert_eq!(res.signal.as_deref(), Some("SIGKILL"));
        assert!(
            res.duration >= 0.1 && res.duration < 5.0,
            "{}",
            res.duration
        );
        assert_eq!(res.output, "");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_cwd_is_a_clear_error() {
        let dir = tmp_dir("nocwd");
        let gone = dir.join("gone");
        let ctx = HookContext {
            env: &[],
            cwd: &gone,
            pool: &dir,
            dir: &dir,
            timeout: Duration::from_secs(1),
        };
        let e = start("on_exit", "true", &report(), &ctx).unwrap_err();
        assert!(e.message().contains("hook on_exit"), "{e}");
        let res = not_started("on_exit", "true", &e);
        assert_eq!(res.error.as_deref(), Some(e.message()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
