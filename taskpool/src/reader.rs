//! [`RunReader`]: reads of one run's output from its files, each going on from where the last
//! ended, for a reader that catches up a piece at a time (a server's follower behind the live
//! position). Like [`Task::read`](crate::Task::read) from the files, it leaves out what the log
//! cap dropped; unlike it, a combined read that starts where the previous one stopped does not
//! walk the chunk index from the start again.

use crate::error::Result;
use crate::output::{Cursor, OutputLog};
use crate::pool::Pool;
use crate::protocol::Stream;
use crate::task::{kept_of, Chunk};

/// Reads of one run's output files; see the module docs. Made by [`crate::Task::run_reader`].
#[derive(Debug)]
pub struct RunReader {
    pool: Pool,
    id: u64,
    run: u32,
    log: OutputLog,
    /// Where the last combined read stopped.
    cur: Option<Cursor>,
}

impl crate::Task {
    /// A reader of `run`'s output files (an error when the run has none yet).
    pub fn run_reader(&self, run: u32) -> Result<RunReader> {
        Ok(RunReader {
            pool: self.pool().clone(),
            id: self.id(),
            run,
            log: OutputLog::open(&self.pool().run_dir(self.id(), run))?,
            cur: None,
        })
    }
}

impl RunReader {
    /// Up to `count` kept bytes of `stream` (or the combined view) from `offset`, as
    /// [`Task::read`](crate::Task::read) gives them from the files: the chunk's offset is later
    /// than `offset` when the log cap dropped the bytes there; empty at the end of what was
    /// written.
    pub fn read(&mut self, stream: Stream, offset: u64, count: usize) -> Result<Chunk> {
        let rec = self.pool.load_record(self.id)?;
        let kept = kept_of(&self.log, &rec, self.run);
        let (offset, data) = if stream == Stream::Combined {
            let mut cur = match self.cur.take() {
                Some(c) if c.combined == offset => c,
                _ => self.log.seek(offset)?,
            };
            let read = self.log.read_kept_from(&mut cur, count, &kept)?;
            self.cur = Some(cur);
            read
        } else {
            self.log.read_kept(stream, offset, count, &kept)?
        };
        Ok(Chunk { offset, data })
    }
}
