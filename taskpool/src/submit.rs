//! Handing a new task to a cluster scheduler ([`crate::engine`]): what a task's options map to
//! (the table in docs/slurm.md), what cannot be mapped (refused before anything is made), and the
//! submission itself. The job is submitted (the batch script on sbatch's stdin), the script's copy
//! and the record's temporary file are made while `sbatch` runs, and the record (queued, no
//! supervisor, the job id) is stored once sbatch has answered, all while the submitter holds the
//! task's lock, so that the supervisor, once Slurm starts it, finds the record with its job id
//! (it waits for the lock). A rejected submission removes the task's directory: nothing is left.
//! `restart` of an ended task submits a new job the same way.

use crate::engine::{Engine, JobRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::Pool;
use crate::record::{self, Record, RunRecord, Spec, State, Status, Stdin, RECORD_FORMAT};
use crate::task::Task;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// Added to a `--timeout` before it becomes Slurm's `--time`: the supervisor's start, the drain
/// after the end and the final record.
const TIME_MARGIN_MS: u64 = 10_000;

/// What a new task's predecessors ask of the scheduler.
enum Deps {
    /// Slurm dependencies (`afterok:1:2,afterany:3`), or none.
    Jobs(Option<String>),
    /// A predecessor has already ended in a way that means the task can never run: why.
    Never(String),
}

impl Pool {
    /// Spawn `spec` through its scheduler engine: check that every option maps, write the
    /// record and the batch script, submit. On a refused submission the error is the scheduler's
    /// own message and the task's directory is gone.
    pub(crate) fn submit(&self, spec: Spec, meta: &Map<String, Value>) -> Result<Task> {
        check_mappable(&spec)?;
        let deps = self.dependencies(&spec)?;
        crate::spawn::discard_prestarted();
        let id = self.allocate_id()?;
        let mut made = Made {
            dir: self.task_dir(id),
            keep: false,
        };
        let lock_path = self.lock_path(id);
        let lock = crate::lock::open(&lock_path, true).map_err(|e| Error::path(&lock_path, e))?;
        // Nobody else knows the id yet; the supervisor waits for this lock before it reads.
        crate::lock::try_lock_ofd(&lock)?;
        let mut rec = new_record(id, spec, meta);
        let path = self.record_path(id);
        if let Deps::Never(why) = &deps {
            rec.state = State::Skipped;
            rec.reason = Some(why.clone());
            rec.store(&path, true)?;
            made.keep = true;
            return Ok(Task::new(self.clone(), id));
        }
        let args = self.submission_args(id, &rec.spec, &deps, true);
        self.hand_over(&mut rec, &args, false)?;
        made.keep = true;
        drop(lock);
        Ok(Task::new(self.clone(), id))
    }

    /// Submit `rec` (its task's lock held): `sbatch` with `args` starts, reading the batch
    /// script on its stdin; while it talks to the controller the script is written into the
    /// task's directory (a restart's anew: `replace`) and the record's temporary file is made;
    /// then the record is stored with the job id. The error is the scheduler's own; a job whose
    /// record could not be stored is cancelled.
    ///
    /// The record is stored once, after the submission, and not fsync'd: a crash before it
    /// reaches the disk leaves a task directory without a record (which `clean` removes) and a
    /// job whose supervisor finds no live record (docs/slurm.md); the time goes to the
    /// submission instead. Until then the job's supervisor waits for the lock we hold.
    fn hand_over(&self, rec: &mut Record, args: &[OsString], replace: bool) -> Result<()> {
        let id = rec.id;
        let path = self.record_path(id);
        let script = self.script(id, &rec.spec)?;
        let submitting = rec.spec.engine.submit(args, &script)?;
        // Creating files is the slow part of this work on some file systems: done while sbatch
        // waits for the controller, not after.
        let made = self
            .write_script(id, &script, replace)
            .and_then(|()| record::Replacement::open(&path));
        let job = submitting.job_id()?;
        rec.job = Some(JobRecord {
            job_id: Some(job),
            ..Default::default()
        });
        if let Err(e) = made.and_then(|file| rec.store_in(file, false)) {
            // The job would run a task with no record of its job: take it back.
            let _ = rec.spec.engine.cancel(job);
            return Err(e);
        }
        Ok(())
    }

    /// Run the ended scheduler task `id` again: a new job for its next run, under the same id.
    /// Its predecessors and start time applied to its first run only (as for a local task), so
    /// the new job has no dependency and no `--begin`. On a refused submission the task is left
    /// as it was.
    pub(crate) fn resubmit(&self, id: u64, rec: &Record) -> Result<Task> {
        crate::spawn::discard_prestarted();
        let lock_path = self.lock_path(id);
        let lock = crate::lock::open(&lock_path, false).map_err(|e| Error::path(&lock_path, e))?;
        let job = rec.job.as_ref().and_then(|j| j.job_id);
        // The previous supervisor's pid means something only on its own node.
        let here = rec
            .job
            .as_ref()
            .and_then(|j| j.node.as_deref())
            .is_some_and(is_this_node);
        let pid = rec.supervisor_pid.filter(|_| here);
        if !Task::new(self.clone(), id).lock_after_end(&lock, pid)? {
            let now = self.load_record(id)?;
            if now.state.is_live() {
                return Err(Error::new(
                    ErrorKind::State,
                    format!("task {id} was restarted meanwhile"),
                ));
            }
            let node = rec
                .job
                .as_ref()
                .and_then(|j| j.node.clone())
                .map_or(String::new(), |n| format!(" on {n}"));
            return Err(Error::new(
                ErrorKind::LockHeld,
                format!(
                    "task {id}: the supervisor of its last run (Slurm job {}{node}) still holds the task's lock; restart it once that job has ended",
                    job.map_or_else(|| "?".into(), |j| j.to_string())
                ),
            ));
        }
        let path = self.record_path(id);
        let previous = Record::load(&path)?;
        if previous.state.is_live() {
            return Err(Error::new(
                ErrorKind::State,
                format!("task {id} was restarted meanwhile"),
            ));
        }
        let mut next = previous.clone();
        next.state = State::Queued;
        next.supervisor_pid = None;
        next.reason = None;
        next.lost_from = None;
        next.next_start = None;
        next.waiting_for = None;
        next.job = Some(JobRecord::default());
        let args = self.submission_args(id, &next.spec, &Deps::Jobs(None), false);
        // On failure the ended record stands: nothing was stored.
        self.hand_over(&mut next, &args, true)?;
        drop(lock);
        Ok(Task::new(self.clone(), id))
    }

    /// The predecessors as Slurm dependencies. Each must be a task of the same engine; one that
    /// has ended is judged from its record (Slurm forgets finished jobs after `MinJobAge`).
    fn dependencies(&self, spec: &Spec) -> Result<Deps> {
        let plan = &spec.plan;
        let mut kinds: Vec<(&str, Vec<u64>)> = Vec::new();
        for (kind, ids) in [
            ("afterok", &plan.after),
            ("afterany", &plan.after_any),
            ("afternotok", &plan.after_failure),
        ] {
            let mut jobs = Vec::new();
            for &pred in ids {
                let rec = self.load_record(pred).map_err(|e| {
                    if e.kind() == ErrorKind::NotFound {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "task {pred} (a predecessor) not found in pool {}",
                                self.path().display()
                            ),
                        )
                    } else {
                        e
                    }
                })?;
                if rec.spec.engine != spec.engine {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "task {pred} (a predecessor) is a {} task: a chain cannot mix {} and {} tasks (a {} dependency names {} jobs only)",
                            rec.spec.engine.as_str(),
                            rec.spec.engine.as_str(),
                            spec.engine.as_str(),
                            spec.engine.as_str(),
                            spec.engine.as_str(),
                        ),
                    ));
                }
                if !rec.state.is_live() {
                    let status = rec.status().unwrap_or(Status::Lost);
                    let met = match kind {
                        "afterok" => status.is_ok(),
                        "afternotok" => status.is_failure(),
                        _ => true,
                    };
                    if met {
                        continue;
                    }
                    let needs = if kind == "afterok" {
                        "--after needs success or warning"
                    } else {
                        "--after-failure needs failure, killed, timeout or lost"
                    };
                    return Ok(Deps::Never(format!(
                        "predecessor task {pred} ended {} ({needs})",
                        status.as_str()
                    )));
                }
                match rec.job.as_ref().and_then(|j| j.job_id) {
                    Some(job) => jobs.push(job),
                    None => {
                        return Err(Error::new(
                            ErrorKind::State,
                            format!("task {pred} (a predecessor) has no Slurm job id yet"),
                        ))
                    }
                }
            }
            if !jobs.is_empty() {
                kinds.push((kind, jobs));
            }
        }
        if kinds.is_empty() {
            return Ok(Deps::Jobs(None));
        }
        let parts: Vec<String> = kinds
            .iter()
            .map(|(kind, jobs)| {
                let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
                format!("{kind}:{}", ids.join(":"))
            })
            .collect();
        Ok(Deps::Jobs(Some(parts.join(","))))
    }

    /// The batch script: it execs the supervisor, which then is the job's one process (Slurm
    /// signals it, and the job ends when it exits).
    fn script(&self, id: u64, spec: &Spec) -> Result<Vec<u8>> {
        use crate::slurm::sh_quote;
        use std::os::unix::ffi::OsStrExt;
        let mut s = Vec::new();
        s.extend_from_slice(b"#!/bin/sh\n");
        writeln!(
            s,
            "# taskpool task {id} ({} engine): the supervisor replaces this shell, so that the job",
            spec.engine.as_str()
        )
        .expect("writing to a Vec");
        s.extend_from_slice(b"# is the supervisor (docs/slurm.md).\n");
        for (k, v) in self.supervisor_env() {
            s.extend_from_slice(b"export ");
            s.extend_from_slice(k.as_bytes());
            s.push(b'=');
            s.extend_from_slice(&sh_quote(v.as_bytes()));
            s.push(b'\n');
        }
        s.extend_from_slice(b"exec");
        let mut argv = self.supervisor_cmd()?;
        argv.extend(["--pool".into(), self.path().into(), "--in-job".into()]);
        argv.push(id.to_string().into());
        for a in &argv {
            s.push(b' ');
            s.extend_from_slice(&sh_quote(a.as_bytes()));
        }
        s.push(b'\n');
        Ok(s)
    }

    /// Keep the batch script `script` in the task's directory, for whoever wants to read it
    /// (Slurm keeps its own copy). A restart (`replace`) writes it anew: the supervisor's path
    /// may have changed.
    fn write_script(&self, id: u64, script: &[u8], replace: bool) -> Result<()> {
        let path = self.task_dir(id).join(crate::slurm::SCRIPT);
        if replace {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::path(&path, e))
                }
                _ => {}
            }
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut f| f.write_all(script))
            .map_err(|e| Error::path(&path, e))
    }

    /// sbatch's arguments for the task: the mapped options, then the user's `--slurm-arg`s (which
    /// Slurm lets override the mapped ones). The start time maps for the `first` run only.
    fn submission_args(&self, id: u64, spec: &Spec, deps: &Deps, first: bool) -> Vec<OsString> {
        let dir = self.task_dir(id);
        let mut out: Vec<OsString> = Vec::new();
        let mut opt = |name: &str, value: &std::ffi::OsStr| {
            let mut a = OsString::from(format!("--{name}="));
            a.push(value);
            out.push(a);
        };
        opt(
            "job-name",
            spec.name
                .clone()
                .unwrap_or_else(|| format!("taskpool-{id}"))
                .as_ref(),
        );
        opt("output", dir.join("slurm-%j.out").as_os_str());
        opt("chdir", dir.as_os_str());
        if let Some(min) = time_limit_minutes(spec) {
            opt("time", min.to_string().as_ref());
        }
        if let Some(at) = spec.plan.start_at.filter(|_| first) {
            opt("begin", begin(at).as_ref());
        }
        if let Deps::Jobs(Some(d)) = deps {
            opt("dependency", d.as_ref());
            opt("kill-on-invalid-dep", "yes".as_ref());
        }
        out.push("--no-requeue".into());
        out.extend(spec.slurm_args.iter().map(OsString::from));
        out
    }
}

