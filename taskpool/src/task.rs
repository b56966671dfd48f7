//! [`Task`]: a handle on one task of a pool. Requests that need the live supervisor go over its
//! socket (with the pool's timeout, so a stopped supervisor gives a clear error rather than a
//! hang); everything about an ended task is answered from its record and output files.

use crate::client::Conn;
use crate::engine::SCHEDULER_POLL;
use crate::error::{Error, ErrorKind, Result};
pub use crate::follow::{Event, Follow, FollowStop};
use crate::info::Info;
use crate::lock;
use crate::output::OutputLog;
use crate::pool::Pool;
use crate::protocol::{Request, Response, SignalArg, Stream, MAX_FRAME};
use crate::record::{Record, State};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A handle on one task.
#[derive(Debug)]
pub struct Task {
    pool: Pool,
    id: u64,
    /// The supervisor, when spawned in the foreground (it is our child and must be reaped).
    child: Mutex<Option<std::process::Child>>,
}

/// How long a cancel through the scheduler waits for the task's record to show the end.
const SCHEDULER_CANCEL_WAIT: Duration = Duration::from_secs(60);
/// How long a control request waits for the supervisor's reply.
const CONTROL_REPLY_WAIT: Duration = Duration::from_secs(10);
/// How often the reply to a control request is looked for.
const CONTROL_POLL: Duration = Duration::from_millis(50);

/// What to read with [`Task::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The run (default: the current or latest).
    pub run: Option<u32>,
    /// The stream or the combined view.
    pub stream: Stream,
    /// Where to start (default: the consume position of a live task, else 0).
    pub offset: Option<u64>,
    /// The most bytes to return.
    pub count: Option<u64>,
    /// Leave the bytes in place (true) or consume them (false; live tasks only).
    pub peek: bool,
}

impl ReadOptions {
    /// Read `stream` of the latest run from offset 0, peeking.
    pub fn new(stream: Stream) -> Self {
        ReadOptions {
            run: None,
            stream,
            offset: None,
            count: None,
            peek: true,
        }
    }
}

/// Bytes read back, with the offset of the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the first byte.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Where each stream's kept bytes of `run` start: the later of what the record says and what
/// the files say (a supervisor killed after its last store may have punched more).
pub(crate) fn kept_of(log: &OutputLog, rec: &Record, run: u32) -> crate::output::Kept {
    let files = log.kept();
    let recorded = rec
        .runs
        .iter()
        .find(|r| r.run == run)
        .map(|r| [r.streams.stdout.start, r.streams.stderr.start])
        .unwrap_or_default();
    [files[0].max(recorded[0]), files[1].max(recorded[1])]
}

fn ended(id: u64, state: State) -> Error {
    Error::new(
        ErrorKind::State,
        format!("task {id} is {} and has no live supervisor", state.as_str()),
    )
}

impl Task {
    pub(crate) fn new(pool: Pool, id: u64) -> Task {
        Task {
            pool,
            id,
            child: Mutex::new(None),
        }
    }

    pub(crate) fn with_child(pool: Pool, id: u64, child: Option<std::process::Child>) -> Task {
        Task {
            pool,
            id,
            child: Mutex::new(child),
        }
    }

    /// The task id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pool the task belongs to.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The task's record as it stands (liveness judged).
    pub fn record(&self) -> Result<Record> {
        self.pool.load_record(self.id)
    }

    fn connect(&self) -> Result<Conn> {
        Conn::open(&self.pool, self.id, Some(self.pool.timeout()))
    }

