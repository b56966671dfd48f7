//! `taskpool rm` (remove named tasks; a live one only with `--force`, which terminates it first)
//! and `taskpool clean` (remove every ended task, or those ended a while ago).

use crate::args::{CleanCmd, GlobalArgs, RmCmd};
use crate::{print, select};
use anyhow::Result;
use std::io::Write;

pub fn rm(global: &GlobalArgs, cmd: &RmCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let mut removed = Vec::new();
    let mut failed = false;
    // Each task on its own: one that cannot be removed does not keep the others.
    for task in select::tasks(&pool, &cmd.ids, &cmd.pids) {
        match task.and_then(|t| t.remove(cmd.force).map(|()| t.id())) {
            Ok(id) => removed.push(id),
            Err(e) => {
                failed = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "taskpool: {}",
                    e.message().replace('\n', " ")
                );
            }
        }
    }
    if global.json {
        print::json(&removed)?;
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn clean(global: &GlobalArgs, cmd: &CleanCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let removed = pool.clean(cmd.older_than)?;
    if global.json {
        print::json(&removed)?;
    } else {
        let text: String = removed.iter().map(|id| format!("{id}\n")).collect();
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(0)
}
