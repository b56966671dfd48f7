//! `taskpool watch DIR`: spawn every job file that appears in a drop directory (docs/jobs.md).
//!
//! One inotify watch (`IN_MOVED_TO | IN_CLOSE_WRITE`) and a signalfd for SIGINT and SIGTERM, in
//! one `poll` without a timeout: idle means blocked. Each file is claimed by renaming it into
//! `DIR/.claimed/TOKEN-NAME` before it is read, so a crash never submits it twice: the task's meta
//! records TOKEN (`job_claim`), and a claimed file found at start-up is accepted when a task with
//! its TOKEN exists, else processed. A file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked
//! with `fstat` before a byte is read; whatever is wrong with it, it is rejected with a reason and
//! the watcher goes on.

use crate::args::{GlobalArgs, WatchCmd};
use crate::{print, select};
use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::{json, Value};
use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use taskpool::job::{Job, MAX_JOB_FILE};
use taskpool::{Pool, SpawnOptions};

/// Where accepted files go (as `ID-NAME`).
const ACCEPTED: &str = "accepted";
/// Where rejected files go, with `NAME.reason` beside them.
const REJECTED: &str = "rejected";
/// Where a file is claimed, before it is read.
const CLAIMED: &str = ".claimed";

pub fn watch(global: &GlobalArgs, cmd: &WatchCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let dir = std::path::absolute(&cmd.dir)
        .with_context(|| format!("watch directory {}", cmd.dir.display()))?;
    check_dir(&dir)?;
    for sub in [ACCEPTED, REJECTED, CLAIMED] {
        make_private_dir(&dir.join(sub))?;
    }
    let w = Watcher {
        pool,
        dir,
        json: global.json,
        last_token: Cell::new(0),
    };
    // Signals first, then the watch, then the files already there: nothing is missed between.
    let signals = if cmd.once {
        None
    } else {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().context("blocking SIGINT and SIGTERM")?;
        Some(
            SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .context("signalfd")?,
        )
    };
    let inotify = if cmd.once {
        None
    } else {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .context("inotify_init")?;
        ino.add_watch(
            &w.dir,
            AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_ONLYDIR
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF,
        )
        .with_context(|| format!("watching {}", w.dir.display()))?;
        Some(ino)
    };
    w.recover()?;
    w.scan()?;
    let (Some(signals), Some(inotify)) = (signals, inotify) else {
        return Ok(0);
    };
    loop {
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.context("poll")?,
        };
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            if let Ok(Some(_)) = signals.read_signal() {
                return Ok(0);
            }
        }
        if !ready(&fds[1]) {
            continue;
        }
        let events = match inotify.read_events() {
            Err(nix::errno::Errno::EAGAIN) => continue,
            r => r.context("reading inotify events")?,
        };
        // One read's events are one burst: its files are spawned together.
        let mut burst = Vec::new();
        for ev in events {
            if ev
                .mask
                .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
            {
                bail!("watch directory {} was removed or moved", w.dir.display());
            }
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                w.take(&burst)?;
                burst.clear();
                w.scan()?;
            } else if let Some(name) = ev.name {
                if !burst.contains(&name) {
                    burst.push(name);
                }
            }
        }
        w.take(&burst)?;
    }
}

/// Refuse a directory that is not ours or that others can write to.
fn check_dir(dir: &Path) -> Result<()> {
    let md =
        std::fs::metadata(dir).with_context(|| format!("watch directory {}", dir.display()))?;
    if !md.is_dir() {
        bail!("watch directory {} is not a directory", dir.display());
    }
    if md.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "refusing to watch {}: it is owned by uid {}, not by us",
            dir.display(),
            md.uid()
        );
    }
    if md.mode() & 0o022 != 0 {
        bail!(
            "refusing to watch {}: group or others can write to it (mode {:o})",
            dir.display(),
            md.mode() & 0o7777
        );
    }
    Ok(())
}

/// Create `dir` with mode 0700 unless it exists; it must be a real directory.
fn make_private_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dir.display()))
        }
        _ => {}
    }
    let md = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !md.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Ok(())
}

struct Watcher {
    pool: Pool,
    dir: PathBuf,
    /// Print JSON lines (`--json`).
    json: bool,
    /// The nanoseconds of the last claim token made: each new one is later, so that the
    /// claims of one burst never share a token.
    last_token: Cell<u128>,
}

