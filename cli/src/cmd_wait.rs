//! `taskpool wait ID...`: wait for every task to end and pass their status through, as a shell
//! does: the exit code, 128+N when killed by signal N, and for several tasks the first non-zero
//! in argument order; 124 for a task ended by its own `--timeout`. Our own failures use
//! `timeout(1)`'s codes: 124 when `wait --timeout` ran out, 125 when a task is not found, was
//! lost or skipped, or its supervisor cannot be reached; 127 when its last run could not start
//! because something was not found (its program, its cwd), 126 when it could not start otherwise.

use crate::args::{GlobalArgs, WaitCmd};
use crate::{exit_with, print, select};
use anyhow::{anyhow, Result};
use std::io::Write;
use std::time::Instant;
use taskpool::{Info, Task};

/// `--timeout` ran out.
pub const TIMED_OUT: i32 = 124;
/// A task is not found, lost, or unreachable.
pub const NO_STATUS: i32 = 125;
/// The last run could not start: something it needs was not found (program, cwd).
pub const NOT_FOUND: i32 = 127;
/// The last run could not start for another reason (not executable, lock held, ...).
pub const CANNOT_EXECUTE: i32 = 126;

pub fn wait(global: &GlobalArgs, cmd: &WaitCmd) -> Result<i32> {
    let deadline = cmd.timeout.map(|t| Instant::now() + t);
    let pool = select::pool(global).map_err(|e| exit_with(NO_STATUS, e))?;
    let tasks = select::tasks(&pool, &cmd.ids, &cmd.pids)
        .into_iter()
        .map(|t| t.map_err(|e| exit_with(NO_STATUS, e)))
        .collect::<Result<Vec<Task>>>()?;
    let mut infos = Vec::with_capacity(tasks.len());
    if cmd.ready {
        for task in &tasks {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            infos.push(wait_ready(task, left, cmd.timeout)?);
        }
        if global.json {
            print::json(&infos)?;
        }
        return Ok(0);
    }
    for task in &tasks {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match task.wait_timeout(left) {
            Ok(Some(info)) => infos.push(info),
            Ok(None) => {
                let t = humantime::format_duration(cmd.timeout.unwrap_or_default());
                return Err(exit_with(
                    TIMED_OUT,
                    anyhow!("task {} has not ended within {t}", task.id()),
                ));
            }
            Err(e) => return Err(exit_with(NO_STATUS, e)),
        }
    }
    if global.json {
        print::json(&infos)?;
    }
    Ok(combined_status(&infos))
}

/// The first non-zero status in order (a lost task counts as [`NO_STATUS`], and is reported).
fn combined_status(infos: &[Info]) -> i32 {
    let mut code = 0;
    for info in infos {
        let status = match info.shell_status() {
            Some(s) => s,
            None => {
                let why = info.reason.as_deref().unwrap_or("its outcome is unknown");
                // A failed run without an exit code or signal never started: 127 or 126 as a
                // shell (and timeout(1)) says for a program not found or not executable.
                let (what, status) = match info.status {
                    Some(taskpool::Status::Skipped) => ("was skipped", NO_STATUS),
                    Some(taskpool::Status::Failure) if why.ends_with("not found") => {
                        ("could not start", NOT_FOUND)
                    }
                    Some(taskpool::Status::Failure) => ("could not start", CANNOT_EXECUTE),
                    _ => ("was lost", NO_STATUS),
                };
                let _ = writeln!(
                    std::io::stderr(),
                    "taskpool: task {} {what}: {}",
                    info.id,
                    why.replace('\n', " ")
                );
                status
            }
        };
        if code == 0 {
            code = status;
        }
    }
    code
}

/// Wait until `task` is ready; its info then. A task that ends first is an error (exit 1), a
/// timeout exits [`TIMED_OUT`].
/// `said` is the timeout as the user gave it.
pub fn wait_ready(
    task: &Task,
    timeout: Option<std::time::Duration>,
    said: Option<std::time::Duration>,
) -> Result<taskpool::Info> {
    match task.wait_ready(timeout)? {
        Some(info) => Ok(info),
        None => {
            let t = humantime::format_duration(said.unwrap_or_default());
            Err(exit_with(
                TIMED_OUT,
                anyhow!("task {} is not ready within {t} (it goes on)", task.id()),
            ))
        }
    }
}
