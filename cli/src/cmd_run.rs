//! `taskpool run`: spawn a task, stream its stdout to ours and its stderr to ours, and exit with
//! its status (exit code, 128+N when killed by signal N). SIGINT, SIGTERM and SIGHUP sent to us
//! (Ctrl-C included: the task is in its own session, so the terminal does not signal it) are
//! forwarded to the task. They are blocked before the supervisor is started, so none is lost or
//! kills us, and a dedicated thread waits for them with `sigwait` and calls `Task::kill`
//! (`std::process::Command` resets the mask for the supervisor it starts).
//!
//! Our own failures use `env(1)`'s codes: 127 the program was not found, 126 it could not be
//! executed, 125 anything else (the task was lost, the supervisor could not be started…).

use crate::args::{GlobalArgs, RunCmd};
use crate::{exit_with, print, select};
use anyhow::{anyhow, Result};
use nix::sys::signal::{SigSet, Signal};
use std::io::Write;
use taskpool::{ErrorKind, Event, Info, Pool, Stream, Task};

use crate::cmd_wait::{CANNOT_EXECUTE, NOT_FOUND, NO_STATUS as FAILED};

pub fn run(global: &GlobalArgs, cmd: &RunCmd) -> Result<i32> {
    let pool = select::pool(global).map_err(|e| exit_with(FAILED, e))?;
    let opts = cmd
        .spawn
        .to_options(crate::options::default_engine(&pool)?)?;
    let mut forwarded = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        forwarded.add(sig);
    }
    // Threads started from now on inherit the mask, so only the forwarder takes these signals.
    forwarded
        .thread_block()
        .map_err(|e| exit_with(FAILED, anyhow!("blocking signals: {e}")))?;
    let task = pool.spawn(&opts).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::ProgramNotFound => NOT_FOUND,
            ErrorKind::CannotExecute => CANNOT_EXECUTE,
            _ => FAILED,
        };
        exit_with(code, e)
    })?;
    let (fwd_pool, id) = (pool.clone(), task.id());
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || forward(&fwd_pool, id, forwarded))
        .map_err(|e| {
            exit_with(
                FAILED,
                anyhow!("task {id}: cannot start the signal thread: {e}"),
            )
        })?;
    let info = stream(&task)?;
    match info.shell_status() {
        Some(code) => Ok(code),
        None => Err(exit_with(
            FAILED,
            anyhow!(
                "task {id} was lost: {}",
                info.reason.as_deref().unwrap_or("its outcome is unknown")
            ),
        )),
    }
}

/// Wait for the signals in `set` and send each to the task, for as long as we live.
fn forward(pool: &Pool, id: u64, set: SigSet) {
    while let Ok(sig) = set.wait() {
        // The task may have ended meanwhile: then there is nothing to forward to.
        if let Ok(task) = pool.task(id) {
            let _ = task.kill(sig);
        }
    }
}

/// Copy the task's output to our stdout and stderr until it has ended; its final info.
fn stream(task: &Task) -> Result<Info> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let lost = |e: taskpool::Error| exit_with(FAILED, e);
    for event in task.follow(0).map_err(lost)? {
        match event.map_err(lost)? {
            Event::Output { stream, data, .. } => match stream {
                Stream::Stderr => print::raw(&mut err, &data)?,
                _ => print::raw(&mut out, &data)?,
            },
            Event::State(_) => {}
            Event::End(info) => {
                out.flush()?;
                return Ok(*info);
            }
        }
    }
    // The follow ends with `End`; if it did not, judge from the record.
    task.wait().map_err(lost)
}
