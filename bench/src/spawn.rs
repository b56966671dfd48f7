//! Spawn: time from starting a spawn until the job runs (library, CLI, `setsid -f sh -c`, tsp,
//! `pueue add -i`), and throughput of 500 sequential CLI spawns (against tsp and pueue adds) and
//! of 4 concurrent spawners.

use crate::peers::{Pueue, Tsp};
use crate::probe::Ready;
use crate::stats::ms;
use crate::{drain, Ctx};
use std::process::Command;
use std::time::{Duration, Instant};
use taskpool::{Pool, SpawnOptions};

const LIMIT: Duration = Duration::from_secs(30);

/// Time `n` starts of a job: `start` begins it (the job is the shell command it is given); the
/// sample ends when the job has run. Returns milliseconds.
pub fn until_running(
    cx: &Ctx,
    n: usize,
    mut start: impl FnMut(&str) -> Option<std::process::Child>,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let ready = Ready::new(cx.root.join(format!("ready-{i}")));
        let t0 = Instant::now();
        let child = start(&ready.job());
        let t1 = ready.wait(LIMIT).expect("the job did not run within 30 s");
        if let Some(mut c) = child {
            let _ = c.wait();
        }
        if i >= 2 {
            // The first two warm the page cache and the peers' daemons.
            out.push(ms(t1 - t0));
        }
    }
    out
}

/// The library's spawn: (until the job runs, until `Pool::spawn` returns), in milliseconds.
pub fn library(cx: &Ctx, pool: &Pool, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut returned = Vec::with_capacity(n + 2);
    let ran = until_running(cx, n, |job| {
        let t0 = Instant::now();
        pool.spawn(&SpawnOptions::shell(job)).expect("spawn");
        returned.push(ms(t0.elapsed()));
        None
    });
    (ran, returned.split_off(2))
}

/// The CLI's spawn until the job runs.
pub fn cli(cx: &Ctx, pool: &Pool, n: usize) -> Vec<f64> {
    until_running(cx, n, |job| {
        cx.cli(pool, &["spawn", "-c", job]).spawn().ok()
    })
}

fn rate(n: usize, reps: usize, mut one: impl FnMut()) -> Vec<f64> {
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..n {
                one();
            }
            n as f64 / t0.elapsed().as_secs_f64()
        })
        .collect()
}

/// Every spawn measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("spawn:");
    let pool = cx.pool("spawn");
    let n = cx.n(300, 10);

    let base = until_running(cx, n, |job| {
        Command::new("setsid")
            .args(["-f", "sh", "-c", job])
            .spawn()
            .ok()
    });
    let b = cx.report.add(
        "spawn",
        "baseline: setsid -f sh -c JOB, until running",
        "ms",
        base,
        "",
    );
    let (lib, returned) = library(cx, &pool, n);
    let (p50, p99) = {
        let i = cx.report.add(
            "spawn",
            "Pool::spawn until running",
            "ms",
            lib,
            "target: median <= 2, p99 <= 5",
        );
        (cx.report.median(i), cx.report.rows[i].p99())
    };
    cx.report.add(
        "spawn",
        "Pool::spawn until running, p99",
        "ms",
        vec![p99],
        format!("median {p50:.3}"),
    );
    let i = cx.report.add(
        "spawn",
        "Pool::spawn until it returns (command executed)",
        "ms",
        returned,
        "",
    );
    let p99 = cx.report.rows[i].p99();
    cx.report.add(
        "spawn",
        "Pool::spawn until it returns, p99",
        "ms",
        vec![p99],
        "",
    );
    drain(&pool);
    let c = cx.report.add(
        "spawn",
        "taskpool spawn -c JOB until running",
        "ms",
        cli(cx, &pool, n),
        "",
    );
    let ratio = cx.report.median(c) / cx.report.median(b);
    cx.report.add(
        "spawn",
        "ratio CLI / setsid",
        "x",
        vec![ratio],
        "target: <= 1.0",
    );
    drain(&pool);

    let dir = cx.root.join("tsp");
    std::fs::create_dir_all(&dir).unwrap();
    let tsp = Tsp::new(&dir);
    match &tsp {
        Some(t) => {
            let v = until_running(cx, n, |job| t.cmd(&["sh", "-c", job]).spawn().ok());
            cx.report
                .add("spawn", "peer: tsp sh -c JOB, until running", "ms", v, "");
        }
        None => cx.report.skip("spawn", "peer: tsp", "tsp not installed"),
    }
    let pueue = Pueue::start(&cx.root.join("pueue-spawn"));
    match &pueue {
        Some(p) => {
            let v = until_running(cx, cx.n(100, 5), |job| {
                p.cmd(&["add", "-i", "--", job]).spawn().ok()
            });
            let i = cx.report.add(
                "spawn",
                "peer: pueue add -i JOB, until running",
                "ms",
                v,
                "",
            );
            let r = cx.report.median(i) / cx.report.median(c);
            cx.report
                .add("spawn", "ratio pueue / CLI", "x", vec![r], "target: >= 3");
        }
        None => cx
            .report
            .skip("spawn", "peer: pueue add -i", "pueue/pueued not installed"),
    }

    // Throughput: sequential adds of a job that does nothing.
    let seq = cx.n(500, 20);
    let reps = cx.n(3, 1);
    let ours = rate(seq, reps, || {
        cx.cli(&pool, &["spawn", "--", "true"])
            .status()
            .expect("taskpool spawn");
    });
    let o = cx.report.add(
        "spawn",
        format!("{seq} sequential taskpool spawn -- true"),
        "/s",
        ours,
        "target: >= tsp",
    );
    drain(&pool);
    if let Some(t) = &tsp {
        let v = rate(seq, reps, || {
            t.cmd(&["true"]).status().expect("tsp");
        });
        let i = cx.report.add(
            "spawn",
            format!("peer: {seq} sequential tsp true"),
            "/s",
            v,
            "",
        );
        let r = cx.report.median(o) / cx.report.median(i);
        cx.report.add(
            "spawn",
            "ratio taskpool / tsp adds per second",
            "x",
            vec![r],
            "target: >= 1.0",
        );
        let _ = t.cmd(&["-w"]).status();
    }
    if let Some(p) = &pueue {
        let v = rate(seq, reps, || {
            p.cmd(&["add", "--", "true"]).status().expect("pueue add");
        });
        cx.report.add(
            "spawn",
            format!("peer: {seq} sequential pueue add -- true"),
            "/s",
            v,
            "",
        );
    }
    drop(pueue);
    drop(tsp);

    // Four concurrent spawners, each doing a quarter.
    let conc: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..seq / 4 {
                            cx.cli(&pool, &["spawn", "--", "true"])
                                .status()
                                .expect("taskpool spawn");
                        }
                    });
                }
            });
            (seq / 4 * 4) as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    let k = cx.report.add(
        "spawn",
        format!("{seq} taskpool spawns from 4 concurrent spawners"),
        "/s",
        conc,
        "",
    );
    let r = cx.report.median(k) / cx.report.median(o);
    cx.report.add(
        "spawn",
        "scaling: 4 spawners / 1 spawner",
        "x",
        vec![r],
        "2 cores: ideal ~2",
    );
    drain(&pool);
}