impl Watcher {
    /// Take every file now in the directory.
    fn scan(&self) -> Result<()> {
        let mut names: Vec<OsString> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        self.take(&names)
    }

    /// Finish what a previous watcher claimed but did not file away.
    fn recover(&self) -> Result<()> {
        let claimed = self.dir.join(CLAIMED);
        let mut names: Vec<OsString> = std::fs::read_dir(&claimed)
            .with_context(|| format!("reading {}", claimed.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for claim in names {
            let (token, name) = split_claim(&claim);
            let Some(token) = token else {
                self.finish(&claim, &name, Err("not a claim of this watcher".into()))?;
                continue;
            };
            let submitted = self
                .pool
                .search_with(|i| i.meta.get("job_claim") == Some(&Value::from(token.as_str())))
                .context("searching the pool for claimed job files")?;
            match submitted.first() {
                Some(info) => self.finish(&claim, &name, Ok(info.id))?,
                None => {
                    let outcome = self.submit(&claim, &name, &token);
                    self.finish(&claim, &name, outcome)?;
                }
            }
        }
        Ok(())
    }

    /// Claim, submit and file away the directory entries `names` (those not to be ignored): the
    /// files that are good are spawned together ([`Pool::spawn_many`]), each bad one is rejected
    /// on its own.
    fn take(&self, names: &[OsString]) -> Result<()> {
        let mut claimed = Vec::new();
        for name in names {
            if let Some(c) = self.claim(name)? {
                claimed.push(c);
            }
        }
        // Each file's outcome, filed away in the order of `names`.
        let mut outcomes: Vec<Option<Result<u64, String>>> = vec![None; claimed.len()];
        let mut ready = Vec::new();
        for (k, (claim, name, token)) in claimed.iter().enumerate() {
            match self.read_job(claim, name, token) {
                Ok(opts) => ready.push((k, opts)),
                Err(reason) => outcomes[k] = Some(Err(reason)),
            }
        }
        // Each round settles at least one, so this ends.
        while !ready.is_empty() {
            let opts: Vec<SpawnOptions> = ready.iter().map(|(_, o)| o.clone()).collect();
            let settled: Vec<(usize, Result<u64, String>)> = match self.pool.spawn_many(&opts) {
                Err((i, e)) => vec![(i, Err(e.message().to_owned()))],
                Ok(made) => {
                    let mut v: Vec<_> = made.tasks.iter().map(|(i, t)| (*i, Ok(t.id()))).collect();
                    v.extend(made.failed.map(|(i, e)| (i, Err(e.message().to_owned()))));
                    v
                }
            };
            let mut done = vec![false; ready.len()];
            for (i, outcome) in settled {
                outcomes[ready[i].0] = Some(outcome);
                done[i] = true;
            }
            let mut left = done.iter();
            ready.retain(|_| !left.next().copied().unwrap_or(false));
        }
        for ((claim, name, _), outcome) in claimed.iter().zip(outcomes) {
            self.finish(claim, name, outcome.expect("every file is settled"))?;
        }
        Ok(())
    }

    /// Claim one directory entry by renaming it under `.claimed/`: its claim's name, its name
    /// and token, or `None` when it is to be ignored or is gone already.
    fn claim(&self, name: &OsStr) -> Result<Option<(OsString, OsString, String)>> {
        let bytes = name.as_bytes();
        if bytes.starts_with(b".") || name == ACCEPTED || name == REJECTED {
            return Ok(None);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .max(self.last_token.get() + 1);
        self.last_token.set(now);
        let token = format!("{}-{now}", std::process::id());
        let mut claim = OsString::from(format!("{token}-"));
        claim.push(name);
        match std::fs::rename(self.dir.join(name), self.dir.join(CLAIMED).join(&claim)) {
            Ok(()) => Ok(Some((claim, name.to_owned(), token))),
            // Gone already: another watcher took it, or an event for a file we took in a scan.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("claiming {}", Path::new(name).display())),
        }
    }

    /// Read the claimed file and spawn its task; the id, or why not.
    fn submit(&self, claim: &OsStr, name: &OsStr, token: &str) -> Result<u64, String> {
        let opts = self.read_job(claim, name, token)?;
        let task = self.pool.spawn(&opts).map_err(|e| e.message().to_owned())?;
        Ok(task.id())
    }

    /// Read and check the claimed file: the task's options, or why not.
    fn read_job(&self, claim: &OsStr, name: &OsStr, token: &str) -> Result<SpawnOptions, String> {
        let path = self.dir.join(CLAIMED).join(claim);
        let file = open_job(&path)?;
        let mut bytes = Vec::new();
        file.take(MAX_JOB_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if bytes.len() as u64 > MAX_JOB_FILE {
            return Err("it is larger than 1 MiB".into());
        }
        let job = Job::parse(&bytes).map_err(|e| e.message().to_owned())?;
        let mut opts = job
            .to_options(&self.dir)
            .map_err(|e| e.message().to_owned())?;
        // Read for each file: `pool set --engine` takes effect while watching.
        let default = crate::options::default_engine(&self.pool).map_err(|e| e.to_string())?;
        crate::options::job_engine(&mut opts, &job, default);
        opts.meta.insert(
            "job_file".into(),
            Value::from(name.to_string_lossy().into_owned()),
        );
        opts.meta.insert("job_claim".into(), Value::from(token));
        Ok(opts)
    }

    /// Move a claimed file to `accepted/` or `rejected/` and print the outcome.
    fn finish(&self, claim: &OsStr, name: &OsStr, outcome: Result<u64, String>) -> Result<()> {
        let from = self.dir.join(CLAIMED).join(claim);
        let shown = name.to_string_lossy();
        match outcome {
            Ok(id) => {
                let mut to = OsString::from(format!("{id}-"));
                to.push(name);
                std::fs::rename(&from, self.dir.join(ACCEPTED).join(to))
                    .with_context(|| format!("moving {} to {ACCEPTED}/", from.display()))?;
                if self.json {
                    print::json_line(&json!({"file": shown, "id": id}))?;
                } else {
                    print::line(format_args!("{shown}: task {id}"))?;
                }
            }
            Err(reason) => {
                let reason = reason.replace(['\n', '\r'], " ");
                let rejected = self.dir.join(REJECTED);
                let mut reason_name = name.to_owned();
                reason_name.push(".reason");
                std::fs::write(rejected.join(reason_name), format!("{reason}\n"))
                    .with_context(|| format!("writing the reason for {shown}"))?;
                if let Err(e) = std::fs::rename(&from, rejected.join(name)) {
                    // A directory of that name already there: leave it claimed, say so.
                    eprintln!(
                        "taskpool: cannot move {} to {REJECTED}/: {e}",
                        from.display()
                    );
                }
                if self.json {
                    print::json_line(&json!({"file": shown, "error": reason}))?;
                } else {
                    print::line(format_args!("{shown}: rejected: {reason}"))?;
                }
            }
        }
        Ok(())
    }
}

/// A claim's name, `PID-NANOS-NAME`: its token `PID-NANOS` and the original name.
fn split_claim(claim: &OsStr) -> (Option<String>, OsString) {
    let bytes = claim.as_bytes();
    let mut dashes = bytes.iter().enumerate().filter(|(_, b)| **b == b'-');
    if let (Some((a, _)), Some((b, _))) = (dashes.next(), dashes.next()) {
        let token = &bytes[..b];
        if a > 0 && token.iter().all(|c| c.is_ascii_digit() || *c == b'-') {
            return (
                Some(String::from_utf8_lossy(token).into_owned()),
                OsStr::from_bytes(&bytes[b + 1..]).to_owned(),
            );
        }
    }
    (None, claim.to_owned())
}

/// Open a job file without following a symlink or blocking on a FIFO, and refuse anything but a
/// regular file of at most 1 MiB.
fn open_job(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link".to_string(),
            _ => format!("cannot open it: {e}"),
        })?;
    let md = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_block_device() || ft.is_char_device() {
        Some("a device")
    } else {
        Some("an unknown kind of file")
    };
    if let Some(kind) = kind {
        return Err(format!("it is {kind}, not a regular file"));
    }
    if md.len() > MAX_JOB_FILE {
        return Err(format!("it is larger than 1 MiB ({} bytes)", md.len()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_split_into_token_and_name() {
        let (t, n) = split_claim(OsStr::new("12-345-my-job.json"));
        assert_eq!(t.as_deref(), Some("12-345"));
        assert_eq!(n, "my-job.json");
        let (t, n) = split_claim(OsStr::new("stray.json"));
        assert_eq!(t, None);
        assert_eq!(n, "stray.json");
    }
}
