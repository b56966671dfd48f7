//! Groups: limits on how many tasks of a named group run at once, kept without a daemon. Every
//! piece of state is a file in the pool, and every "slot" is a lock, so a supervisor that dies
//! (even by SIGKILL) gives its slot back without anyone noticing the death.
//!
//! ```text
//! POOL/groups/NAME/limit       {"parallel": N}; absent: unlimited
//! POOL/groups/NAME/mutex       flock'd for the few microseconds an acquire or a kick takes
//! POOL/groups/NAME/slot-K      one per slot ever used; a running task holds an OFD lock on one
//! POOL/groups/NAME/queue/KEY   one empty file per queued task; KEY sorts in start order
//! ```
//!
//! **Protocol for a supervisor.** Hold the task's lock and listen on its socket first (a queue
//! entry whose task's lock is free is taken for a dead supervisor's and removed; one whose socket
//! does not answer is passed over when waking). Then call [`try_take_slot`]: it either returns a
//! [`Slot`] (keep it for the whole run; dropping it frees the slot) or leaves the task's queue
//! entry in place. While queued, wait for a `wake` request on the socket and call
//! [`try_take_slot`] again. Whoever frees a slot (drops a [`Slot`]), raises a limit, or takes a
//! queued task out ([`dequeue`]) calls [`kick`], which wakes the head of the queue; a task that
//! takes a slot calls [`kick`] too, so that a raised limit cascades down the queue.
//!
//! Why this is race-free: slots are only taken under the group's `mutex`, after counting the held
//! ones, so never more than the limit are taken. A task's queue entry exists before its first
//! failed attempt ends (under the mutex), and [`kick`] reads the queue under the same mutex after
//! the slot was freed: either the attempt saw the free slot, or the kick sees the entry.

use crate::error::{Error, ErrorKind, Result};
use crate::lock::{self, Probe};
use crate::pool::Pool;
use crate::protocol::Request;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest group name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// How long [`kick`] waits for one supervisor to answer before passing over it.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// One group as `taskpool group ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Its limit; `None` is unlimited.
    pub parallel: Option<u32>,
    /// How many slots are held right now (tasks of the group running or paused).
    pub running: u32,
    /// The queued tasks, in the order they will start.
    pub queued: Vec<u64>,
}

/// A held slot of a group: the task may run while it is held. Dropping it (or the death of the
/// process) frees the slot; call [`kick`] afterwards so the next queued task starts.
#[derive(Debug)]
pub struct Slot {
    _file: File,
    index: u32,
    group: String,
}

impl Slot {
    /// The slot's number K (its file is `groups/NAME/slot-K`).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The group the slot belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }
}

/// Check that `name` can name a group: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_`, `-` or
/// `.`, not starting with `.` (it is a directory name in the pool).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "bad group name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '_', '-' or '.', not starting with '.'"
            ),
        ))
    }
}

/// The queue key of a task: higher priority first, then lower id (spawn order). Keys sort as
/// strings in start order.
pub fn queue_key(id: u64, priority: i32) -> String {
    format!("{:010}-{:020}", i32::MAX as i64 - priority as i64, id)
}

