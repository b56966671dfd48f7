//! Bulk submission: [`Pool::spawn_many`] starts many tasks at once (`taskpool spawn --many`, the
//! drop directory's bursts). Every option set is validated before anything is spawned; the ids
//! come as one range from one lock of the counter; the supervisors are started by a few threads
//! at once, so that their start-ups (exec, record, directory sync) overlap across the cores
//! instead of queueing behind each other. Each task is still exactly what [`Pool::spawn`] makes.

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::record::Spec;
use crate::spawn::SpawnOptions;
use crate::task::Task;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Supervisor start-ups in flight at once, per core: each spends most of its time waiting for
/// the new process and the disk, not on the CPU.
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
        if all.is_empty() {
            return Ok(Spawned {
                tasks: Vec::new(),
                failed: None,
            });
        }
        let ids = self.allocate_ids(all.len()).map_err(|e| (0, e))?;
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
        let mut results = results.into_inner().expect("no worker panics");
        results.sort_by_key(|(i, _)| *i);
        let done: Vec<usize> = results.iter().map(|(i, _)| *i).collect();
        // The ids of inputs never begun are given back.
        let unused: Vec<u64> = (0..all.len())
            .filter(|i| done.binary_search(i).is_err())
            .map(|i| ids[i])
            .collect();
        self.unallocate(&unused);
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