/// Whether `node` (Slurm's node name, the short host name) is the machine we run on.
fn is_this_node(node: &str) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/hostname").is_ok_and(|h| {
        let h = h.trim();
        h == node || h.split('.').next() == Some(node)
    })
}

/// Removes a task directory made for a submission that did not complete, unless kept.
struct Made {
    dir: std::path::PathBuf,
    keep: bool,
}

impl Drop for Made {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A new task's record, queued, with no supervisor yet.
fn new_record(id: u64, spec: Spec, meta: &Map<String, Value>) -> Record {
    Record {
        format: RECORD_FORMAT,
        id,
        spec,
        meta: meta.clone(),
        created_at: record::now(),
        state: State::Queued,
        supervisor_pid: None,
        reason: None,
        runs: Vec::<RunRecord>::new(),
        waiting_for: None,
        next_start: None,
        overlaps: 0,
        report: None,
        lost_from: None,
        job: Some(JobRecord::default()),
    }
}

/// Refuse what a scheduler engine cannot do, with why, before anything is made.
pub(crate) fn check_mappable(spec: &Spec) -> Result<()> {
    let engine = spec.engine.as_str();
    let refuse = |what: &str, why: &str| {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what} cannot be mapped to the {engine} engine: {why}"),
        ))
    };
    let plan = &spec.plan;
    if plan.repeat.is_some() {
        return refuse(
            "a recurring task (--cron, --every)",
            "a batch job runs once; use cron or scrontab to submit each run",
        );
    }
    if plan.group.is_some() {
        return refuse(
            "--group",
            "group limits are counted on one machine; use the scheduler's own limits (e.g. --slurm-arg=--qos=...)",
        );
    }
    if plan.wait_lock {
        return refuse(
            "--wait-lock",
            "a lock file cannot be waited for across nodes",
        );
    }
    if spec.stdin == Stdin::Pipe {
        return refuse(
            "--stdin pipe",
            "nothing could write to it from another node; use --stdin null (the default here) or a FILE",
        );
    }
    if spec.behavior != crate::record::Behavior::Daemon {
        return refuse(
            &format!("--behavior {}", spec.behavior.as_str()),
            "the job outlives the caller; only daemon applies",
        );
    }
    if spec.engine == Engine::Local {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the local engine does not submit",
        ));
    }
    Ok(())
}

