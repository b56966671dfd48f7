//! Bulk submission: N tasks of `sleep 600` submitted by one `taskpool spawn --many FILE`,
//! against N sequential `tsp sleep 600` adds and N sequential `taskpool spawn -- sleep 600`,
//! measured one after the other in the same run (tasks per second). Every id must be printed
//! and every task running.

use crate::peers::Tsp;
use crate::{kill_all, Ctx};
use std::process::Stdio;
use std::time::Instant;

/// Every bulk measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("bulk:");
    let n = cx.n(1000, 50);
    let pool = cx.pool("bulk");
    let jobs = cx.root.join("many.jsonl");
    let line = "{\"command\": [\"sleep\", \"600\"]}\n";
    std::fs::write(&jobs, line.repeat(n)).unwrap();

    let t0 = Instant::now();
    let out = cx
        .cli(&pool, &["spawn", "--many", jobs.to_str().unwrap()])
        .stdout(Stdio::piped())
        .output()
        .expect("taskpool spawn --many");
    let many = n as f64 / t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "spawn --many failed: {:?}",
        out.status
    );
    let ids = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(ids, n, "spawn --many printed {ids} ids for {n} lines");
    let running = pool
        .list()
        .expect("list")
        .iter()
        .filter(|i| i.state == taskpool::State::Running)
        .count();
    assert_eq!(
        running, n,
        "{running} of {n} tasks running after spawn --many"
    );
    let m = cx.report.add(
        "bulk",
        format!("{n} tasks by one taskpool spawn --many"),
        "/s",
        vec![many],
        "",
    );
    kill_all(&pool);

    let t0 = Instant::now();
    for _ in 0..n {
        cx.cli(&pool, &["spawn", "--", "sleep", "600"])
            .status()
            .expect("taskpool spawn");
    }
    let seq = n as f64 / t0.elapsed().as_secs_f64();
    let s = cx.report.add(
        "bulk",
        format!("{n} sequential taskpool spawn -- sleep 600"),
        "/s",
        vec![seq],
        "",
    );
    kill_all(&pool);
    let r = cx.report.median(m) / cx.report.median(s);
    cx.report.add(
        "bulk",
        "ratio spawn --many / sequential spawns",
        "x",
        vec![r],
        "target: >= 3",
    );

    let dir = cx.root.join("tsp-bulk");
    std::fs::create_dir_all(&dir).unwrap();
    match Tsp::new(&dir) {
        Some(t) => {
            // A first job holds tsp's one slot, so the measured adds only queue; its pid is
            // taken so that it can be ended with the server.
            let text = |args: &[&str]| {
                let out = t.cmd(args).stdout(Stdio::piped()).output().expect("tsp");
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            };
            let first = text(&["sleep", "600"]);
            let pid: i32 = text(&["-p", &first]).parse().unwrap_or(0);
            let t0 = Instant::now();
            for _ in 0..n {
                t.cmd(&["sleep", "600"]).status().expect("tsp");
            }
            let v = n as f64 / t0.elapsed().as_secs_f64();
            let i = cx.report.add(
                "bulk",
                format!("peer: {n} sequential tsp sleep 600"),
                "/s",
                vec![v],
                "",
            );
            // The server goes (the queued jobs with it), then the job it was running.
            let _ = t.cmd(&["-K"]).status();
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let r = cx.report.median(m) / cx.report.median(i);
            cx.report.add(
                "bulk",
                "ratio spawn --many / tsp adds",
                "x",
                vec![r],
                "target: >= 1.5",
            );
        }
        None => cx.report.skip("bulk", "peer: tsp", "tsp not installed"),
    }
}
