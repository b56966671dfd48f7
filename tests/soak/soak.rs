//! Load and soak driver (run by `tests/soak/run`; see docs/reliability.md). One process drives a
//! pool through the library, so its own descriptors and memory show any client-side leak:
//!
//! - `live POOL TASKS SPAWNERS SEARCHERS SECS`: TASKS live tasks, then SPAWNERS threads spawning
//!   short tasks and SEARCHERS threads searching, for SECS seconds. Every search must see every
//!   live task; every short task must end `success`; every live task must still be running; then
//!   all are ended and no supervisor of the pool may remain.
//! - `churn POOL TASKS PARALLEL`: spawn and wait TASKS short tasks, PARALLEL at a time; compare
//!   our descriptors, memory and zombie children before and after; no socket may be
//!   left, every record must say `exited`/`success`.
//! - `requests POOL COUNT`: one supervisor answers COUNT `info` requests (pipelined, on a new
//!   connection every 10,000); its resident memory must stay flat.
//!
//! Each mode prints one `soak: ...` line of figures and exits non-zero on the first violation.

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use taskpool::{Pool, SpawnOptions, State, Status};

fn fail(msg: String) -> ! {
    eprintln!("soak: FAILED: {msg}");
    std::process::exit(1);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail(format!("argument {i} ({name}) missing or invalid")))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Zombies whose parent is `ppid` (0: any parent).
fn zombies(ppid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            // pid (comm) state ppid ...
            let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let zombie = rest.next() == Some("Z");
            let parent: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            if zombie && (ppid == 0 || parent == ppid) {
                n += 1;
            }
        }
    }
    n
}

/// Supervisors whose command line names this pool.
fn supervisors_of(pool: &Pool) -> Vec<u32> {
    let needle = pool.path().to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("taskpool-supervisor") && c.contains(&needle) {
                out.push(pid);
            }
        }
    }
    out
}

fn sockets_left(pool: &Pool, ids: impl Iterator<Item = u64>) -> usize {
    ids.filter(|&id| pool.socket_path(id).exists()).count()
}

fn end_all(pool: &Pool, ids: &[u64], threads: usize) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&id) = ids.get(i) else { break };
                if let Ok(t) = pool.task(id) {
                    if let Err(e) = t.terminate_supervisor(Some(Duration::from_millis(200))) {
                        fail(format!("terminating task {id}: {e}"));
                    }
                }
            });
        }
    });
}

fn live(pool: &Pool, tasks: usize, spawners: usize, searchers: usize, secs: u64) {
    let t0 = Instant::now();
    let live_ids: Vec<u64> = {
        let next = AtomicU64::new(0);
        let ids = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    while (next.fetch_add(1, Ordering::Relaxed) as usize) < tasks {
                        let opts =
                            SpawnOptions::exec(["sleep", "3600"]).meta_value("soak", json!("live"));
                        match pool.spawn(&opts) {
                            Ok(t) => ids.lock().unwrap().push(t.id()),
                            Err(e) => fail(format!("spawning a live task: {e}")),
                        }
                    }
                });
            }
        });
        ids.into_inner().unwrap()
    };
    let started = t0.elapsed();
    let stop = AtomicBool::new(false);
    let searches = AtomicU64::new(0);
    let short_ids = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..spawners {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let opts = SpawnOptions::exec(["true"]).meta_value("soak", json!("short"));
                    match pool.spawn(&opts) {
                        Ok(t) => short_ids.lock().unwrap().push(t.id()),
                        Err(e) => fail(format!("spawning a short task: {e}")),
                    }
                }
            });
        }
        for k in 0..searchers {
            let (stop, searches) = (&stop, &searches);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let found = if k % 2 == 0 {
                        pool.search(&json!({"meta": {"soak": "live"}, "state": "running"}))
                    } else {
                        pool.search_with(|i| i.is_live())
                    };
                    match found {
                        Ok(v) if v.len() >= tasks => {}
                        Ok(v) => fail(format!("a search saw {} live tasks of {tasks}", v.len())),
                        Err(e) => fail(format!("search: {e}")),
                    }
                    searches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(secs)); // the bounded run time itself
        stop.store(true, Ordering::Relaxed);
    });
    let short_ids = short_ids.into_inner().unwrap();
    for &id in &short_ids {
        let info = pool
            .task(id)
            .and_then(|t| t.wait())
            .unwrap_or_else(|e| fail(format!("short task {id}: {e}")));
        if info.status != Some(Status::Success) {
            fail(format!("short task {id} ended {:?}", info.status));
        }
    }
    for &id in &live_ids {
        let info = pool.task(id).and_then(|t| t.info());
        match info {
            Ok(i) if i.state == State::Running => {}
            other => fail(format!("live task {id}: {other:?}")),
        }
    }
    let all = pool.list().unwrap_or_else(|e| fail(format!("list: {e}")));
    if all.len() != live_ids.len() + short_ids.len() {
        fail(format!(
            "{} records for {} tasks",
            all.len(),
            live_ids.len() + short_ids.len()
        ));
    }
    end_all(pool, &live_ids, 16);
    let left = supervisors_of(pool);
    let socks = sockets_left(pool, all.iter().map(|i| i.id));
    if !left.is_empty() || socks > 0 {
        fail(format!(
            "{} supervisors and {socks} sockets left",
            left.len()
        ));
    }
    println!(
        "soak: live: {tasks} live tasks started in {:.1}s; {secs}s with {spawners} spawners and \
         {searchers} searchers: {} short tasks spawned (all success), {} searches (each saw all \
         {tasks}), 0 errors; all ended, no supervisor or socket left",
        started.as_secs_f64(),
        short_ids.len(),
        searches.load(Ordering::Relaxed)
    );
}