/// The task id in a queue key, `None` for a file name that is not one.
fn key_id(key: &str) -> Option<u64> {
    let (rank, id) = key.split_once('-')?;
    (rank.len() == 10 && rank.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    id.parse().ok()
}

/// The limit file's contents.
#[derive(Serialize, Deserialize)]
struct Limit {
    parallel: u32,
}

/// The files of one group.
struct GroupDir {
    dir: PathBuf,
}

impl GroupDir {
    fn path(pool: &Pool, name: &str) -> Result<GroupDir> {
        check_name(name)?;
        Ok(GroupDir {
            dir: groups_dir(pool).join(name),
        })
    }

    /// The group's files, creating its directories when missing.
    fn create(pool: &Pool, name: &str) -> Result<GroupDir> {
        let g = Self::path(pool, name)?;
        make_dir(pool, &groups_dir(pool))?;
        make_dir(pool, &g.dir)?;
        make_dir(pool, &g.queue_dir())?;
        Ok(g)
    }

    fn limit_path(&self) -> PathBuf {
        self.dir.join("limit")
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    fn slot_path(&self, k: u32) -> PathBuf {
        self.dir.join(format!("slot-{k}"))
    }

    /// Take the group's mutex (blocking: it is only ever held for a few file operations).
    fn lock(&self) -> Result<File> {
        let path = self.dir.join("mutex");
        let f = lock::open(&path, true).map_err(|e| Error::path(&path, e))?;
        f.lock().map_err(|e| Error::path(&path, e))?;
        Ok(f)
    }

    fn limit(&self) -> Result<Option<u32>> {
        let path = self.limit_path();
        let bytes = match read_nofollow(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::path(&path, e)),
        };
        let limit: Limit = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("{}: bad group limit: {e}", path.display()),
            )
        })?;
        Ok(Some(limit.parallel))
    }

    /// The numbers of every slot file, ascending.
    fn slots(&self) -> Result<Vec<u32>> {
        let mut ks: Vec<u32> = read_names(&self.dir)?
            .iter()
            .filter_map(|n| n.strip_prefix("slot-")?.parse().ok())
            .collect();
        ks.sort_unstable();
        Ok(ks)
    }

    /// The numbers of the slots held right now.
    fn held(&self) -> Result<Vec<u32>> {
        let mut held = Vec::new();
        for k in self.slots()? {
            if lock::probe(&self.slot_path(k))? == Probe::Held {
                held.push(k);
            }
        }
        Ok(held)
    }

    /// The pids written by the holders of the held slots (see [`try_take_slot`]).
    fn holders(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for k in self.held()? {
            if let Ok(b) = read_nofollow(&self.slot_path(k)) {
                if let Some(pid) = std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    pids.push(pid);
                }
            }
        }
        Ok(pids)
    }

    /// The queue's keys, in start order.
    fn keys(&self) -> Result<Vec<String>> {
        let mut keys: Vec<String> = read_names(&self.queue_dir())?
            .into_iter()
            .filter(|k| key_id(k).is_some())
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// The queue's entries whose task has a live supervisor, in start order. With `prune`, the
    /// entries of dead supervisors are removed.
    fn live_entries(&self, pool: &Pool, prune: bool) -> Result<Vec<(String, u64)>> {
        let mut live = Vec::new();
        for key in self.keys()? {
            let id = key_id(&key).expect("keys() only returns valid keys");
            if lock::probe(&pool.lock_path(id))? == Probe::Held {
                live.push((key, id));
            } else if prune {
                remove_if_present(&self.queue_dir().join(&key))?;
            }
        }
        Ok(live)
    }

    fn add_entry(&self, key: &str) -> Result<()> {
        let path = self.queue_dir().join(key);
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o660)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map(drop)
            .map_err(|e| Error::path(&path, e))
    }

    /// Lock the lowest free slot (creating a new slot file when every one is held).
    fn take_free_slot(&self, name: &str) -> Result<Slot> {
        let existing = self.slots()?;
        let next = existing.last().map_or(0, |k| k + 1);
        for k in existing.into_iter().chain([next]) {
            let path = self.slot_path(k);
            let file = lock::open(&path, true).map_err(|e| Error::path(&path, e))?;
            if lock::try_lock_ofd(&file)? {
                // The holder's pid, so that the head of the queue can watch it (a SIGKILLed
                // holder frees its slot with no one left to say so).
                let line = format!("{}\n", std::process::id());
                let _ = std::os::unix::fs::FileExt::write_all_at(&file, line.as_bytes(), 0)
                    .and_then(|()| file.set_len(line.len() as u64));
                return Ok(Slot {
                    _file: file,
                    index: k,
                    group: name.to_owned(),
                });
            }
        }
        Err(Error::new(
            ErrorKind::Io,
            format!("group {name}: slot {next} was taken under the group's mutex"),
        ))
    }
}