/// Slurm's `--time` for the task's `--timeout`, in whole minutes, rounded up past the timeout,
/// the terminate sequence (INT, TERM, KILL a grace apart), the hooks and a margin. `None`
/// without a timeout, or with restarts (each run has its own timeout).
pub(crate) fn time_limit_minutes(spec: &Spec) -> Option<u64> {
    let plan = &spec.plan;
    let timeout = plan.timeout_ms?;
    if plan.restart != crate::plan::RestartPolicy::Never {
        return None;
    }
    let h = &plan.hooks;
    let hooks = u64::from(h.on_success.is_some() || h.on_failure.is_some())
        + u64::from(h.on_exit.is_some());
    let hook_ms = hooks * h.timeout_ms.unwrap_or(crate::plan::DEFAULT_HOOK_TIMEOUT_MS);
    let total = timeout + 2 * spec.grace_ms + hook_ms + TIME_MARGIN_MS;
    Some(total.div_ceil(60_000).max(1))
}

/// Slurm's `--begin` for a start time: local time, to the second, rounded up.
fn begin(at: record::Timestamp) -> String {
    let up = if at.timestamp_subsec_nanos() > 0 {
        at + chrono::Duration::seconds(1)
    } else {
        at
    };
    up.with_timezone(&chrono::Local)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(timeout_ms: Option<u64>) -> Spec {
        let mut s = crate::SpawnOptions::shell("true")
            .engine(Engine::Slurm)
            .to_spec()
            .unwrap();
        s.plan.timeout_ms = timeout_ms;
        s
    }

    #[test]
    fn a_timeout_becomes_whole_minutes_past_grace_and_margin() {
        assert_eq!(time_limit_minutes(&spec(None)), None);
        // 1 s + 2 x 2 s grace + 10 s margin: one minute.
        assert_eq!(time_limit_minutes(&spec(Some(1000))), Some(1));
        // 50 s + 4 s + 10 s = 64 s: two minutes.
        assert_eq!(time_limit_minutes(&spec(Some(50_000))), Some(2));
        let mut s = spec(Some(60_000));
        s.plan.hooks.on_exit = Some("true".into());
        // 60 + 4 + 60 (hook) + 10 = 134 s: three minutes.
        assert_eq!(time_limit_minutes(&s), Some(3));
    }

    #[test]
    fn begin_rounds_up_to_the_second() {
        let at = chrono::DateTime::parse_from_rfc3339("2030-01-02T03:04:05.2+00:00").unwrap();
        let local = (at + chrono::Duration::milliseconds(800)).with_timezone(&chrono::Local);
        assert_eq!(begin(at), local.format("%Y-%m-%dT%H:%M:%S").to_string());
    }
}
