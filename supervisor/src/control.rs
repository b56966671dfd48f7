//! Control requests from another node. A unix socket reaches only processes on its own node, so a
//! client elsewhere writes one request line (`signal`, `pause`, `resume`, `terminate`) into the
//! task directory's `control` file (under a temporary name, then renamed) and wakes the supervisor
//! with SIGUSR2 through the scheduler (`scancel --batch --signal=USR2 JOB`: the batch script's
//! process is the supervisor, which execs nothing else). The supervisor, woken by the signal on
//! its signalfd, carries the request out as if it came on the socket, writes the reply into
//! `control.reply` (the same way) and removes `control`. Only a supervisor started in a
//! scheduler's job listens for SIGUSR2; a local one keeps the default disposition of it.

use crate::state::Core;
use std::time::Duration;
use taskpool::protocol::{Request, Response};
use taskpool::{Error, ErrorKind};

/// Carry out the pending control request, if any, and write its reply.
pub fn take(core: &mut Core) {
    let id = core.record.id;
    let path = core.pool.control_path(id);
    let Ok(bytes) = std::fs::read(&path) else {
        return; // a stray wake, or a request already taken
    };
    let _ = std::fs::remove_file(&path);
    let reply = match serde_json::from_slice::<Request>(&bytes) {
        Err(e) => Response::error(&Error::new(
            ErrorKind::InvalidInput,
            format!("bad control request: {e}"),
        )),
        Ok(req) => match carry_out(core, req) {
            Ok(()) => Response::Ok,
            Err(e) => Response::error(&e),
        },
    };
    let line = serde_json::to_vec(&reply).expect("replies always serialize");
    if let Err(e) = taskpool::record::write_atomic(&core.pool.control_reply_path(id), &line, false)
    {
        crate::note(&format!("cannot write the control reply: {e}"));
    }
}

fn carry_out(core: &mut Core, req: Request) -> taskpool::Result<()> {
    match req {
        Request::Signal { signal } => signal.resolve().and_then(|s| core.signal(s)),
        Request::Pause => core.pause(),
        Request::Resume => core.resume(),
        Request::Terminate { grace_ms } => {
            core.terminate(
                grace_ms.map(Duration::from_millis),
                "terminated on request (from another node)",
            );
            Ok(())
        }
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            "only signal, pause, resume and terminate come as control requests",
        )),
    }
}
