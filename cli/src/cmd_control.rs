//! Commands that act on one live task through its supervisor: `kill`, `pause`, `resume`, `send`
//! (stdin) and `terminate`. They print nothing on success (`terminate --json` prints the final
//! info). And `restore`, which gives lost deferred and recurring tasks new supervisors.

use crate::args::{GlobalArgs, KillCmd, RestoreCmd, SendCmd, TaskCmd, TerminateCmd};
use crate::{print, select};
use anyhow::Result;
use std::io::{IsTerminal, Read};
use std::os::unix::ffi::OsStrExt;

/// How much of our stdin is forwarded per write request.
const SEND_CHUNK: usize = 64 * 1024;

pub fn kill(global: &GlobalArgs, cmd: &KillCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    select::task(&pool, &cmd.task)?.kill(cmd.signal)?;
    Ok(0)
}

pub fn pause(global: &GlobalArgs, cmd: &TaskCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    select::task(&pool, &cmd.task)?.pause()?;
    Ok(0)
}

pub fn resume(global: &GlobalArgs, cmd: &TaskCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    select::task(&pool, &cmd.task)?.resume()?;
    Ok(0)
}

pub fn send(global: &GlobalArgs, cmd: &SendCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let task = select::task(&pool, &cmd.task)?;
    match &cmd.text {
        Some(text) => {
            let mut data = text.as_bytes().to_vec();
            if !cmd.no_newline {
                data.push(b'\n');
            }
            task.write(&data)?;
        }
        None if cmd.eof && std::io::stdin().is_terminal() => {}
        None => {
            // Stream our stdin through as it arrives, a chunk per request.
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; SEND_CHUNK];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(anyhow::anyhow!("reading standard input: {e}")),
                };
                task.write(&buf[..n])?;
            }
        }
    }
    if cmd.eof {
        task.close_stdin()?;
    }
    Ok(0)
}

pub fn terminate(global: &GlobalArgs, cmd: &TerminateCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let info = select::task(&pool, &cmd.task)?.terminate_supervisor(cmd.grace)?;
    if global.json {
        print::json(&info)?;
    }
    Ok(0)
}

/// `taskpool restore`: one line per task re-armed (its id), one error line per task that could
/// not be; `--json` prints `[{"id", "ok", "error"}]`.
pub fn restore(global: &GlobalArgs, _cmd: &RestoreCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let mut failed = false;
    let mut rows = Vec::new();
    for (id, r) in pool.restore()? {
        match r {
            Ok(_) => {
                if !global.json {
                    println!("{id}");
                }
                rows.push(serde_json::json!({"id": id, "ok": true, "error": null}));
            }
            Err(e) => {
                failed = true;
                if !global.json {
                    eprintln!("taskpool: task {id}: cannot restore: {e}");
                }
                rows.push(serde_json::json!({"id": id, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if global.json {
        print::json(&rows)?;
    }
    Ok(i32::from(failed))
}
