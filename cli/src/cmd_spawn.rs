//! `taskpool spawn` (start a task, print its id) and `taskpool restart` (run an ended task again
//! under the same id). With `--behavior foreground` the supervisor stays our child, so we wait for
//! the task to end before exiting (status 0: the task's own status is for `wait` and `run`).

use crate::args::{GlobalArgs, SpawnCmd, TaskCmd};
use crate::{print, select};
use anyhow::Result;
use taskpool::{Behavior, Task};

pub fn spawn(global: &GlobalArgs, cmd: &SpawnCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let opts = cmd.spawn.to_options();
    let task = pool.spawn(&opts)?;
    started(global, &task, opts.behavior)
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