fn churn(pool: &Pool, tasks: usize, parallel: usize) {
    let run = |n: usize| -> Vec<u64> {
        let next = AtomicU64::new(0);
        let ids = Mutex::new(Vec::with_capacity(n));
        std::thread::scope(|s| {
            for _ in 0..parallel {
                s.spawn(|| {
                    while (next.fetch_add(1, Ordering::Relaxed) as usize) < n {
                        let t = pool
                            .spawn(&SpawnOptions::exec(["true"]))
                            .unwrap_or_else(|e| fail(format!("spawn: {e}")));
                        let info = t.wait().unwrap_or_else(|e| fail(format!("wait: {e}")));
                        if info.status != Some(Status::Success) {
                            fail(format!("task {} ended {:?}", t.id(), info.status));
                        }
                        ids.lock().unwrap().push(t.id());
                    }
                });
            }
        });
        ids.into_inner().unwrap()
    };
    // Warm up (thread stacks, allocator arenas), then measure.
    let warm = run(parallel * 10);
    let me = std::process::id();
    let (fds0, rss0, z0, sz0) = (
        open_fds(),
        status_kib("self", "VmRSS:"),
        zombies(me),
        zombies(0),
    );
    let t0 = Instant::now();
    let ids = run(tasks);
    let took = t0.elapsed();
    let (fds1, rss1, z1, sz1) = (
        open_fds(),
        status_kib("self", "VmRSS:"),
        zombies(me),
        zombies(0),
    );
    let all = pool.list().unwrap_or_else(|e| fail(format!("list: {e}")));
    let bad = all
        .iter()
        .filter(|i| i.state != State::Exited || i.status != Some(Status::Success))
        .count();
    let socks = sockets_left(pool, all.iter().map(|i| i.id));
    let sups = supervisors_of(pool).len();
    println!(
        "soak: churn: {} tasks spawned and reaped in {:.1}s ({:.0}/s, {parallel} at a time); \
         our fds {fds0} -> {fds1}, our RSS {rss0} -> {rss1} KiB, our zombie children {z0} -> {z1} \
         (system-wide, reaped by init in its own time: {sz0} -> {sz1}); \
         {} records, {bad} not exited/success, {socks} sockets and {sups} supervisors left",
        ids.len(),
        took.as_secs_f64(),
        ids.len() as f64 / took.as_secs_f64(),
        all.len()
    );
    if all.len() != ids.len() + warm.len() || bad > 0 || socks > 0 || sups > 0 {
        fail("inconsistent pool after churn".into());
    }
    if fds1 > fds0 || z1 > z0 || rss1 > rss0 + 4096 {
        fail("descriptor, zombie or memory growth".into());
    }
}

fn requests(pool: &Pool, count: u64) {
    let task = pool
        .spawn(&SpawnOptions::exec(["sleep", "3600"]))
        .unwrap_or_else(|e| fail(format!("spawn: {e}")));
    let spid = task
        .info()
        .ok()
        .and_then(|i| i.supervisor_pid)
        .unwrap_or_else(|| fail("no supervisor pid".into()))
        .to_string();
    let sock = pool.socket_path(task.id());
    const BATCH: u64 = 100;
    const PER_CONN: u64 = 10_000;
    let t0 = Instant::now();
    let mut done = 0u64;
    let mut rss_warm = 0;
    let mut line = String::new();
    while done < count {
        let s = UnixStream::connect(&sock).unwrap_or_else(|e| fail(format!("connect: {e}")));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        line.clear();
        r.read_line(&mut line).unwrap();
        let mut on_conn = 0;
        while on_conn < PER_CONN && done < count {
            let n = BATCH.min(count - done);
            let batch = "{\"type\":\"info\"}\n".repeat(n as usize);
            w.write_all(batch.as_bytes())
                .unwrap_or_else(|e| fail(format!("write: {e}")));
            for _ in 0..n {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 || !line.contains("\"type\":\"info\"") {
                    fail(format!("request {done}: bad reply {line:?}"));
                }
                done += 1;
            }
            on_conn += n;
        }
        if rss_warm == 0 && done >= count / 10 {
            rss_warm = status_kib(&spid, "VmRSS:");
        }
    }
    let took = t0.elapsed();
    let (rss_end, hwm) = (status_kib(&spid, "VmRSS:"), status_kib(&spid, "VmHWM:"));
    let _ = task.terminate_supervisor(Some(Duration::from_millis(200)));
    println!(
        "soak: requests: {done} info requests in {:.1}s ({:.0}/s) on {} connections; supervisor \
         RSS {rss_warm} KiB after 10% -> {rss_end} KiB at the end (peak {hwm} KiB)",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64(),
        count.div_ceil(PER_CONN)
    );
    if rss_end > rss_warm + 512 {
        fail("supervisor memory grew with requests".into());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let dir: String = arg(&args, 1, "POOL");
    let pool = Pool::open_or_create(&dir, Default::default())
        .unwrap_or_else(|e| fail(format!("pool {dir}: {e}")));
    match mode {
        "live" => live(
            &pool,
            arg(&args, 2, "TASKS"),
            arg(&args, 3, "SPAWNERS"),
            arg(&args, 4, "SEARCHERS"),
            arg(&args, 5, "SECS"),
        ),
        "churn" => churn(&pool, arg(&args, 2, "TASKS"), arg(&args, 3, "PARALLEL")),
        "requests" => requests(&pool, arg(&args, 2, "COUNT")),
        _ => fail(format!("unknown mode {mode:?} (live, churn, requests)")),
    }
}
