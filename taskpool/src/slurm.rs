//! Slurm's commands, run with explicit argv from `PATH`: `sbatch --parsable` to submit, one
//! `squeue` for any number of jobs, `scancel`. Their failures are passed on in Slurm's own words,
//! on one line. What a task's options map to is decided by the submitter; this module only speaks
//! to Slurm (see docs/slurm.md).

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// One job as `squeue` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Squeued {
    /// The job id.
    pub job_id: u64,
    /// `%T`: PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, ...
    pub state: String,
    /// `%r`, absent when `None`.
    pub reason: Option<String>,
    /// `%N`, absent before allocation.
    pub node: Option<String>,
}

/// The batch script's name in the task's directory.
pub const SCRIPT: &str = "slurm.sh";

/// Run `program args...`, returning its stdout; a failure is Slurm's stderr on one line.
fn run(program: &str, args: &[OsString]) -> Result<String> {
    finish(program, start(program, args)?)
}

/// Start `program args...` with its output captured.
fn start(program: &str, args: &[OsString]) -> Result<Child> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Scheduler,
                format!("cannot run {program}: {e} (is Slurm installed and on PATH?)"),
            )
        })
}

/// Wait for a started `program`: its stdout, or its stderr on one line as the error.
fn finish(program: &str, child: Child) -> Result<String> {
    let out = child
        .wait_with_output()
        .map_err(|e| Error::new(ErrorKind::Scheduler, format!("waiting for {program}: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Scheduler,
            one_line(program, &out.stderr, &out.status.to_string()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command's stderr as one line (its lines joined with `; `), or its exit status when silent.
fn one_line(program: &str, stderr: &[u8], status: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        format!("{program} failed ({status})")
    } else {
        lines.join("; ")
    }
}

/// Start submitting the task directory's [`SCRIPT`] with `sbatch --parsable ARGS... SCRIPT`;
/// [`sbatch_job`] waits for the job id. (The caller does its own writing meanwhile.)
pub fn sbatch(task_dir: &Path, args: &[OsString]) -> Result<Child> {
    let mut argv: Vec<OsString> = vec!["--parsable".into()];
    argv.extend(args.iter().cloned());
    argv.push(task_dir.join(SCRIPT).into());
    start("sbatch", &argv)
}

/// The job id a started [`sbatch`] prints, or Slurm's error on one line.
pub fn sbatch_job(child: Child) -> Result<u64> {
    let out = finish("sbatch", child)?;
    // `JOBID` or `JOBID;CLUSTER`, after any warnings on other lines.
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let id = line.split(';').next().unwrap_or("").trim();
    id.parse().map_err(|_| {
        Error::new(
            ErrorKind::Scheduler,
            format!("sbatch --parsable printed {:?}, not a job id", out.trim()),
        )
    })
}

/// The views of `jobs`, from one `squeue -h -t all -j ID,ID,... -o FORMAT`. A job Slurm no longer
/// knows (after `MinJobAge`) is absent from the map.
pub fn squeue(jobs: &[u64]) -> Result<HashMap<u64, Squeued>> {
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let argv: Vec<OsString> = [
        "--noheader",
        "--states=all",
        "--format=%i|%T|%r|%N",
        "--jobs",
    ]
    .iter()
    .map(Into::into)
    .chain([ids.join(",").into()])
    .collect();
    let out = match run("squeue", &argv) {
        Ok(out) => out,
        // A lone unknown id is an error to squeue (several are filtered quietly).
        Err(e) if e.message().contains("Invalid job id") => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    Ok(parse_squeue(&out))
}

/// Parse `squeue --format=%i|%T|%r|%N` lines.
fn parse_squeue(out: &str) -> HashMap<u64, Squeued> {
    let mut views = HashMap::new();
    for line in out.lines() {
        let mut f = line.trim().splitn(4, '|');
        let (Some(id), Some(state), reason, node) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(job_id) = id.trim().parse() else {
            continue; // an array element or a heterogeneous job: not ours
        };
        let some = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty() && *s != "None" && *s != "(null)")
                .map(str::to_owned)
        };
        views.insert(
            job_id,
            Squeued {
                job_id,
                state: state.trim().to_owned(),
                reason: some(reason),
                node: some(node),
            },
        );
    }
    views
}

/// `scancel JOB`. Slurm exits 0 even for an unknown job: callers confirm by the task's state.
pub fn scancel(job: u64) -> Result<()> {
    run("scancel", &[job.to_string().into()]).map(drop)
}

/// `scancel --batch --signal=SIG JOB`: signal the batch script's process (the supervisor) only.
pub fn scancel_batch(job: u64, signal: &str) -> Result<()> {
    run(
        "scancel",
        &[
            "--batch".into(),
            format!("--signal={signal}").into(),
            job.to_string().into(),
        ],
    )
    .map(drop)
}

/// Quote `s` for `/bin/sh`: in single quotes, each `'` written as `'\''`.
pub fn sh_quote(s: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(s.len() + 2);
    q.push(b'\'');
    for &b in s {
        if b == b'\'' {
            q.extend_from_slice(b"'\\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_parse_with_none_as_absent() {
        let v =
            parse_squeue("12|PENDING|JobHeldUser|\n13|COMPLETED|None|vm\n14_1|RUNNING|None|vm\n");
        assert_eq!(v.len(), 2);
        assert_eq!(v[&12].reason.as_deref(), Some("JobHeldUser"));
        assert_eq!(v[&12].node, None);
        assert_eq!(v[&13].reason, None);
        assert_eq!(v[&13].node.as_deref(), Some("vm"));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote(b"a'b c"), b"'a'\\''b c'".to_vec());
    }

    #[test]
    fn a_silent_failure_names_the_status() {
        assert_eq!(
            one_line("sbatch", b"", "exit status: 1"),
            "sbatch failed (exit status: 1)"
        );
        assert_eq!(
            one_line("sbatch", b"sbatch: error: a\nsbatch: error: b\n", ""),
            "sbatch: error: a; sbatch: error: b"
        );
    }
}
