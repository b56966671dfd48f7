//! Bulk submission: [`Pool::spawn_many`] starts many tasks at once (`taskpool spawn --many`, the
//! drop directory's bursts). Every option set is validated before anything is spawned; the ids
//! come as one range from one lock of the counter. The supervisors are started by one batch
//! launcher (`taskpool-supervisor --batch`, one `exec` for the whole batch): it reads one launch
//! line per task and forks, without `exec`, the task's supervisor, a few at once so that their
//! start-ups overlap across the cores; each forked one detaches and carries on exactly as the
//! supervisor of a single [`Pool::spawn`] does, and its reply comes back through the launcher.
//! A batch with a foreground task (whose supervisor must stay the caller's child) starts one
//! supervisor program per task instead, from a few threads at once.

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::protocol::{encode_line, BatchReply, Launch};
use crate::record::{Behavior, Spec};
use crate::spawn::SpawnOptions;
use crate::task::Task;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Supervisor start-ups in flight at once, per core, without a batch launcher: each spends most
/// of its time waiting for the new process and the disk, not on the CPU.
const PER_CORE: usize = 4;

/// What [`Pool::spawn_many`] made: the tasks, in the order given, and the first failure.
#[derive(Debug)]
pub struct Spawned {
    /// The tasks that were started or durably deferred, by their index in the input.
    pub tasks: Vec<(usize, Task)>,
    /// The first input (by index) whose spawn failed after validation, and why. The inputs
    /// after it that had not started yet were not spawned.
    pub failed: Option<(usize, Error)>,
}