fn groups_dir(pool: &Pool) -> PathBuf {
    pool.path().join("groups")
}

/// Create a directory of the pool with the pool's mode (0700, or 02770 in a group-shared pool),
/// and check that what is there is a directory (not a symlink planted in its place).
fn make_dir(pool: &Pool, dir: &Path) -> Result<()> {
    let shared = pool.shared_gid().is_some();
    let mode = if shared { 0o2770 } else { 0o700 };
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have taken the group bits of a shared pool.
            if shared {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::path(dir, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::path(dir, e)),
    }
    let md = fs::symlink_metadata(dir).map_err(|e| Error::path(dir, e))?;
    if !md.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(())
}

fn read_nofollow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// The UTF-8 names in `dir`; a missing directory has none.
fn read_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::path(dir, e)),
    };
    Ok(rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::path(path, e)),
        _ => Ok(()),
    }
}

impl Pool {
    /// The limit of group `name`: how many of its tasks may run at once; `None` when unlimited
    /// (also for a group never used).
    pub fn group_limit(&self, name: &str) -> Result<Option<u32>> {
        GroupDir::path(self, name)?.limit()
    }

    /// Set (or with `None` remove) the limit of group `name`, then wake the head of its queue
    /// (see [`kick`]). Lowering the limit never stops running tasks: it holds back new starts
    /// until fewer than the new limit run.
    pub fn set_group_limit(&self, name: &str, parallel: Option<u32>) -> Result<()> {
        if parallel == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("group {name}: the limit must be at least 1"),
            ));
        }
        let g = GroupDir::create(self, name)?;
        {
            let _mutex = g.lock()?;
            match parallel {
                Some(n) => {
                    let json = serde_json::to_vec(&Limit { parallel: n })
                        .expect("a limit always serializes");
                    crate::record::write_atomic(&g.limit_path(), &json, true)?;
                }
                None => remove_if_present(&g.limit_path())?,
            }
        }
        kick(self, name);
        Ok(())
    }

    /// Every group of the pool (those with a limit, and those ever used), sorted by name.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut names: Vec<String> = read_names(&groups_dir(self))?
            .into_iter()
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let g = GroupDir::path(self, &name)?;
            if !fs::symlink_metadata(&g.dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            out.push(GroupInfo {
                parallel: g.limit()?,
                running: g.held()?.len() as u32,
                queued: g
                    .live_entries(self, false)?
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect(),
                name,
            });
        }
        Ok(out)
    }
}

/// Put task `id` in `group`'s queue (idempotent). [`try_take_slot`] does this itself when it
/// cannot take a slot; a task whose place in the queue must be held before it is accepted may
/// call it first.
pub fn enqueue(pool: &Pool, group: &str, id: u64, priority: i32) -> Result<()> {
    GroupDir::create(pool, group)?.add_entry(&queue_key(id, priority))
}

/// Take task `id` out of `group`'s queue (a queued task killed or removed); absent is not an
/// error. Call [`kick`] afterwards: the task may have been the head.
pub fn dequeue(pool: &Pool, group: &str, id: u64, priority: i32) -> Result<()> {
    let g = GroupDir::path(pool, group)?;
    remove_if_present(&g.queue_dir().join(queue_key(id, priority)))
}

/// Try to take a slot of `group` for task `id`, whose supervisor must hold the task's lock.
///
/// Under the group's mutex: succeeds when no live queue entry comes before the task's (its own
/// entry is the head, or it has none and none would start before it) and fewer slots are held
/// than the limit. Then the lowest free slot is locked and the task's queue entry removed. When
/// not, the task's queue entry is left in place (created if missing) and `None` is returned:
/// wait for a `wake` and try again. Entries of dead supervisors met on the way are removed.
pub fn try_take_slot(pool: &Pool, group: &str, id: u64, priority: i32) -> Result<Option<Slot>> {
    Ok(take_or_watch(pool, group, id, priority)?.ok())
}

