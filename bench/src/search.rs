//! Search, idle cost and many tasks: `taskpool ls --json` over growing numbers of live tasks and
//! over many finished records (against `tsp -l` and `pueue status --json` over 1000 jobs); the
//! private memory and wake-ups of idle supervisors (against s6-supervise, the tsp server, pueued
//! and supervisord); spawn and search with 2000 live tasks.

use crate::peers::{Pueue, Supervisord, Tsp, S6};
use crate::probe::{uss_kib, voluntary_switches};
use crate::stats::ms;
use crate::{kill_all, Ctx};
use std::process::Command;
use std::time::{Duration, Instant};
use taskpool::{Pool, SpawnOptions};

/// Start idle tasks (`sleep`) until `pool` holds `n` live ones.
fn grow(pool: &Pool, live: &mut Vec<i32>, n: usize) {
    while live.len() < n {
        let t = pool
            .spawn(&SpawnOptions::exec(["sleep", "1000000"]))
            .expect("spawn idle task");
        live.push(
            t.info()
                .expect("info")
                .supervisor_pid
                .expect("supervisor pid"),
        );
    }
}

/// Time `reps` runs of a command (output discarded), in milliseconds.
pub fn time_cmd(reps: usize, mut cmd: impl FnMut() -> Command) -> Vec<f64> {
    (0..reps + 1)
        .map(|_| {
            let t0 = Instant::now();
            let ok = cmd().status().map(|s| s.success()).unwrap_or(false);
            assert!(ok, "command failed");
            ms(t0.elapsed())
        })
        .skip(1)
        .collect()
}

fn median_uss(pids: &[i32]) -> (Vec<f64>, Vec<f64>) {
    pids.iter()
        .filter_map(|p| uss_kib(*p))
        .map(|(u, d)| (u as f64, d as f64))
        .unzip()
}