    /// Send one request to the live supervisor. When the task is not live, the error is of kind
    /// [`ErrorKind::State`].
    fn live_request(&self, req: &Request, payload: &[u8]) -> Result<Response> {
        let rec = self.record()?;
        if !rec.state.is_live() {
            return Err(ended(self.id, rec.state));
        }
        match self.connect().and_then(|mut c| c.request(req, payload)) {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == ErrorKind::Unreachable => {
                // It may have ended between the probe and the connection.
                let rec = self.record()?;
                if rec.state.is_live() {
                    Err(e)
                } else {
                    Err(ended(self.id, rec.state))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Fresh info: from the live supervisor, else from the record.
    pub fn info(&self) -> Result<Info> {
        match self.live_request(&Request::Info, &[]) {
            Ok(Response::Info { mut info }) => {
                // The supervisor does not ask its scheduler; the info does (one query).
                if let Some(job) = info.slurm.as_mut() {
                    if let Some(v) = job
                        .job_id
                        .and_then(|j| info.engine.query(&[j]).ok()?.remove(&j))
                    {
                        job.state = Some(v.state);
                        job.reason = v.reason;
                    }
                }
                Ok(*info)
            }
            Ok(other) => Err(unexpected(self.id, &other)),
            Err(e) if e.kind() == ErrorKind::State => Ok(Info::from_record(&self.record()?)),
            Err(e) if e.kind() == ErrorKind::Unreachable => {
                // A scheduler task not started yet, or on another node: its record, merged with
                // the scheduler's view.
                let rec = self.record()?;
                if rec.spec.engine.is_scheduler() {
                    Ok(Info::from_record(&rec))
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Merge `patch` into the task's meta (RFC 7396; `null` deletes). Works on ended tasks too.
    pub fn apply_meta(&self, patch: &Map<String, Value>) -> Result<Info> {
        match self.live_request(
            &Request::Meta {
                patch: patch.clone(),
            },
            &[],
        ) {
            Ok(Response::Info { info }) => return Ok(*info),
            Ok(other) => return Err(unexpected(self.id, &other)),
            Err(e) if e.kind() == ErrorKind::State => {}
            Err(e) => return Err(e),
        }
        // Ended, but its supervisor lingers: it owns the record still.
        if self.pool.socket_path(self.id).exists() {
            let req = Request::Meta {
                patch: patch.clone(),
            };
            if let Ok(Response::Info { info }) =
                self.connect().and_then(|mut c| c.request(&req, &[]))
            {
                return Ok(*info);
            }
        }
        // Ended: update the record under the task's lock, so a restart cannot race us.
        let lock_path = self.pool.lock_path(self.id);
        let f = lock::open(&lock_path, false).map_err(|e| Error::path(&lock_path, e))?;
        let spid = self.record()?.supervisor_pid;
        if !self.lock_after_end(&f, spid)? {
            return Err(Error::new(
                ErrorKind::State,
                format!("task {} was restarted meanwhile; try again", self.id),
            ));
        }
        let path = self.pool.record_path(self.id);
        let mut rec = Record::load(&path)?;
        crate::meta::apply_patch(&mut rec.meta, patch)?;
        rec.store(&path, true)?;
        Ok(Info::from_record(&rec))
    }

    /// Send `signal` to the task's process group.
    pub fn kill(&self, signal: Signal) -> Result<()> {
        match self.live_request(
            &Request::Signal {
                signal: SignalArg::Name(signal.as_str().to_owned()),
            },
            &[],
        ) {
            Err(e) if e.kind() == ErrorKind::Unreachable => self.through_scheduler(
                e,
                Request::Signal {
                    signal: SignalArg::Name(signal.as_str().to_owned()),
                },
            ),
            r => r.map(drop),
        }
    }

    /// A scheduler task whose supervisor cannot be reached from here: its job is pending, or
    /// it runs on another node. A pending job is cancelled for a signal or a terminate (it then
    /// never runs); a running supervisor is sent `req` as a control request (the request in the
    /// task's `control` file, then SIGUSR2 through the scheduler; see [`crate::engine`]) and its
    /// reply read from `control.reply`. The outcome is confirmed by the task's state or the
    /// reply, since the scheduler's commands succeed even for a job they do not know.
    fn through_scheduler(&self, unreachable: Error, req: Request) -> Result<()> {
        let rec = self.record()?;
        let job = rec.job.as_ref().and_then(|j| j.job_id);
        let (true, Some(job)) = (rec.spec.engine.is_scheduler(), job) else {
            return Err(unreachable);
        };
        if !rec.state.is_live() {
            return Ok(());
        }
        let engine = rec.spec.engine;
        let pending = rec.state.is_deferred() && rec.supervisor_pid.is_none();
        if pending {
            if matches!(req, Request::Pause | Request::Resume) {
                return Err(Error::new(
                    ErrorKind::State,
                    format!(
                        "task {} is {} (Slurm job {job} is pending): nothing runs to pause or resume",
                        self.id,
                        rec.state.as_str()
                    ),
                ));
            }
            engine.cancel(job)?;
            return self.until_ended(job);
        }
        let terminate = matches!(req, Request::Terminate { .. });
        self.control(engine, job, &req)?;
        if terminate {
            self.until_ended(job)?;
        }
        Ok(())
    }

    /// Send `req` to the supervisor of `job` as a control request; its reply.
    fn control(&self, engine: crate::Engine, job: u64, req: &Request) -> Result<()> {
        let path = self.pool.control_path(self.id);
        let reply_path = self.pool.control_reply_path(self.id);
        let _ = std::fs::remove_file(&reply_path);
        let line = serde_json::to_vec(req).expect("requests always serialize");
        crate::record::write_atomic(&path, &line, false)?;
        engine.wake(job)?;
        let deadline = Instant::now() + CONTROL_REPLY_WAIT;
        loop {
            if let Ok(bytes) = std::fs::read(&reply_path) {
                let _ = std::fs::remove_file(&reply_path);
                let reply: Response = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::new(ErrorKind::Protocol, format!("bad control reply: {e}"))
                })?;
                return reply.into_result().map(drop);
            }
            if Instant::now() >= deadline {
                let _ = std::fs::remove_file(&path);
                let rec = self.record()?;
                if !rec.state.is_live() {
                    return Err(ended(self.id, rec.state));
                }
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "task {}: the supervisor in Slurm job {job} did not answer a control request within {} s",
                        self.id,
                        CONTROL_REPLY_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(CONTROL_POLL);
        }
    }

    /// Wait (looking at the record) until the task has ended after its job was cancelled or
    /// terminated.
    fn until_ended(&self, job: u64) -> Result<()> {
        let deadline = Instant::now() + SCHEDULER_CANCEL_WAIT;
        loop {
            let rec = self.record()?;
            if !rec.state.is_live() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "Slurm job {job} was cancelled, but task {} is still {} after {} s",
                        self.id,
                        rec.state.as_str(),
                        SCHEDULER_CANCEL_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(SCHEDULER_POLL);
        }
    }

    /// Stop the task's process group (SIGSTOP); its state becomes `paused`.
    pub fn pause(&self) -> Result<()> {
        match self.live_request(&Request::Pause, &[]) {
            Err(e) if e.kind() == ErrorKind::Unreachable => {
                self.through_scheduler(e, Request::Pause)
            }
            r => r.map(drop),
        }
    }

    /// Continue a paused task.
    pub fn resume(&self) -> Result<()> {
        match self.live_request(&Request::Resume, &[]) {
            Err(e) if e.kind() == ErrorKind::Unreachable => {
                self.through_scheduler(e, Request::Resume)
            }
            r => r.map(drop),
        }
    }

    /// Write bytes to the task's stdin (a pipe).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        let rec = self.record()?;
        if !rec.state.is_live() {
            return Err(ended(self.id, rec.state));
        }
        let mut c = self.connect()?;
        for piece in data.chunks(MAX_FRAME as usize) {
            c.request(
                &Request::Write {
                    len: piece.len() as u64,
                },
                piece,
            )?;
        }
        Ok(())
    }

    /// Close the task's stdin once what was written has been delivered. On a terminal (`--pty`)
    /// this types its end-of-file character (VEOF, normally Ctrl-D) instead.
    pub fn close_stdin(&self) -> Result<()> {
        self.live_request(&Request::CloseStdin, &[]).map(drop)
    }

    /// Set the window size of the task's terminal (a task spawned with `--pty`).
    pub fn resize(&self, size: crate::pty::PtySize) -> Result<()> {
        let req = Request::Resize {
            cols: size.cols,
            rows: size.rows,
        };
        self.live_request(&req, &[]).map(drop)
    }

    /// Read output. A live task's current run is asked of its supervisor when consuming or when
    /// no offset is given (so the consume position applies); everything else is read from the
    /// files in the pool.
    pub fn read(&self, opts: &ReadOptions) -> Result<Chunk> {
        let rec = self.record()?;
        let latest = rec.current().map(|r| r.run).unwrap_or(0);
        let run = opts.run.unwrap_or(latest);
        if run == 0 || run > latest {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("task {} has no run {run}", self.id),
            ));
        }
        let count = opts.count.unwrap_or(u64::MAX);
        if rec.state.is_live() && run == latest && (opts.offset.is_none() || !opts.peek) {
            let req = Request::Read {
                stream: opts.stream,
                offset: opts.offset,
                count: Some(count.min(MAX_FRAME)),
                peek: opts.peek,
            };
            let mut c = match self.connect() {
                Ok(c) => c,
                // A scheduler task on another node: its files.
                Err(e) if e.kind() == ErrorKind::Unreachable && rec.spec.engine.is_scheduler() => {
                    return self.read(&ReadOptions {
                        offset: Some(opts.offset.unwrap_or(0)),
                        peek: true,
                        ..*opts
                    })
                }
                Err(e) => return Err(e),
            };
            if let Response::Data { offset, .. } = c.request(&req, &[])? {
                return Ok(Chunk {
                    offset,
                    data: std::mem::take(&mut c.data),
                });
            }
            return Err(Error::new(ErrorKind::Protocol, "expected a data reply"));
        }
        let log = OutputLog::open(&self.pool.run_dir(self.id, run))?;
        let kept = kept_of(&log, &rec, run);
        let offset = opts.offset.unwrap_or(0);
        let avail = log.len(opts.stream).saturating_sub(offset);
        let (offset, data) =
            log.read_kept(opts.stream, offset, count.min(avail) as usize, &kept)?;
        Ok(Chunk { offset, data })
    }

    /// Everything kept of `stream` in the latest run, from the files: the bytes the log cap
    /// dropped are left out (a combined view may lose pieces of one stream between the other's).
    pub fn read_all(&self, stream: Stream) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut at = 0;
        loop {
            let c = self.read(&ReadOptions {
                offset: Some(at),
                ..ReadOptions::new(stream)
            })?;
            if c.data.is_empty() {
                return Ok(all);
            }
            at = c.offset + c.data.len() as u64;
            all.extend_from_slice(&c.data);
        }
    }

    /// Follow the output (from combined offset `from`) and state changes until the task has
    /// ended and everything was delivered. Blocks by design; an ended task replays its files.
    pub fn follow(&self, from: u64) -> Result<Follow> {
        let rec = self.record()?;
        if rec.state.is_live() {
            match Conn::open(&self.pool, self.id, Some(self.pool.timeout())) {
                Ok(mut c) => {
                    // A supervisor that exits right after the hello: follow from the files.
                    if c.send(&Request::Follow { from }, &[]).is_ok() {
                        c.set_timeout(None);
                        return Ok(Follow::live(self.pool.clone(), self.id, c, from));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Unreachable => {
                    if rec.spec.engine.is_scheduler() {
                        return Ok(Follow::remote(self.pool.clone(), self.id, from));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Follow::from_files(self.pool.clone(), self.id, from)
    }

    /// Wait until the task has ended; its final info.
    pub fn wait(&self) -> Result<Info> {
        match self.wait_timeout(None)? {
            Some(i) => Ok(i),
            None => unreachable!("no timeout given"),
        }
    }

    /// Wait at most `timeout` (forever with `None`); `Ok(None)` when it ran out.
    pub fn wait_timeout(&self, timeout: Option<Duration>) -> Result<Option<Info>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let info = loop {
            let rec = self.record()?;
            if !rec.state.is_live() {
                break Info::from_record(&rec);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let connect_timeout =
                Some(left.map_or(self.pool.timeout(), |l| l.min(self.pool.timeout())));
            let mut c = match Conn::open(&self.pool, self.id, connect_timeout) {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Unreachable => {
                    if rec.spec.engine.is_scheduler() {
                        // Not started yet, or on another node: nothing here to wait on but the
                        // record and the scheduler, looked at a modest interval apart.
                        std::thread::sleep(left.map_or(SCHEDULER_POLL, |l| l.min(SCHEDULER_POLL)));
                    }
                    continue;
                }
                Err(e)
                    if e.kind() == ErrorKind::Timeout
                        && left.is_some_and(|l| l <= self.pool.timeout()) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            if c.send(&Request::Wait, &[]).is_err() {
                continue; // it ended (and hung up) right after the hello: judge from the record
            }
            c.set_timeout(left);
            match c.recv() {
                Ok(Some(Response::End { info })) => break *info,
                Ok(Some(Response::Error { kind, message })) => {
                    return Err(Error::new(crate::error::kind_from_name(&kind), message))
                }
                Ok(_) => continue, // hung up: judge from the record again
                Err(e) if e.kind() == ErrorKind::Unreachable => continue, // reset as it exited
                Err(e) if e.kind() == ErrorKind::Timeout && deadline.is_some() => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        self.reap_child();
        Ok(Some(info))
    }

    /// Wait at most `timeout` (forever with `None`) until the task's current run says it is
    /// ready (see [`crate::ready`]); its info then, or `Ok(None)` when the time ran out. A task
    /// that ends first, or was spawned without a readiness option, is an error
    /// ([`ErrorKind::State`], [`ErrorKind::InvalidInput`]) saying so.
    pub fn wait_ready(&self, timeout: Option<Duration>) -> Result<Option<Info>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let rec = self.record()?;
            if rec.spec.readiness.is_none() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "task {} was spawned without --ready-fd or --notify: it cannot say it is ready",
                        self.id
                    ),
                ));
            }
            let info = Info::from_record(&rec);
            if !rec.state.is_live() {
                return Err(not_ready(&info));
            }
            if info.ready && rec.state == State::Running {
                return Ok(Some(info));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let connect_timeout =
                Some(left.map_or(self.pool.timeout(), |l| l.min(self.pool.timeout())));
            let mut c = match Conn::open(&self.pool, self.id, connect_timeout) {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Unreachable => {
                    if rec.spec.engine.is_scheduler() {
                        // As in `wait_timeout`: nothing to block on but the record.
                        std::thread::sleep(left.map_or(SCHEDULER_POLL, |l| l.min(SCHEDULER_POLL)));
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Timeout && left.is_some() => return Ok(None),
                Err(e) => return Err(e),
            };
            if c.send(&Request::WaitReady, &[]).is_err() {
                continue;
            }
            c.set_timeout(left);
            match c.recv() {
                Ok(Some(Response::Ready { info })) => return Ok(Some(*info)),
                Ok(Some(Response::End { info })) => return Err(not_ready(&info)),
                Ok(Some(Response::Error { kind, message })) => {
                    return Err(Error::new(crate::error::kind_from_name(&kind), message))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Unreachable => continue,
                Err(e) if e.kind() == ErrorKind::Timeout && deadline.is_some() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn reap_child(&self) {
        if let Ok(mut g) = self.child.lock() {
            if let Some(mut c) = g.take() {
                let _ = c.wait();
            }
        }
    }

    /// Run the ended task again as a new run under the same id.
    pub fn restart(&self) -> Result<Task> {
        self.pool.restart(self.id)
    }

    /// End the task (INT, TERM, KILL with `grace` between; default: the task's), wait until the
    /// supervisor has recorded the end and exited, and return the final info. An ended task is
    /// left as it is.
    pub fn terminate_supervisor(&self, grace: Option<Duration>) -> Result<Info> {
        let req = Request::Terminate {
            grace_ms: grace.map(|g| g.as_millis() as u64),
        };
        let rec = self.record()?;
        // A supervisor lingering after the end still listens: it is told to exit now.
        if rec.state.is_live() || self.pool.socket_path(self.id).exists() {
            match self.connect() {
                Ok(mut c) => {
                    c.request(&req, &[])?;
                    c.set_timeout(None);
                    // The connection closes when the supervisor exits.
                    while let Ok(Some(_)) = c.recv() {}
                }
                Err(e) if e.kind() == ErrorKind::Unreachable => {
                    if rec.state.is_live() && rec.spec.engine.is_scheduler() {
                        self.through_scheduler(e, req)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.reap_child();
        let rec = self.record()?;
        Ok(Info::from_record(&rec))
    }

    /// Delete the task's record and output. A live task is refused unless `force`, which
    /// terminates it first.
    pub fn remove(&self, force: bool) -> Result<()> {
        let rec = self.record()?;
        if rec.state.is_live() {
            if !force {
                return Err(Error::new(
                    ErrorKind::State,
                    format!(
                        "task {} is {}; terminate it first or use --force",
                        self.id,
                        rec.state.as_str()
                    ),
                ));
            }
            self.terminate_supervisor(None)?;
        }
        let dir = self.pool.task_dir(self.id);
        let lock_path = self.pool.lock_path(self.id);
        if let Ok(f) = lock::open(&lock_path, false) {
            if !self.lock_after_end(&f, rec.supervisor_pid)? {
                return Err(Error::new(
                    ErrorKind::State,
                    format!("task {} was restarted meanwhile; not removed", self.id),
                ));
            }
            // Hold the lock while deleting; the file goes with the directory.
            let tmp = self
                .pool
                .tasks_dir()
                .join(format!(".rm-{}-{}", self.id, std::process::id()));
            std::fs::rename(&dir, &tmp).map_err(|e| Error::path(&dir, e))?;
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::path(&tmp, e))?;
            drop(f);
            return Ok(());
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::path(&dir, e))
    }
}

impl Task {
    /// Take the task's lock once its run has ended. The supervisor of an ended run may still hold
    /// it for a moment (it records the end, answers waiters, then exits) or while it lingers:
    /// a lingering one is told to exit, and an exiting one is awaited (by pidfd, at most the
    /// pool's timeout). `Ok(false)` when the lock is still held then: a new run has started.
    pub(crate) fn lock_after_end(
        &self,
        lock_file: &std::fs::File,
        supervisor: Option<i32>,
    ) -> Result<bool> {
        if lock::try_lock_ofd(lock_file)? {
            return Ok(true);
        }
        if self.record()?.state.is_live() {
            return Ok(false);
        }
        if self.pool.socket_path(self.id).exists() {
            self.terminate_supervisor(None)?;
        } else if let Some(pid) = supervisor {
            wait_for_exit(pid, self.pool.timeout());
        }
        lock::try_lock_ofd(lock_file)
    }
}

/// Wait until process `pid` has exited, at most `timeout` (a pidfd in `poll`; no polling loop).
fn wait_for_exit(pid: i32, timeout: Duration) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    if fd < 0 {
        return; // already gone
    }
    // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is a valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

fn unexpected(id: u64, r: &Response) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("task {id}: unexpected reply from supervisor: {r:?}"),
    )
}

/// The error for a task that ended before it said it was ready.
fn not_ready(info: &Info) -> Error {
    let status = info.status.map_or("over", |s| s.as_str());
    let why = info
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    Error::new(
        ErrorKind::State,
        format!("task {} ended ({status}{why}) before it was ready", info.id),
    )
}
