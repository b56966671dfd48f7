//! [`Terminal`]: the input side of a task's pseudo-terminal (`--pty`) over one connection that
//! stays open, for a client that types into it as it goes (`taskpool attach`): bytes typed,
//! window sizes, the end-of-file character. Its output is read with [`Task::follow`] as for any
//! task. Opening one checks that the task is live and runs on a terminal, so that the caller's
//! error names the reason.

use crate::client::Conn;
use crate::error::{Error, ErrorKind, Result};
use crate::info::Info;
use crate::protocol::{Request, MAX_FRAME};
use crate::pty::PtySize;
use crate::task::Task;

/// A connection to a live task's terminal. Each call waits for the supervisor's `ok`.
pub struct Terminal {
    conn: Conn,
    /// The task's info when the terminal was opened.
    pub info: Info,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("id", &self.info.id)
            .finish()
    }
}

impl Terminal {
    /// Open the terminal of `task`. Errors of kind [`ErrorKind::State`]: the task has ended, or
    /// it runs with pipes (it was not spawned with `--pty`).
    pub fn open(task: &Task) -> Result<Terminal> {
        let info = task.info()?;
        let id = task.id();
        if info.pty.is_none() {
            return Err(Error::new(
                ErrorKind::State,
                format!("task {id} was not spawned with --pty: it has no terminal"),
            ));
        }
        if !info.is_live() {
            return Err(Error::new(
                ErrorKind::State,
                format!(
                    "task {id} has ended ({}): its terminal is gone",
                    info.state.as_str()
                ),
            ));
        }
        let conn = Conn::open(task.pool(), id, Some(task.pool().timeout()))?;
        Ok(Terminal { conn, info })
    }

    /// Type `data` into the terminal, as if from its keyboard.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(MAX_FRAME as usize) {
            let len = piece.len() as u64;
            self.conn.request(&Request::Write { len }, piece)?;
        }
        Ok(())
    }

    /// Set the terminal's window size (the task's foreground process group gets SIGWINCH when it
    /// changes).
    pub fn resize(&mut self, size: PtySize) -> Result<()> {
        let req = Request::Resize {
            cols: size.cols,
            rows: size.rows,
        };
        self.conn.request(&req, &[]).map(drop)
    }

    /// Type the terminal's end-of-file character (VEOF, normally Ctrl-D).
    pub fn eof(&mut self) -> Result<()> {
        self.conn.request(&Request::CloseStdin, &[]).map(drop)
    }
}
