//! The output path: a task writing a lot to stdout (small writes with `head -c`, 1 MiB writes with
//! `dd bs=1M`) against the same command writing straight to a file, with a follower reading every
//! byte; the supervisor's CPU time and peak RSS; and peak RSS while a task writes 10 GiB. The
//! supervisor splices the output into its log and sends it to the follower from there, so its
//! memory does not grow with the buffer (the buffer is the page cache's copy of the log's tail).

use crate::probe::{cpu_seconds, peak_rss_kib};
use crate::Ctx;
use std::process::Command;
use std::time::{Duration, Instant};
use taskpool::{Event, Pool, SpawnOptions, Stream};

const GIB: u64 = 1 << 30;

struct Run {
    secs: f64,
    cpu: f64,
    hwm_kib: f64,
    /// Entries of the run's `times` index and of its `chunks` index.
    stamps: u64,
    chunks: u64,
}

/// Run `cmd` as a task (lingering, so its supervisor can be read after the end), with a follower
/// from offset 0 if `follow`; check that the follower and the log saw `bytes` bytes.
fn through_pool(pool: &Pool, cmd: &str, bytes: u64, follow: bool) -> Run {
    let t0 = Instant::now();
    let task = pool
        .spawn(&SpawnOptions::shell(cmd).linger(Duration::from_secs(120)))
        .expect("spawn");
    let follower = follow.then(|| {
        let f = task.follow(0).expect("follow");
        std::thread::spawn(move || {
            let mut n = 0u64;
            for e in f {
                if let Event::Output { data, .. } = e.expect("follow event") {
                    n += data.len() as u64;
                }
            }
            n
        })
    });
    let info = task.wait().expect("wait");
    let secs = t0.elapsed().as_secs_f64();
    let sup = info.supervisor_pid.expect("supervisor pid");
    let cpu = cpu_seconds(sup).expect("supervisor cpu");
    let hwm_kib = peak_rss_kib(sup).expect("supervisor peak rss") as f64;
    if let Some(f) = follower {
        assert_eq!(f.join().unwrap(), bytes, "the follower missed bytes");
    }
    let on_disk = std::fs::metadata(pool.output_path(task.id(), info.run, Stream::Stdout))
        .unwrap()
        .len();
    assert_eq!(on_disk, bytes, "the log missed bytes");
    let run_dir = pool.run_dir(task.id(), info.run);
    let size = |f: &str| std::fs::metadata(run_dir.join(f)).map_or(0, |m| m.len());
    let stamps = size(taskpool::times::TIMES_FILE).saturating_sub(taskpool::times::HEADER as u64)
        / taskpool::times::ENTRY as u64;
    let chunks = size("chunks") / 4;
    task.terminate_supervisor(None).expect("end the linger");
    task.remove(false).expect("remove");
    Run {
        secs,
        cpu,
        hwm_kib,
        stamps,
        chunks,
    }
}

/// What the supervisor's timestamps cost it per call, timed here in this run: a clock read per
/// chunk entry, and a 16-byte append to the `times` file (on the pool's file system) when the
/// millisecond changed. Returns (clock read, append) in seconds.
fn stamp_costs(dir: &std::path::Path) -> (f64, f64) {
    use std::io::Write;
    const N: u32 = 200_000;
    let anchor = Instant::now();
    let t0 = Instant::now();
    let mut sum = 0u128;
    for _ in 0..N {
        sum += std::hint::black_box(anchor.elapsed().as_nanos());
    }
    let clock = t0.elapsed().as_secs_f64() / f64::from(N);
    std::hint::black_box(sum);
    let path = dir.join("stamp-cost");
    let mut f = std::fs::File::create(&path).unwrap();
    let t0 = Instant::now();
    for i in 0..N {
        f.write_all(&taskpool::times::entry(u64::from(i), u64::from(i)))
            .unwrap();
    }
    let append = t0.elapsed().as_secs_f64() / f64::from(N);
    drop(f);
    let _ = std::fs::remove_file(&path);
    (clock, append)
}

/// Every output-path measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("output:");
    let pool = cx.pool("output");
    let bytes = if cx.quick { 64 << 20 } else { GIB };
    let reps = cx.n(3, 1);
    let label = if cx.quick { "64MiB" } else { "1GiB" };
    let file = cx.root.join("straight.out");
    for (what, cmd) in [
        (
            "head -c (small writes)",
            format!("head -c {bytes} /dev/zero"),
        ),
        (
            "dd bs=1M",
            format!("dd if=/dev/zero bs=1M count={} status=none", bytes >> 20),
        ),
    ] {
        let base: Vec<f64> = (0..reps)
            .map(|_| {
                let _ = std::fs::remove_file(&file);
                let t0 = Instant::now();
                assert!(Command::new("sh")
                    .arg("-c")
                    .arg(format!("{cmd} > {}", file.display()))
                    .status()
                    .unwrap()
                    .success());
                t0.elapsed().as_secs_f64()
            })
            .collect();
        let _ = std::fs::remove_file(&file);
        let b = cx.report.add(
            "output",
            format!("baseline: {what} {label} > file"),
            "s",
            base,
            "",
        );
        let runs: Vec<Run> = (0..reps)
            .map(|_| through_pool(&pool, &cmd, bytes, true))
            .collect();
        let o = cx.report.add(
            "output",
            format!("{what} {label} as a task, 1 follower"),
            "s",
            runs.iter().map(|r| r.secs).collect(),
            "",
        );
        let r = cx.report.median(o) / cx.report.median(b);
        cx.report.add(
            "output",
            format!("ratio task / file, {what}"),
            "x",
            vec![r],
            "target: <= 1.1",
        );
        let per_gib: Vec<f64> = runs
            .iter()
            .map(|r| r.cpu * GIB as f64 / bytes as f64)
            .collect();
        cx.report.add(
            "output",
            format!("supervisor CPU per GiB, {what}"),
            "s",
            per_gib,
            "target: <= 1",
        );
        // The wall-clock rows above move by more than 3% from run to run on a shared machine;
        // the timestamps' share of the supervisor's CPU is what they add to its work, counted.
        let (clock, append) = stamp_costs(&cx.root);
        let share: Vec<f64> = runs
            .iter()
            .map(|r| 100.0 * (r.chunks as f64 * clock + r.stamps as f64 * append) / r.cpu)
            .collect();
        let per_gib = |n: u64| n as f64 * GIB as f64 / bytes as f64;
        cx.report.add(
            "output",
            format!("timestamps' share of the supervisor's CPU, {what}"),
            "%",
            share,
            format!(
                "target: <= 3; {:.0} stamps and {:.0} chunk entries per GiB, {:.0} ns and {:.0} ns each",
                per_gib(runs[0].stamps),
                per_gib(runs[0].chunks),
                clock * 1e9,
                append * 1e9
            ),
        );
        cx.report.add(
            "output",
            format!("supervisor peak RSS, {what}"),
            "KiB",
            runs.iter().map(|r| r.hwm_kib).collect(),
            "buffer 1 MiB per stream, in the page cache",
        );
    }
    if !cx.quick {
        let big = 10 * GIB;
        let r = through_pool(&pool, &format!("head -c {big} /dev/zero"), big, false);
        cx.report.add(
            "output",
            "supervisor peak RSS while a task writes 10GiB",
            "KiB",
            vec![r.hwm_kib],
            "bounded: buffer + constant",
        );
        cx.report
            .add("output", "head -c 10GiB as a task", "s", vec![r.secs], "");
    }
}
