//! Building the completion [`Report`] at the end of a run (or of a task that never ran), and the
//! `TASKPOOL_*` environment that hands it to hooks. The report is made from the record as it
//! stands at the end plus the tail of the run's stderr log, read from its end so that a huge log
//! costs one small read.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use taskpool::record::{self, Record, Status};
use taskpool::report::{Report, STDERR_TAIL_LINES, TAIL_BYTES};

/// The report of `record`'s current run, or of a task that never ran (status `skipped`, or no
/// run started): run 0, no times but `ended_at` now. The stderr tail is read from
/// `run_dir/stderr` (from `run_dir/stdout` when the task merges stderr into stdout). `hooks` is
/// left empty for the caller to fill as they run.
pub fn build(record: &Record, run_dir: Option<&Path>) -> Report {
    let run = record.current().filter(|r| r.started_at.is_some());
    let status = record
        .status()
        .or_else(|| run.and_then(|r| r.status))
        .unwrap_or(if run.is_none() {
            Status::Skipped
        } else {
            Status::Lost
        });
    let run = run.filter(|_| status != Status::Skipped);
    let mut report = Report {
        id: record.id,
        name: record.spec.name.clone(),
        status,
        run: 0,
        exit_code: None,
        signal: None,
        started_at: None,
        ended_at: record::now(),
        duration: None,
        attempts: 0,
        reason: record.reason.clone(),
        stderr_tail: String::new(),
        stdout_bytes: 0,
        stderr_bytes: 0,
        meta: record.meta.clone(),
        hooks: Vec::new(),
    };
    if let Some(run) = run {
        report.run = run.run;
        report.exit_code = run.exit_code;
        report.signal = run.signal.clone();
        report.started_at = run.started_at;
        report.ended_at = run.ended_at.unwrap_or(report.ended_at);
        report.duration = run
            .started_at
            .map(|s| (report.ended_at - s).num_milliseconds().max(0) as f64 / 1000.0);
        report.attempts = run.attempt;
        report.stdout_bytes = run.streams.stdout.end;
        report.stderr_bytes = run.streams.stderr.end;
        if let Some(dir) = run_dir {
            let stream = if record.spec.merge_stderr {
                "stdout"
            } else {
                "stderr"
            };
            report.stderr_tail =
                tail(&dir.join(stream), TAIL_BYTES, Some(STDERR_TAIL_LINES)).unwrap_or_default();
        }
    }
    report
}