/// [`try_take_slot`], telling the head of the queue what to watch when it cannot start: the
/// pids of the supervisors holding the slots (written in the slot files). A holder that dies
/// without a word (SIGKILL) frees its slot; the head, watching it (a pidfd), tries again. Tasks
/// behind the head get an empty list: the head wakes the next once it has a slot.
pub fn take_or_watch(
    pool: &Pool,
    group: &str,
    id: u64,
    priority: i32,
) -> Result<std::result::Result<Slot, Vec<i32>>> {
    let g = GroupDir::create(pool, group)?;
    let _mutex = g.lock()?;
    let key = queue_key(id, priority);
    let limit = g.limit()?;
    let first = g.live_entries(pool, true)?.into_iter().next();
    let my_turn = first.is_none_or(|(head, _)| key <= head);
    let room = match limit {
        Some(n) => (g.held()?.len() as u64) < n as u64,
        None => true,
    };
    if my_turn && room {
        let slot = g.take_free_slot(group)?;
        remove_if_present(&g.queue_dir().join(&key))?;
        return Ok(Ok(slot));
    }
    g.add_entry(&key)?;
    Ok(Err(if my_turn { g.holders()? } else { Vec::new() }))
}

/// Wake the head of `group`'s queue when a slot may have become free: after a slot was freed, a
/// limit raised, or a queued task taken out. Sends `wake` to the first live queued task whose
/// supervisor answers within [`WAKE_TIMEOUT`], passing over those that do not. Returns the id
/// woken, if any. Errors are ignored: a kick is a hint, never a failure of the caller.
///
/// Only the head is woken (it takes a slot and kicks in turn), so a kick costs one connection.
/// This blocks for up to [`WAKE_TIMEOUT`] per task passed over; an event loop takes
/// [`wake_candidates`] and sends the wakes itself, as the supervisor does. Never call it from a
/// supervisor whose own task is in the queue: it would wait on itself.
pub fn kick(pool: &Pool, group: &str) -> Option<u64> {
    wake_candidates(pool, group)
        .into_iter()
        .find(|&id| wake(pool, id).is_ok())
}

