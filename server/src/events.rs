//! Pool changes from inotify: a watch on the tasks directory (tasks appearing and going) and on
//! each task's directory (its record renamed into place whenever its state or meta changes).

use crate::Change;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::HashMap;
use std::sync::Arc;
use taskpool::Pool;
use tokio::sync::broadcast::Sender;

/// Start a thread that turns inotify events of `pool` into [`Change`]s on `tx`.
pub fn watch(pool: Pool, tx: Sender<Change>) -> anyhow::Result<()> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("inotify on the pool: {e}"))?;
    let tasks = pool.tasks_dir();
    let top = ino
        .add_watch(
            &tasks,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_ONLYDIR,
        )
        .map_err(|e| anyhow::anyhow!("watching {}: {e}", tasks.display()))?;
    let task_flags =
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_ONLYDIR;
    let mut dirs: HashMap<WatchDescriptor, u64> = HashMap::new();
    for id in pool.ids().unwrap_or_default() {
        if let Ok(wd) = ino.add_watch(&pool.task_dir(id), task_flags) {
            dirs.insert(wd, id);
        }
    }
    std::thread::Builder::new()
        .name("pool-watch".into())
        .spawn(move || {
            let send_info = |id: u64| {
                if let Ok(info) = pool.task(id).and_then(|t| t.info()) {
                    let _ = tx.send(Change::Task(Arc::new(info.to_json())));
                }
            };
            while let Ok(events) = ino.read_events() {
                for ev in events {
                    let name = ev.name.as_ref().and_then(|n| n.to_str()).unwrap_or("");
                    if ev.wd == top {
                        let Ok(id) = name.parse::<u64>() else {
                            continue;
                        };
                        if ev.mask.contains(AddWatchFlags::IN_DELETE) {
                            let _ = tx.send(Change::Removed(id));
                        } else if let Ok(wd) = ino.add_watch(&pool.task_dir(id), task_flags) {
                            dirs.insert(wd, id);
                            send_info(id);
                        }
                    } else if let Some(&id) = dirs.get(&ev.wd) {
                        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            dirs.remove(&ev.wd);
                        } else if name == "record.json" {
                            send_info(id);
                        }
                    }
                }
            }
        })?;
    Ok(())
}