/// The end of the file at `path`: at most `max_bytes` bytes, and with `max_lines`, at most that
/// many lines. A line cut by the byte limit is left out (unless it is the only one), and the bytes
/// are decoded lossily as UTF-8. Only the tail is read, whatever the file's size.
pub fn tail(path: &Path, max_bytes: usize, max_lines: Option<usize>) -> std::io::Result<String> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max_bytes as u64);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(max_bytes.min(len as usize));
    f.take(max_bytes as u64).read_to_end(&mut buf)?;
    let mut text: &[u8] = &buf;
    if from > 0 {
        // Started mid-line: drop the partial first line when a whole one follows.
        if let Some(nl) = text.iter().position(|&b| b == b'\n') {
            if nl + 1 < text.len() {
                text = &text[nl + 1..];
            }
        }
    }
    if let Some(n) = max_lines {
        // Keep the last n lines (a final newline does not start another line).
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        if let Some(cut) = body
            .iter()
            .enumerate()
            .rev()
            .filter(|&(_, &b)| b == b'\n')
            .nth(n.saturating_sub(1))
            .map(|(i, _)| i)
        {
            text = &text[cut + 1..];
        }
        if n == 0 {
            text = &[];
        }
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// The report as environment variables for hooks: `TASKPOOL_TASK_ID`, `TASKPOOL_TASK_NAME`,
/// `TASKPOOL_STATUS`, `TASKPOOL_EXIT_CODE`, `TASKPOOL_SIGNAL`, `TASKPOOL_RUN`,
/// `TASKPOOL_ATTEMPTS`, `TASKPOOL_DURATION` (seconds), `TASKPOOL_STARTED_AT`,
/// `TASKPOOL_ENDED_AT` (RFC 3339), `TASKPOOL_REASON`, `TASKPOOL_OUTPUT` and `TASKPOOL_STDERR`
/// (the run's stdout and stderr logs), and `TASKPOOL_DIR` (the pool). A value that is not known
/// (no exit code, a task that never ran) is the empty string, so a hook can test `[ -n "$X" ]`.
pub fn env(report: &Report, pool: &Path) -> Vec<(OsString, OsString)> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let log = |stream: &str| -> OsString {
        if report.run == 0 {
            return OsString::new();
        }
        // The layout of Pool::output_path, from the pool's path alone.
        pool.join("tasks")
            .join(report.id.to_string())
            .join(format!("run-{}", report.run))
            .join(stream)
            .into_os_string()
    };
    let text = [
        ("TASKPOOL_TASK_ID", report.id.to_string()),
        ("TASKPOOL_TASK_NAME", opt(report.name.clone())),
        ("TASKPOOL_STATUS", report.status.as_str().to_owned()),
        (
            "TASKPOOL_EXIT_CODE",
            opt(report.exit_code.map(|c| c.to_string())),
        ),
        ("TASKPOOL_SIGNAL", opt(report.signal.clone())),
        ("TASKPOOL_RUN", report.run.to_string()),
        ("TASKPOOL_ATTEMPTS", report.attempts.to_string()),
        (
            "TASKPOOL_DURATION",
            opt(report.duration.map(|d| format!("{d:.3}"))),
        ),
        (
            "TASKPOOL_STARTED_AT",
            opt(report.started_at.map(|t| t.to_rfc3339())),
        ),
        ("TASKPOOL_ENDED_AT", report.ended_at.to_rfc3339()),
        ("TASKPOOL_REASON", opt(report.reason.clone())),
    ];
    let mut env: Vec<(OsString, OsString)> = text
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    env.push(("TASKPOOL_OUTPUT".into(), log("stdout")));
    env.push(("TASKPOOL_STDERR".into(), log("stderr")));
    env.push((taskpool::ENV_POOL.into(), pool.as_os_str().to_owned()));
    env
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use taskpool::record::{Command, RunRecord, Spec, State, StreamStats};

    pub(crate) fn record(state: State, run: Option<RunRecord>) -> Record {
        Record {
            format: record::RECORD_FORMAT,
            id: 7,
            spec: Spec {
                command: Command::Shell("true".into()),
                env: Vec::new(),
                cwd: "/".into(),
                name: Some("nightly".into()),
                stdin: Default::default(),
                lockfile: None,
                buffer_size: 1024,
                log_max: None,
                merge_stderr: false,
                linger_ms: None,
                behavior: Default::default(),
                grace_ms: 100,
                plan: Default::default(),
                limits: Default::default(),
                nice: None,
                oom_score_adj: None,
                readiness: None,
                pty: None,
                engine: Default::default(),
                slurm_args: Vec::new(),
            },
            meta: serde_json::json!({"owner": "ops"})
                .as_object()
                .unwrap()
                .clone(),
            created_at: record::now(),
            state,
            supervisor_pid: Some(1),
            reason: None,
            runs: run.into_iter().collect(),
            waiting_for: None,
            next_start: None,
            overlaps: 0,
            report: None,
            lost_from: None,
            job: None,
        }
    }

    fn ended_run(code: i32) -> RunRecord {
        let start = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05+01:00").unwrap();
        let mut run = RunRecord::new(2);
        run.attempt = 3;
        run.started_at = Some(start);
        run.ended_at = Some(start + chrono::Duration::milliseconds(1500));
        run.exit_code = Some(code);
        run.status = Some(if code == 0 {
            Status::Success
        } else {
            Status::Failure
        });
        run.streams.stdout = StreamStats {
            end: 10,
            ..Default::default()
        };
        run.streams.stderr = StreamStats {
            end: 300,
            ..Default::default()
        };
        run
    }

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("tp-report-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_run_that_ended_is_reported_with_the_tail_of_its_stderr() {
        let dir = tmp_dir("run");
        let mut f = File::create(dir.join("stderr")).unwrap();
        for i in 1..=30 {
            writeln!(f, "line {i}").unwrap();
        }
        let rec = record(State::Exited, Some(ended_run(2)));
        let r = build(&rec, Some(&dir));
        assert_eq!(r.status, Status::Failure);
        assert_eq!((r.run, r.attempts, r.exit_code), (2, 3, Some(2)));
        assert_eq!(r.duration, Some(1.5));
        assert_eq!((r.stdout_bytes, r.stderr_bytes), (10, 300));
        assert_eq!(r.meta["owner"], "ops");
        let lines: Vec<&str> = r.stderr_tail.lines().collect();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines[0], "line 11");
        assert_eq!(*lines.last().unwrap(), "line 30");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_skipped_task_is_run_zero_without_times() {
        let mut rec = record(State::Skipped, None);
        rec.reason = Some("task 3 ended failure".into());
        let before = record::now();
        let r = build(&rec, None);
        assert_eq!(r.status, Status::Skipped);
        assert_eq!((r.run, r.attempts, r.exit_code), (0, 0, None));
        assert_eq!((r.started_at, r.duration), (None, None));
        assert!(r.ended_at >= before);
        assert_eq!(r.reason.as_deref(), Some("task 3 ended failure"));
    }

    #[test]
    fn the_tail_is_read_from_the_end_and_cut_at_a_line() {
        let dir = tmp_dir("tail");
        let path = dir.join("log");
        let mut data = vec![b'x'; 10_000];
        data.extend_from_slice("\nlast ö\n".as_bytes());
        std::fs::write(&path, &data).unwrap();
        assert_eq!(tail(&path, 100, None).unwrap(), "last ö\n");
        // One line longer than the limit: its end is kept.
        std::fs::write(&path, vec![b'y'; 5000]).unwrap();
        assert_eq!(tail(&path, 8, Some(3)).unwrap(), "yyyyyyyy");
        // Invalid UTF-8 is replaced, not an error.
        std::fs::write(&path, b"a\nb\xff\n").unwrap();
        assert_eq!(tail(&path, 100, Some(1)).unwrap(), "b\u{fffd}\n");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(tail(&path, 100, Some(5)).unwrap(), "");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_environment_names_every_field() {
        let rec = record(State::Exited, Some(ended_run(0)));
        let r = build(&rec, None);
        let env = env_map(&r);
        assert_eq!(env["TASKPOOL_TASK_ID"], "7");
        assert_eq!(env["TASKPOOL_TASK_NAME"], "nightly");
        assert_eq!(env["TASKPOOL_STATUS"], "success");
        assert_eq!(env["TASKPOOL_EXIT_CODE"], "0");
        assert_eq!(env["TASKPOOL_SIGNAL"], "");
        assert_eq!(env["TASKPOOL_RUN"], "2");
        assert_eq!(env["TASKPOOL_ATTEMPTS"], "3");
        assert_eq!(env["TASKPOOL_DURATION"], "1.500");
        assert_eq!(env["TASKPOOL_STARTED_AT"], "2025-01-02T03:04:05+01:00");
        assert_eq!(env["TASKPOOL_ENDED_AT"], "2025-01-02T03:04:06.500+01:00");
        assert_eq!(env["TASKPOOL_REASON"], "");
        assert_eq!(env["TASKPOOL_OUTPUT"], "/p/tasks/7/run-2/stdout");
        assert_eq!(env["TASKPOOL_STDERR"], "/p/tasks/7/run-2/stderr");
        assert_eq!(env["TASKPOOL_DIR"], "/p");
        let skipped = build(&record(State::Skipped, None), None);
        let env = env_map(&skipped);
        assert_eq!(
            (
                env["TASKPOOL_OUTPUT"].as_str(),
                env["TASKPOOL_RUN"].as_str()
            ),
            ("", "0")
        );
    }

    fn env_map(r: &Report) -> std::collections::HashMap<String, String> {
        env(r, Path::new("/p"))
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }
}
