//! `taskpool spawn` (start a task, print its id) and `taskpool restart` (run an ended task again
//! under the same id). With `--file`, the task comes from a job file and the command line's
//! options override the file's. With `--behavior foreground` the supervisor stays our child, so
//! we wait for the task to end before exiting (status 0: the task's own status is for `wait` and
//! `run`). A deferred task (queued, waiting, scheduled) prints its id as soon as it is accepted.

use crate::args::{GlobalArgs, SpawnCmd, TaskCmd};
use crate::{print, select};
use anyhow::{Context, Result};
use std::path::Path;
use taskpool::job::Job;
use taskpool::{Behavior, SpawnOptions, Task};

pub fn spawn(global: &GlobalArgs, cmd: &SpawnCmd) -> Result<i32> {
    if let Some(path) = &cmd.many {
        return crate::cmd_many::spawn_many(global, cmd, path);
    }
    let pool = select::pool(global)?;
    // The command line's engine wins: nothing else is looked at.
    let default = match cmd.spawn.engine {
        Some(_) => None,
        None => crate::options::default_engine(&pool)?,
    };
    let opts = match &cmd.file {
        Some(path) => from_file(cmd, path, default)?,
        None => cmd.spawn.to_options(default)?,
    };
    if cmd.wait_ready.is_some() && opts.readiness.is_none() {
        anyhow::bail!("--wait-ready needs --ready-fd or --notify: the task cannot say it is ready");
    }
    let task = pool.spawn(&opts)?;
    match cmd.wait_ready {
        None => started(global, &task, opts.behavior),
        Some(timeout) => {
            print::line(task.id())?;
            let info = crate::cmd_wait::wait_ready(&task, timeout, timeout)?;
            if global.json {
                print::json(&info)?;
            }
            Ok(0)
        }
    }
}

/// The options of the job file at `path`, with the command line's on top. Relative paths in the
/// file are relative to its directory.
fn from_file(
    cmd: &SpawnCmd,
    path: &Path,
    default: Option<taskpool::Engine>,
) -> Result<SpawnOptions> {
    let job = Job::load(path)?;
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    let base = abs.parent().unwrap_or(Path::new("/"));
    let mut opts = match cmd.spawn.command_given() {
        Some(command) => job.options_with(command, base),
        None => job.to_options(base),
    }
    .map_err(|e| e.context(path.display()))?;
    crate::options::job_engine(&mut opts, &job, default);
    cmd.spawn.apply(&mut opts);
    Ok(opts)
}

pub fn restart(global: &GlobalArgs, cmd: &TaskCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let id = select::task(&pool, &cmd.task)?.id();
    let task = pool.restart(id)?;
    let behavior = task.record()?.spec.behavior;
    started(global, &task, behavior)
}

/// Print the new task's id (or info), then, for a foreground task, wait for its end.
fn started(global: &GlobalArgs, task: &Task, behavior: Behavior) -> Result<i32> {
    if global.json {
        print::json(&task.info()?)?;
    } else {
        print::line(task.id())?;
    }
    if behavior == Behavior::Foreground {
        task.wait()?;
    }
    Ok(0)
}