impl Pool {
    /// Start every task of `all`, like [`Pool::spawn`] each. Validation comes first: if any
    /// option set is invalid, nothing is spawned and the error (with its index) is returned.
    /// After that, a spawn that fails (a resource ran out) stops the ones not yet begun; what
    /// was made is returned with the failure.
    pub fn spawn_many(&self, all: &[SpawnOptions]) -> std::result::Result<Spawned, (usize, Error)> {
        let mut specs = Vec::with_capacity(all.len());
        for (i, o) in all.iter().enumerate() {
            let spec = o
                .to_spec()
                .and_then(|s| self.check_predecessors(&s).map(|()| s))
                .map_err(|e| (i, e))?;
            specs.push(spec);
        }
        if specs.iter().any(|s| s.engine.is_scheduler()) {
            // Submissions go one at a time, in order (a scheduler's chain names earlier jobs).
            let mut tasks = Vec::with_capacity(all.len());
            for (i, spec) in specs.into_iter().enumerate() {
                let r = if spec.engine.is_scheduler() {
                    self.submit(spec, &all[i].meta)
                } else {
                    self.spawn(&all[i])
                };
                match r {
                    Ok(t) => tasks.push((i, t)),
                    Err(e) => {
                        return Ok(Spawned {
                            tasks,
                            failed: Some((i, e)),
                        })
                    }
                }
            }
            return Ok(Spawned {
                tasks,
                failed: None,
            });
        }
        if all.is_empty() {
            return Ok(Spawned {
                tasks: Vec::new(),
                failed: None,
            });
        }
        let ids = self.allocate_ids(all.len()).map_err(|e| (0, e))?;
        let mut results = if specs.iter().all(|s| s.behavior != Behavior::Foreground) {
            self.launch_batch(&ids, &specs, all)
        } else {
            self.launch_threads(&ids, &specs, all)
        };
        results.sort_by_key(|(i, _)| *i);
        let done: Vec<usize> = results.iter().map(|(i, _)| *i).collect();
        // The ids of inputs never begun are given back: their directories, still empty, go.
        // (One that is not empty has a supervisor that a failed launcher forked: it stays.)
        for i in (0..all.len()).filter(|i| done.binary_search(i).is_err()) {
            let _ = std::fs::remove_dir(self.task_dir(ids[i]));
        }
        let mut out = Spawned {
            tasks: Vec::with_capacity(results.len()),
            failed: None,
        };
        for (i, r) in results {
            match r {
                Ok(t) => out.tasks.push((i, t)),
                Err(e) => {
                    if out.failed.is_none() {
                        out.failed = Some((i, e));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Start the validated tasks through one batch launcher (see the module's docs): the
    /// outcome of each one begun, by index. The ones not begun (after a failure) have no entry.
    fn launch_batch(
        &self,
        ids: &[u64],
        specs: &[Spec],
        all: &[SpawnOptions],
    ) -> Vec<(usize, Result<Task>)> {
        // A launcher that cannot start fails the first line (whose directory goes).
        let first_fails = |e: Error| {
            let _ = std::fs::remove_dir(self.task_dir(ids[0]));
            vec![(0, Err(e))]
        };
        let argv = match self.supervisor_cmd() {
            Ok(a) => a,
            Err(e) => return first_fails(e),
        };
        let started = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .arg("--pool")
            .arg(self.path())
            .arg("--batch")
            .envs(self.supervisor_env().iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut launcher = match started {
            Ok(c) => c,
            Err(e) => return first_fails(crate::spawn::cannot_start(&argv[0], e)),
        };
        let to = launcher.stdin.take().expect("stdin was piped");
        let from = launcher.stdout.take().expect("stdout was piped");
        let program = format!("{} ", argv[0].to_string_lossy());
        let mut results = Vec::with_capacity(ids.len());
        std::thread::scope(|s| {
            // The lines go in while the replies come out: neither pipe may fill up and block.
            s.spawn(move || {
                let mut to = BufWriter::with_capacity(64 << 10, to);
                let mut line = Vec::new();
                for (i, spec) in specs.iter().enumerate() {
                    let launch = Launch {
                        id: ids[i],
                        spec: Some(spec.clone()),
                        meta: all[i].meta.clone(),
                        restart: false,
                        restore: false,
                        pool: None,
                        skip: None,
                    };
                    line.clear();
                    encode_line(&launch, &mut line);
                    // A launcher that stopped (a start failed) reads no more: EPIPE.
                    if to.write_all(&line).is_err() {
                        return;
                    }
                }
                let _ = to.flush();
            });
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                let Ok(r) = serde_json::from_str::<BatchReply>(&line) else {
                    continue;
                };
                let Some(&id) = ids.get(r.n) else { continue };
                let outcome = match r.reply {
                    Some(reply) => crate::spawn::launched(reply, None)
                        .map(|_| Task::with_child(self.clone(), id, None)),
                    None => Err(crate::spawn::silent(
                        id,
                        &program,
                        r.ended.as_deref().unwrap_or("exited"),
                    )),
                };
                if outcome.is_err() {
                    let _ = std::fs::remove_dir_all(self.task_dir(id));
                }
                results.push((r.n, outcome));
            }
        });
        let status = launcher.wait();
        if results.len() < ids.len() && !status.as_ref().is_ok_and(|s| s.success()) {
            // The launcher itself failed: the first line it did not answer is the failure. A
            // supervisor it had forked may run all the same: what it made is not removed here
            // (only the empty directories of ids never begun are).
            let answered: std::collections::HashSet<usize> =
                results.iter().map(|(i, _)| *i).collect();
            if let Some(i) = (0..ids.len()).find(|i| !answered.contains(i)) {
                let status = status.map(|s| s.to_string()).unwrap_or_default();
                let _ = std::fs::remove_dir(self.task_dir(ids[i]));
                results.push((
                    i,
                    Err(Error::new(
                        crate::error::ErrorKind::Supervisor,
                        format!(
                            "task {}: the batch launcher {program}ended without reporting ({status})",
                            ids[i]
                        ),
                    )),
                ));
            }
        }
        results
    }

    /// Start the validated tasks one supervisor program each, a few threads at once: the outcome
    /// of each one begun, by index.
    fn launch_threads(
        &self,
        ids: &[u64],
        specs: &[Spec],
        all: &[SpawnOptions],
    ) -> Vec<(usize, Result<Task>)> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = (cores * PER_CORE).min(all.len());
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let results: Mutex<Vec<(usize, Result<Task>)>> = Mutex::new(Vec::with_capacity(all.len()));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= all.len() {
                        return;
                    }
                    let r = self.launch_one(ids[i], &specs[i], &all[i]);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("no worker panics").push((i, r));
                });
            }
        });
        results.into_inner().expect("no worker panics")
    }

    /// Spawn one validated task under the allocated `id`; on failure its directory goes.
    fn launch_one(&self, id: u64, spec: &Spec, opts: &SpawnOptions) -> Result<Task> {
        let starting = match self.start_supervisor(spec.behavior) {
            Ok(s) => s,
            Err(e) => {
                self.unallocate(&[id]);
                return Err(e);
            }
        };
        self.launch_new(starting, id, spec.clone(), &opts.meta)
    }
}
