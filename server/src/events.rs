//! Pool changes: inotify on the tasks directory (tasks appearing and going) and on each task's
//! directory (its record renamed into place whenever its state or meta changes), turned into
//! [`Change`]s by one thread blocked in `read(2)` (no polling, no wake-up while the pool is
//! still), and `GET /api/events`, which streams them as Server-Sent Events.

use crate::api::{receiver_stream, stream_permit, S};
use crate::error::ApiResult;
use crate::Change;
use axum::extract::State as St;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream as FStream;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use taskpool::Pool;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Sender;

/// Start a thread that turns inotify events of `pool` into [`Change`]s on `tx`.
pub fn watch(pool: Pool, tx: Sender<Change>) -> anyhow::Result<()> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("inotify on the pool: {e}"))?;
    let tasks = pool.tasks_dir();
    // A task directory appears by mkdir or rename, and goes by a rename out of the way (then
    // deleted under another name) or by rmdir.
    let top = ino
        .add_watch(
            &tasks,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
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
                    if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        let _ = tx.send(Change::Resync);
                    } else if ev.wd == top {
                        let Ok(id) = name.parse::<u64>() else {
                            continue;
                        };
                        if ev
                            .mask
                            .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
                        {
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

/// `GET /api/events`: SSE of pool changes (`event: task`, `event: removed`, `event: resync`).
pub async fn events(St(s): S) -> ApiResult<Sse<impl FStream<Item = Result<SseEvent, Infallible>>>> {
    let permit = stream_permit(&s)?;
    let mut sub = s.changes.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            // A client that went away ends this at once, not at the next change.
            let got = tokio::select! {
                r = sub.recv() => r,
                _ = tx.closed() => return,
            };
            let ev = match got {
                Ok(Change::Task(info)) => SseEvent::default().event("task").data(info.to_string()),
                Ok(Change::Removed(id)) => SseEvent::default()
                    .event("removed")
                    .data(serde_json::json!({"id": id}).to_string()),
                Ok(Change::Resync) | Err(RecvError::Lagged(_)) => {
                    SseEvent::default().event("resync").data("{}")
                }
                Err(RecvError::Closed) => return,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default()))
}
