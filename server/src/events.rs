//! Pool changes: inotify on the tasks directory (tasks appearing and going) and on each task's
//! directory (its record renamed into place whenever its state or meta changes), turned into
//! [`Change`]s by one thread blocked in `read(2)` (no polling, no wake-up while the pool is
//! still), and `GET /api/events`, which streams them as Server-Sent Events.
//!
//! Tasks of a scheduler (Slurm) may run on another node, whose writes wake no inotify here, and
//! a pending job changes in the scheduler's view only: while at least one client is subscribed,
//! [`SchedulerWatch`] also looks at the live scheduler tasks every [`SCHEDULER_EVERY`] (their
//! records, and one `squeue` for all of them), and sends what changed. With no client it does
//! not run.

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

/// How often the live scheduler tasks are looked at while `/api/events` has a client.
pub const SCHEDULER_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The clients of `/api/events`, and the look at scheduler tasks that runs while there are any.
#[derive(Debug)]
pub struct SchedulerWatch {
    clients: tokio::sync::watch::Sender<usize>,
}

impl Default for SchedulerWatch {
    fn default() -> Self {
        SchedulerWatch {
            clients: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// One client of `/api/events`, counted while it lasts.
struct Subscribed(Arc<crate::State>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.scheduler.clients.send_modify(|n| *n -= 1);
    }
}

impl SchedulerWatch {
    /// Count a client; the first starts the look at scheduler tasks.
    fn subscribe(state: &Arc<crate::State>) -> Subscribed {
        let mut first = false;
        state.scheduler.clients.send_modify(|n| {
            *n += 1;
            first = *n == 1;
        });
        if first {
            tokio::spawn(watch_scheduler(state.clone()));
        }
        Subscribed(state.clone())
    }
}

/// Whether a task's info (as JSON) is that of a live scheduler task.
fn live_scheduler_task(info: &serde_json::Value) -> bool {
    info["engine"].as_str().is_some_and(|e| e != "local")
        && serde_json::from_value::<taskpool::State>(info["state"].clone())
            .is_ok_and(|s| s.is_live())
}

/// While `/api/events` has clients: every [`SCHEDULER_EVERY`], the info of each live scheduler
/// task (one `squeue` for all), sent as a change when it differs from the last seen. Learns of
/// new ones from the changes themselves; waits on those alone while there is none.
async fn watch_scheduler(state: Arc<crate::State>) {
    let mut clients = state.scheduler.clients.subscribe();
    let mut changes = state.changes.subscribe();
    let pool = state.pool.clone();
    let mut seen: HashMap<u64, serde_json::Value> = tokio::task::spawn_blocking(move || {
        pool.list()
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.id, i.to_json()))
            .filter(|(_, j)| live_scheduler_task(j))
            .collect()
    })
    .await
    .unwrap_or_default();
    loop {
        let idle = seen.is_empty();
        let tick = async move {
            if idle {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(SCHEDULER_EVERY).await
            }
        };
        tokio::select! {
            _ = clients.wait_for(|n| *n == 0) => return,
            c = changes.recv() => {
                match c {
                    Ok(Change::Task(info)) if live_scheduler_task(&info) => {
                        if let Some(id) = info["id"].as_u64() {
                            seen.insert(id, (*info).clone());
                        }
                    }
                    Ok(Change::Task(info)) => {
                        if let Some(id) = info["id"].as_u64() {
                            seen.remove(&id);
                        }
                    }
                    Ok(Change::Removed(id)) => {
                        seen.remove(&id);
                    }
                    Ok(Change::Resync) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
                continue;
            }
            _ = tick => {}
        }
        let ids: Vec<u64> = seen.keys().copied().collect();
        let pool = state.pool.clone();
        let Ok(Ok(infos)) = tokio::task::spawn_blocking(move || pool.infos(&ids)).await else {
            continue;
        };
        let listed: std::collections::HashSet<u64> = infos.iter().map(|i| i.id).collect();
        seen.retain(|id, _| listed.contains(id));
        for info in infos {
            let json = info.to_json();
            if seen.get(&info.id) != Some(&json) {
                if live_scheduler_task(&json) {
                    seen.insert(info.id, json.clone());
                } else {
                    seen.remove(&info.id);
                }
                let _ = state.changes.send(Change::Task(Arc::new(json)));
            }
        }
    }
}

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
    let counted = SchedulerWatch::subscribe(&s);
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let _permit = permit;
        let _counted = counted;
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
