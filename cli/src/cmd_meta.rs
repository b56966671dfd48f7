//! `taskpool info` (a task's info as JSON) and `taskpool meta` (merge `K=V` assignments into a
//! task's meta, or print it). `meta` without an id means the task we run in
//! (`$TASKPOOL_TASK_ID`), so a task can report its own progress.

use crate::args::{GlobalArgs, InfoCmd, MetaCmd, TaskArg};
use crate::parse::split_meta_items;
use crate::{print, select, usage};
use anyhow::Result;

pub fn info(global: &GlobalArgs, cmd: &InfoCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let task = select::task(&pool, &cmd.task)?;
    print::json(&task.info()?)?;
    Ok(0)
}

pub fn meta(global: &GlobalArgs, cmd: &MetaCmd) -> Result<i32> {
    let items = split_meta_items(&cmd.items).map_err(usage)?;
    let arg = match (items.id, cmd.pid) {
        (Some(_), Some(_)) => return Err(usage("give the task as an ID or as --pid, not both")),
        (Some(id), None) => TaskArg {
            id: Some(id),
            pid: None,
        },
        (None, Some(pid)) => TaskArg {
            id: None,
            pid: Some(pid),
        },
        (None, None) => TaskArg {
            id: Some(own_task_id()?),
            pid: None,
        },
    };
    let pool = select::pool(global)?;
    let task = select::task(&pool, &arg)?;
    if items.patch.is_empty() {
        let info = task.info()?;
        if global.json {
            print::json(&info)?;
        } else {
            print::json(&info.meta)?;
        }
        return Ok(0);
    }
    let info = task.apply_meta(&items.patch)?;
    if global.json {
        print::json(&info)?;
    }
    Ok(0)
}

/// The id of the task we are running in.
fn own_task_id() -> Result<u64> {
    let var = taskpool::ENV_TASK_ID;
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("${var} is {v:?}, not a task id")),
        Err(_) => Err(usage(format!(
            "no task id given, and ${var} is not set (it is, inside a task)"
        ))),
    }
}
