//! Locks. A live supervisor holds an open-file-description (OFD) write lock on its task's `lock`
//! file; readers test it with `F_OFD_GETLK`, which never takes the lock, so probing liveness cannot
//! disturb a supervisor that is starting. The user's `--lockfile` is a plain `flock(2)` lock
//! (compatible with `flock(1)` in shell scripts) whose holder writes its pid into the file.

use crate::error::{Error, ErrorKind, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

fn flock_struct(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// Open a lock file for locking (read-write, `O_NOFOLLOW`, close-on-exec), creating it with mode
/// 0660 (less the umask) when `create`. Every lock file of the pool is opened this way.
pub fn open(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o660)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Try to take an exclusive OFD lock on the whole of `file` without waiting. `Ok(false)` when
/// another open file description holds it.
pub fn try_lock_ofd(file: &File) -> Result<bool> {
    let mut fl = flock_struct(libc::F_WRLCK as libc::c_short);
    // SAFETY: the fd is valid for the life of `file`, and `fl` is a valid, initialised flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(Error::io("locking the task's lock file", e)),
    }
}

/// Take an exclusive OFD lock on the whole of `file`, waiting while another open file
/// description holds it (a scheduler task's supervisor waits so for its submitter).
pub fn lock_ofd_wait(file: &File) -> Result<()> {
    loop {
        let mut fl = flock_struct(libc::F_WRLCK as libc::c_short);
        // SAFETY: the fd is valid for the life of `file`, and `fl` is a valid, initialised flock.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &mut fl) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::io("locking the task's lock file", e));
        }
    }
}

/// What a liveness probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A supervisor holds the lock.
    Held,
    /// Nobody holds it.
    Free,
    /// There is no lock file.
    Missing,
}

/// Test whether the lock at `path` is held, without taking it.
pub fn probe(path: &Path) -> Result<Probe> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Missing),
        Err(e) => return Err(Error::path(path, e)),
    };
    let mut fl = flock_struct(libc::F_WRLCK as libc::c_short);
    // SAFETY: the fd is valid for the life of `file`, and `fl` is a valid, initialised flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r != 0 {
        return Err(Error::path(path, std::io::Error::last_os_error()));
    }
    Ok(if fl.l_type == libc::F_UNLCK as libc::c_short {
        Probe::Free
    } else {
        Probe::Held
    })
}

/// The pid a lock file's holder wrote on its first line. A holder that has only just taken the
/// lock may not have written it yet, so an empty file is read again a few times (at most about
/// 100 ms, and only on this error path) before giving up on naming the holder.
fn read_holder(file: &mut File) -> String {
    for attempt in 0..50 {
        let mut s = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut s).is_ok() {
            if let Some(first) = s.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                return first.to_owned();
            }
        }
        if attempt < 49 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    String::new()
}

/// A held user lock file (`flock`), released when dropped (or when the holder exits).
#[derive(Debug)]
pub struct UserLock {
    file: File,
}

impl UserLock {
    /// Take `path` exclusively without waiting and write `pid` into it. When another process holds
    /// it the error is [`ErrorKind::LockHeld`] and names the holder's pid as written in the file.
    pub fn acquire(path: &Path, pid: u32) -> Result<UserLock> {
        match Self::try_acquire(path, pid)? {
            Ok(l) => Ok(l),
            Err((_, holder)) => {
                let who = holder.map_or("another process".to_owned(), |h| format!("pid {h}"));
                Err(Error::new(
                    ErrorKind::LockHeld,
                    format!("lockfile {} is held by {who}", path.display()),
                ))
            }
        }
    }

    /// Take `path` exclusively without waiting and write `pid` into it; when another process
    /// holds it, `Ok(Err((file, holder)))`: the open file (to wait on, see [`UserLock::adopt`])
    /// and the holder as written in the file.
    #[allow(clippy::type_complexity)]
    pub fn try_acquire(
        path: &Path,
        pid: u32,
    ) -> Result<std::result::Result<UserLock, (File, Option<String>)>> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::path(path, e).context("lockfile"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                let holder = (!holder.is_empty()).then_some(holder);
                return Ok(Err((file, holder)));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::path(path, e).context("lockfile"))
            }
        }
        Ok(Ok(Self::adopt(file, pid)))
    }

    /// A lock file whose open file description now holds the lock (taken by
    /// [`UserLock::try_acquire`], or by a child blocked in `flock` on the same description):
    /// write `pid` into it and keep it.
    pub fn adopt(file: File, pid: u32) -> UserLock {
        // Overwrite in place, then cut: the file is never empty for a loser reading it (its first
        // line is the old holder's pid only until this one write lands). Best effort: the lock is
        // held whether or not the pid could be written.
        let line = format!("{pid}\n");
        let _ = file
            .write_all_at(line.as_bytes(), 0)
            .and_then(|()| file.set_len(line.len() as u64));
        UserLock { file }
    }

    /// The open lock file.
    pub fn file(&self) -> &File {
        &self.file
    }
}
