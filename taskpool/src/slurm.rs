//! Slurm's commands, run with explicit argv from `PATH`: `sbatch --parsable` to submit, one
//! `squeue` for any number of jobs, `scancel`. Their failures are passed on in Slurm's own words,
//! on one line. What a task's options map to is decided by the submitter; this module only speaks
//! to Slurm (see docs/slurm.md).

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::ffi::OsString;
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

/// The name of the batch script's copy in the task's directory (sbatch reads it on stdin).
pub const SCRIPT: &str = "slurm.sh";

/// Run `program args...`, returning its stdout; a failure is Slurm's stderr on one line.
fn run(program: &str, args: &[OsString]) -> Result<String> {
    finish(program, start(program, args)?)
}

/// Start `program args...` with its output captured (and `input`, when given, on its stdin).
fn start(program: &str, args: &[OsString]) -> Result<Child> {
    start_with(program, args, None)
}

fn start_with(program: &str, args: &[OsString], input: Option<&[u8]>) -> Result<Child> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::new(
                ErrorKind::Scheduler,
                format!("cannot run {program}: {e} (is Slurm installed and on PATH?)"),
            )
        })?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // A script is far smaller than a pipe's buffer: this does not wait for the reader. A
        // program that exits without reading says why on stderr.
        let _ = std::io::Write::write_all(&mut stdin, bytes);
    }
    Ok(child)
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

/// Start submitting the batch script `script` with `sbatch --parsable ARGS...`, the script on
/// its stdin; [`sbatch_job`] waits for the job id. (The caller does its own writing meanwhile.)
pub fn sbatch(args: &[OsString], script: &[u8]) -> Result<Child> {
    reap_exited();
    let mut argv: Vec<OsString> = vec!["--parsable".into()];
    argv.extend(args.iter().cloned());
    start_with("sbatch", &argv, Some(script))
}

/// The job id a started [`sbatch`] prints, or Slurm's error on one line.
///
/// Returns as soon as sbatch has printed its job id line (`JOBID` or `JOBID;CLUSTER`): the
/// controller has accepted the job then, and all sbatch has left to do is exit, which takes a
/// noticeable part of its run (tearing down its address space). It is reaped later
/// ([`reap_exited`], at the next submission; an orphan is reaped by init). Without a job id
/// line, sbatch's exit status and stderr say what went wrong.
pub fn sbatch_job(mut child: Child) -> Result<u64> {
    let (line, stderr) = match read_job_line(&mut child) {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Scheduler,
                format!("reading sbatch's output: {e}"),
            ));
        }
    };
    if let Some(line) = line {
        let id = line.split(';').next().unwrap_or("").trim();
        if let Ok(job) = id.parse() {
            reap_later(child);
            return Ok(job);
        }
        let _ = child.wait();
        return Err(Error::new(
            ErrorKind::Scheduler,
            format!("sbatch --parsable printed {:?}, not a job id", line.trim()),
        ));
    }
    let status = child
        .wait()
        .map_err(|e| Error::new(ErrorKind::Scheduler, format!("waiting for sbatch: {e}")))?;
    Err(Error::new(
        ErrorKind::Scheduler,
        if status.success() {
            "sbatch --parsable printed no job id".to_owned()
        } else {
            one_line("sbatch", &stderr, &status.to_string())
        },
    ))
}

/// Read a started command's stdout until its first non-empty line, and its stderr meanwhile (so
/// that neither pipe can fill and stall it): the line (`None` at end of file without one), and
/// what stderr said so far (all of it when there was no line).
fn read_job_line(child: &mut Child) -> std::io::Result<(Option<String>, Vec<u8>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    use std::os::fd::AsFd;
    let mut out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    loop {
        // A complete, non-empty line: warnings (if any) come on stderr, the id on stdout.
        while let Some(nl) = stdout.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = stdout.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line).trim().to_owned();
            if !text.is_empty() {
                return Ok((Some(text), stderr));
            }
        }
        let (out_ready, err_ready) = {
            let mut fds = vec![PollFd::new(out.as_fd(), PollFlags::POLLIN)];
            if let Some(e) = &err {
                fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if err_ready {
            match err.as_mut().map(|e| e.read(&mut buf)) {
                Some(Ok(0)) => err = None,
                Some(Ok(n)) => stderr.extend_from_slice(&buf[..n]),
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        if out_ready {
            match out.read(&mut buf) {
                Ok(0) => {
                    // No id: the rest of stderr says why.
                    if let Some(mut e) = err {
                        e.read_to_end(&mut stderr)?;
                    }
                    let text = String::from_utf8_lossy(&stdout).trim().to_owned();
                    return Ok(((!text.is_empty()).then_some(text), stderr));
                }
                Ok(n) => stdout.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Submitters that printed their job id and are still exiting, to be reaped.
static EXITING: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());

/// Keep `child` to be reaped once it has exited.
fn reap_later(child: Child) {
    let mut list = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    list.push(child);
}

/// Reap the submitters kept by [`sbatch_job`] that have exited by now (never waits).
pub fn reap_exited() {
    let mut list = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    list.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
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
