//! Which pool and which task a command means: `--pool`, else `$TASKPOOL_DIR`, else
//! `$XDG_STATE_HOME/taskpool`, else `~/.local/state/taskpool` (a missing pool is created with mode
//! 0700); a task by id, or by its supervisor's pid (`--pid`).

use crate::args::{GlobalArgs, TaskArg};
use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::PathBuf;
use taskpool::{CreateOptions, Pool, Task};

/// A non-empty environment variable.
fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The pool directory the global options name.
pub fn pool_dir(global: &GlobalArgs) -> Result<PathBuf> {
    pool_dir_from(global.pool.as_deref())
}

/// The pool directory `--pool` (`given`), else the environment, names.
pub fn pool_dir_from(given: Option<&std::path::Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    if let Some(p) = var(taskpool::ENV_POOL) {
        return Ok(p.into());
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(p) = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(p.join("taskpool"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/taskpool")),
        None => bail!(
            "cannot choose a pool: none of --pool, ${}, $XDG_STATE_HOME or $HOME is set",
            taskpool::ENV_POOL
        ),
    }
}

/// Open (creating it if missing) the pool the global options name.
pub fn pool(global: &GlobalArgs) -> Result<Pool> {
    Ok(Pool::open_or_create(
        pool_dir(global)?,
        CreateOptions::default(),
    )?)
}

/// The task named by an id or a supervisor pid.
pub fn task(pool: &Pool, arg: &TaskArg) -> Result<Task> {
    match (arg.id, arg.pid) {
        (Some(id), _) => Ok(pool.task(id)?),
        (None, Some(pid)) => Ok(pool.task_by_pid(pid)?),
        // clap's group makes one of them required.
        (None, None) => bail!("name a task by its id or by --pid"),
    }
}

/// Several tasks named by ids, then by supervisor pids, in that order.
pub fn tasks(pool: &Pool, ids: &[u64], pids: &[i32]) -> Vec<taskpool::Result<Task>> {
    ids.iter()
        .map(|&id| pool.task(id))
        .chain(pids.iter().map(|&pid| pool.task_by_pid(pid)))
        .collect()
}
