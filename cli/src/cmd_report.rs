//! `taskpool report ID [--json]`: the completion report of a task's latest end, as the supervisor
//! wrote it into the record (status, exit, times, attempts, output sizes, the tail of stderr and
//! what each hook did). Every piece of text from the task is escaped before it reaches the
//! terminal.

use crate::args::{GlobalArgs, ReportCmd};
use crate::table::{meta_summary, short_duration};
use crate::{print, select};
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::io::Write;
use taskpool::wire::escape_bytes;
use taskpool::{HookResult, Report, State};

/// The widest META shown in a report, in characters.
const META_WIDTH: usize = 200;

pub fn report(global: &GlobalArgs, cmd: &ReportCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let info = select::task(&pool, &cmd.task)?.info()?;
    let Some(report) = info.report else {
        match info.state {
            s if s.is_live() => bail!("task {} has no report yet (it is {})", info.id, s.as_str()),
            State::Lost => bail!(
                "task {} has no report (it is lost: no supervisor was left to write one)",
                info.id
            ),
            _ => bail!(
                "task {} has no report (it ended before reports were written)",
                info.id
            ),
        }
    };
    if global.json {
        print::json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(render(&report).as_bytes())?;
        out.flush()?;
    }
    Ok(0)
}

/// One line of text from a task, safe for a terminal.
fn esc(s: &str) -> String {
    escape_bytes(s.as_bytes())
}

/// How a run or hook ended: `exit code 2`, `killed by SIGTERM`.
fn how(exit_code: Option<i32>, signal: Option<&str>) -> String {
    match (exit_code, signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by {}", esc(s)),
        (None, None) => "no exit status".into(),
    }
}

/// Every line of `text`, indented by `indent` and escaped.
fn indented(out: &mut String, text: &str, indent: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{indent}{}", esc(line));
    }
}

/// The human form of a report.
fn render(r: &Report) -> String {
    let mut out = String::new();
    let name = r
        .name
        .as_deref()
        .map(|n| format!(" ({})", esc(n)))
        .unwrap_or_default();
    let status = r.status.as_str();
    if r.run == 0 {
        let _ = writeln!(out, "task {}{name}: {status}, never ran", r.id);
    } else {
        let ended = how(r.exit_code, r.signal.as_deref());
        let _ = writeln!(out, "task {}{name}: {status}, {ended}", r.id);
        let _ = writeln!(out, "run       {} (attempt {})", r.run, r.attempts);
    }
    if let Some(s) = r.started_at {
        let _ = writeln!(out, "started   {}", s.to_rfc3339());
    }
    let _ = writeln!(out, "ended     {}", r.ended_at.to_rfc3339());
    if let Some(d) = r.duration {
        let _ = writeln!(out, "duration  {}", short_duration(d));
    }
    if r.run != 0 {
        let _ = writeln!(
            out,
            "output    {} bytes on stdout, {} bytes on stderr",
            r.stdout_bytes, r.stderr_bytes
        );
    }
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "reason    {}", esc(reason));
    }
    if !r.meta.is_empty() {
        let _ = writeln!(out, "meta      {}", esc(&meta_summary(&r.meta, META_WIDTH)));
    }
    if !r.stderr_tail.is_empty() {
        out.push_str("stderr (last lines):\n");
        indented(&mut out, &r.stderr_tail, "    ");
    }
    for h in &r.hooks {
        hook(&mut out, h);
    }
    out
}

/// One hook's lines: what ran, how it ended, and its output.
fn hook(out: &mut String, h: &HookResult) {
    let ended = if let Some(e) = &h.error {
        format!("not started: {}", esc(e))
    } else if h.timed_out {
        format!(
            "timed out after {}, {}",
            short_duration(h.duration),
            how(h.exit_code, h.signal.as_deref())
        )
    } else {
        format!(
            "{} after {}",
            how(h.exit_code, h.signal.as_deref()),
            short_duration(h.duration)
        )
    };
    let _ = writeln!(out, "hook {}: {ended}", esc(&h.hook));
    let _ = writeln!(out, "    command: {}", esc(&h.command));
    if !h.output.is_empty() {
        out.push_str("    output:\n");
        indented(out, &h.output, "        ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskpool::Status;

    fn report() -> Report {
        let t = |s| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        Report {
            id: 3,
            name: Some("backup".into()),
            status: Status::Failure,
            run: 1,
            exit_code: Some(2),
            signal: None,
            started_at: Some(t("2025-01-02T03:04:05+01:00")),
            ended_at: t("2025-01-02T03:04:06.500+01:00"),
            duration: Some(1.5),
            attempts: 1,
            reason: None,
            stderr_tail: "disk full\n\x1b[31mred\n".into(),
            stdout_bytes: 10,
            stderr_bytes: 20,
            meta: serde_json::json!({"owner": "ops"})
                .as_object()
                .unwrap()
                .clone(),
            hooks: vec![
                HookResult {
                    hook: "on_failure".into(),
                    command: "mail ops".into(),
                    exit_code: Some(0),
                    signal: None,
                    timed_out: false,
                    duration: 0.2,
                    output: "sent\n".into(),
                    error: None,
                },
                HookResult {
                    hook: "on_exit".into(),
                    command: "sleep 99".into(),
                    exit_code: None,
                    signal: Some("SIGKILL".into()),
                    timed_out: true,
                    duration: 60.0,
                    output: String::new(),
                    error: None,
                },
            ],
        }
    }

    #[test]
    fn a_report_reads_as_text() {
        assert_eq!(
            render(&report()),
            "task 3 (backup): failure, exit code 2\n\
             run       1 (attempt 1)\n\
             started   2025-01-02T03:04:05+01:00\n\
             ended     2025-01-02T03:04:06.500+01:00\n\
             duration  1.5s\n\
             output    10 bytes on stdout, 20 bytes on stderr\n\
             meta      owner=ops\n\
             stderr (last lines):\n    \
             disk full\n    \
             \\u{1b}[31mred\n\
             hook on_failure: exit code 0 after 0.2s\n    \
             command: mail ops\n    \
             output:\n        \
             sent\n\
             hook on_exit: timed out after 1m00s, killed by SIGKILL\n    \
             command: sleep 99\n"
        );
    }

    #[test]
    fn a_task_that_never_ran_says_so() {
        let mut r = report();
        r.status = Status::Skipped;
        r.run = 0;
        r.started_at = None;
        r.duration = None;
        r.hooks.clear();
        r.stderr_tail.clear();
        r.meta.clear();
        r.reason = Some("task 2 ended failure".into());
        assert_eq!(
            render(&r),
            "task 3 (backup): skipped, never ran\n\
             ended     2025-01-02T03:04:06.500+01:00\n\
             reason    task 2 ended failure\n"
        );
    }
}