/// Whom a [`kick`] of `group` tries to wake, in order: the live queued tasks, when fewer slots
/// are held than the limit; none otherwise (or when the group cannot be read).
pub fn wake_candidates(pool: &Pool, group: &str) -> Vec<u64> {
    (|| -> Result<Vec<u64>> {
        let g = GroupDir::path(pool, group)?;
        if !g.dir.is_dir() {
            return Ok(Vec::new());
        }
        let _mutex = g.lock()?;
        if let Some(n) = g.limit()? {
            if g.held()?.len() as u64 >= n as u64 {
                return Ok(Vec::new());
            }
        }
        Ok(g.live_entries(pool, true)?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    })()
    .unwrap_or_default()
}

/// Send `wake` to task `id`'s supervisor and wait for its `ok`.
fn wake(pool: &Pool, id: u64) -> Result<()> {
    let mut conn = crate::client::Conn::open(pool, id, Some(WAKE_TIMEOUT))?;
    conn.request(&Request::Wake, &[]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_line, Response, PROTOCOL_VERSION};
    use std::io::{BufRead, BufReader, Write};

    /// A fresh pool in a temporary directory, removed on drop.
    struct Tmp {
        pool: Pool,
    }

    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let dir = std::env::temp_dir().join(format!(
                "taskpool-group-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            let pool = Pool::open_or_create(&dir, Default::default()).unwrap();
            Tmp { pool }
        }

        /// Pretend a supervisor of task `id` is alive: hold its lock (until the file is dropped).
        fn live(&self, id: u64) -> File {
            fs::create_dir_all(self.pool.task_dir(id)).unwrap();
            let f = lock::open(&self.pool.lock_path(id), true).unwrap();
            assert!(lock::try_lock_ofd(&f).unwrap());
            f
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(self.pool.path());
        }
    }

    #[test]
    fn the_limit_is_written_read_and_removed() {
        let t = Tmp::new("limit");
        assert_eq!(t.pool.group_limit("batch").unwrap(), None);
        t.pool.set_group_limit("batch", Some(3)).unwrap();
        assert_eq!(t.pool.group_limit("batch").unwrap(), Some(3));
        let raw = fs::read_to_string(t.pool.path().join("groups/batch/limit")).unwrap();
        assert_eq!(raw, r#"{"parallel":3}"#);
        t.pool.set_group_limit("batch", None).unwrap();
        assert_eq!(t.pool.group_limit("batch").unwrap(), None);
        let e = t.pool.set_group_limit("batch", Some(0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = t.pool.set_group_limit("../x", Some(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("bad group name"), "{e}");
    }

    #[test]
    fn group_names_are_plain_file_names() {
        for ok in ["a", "night-batch", "db_1.x", &"x".repeat(MAX_NAME_LEN)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_sort_by_priority_then_id() {
        let mut keys = [
            queue_key(5, 0),
            queue_key(2, 0),
            queue_key(9, 10),
            queue_key(1, -3),
            queue_key(12, 0),
            queue_key(3, i32::MAX),
            queue_key(4, i32::MIN),
        ];
        keys.sort();
        let ids: Vec<u64> = keys.iter().map(|k| key_id(k).unwrap()).collect();
        assert_eq!(ids, [3, 9, 2, 5, 12, 1, 4]);
        assert_eq!(key_id("junk"), None);
        assert_eq!(key_id("12-3"), None);
    }

    #[test]
    fn a_limit_of_two_admits_two_and_then_the_queue_in_order() {
        let t = Tmp::new("fifo");
        let p = &t.pool;
        p.set_group_limit("g", Some(2)).unwrap();
        let _locks: Vec<File> = (1..=5).map(|id| t.live(id)).collect();
        let s1 = try_take_slot(p, "g", 1, 0).unwrap().expect("slot for 1");
        let s2 = try_take_slot(p, "g", 2, 0).unwrap().expect("slot for 2");
        assert_eq!((s1.index(), s2.index()), (0, 1));
        for id in [3, 4, 5] {
            assert!(try_take_slot(p, "g", id, 0).unwrap().is_none(), "task {id}");
        }
        let info = &p.groups().unwrap()[0];
        assert_eq!(
            (info.name.as_str(), info.parallel, info.running),
            ("g", Some(2), 2)
        );
        assert_eq!(info.queued, [3, 4, 5]);
        drop(s1);
        // Not the head: 4 must wait for 3, even though a slot is free.
        assert!(try_take_slot(p, "g", 4, 0).unwrap().is_none());
        let s3 = try_take_slot(p, "g", 3, 0).unwrap().expect("slot for 3");
        assert_eq!(s3.index(), 0, "the lowest free slot is reused");
        assert!(try_take_slot(p, "g", 4, 0).unwrap().is_none(), "full again");
        assert_eq!(p.groups().unwrap()[0].queued, [4, 5]);
    }

    #[test]
    fn a_higher_priority_jumps_the_queue_and_dead_entries_are_dropped() {
        let t = Tmp::new("prio");
        let p = &t.pool;
        p.set_group_limit("g", Some(1)).unwrap();
        let _live: Vec<File> = [1, 2, 4].iter().map(|&id| t.live(id)).collect();
        let s1 = try_take_slot(p, "g", 1, 0).unwrap().unwrap();
        assert!(try_take_slot(p, "g", 2, 0).unwrap().is_none());
        // Task 3's supervisor died while queued (its lock is free).
        enqueue(p, "g", 3, 100).unwrap();
        assert!(try_take_slot(p, "g", 4, 5).unwrap().is_none());
        assert_eq!(p.groups().unwrap()[0].queued, [4, 2]);
        drop(s1);
        assert!(try_take_slot(p, "g", 2, 0).unwrap().is_none());
        assert!(try_take_slot(p, "g", 4, 5).unwrap().is_some());
        assert!(!p
            .path()
            .join("groups/g/queue")
            .join(queue_key(3, 100))
            .exists());
    }

    #[test]
    fn lowering_the_limit_holds_back_new_starts_and_dequeue_leaves() {
        let t = Tmp::new("lower");
        let p = &t.pool;
        let _live: Vec<File> = (1..=4).map(|id| t.live(id)).collect();
        // Unlimited: everyone gets a slot.
        let mut s: Vec<Slot> = (1..=3)
            .map(|id| try_take_slot(p, "g", id, 0).unwrap().unwrap())
            .collect();
        p.set_group_limit("g", Some(2)).unwrap();
        assert!(try_take_slot(p, "g", 4, 0).unwrap().is_none());
        drop(s.remove(0));
        assert!(
            try_take_slot(p, "g", 4, 0).unwrap().is_none(),
            "2 still run"
        );
        dequeue(p, "g", 4, 0).unwrap();
        assert!(p.groups().unwrap()[0].queued.is_empty());
    }

    #[test]
    fn a_dropped_slot_frees_its_place() {
        let t = Tmp::new("drop");
        let p = &t.pool;
        p.set_group_limit("g", Some(1)).unwrap();
        let _live: Vec<File> = (1..=2).map(|id| t.live(id)).collect();
        let s = try_take_slot(p, "g", 1, 0).unwrap().unwrap();
        assert_eq!(p.groups().unwrap()[0].running, 1);
        drop(s);
        assert_eq!(p.groups().unwrap()[0].running, 0);
        assert!(try_take_slot(p, "g", 2, 0).unwrap().is_some());
    }

    /// A stand-in supervisor for task `id`: answers one connection with a hello, reads one
    /// request line and replies `ok`; returns the request line.
    fn fake_supervisor(p: &Pool, id: u64) -> std::thread::JoinHandle<String> {
        let listener = std::os::unix::net::UnixListener::bind(p.socket_path(id)).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut line = Vec::new();
            let hello = Response::Hello {
                protocol: PROTOCOL_VERSION,
                id,
                supervisor_pid: 1,
            };
            encode_line(&hello, &mut line);
            w.write_all(&line).unwrap();
            let mut req = String::new();
            BufReader::new(s).read_line(&mut req).unwrap();
            line.clear();
            encode_line(&Response::Ok, &mut line);
            w.write_all(&line).unwrap();
            req
        })
    }

    #[test]
    fn kick_wakes_the_first_live_entry_that_answers() {
        let t = Tmp::new("kick");
        let p = &t.pool;
        p.set_group_limit("g", Some(1)).unwrap();
        let _live: Vec<File> = (1..=3).map(|id| t.live(id)).collect();
        let s = try_take_slot(p, "g", 1, 0).unwrap().unwrap();
        // 2 holds its lock but does not listen: passed over; 3 answers.
        assert!(try_take_slot(p, "g", 2, 0).unwrap().is_none());
        assert!(try_take_slot(p, "g", 3, 0).unwrap().is_none());
        assert_eq!(kick(p, "g"), None, "no free slot: nobody is woken");
        let answer = fake_supervisor(p, 3);
        drop(s);
        assert_eq!(kick(p, "g"), Some(3));
        let req: serde_json::Value = serde_json::from_str(&answer.join().unwrap()).unwrap();
        assert_eq!(req, serde_json::json!({"type": "wake"}));
        assert_eq!(kick(p, "nonexistent"), None);
    }
}