/// Every search, idle and many-task measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("search:");
    let reps = cx.n(20, 3);
    let pool = cx.pool("live");
    let mut live = Vec::new();
    let sizes = if cx.quick {
        vec![5, 20]
    } else {
        vec![10, 100, 1000]
    };
    let mut per_task = Vec::new();
    for &n in &sizes {
        grow(&pool, &mut live, n);
        let v = time_cmd(reps, || cx.cli(&pool, &["ls", "--json"]));
        let i = cx.report.add(
            "search",
            format!("taskpool ls --json, {n} live tasks"),
            "ms",
            v,
            if n >= 1000 { "target: <= 20" } else { "" },
        );
        per_task.push(cx.report.median(i) * 1000.0 / n as f64);
    }
    cx.report.add(
        "search",
        "ls --json cost per live task at each size",
        "us",
        per_task,
        "linear: flat",
    );

    // Idle cost, at the largest size.
    let n = *sizes.last().unwrap();
    let (uss, dirty) = median_uss(&live);
    cx.report.add(
        "idle",
        format!("supervisor USS, {n} idle tasks"),
        "KiB",
        uss,
        "target: <= 192, RUST_BACKTRACE unset",
    );
    cx.report.add(
        "idle",
        format!("supervisor Private_Dirty, {n} idle tasks"),
        "KiB",
        dirty,
        "",
    );
    // Deferred tasks: half scheduled an hour ahead (a timerfd), half waiting for a live task
    // (a pidfd on its supervisor).
    let m = cx.n(200, 10);
    let first = pool.list().expect("list")[0].id;
    let deferred: Vec<i32> = (0..m)
        .map(|i| {
            let opts = SpawnOptions::exec(["true"]);
            let opts = if i % 2 == 0 {
                opts.delay(Duration::from_secs(3600))
            } else {
                opts.after([first])
            };
            let t = pool.spawn(&opts).expect("spawn deferred task");
            t.info()
                .expect("info")
                .supervisor_pid
                .expect("supervisor pid")
        })
        .collect();
    let (duss, _) = median_uss(&deferred);
    cx.report.add(
        "idle",
        format!("supervisor USS, {m} deferred tasks (scheduled, waiting)"),
        "KiB",
        duss,
        "",
    );
    let quiet = Duration::from_secs(cx.n(10, 2) as u64);
    let watched: Vec<i32> = live.iter().chain(&deferred).copied().collect();
    let before: Vec<u64> = watched
        .iter()
        .map(|p| voluntary_switches(*p).unwrap_or(0))
        .collect();
    std::thread::sleep(quiet); // The measurement is of idleness itself.
    let woke: Vec<u64> = watched
        .iter()
        .zip(&before)
        .map(|(p, b)| voluntary_switches(*p).unwrap_or(0).saturating_sub(*b))
        .collect();
    cx.report.add(
        "idle",
        format!(
            "voluntary switches of {n} supervisors over {}s",
            quiet.as_secs()
        ),
        "count",
        vec![woke[..live.len()].iter().sum::<u64>() as f64],
        "target: 0",
    );
    cx.report.add(
        "idle",
        format!(
            "voluntary switches of {m} deferred supervisors over {}s",
            quiet.as_secs()
        ),
        "count",
        vec![woke[live.len()..].iter().sum::<u64>() as f64],
        "target: 0",
    );

    // Peers' memory and listings.
    let k = cx.n(20, 3);
    match S6::start(&cx.root.join("s6"), k) {
        Some(s6) => {
            // s6-supervise has started its service once it has a supervise/status file.
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5)
                && (0..k).any(|i| !cx.root.join(format!("s6/svc{i}/supervise/status")).exists())
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            let (u, d) = median_uss(&s6.pids());
            cx.report.add(
                "idle",
                format!("peer: s6-supervise USS, {k} services"),
                "KiB",
                u,
                "",
            );
            cx.report.add(
                "idle",
                format!("peer: s6-supervise Private_Dirty, {k} services"),
                "KiB",
                d,
                "",
            );
        }
        None => cx
            .report
            .skip("idle", "peer: s6-supervise", "s6 not installed"),
    }
    match Supervisord::start(&cx.root.join("supervisord"), k) {
        Some(s) => {
            std::thread::sleep(Duration::from_secs(2)); // Let it start its programs (it logs, no signal).
            let u = uss_kib(s.pid()).map(|(u, _)| u as f64);
            cx.report.add(
                "idle",
                format!("peer: supervisord USS, {k} programs"),
                "KiB",
                u.into_iter().collect(),
                "",
            );
        }
        None => cx
            .report
            .skip("idle", "peer: supervisord", "supervisord not installed"),
    }
    let jobs = cx.n(1000, 20);
    let tdir = cx.root.join("tsp");
    let _ = std::fs::create_dir_all(&tdir);
    match Tsp::new(&tdir) {
        Some(t) => {
            for _ in 0..jobs {
                t.cmd(&["true"]).status().expect("tsp");
            }
            let _ = t.cmd(&["-w"]).status();
            let v = time_cmd(reps, || t.cmd(&["-l"]));
            cx.report
                .add("search", format!("peer: tsp -l, {jobs} jobs"), "ms", v, "");
            let u = t.server_pid().and_then(uss_kib).map(|(u, _)| u as f64);
            cx.report.add(
                "idle",
                format!("peer: tsp server USS, {jobs} jobs"),
                "KiB",
                u.into_iter().collect(),
                "",
            );
        }
        None => cx
            .report
            .skip("search", "peer: tsp -l", "tsp not installed"),
    }
    match Pueue::start(&cx.root.join("pueue-search")) {
        Some(p) => {
            let u = uss_kib(p.pid()).map(|(u, _)| u as f64);
            cx.report.add(
                "idle",
                "peer: pueued USS, idle",
                "KiB",
                u.into_iter().collect(),
                "",
            );
            // Stashed: listed like any task, but not run one by one while we measure.
            for _ in 0..jobs {
                p.cmd(&["add", "--stashed", "--", "true"])
                    .status()
                    .expect("pueue add");
            }
            let v = time_cmd(reps, || p.cmd(&["status", "--json"]));
            let i = cx.report.add(
                "search",
                format!("peer: pueue status --json, {jobs} tasks"),
                "ms",
                v,
                "",
            );
            let ours = cx
                .report
                .rows
                .iter()
                .rposition(|r| r.name.starts_with("taskpool ls --json"))
                .unwrap();
            let r = cx.report.median(i) / cx.report.median(ours);
            cx.report.add(
                "search",
                "ratio pueue status / taskpool ls (largest size)",
                "x",
                vec![r],
                "target: >= 5",
            );
            let u = uss_kib(p.pid()).map(|(u, _)| u as f64);
            cx.report.add(
                "idle",
                format!("peer: pueued USS, {jobs} tasks"),
                "KiB",
                u.into_iter().collect(),
                "",
            );
        }
        None => cx.report.skip(
            "search",
            "peer: pueue status --json",
            "pueue/pueued not installed",
        ),
    }

    // Many tasks: grow to 2000 live and measure spawning and searching at that size.
    let many = cx.n(2000, 40);
    grow(&pool, &mut live, many);
    let m = cx.n(50, 5);
    let (v, _) = crate::spawn::library(cx, &pool, m);
    cx.report.add(
        "many",
        format!("Pool::spawn until running, {many} live"),
        "ms",
        v,
        "",
    );
    let v = crate::spawn::cli(cx, &pool, m);
    cx.report.add(
        "many",
        format!("taskpool spawn until running, {many} live"),
        "ms",
        v,
        "",
    );
    let v = time_cmd(reps, || cx.cli(&pool, &["ls", "--json"]));
    cx.report.add(
        "many",
        format!("taskpool ls --json, {many} live tasks"),
        "ms",
        v,
        "",
    );
    kill_all(&pool);
    drop(pool);
    let _ = std::fs::remove_dir_all(cx.root.join("live"));

    // Finished records: a pool of copies of one real ended record.
    let n = cx.n(10_000, 200);
    let pool = cx.pool("finished");
    pool.spawn(&SpawnOptions::exec(["true"]))
        .expect("spawn")
        .wait()
        .expect("wait");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pool.record_path(1)).unwrap()).unwrap();
    for id in 2..=n as u64 {
        let mut r = rec.clone();
        r["id"] = id.into();
        let dir = pool.task_dir(id);
        std::fs::create_dir_all(dir.join("run-1")).unwrap();
        std::fs::write(pool.lock_path(id), b"").unwrap();
        std::fs::write(pool.record_path(id), serde_json::to_vec(&r).unwrap()).unwrap();
    }
    let v = time_cmd(reps, || cx.cli(&pool, &["ls", "--json"]));
    cx.report.add(
        "search",
        format!("taskpool ls --json, {n} finished records"),
        "ms",
        v,
        "records copied from one real ended task",
    );
    let _ = std::fs::remove_dir_all(cx.root.join("finished"));
}
