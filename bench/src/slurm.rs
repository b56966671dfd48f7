//! The Slurm engine (docs/slurm.md), against the cluster on this machine
//! (`tests/slurm/cluster.sh start`): `taskpool spawn --engine slurm` until it returns against a bare
//! `sbatch --wrap` (both held, so nothing runs); `taskpool ls` over 1000 Slurm tasks (mostly
//! finished, a few pending: one `squeue`) against 1000 local records; and the supervisor's
//! start-up inside the allocation: the batch script (which execs the supervisor) until the
//! command runs, against `sh -c CMD` (what `sbatch --wrap` runs). Skipped when there is no
//! cluster.

use crate::probe::Ready;
use crate::spawn::until_running;
use crate::stats::ms;
use crate::Ctx;
use std::process::{Command, Stdio};
use std::time::Instant;
use taskpool::Pool;

/// Every Slurm measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("slurm:");
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"));
    if !up {
        cx.report.skip(
            "slurm",
            "every Slurm measurement",
            "no Slurm controller answers (tests/slurm/cluster.sh start)",
        );
        return;
    }
    let mut jobs: Vec<String> = Vec::new();
    submit(cx, &mut jobs);
    listing(cx, &mut jobs);
    startup(cx, &mut jobs);
    if !jobs.is_empty() {
        let _ = Command::new("scancel").args(&jobs).status();
    }
}

/// Run `cmd`, returning its stdout's first line.
fn line(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::null()).output().expect("run");
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The job id of Slurm task `id` in `pool`.
fn job_of(pool: &Pool, id: u64) -> String {
    let rec = taskpool::record::Record::load(&pool.record_path(id)).expect("record");
    rec.job
        .and_then(|j| j.job_id)
        .expect("a submitted task has a job id")
        .to_string()
}

fn submit(cx: &mut Ctx, jobs: &mut Vec<String>) {
    let pool = cx.pool("slurm-submit");
    let n = cx.n(30, 3);
    let mut bare = Vec::with_capacity(n);
    let mut ours = Vec::with_capacity(n);
    for _ in 0..n + 1 {
        let t0 = Instant::now();
        let job = line(Command::new("sbatch").args(["--parsable", "--hold", "--wrap", "true"]));
        bare.push(ms(t0.elapsed()));
        jobs.push(job);
        let t0 = Instant::now();
        let id = line(
            cx.cli(&pool, &[])
                .args([
                    "spawn",
                    "--engine",
                    "slurm",
                    "--slurm-arg=--hold",
                    "-c",
                    "true",
                ])
                .stdout(Stdio::piped()),
        );
        ours.push(ms(t0.elapsed()));
        jobs.push(job_of(&pool, id.parse().expect("spawn prints the id")));
    }
    // The first pair warms the page cache and the controller.
    bare.remove(0);
    ours.remove(0);
    let b = cx.report.add(
        "slurm",
        "baseline: sbatch --parsable --hold --wrap true, until it returns",
        "ms",
        bare,
        "",
    );
    let o = cx.report.add(
        "slurm",
        "taskpool spawn --engine slurm (held), until it returns",
        "ms",
        ours,
        "",
    );
    let ratio = cx.report.median(o) / cx.report.median(b);
    cx.report.add(
        "slurm",
        "ratio spawn --engine slurm / sbatch --wrap",
        "x",
        vec![ratio],
        "target: <= 1.3",
    );
}

/// Fill `pool` with `n` copies of the ended task 1 (its directory copied under new ids).
fn copies(pool: &Pool, n: u64) {
    let one = pool.task_dir(1);
    let rec = std::fs::read_to_string(pool.record_path(1)).expect("record");
    for id in 2..=n {
        let dir = pool.task_dir(id);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&one)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cp -a {}", one.display());
        let text = rec.replacen("\"id\": 1,", &format!("\"id\": {id},"), 1);
        std::fs::write(pool.record_path(id), text).expect("record copy");
    }
    std::fs::write(pool.path().join("next-id"), format!("{}\n", n + 1)).expect("next-id");
}

fn listing(cx: &mut Ctx, jobs: &mut Vec<String>) {
    let n = cx.n(1000, 50) as u64;
    let reps = cx.n(20, 3);
    let local = cx.pool("slurm-ls-local");
    let status = cx
        .cli(&local, &["spawn", "--behavior", "foreground", "-c", "true"])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "local spawn");
    copies(&local, n);
    let slurm = cx.pool("slurm-ls-slurm");
    let id = line(
        cx.cli(&slurm, &["spawn", "--engine", "slurm", "-c", "true"])
            .stdout(Stdio::piped()),
    );
    let job = job_of(&slurm, id.parse().expect("id"));
    let status = cx.cli(&slurm, &["wait", &id]).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "the Slurm task did not succeed"
    );
    jobs.push(job);
    // Mostly finished; the last few pending (held): the listing asks squeue once for them.
    copies(&slurm, n - 10);
    for _ in 0..10 {
        let id = line(
            cx.cli(
                &slurm,
                &[
                    "spawn",
                    "--engine",
                    "slurm",
                    "--slurm-arg=--hold",
                    "-c",
                    "true",
                ],
            )
            .stdout(Stdio::piped()),
        );
        jobs.push(job_of(&slurm, id.parse().expect("id")));
    }
    let time_ls = |pool: &Pool| -> Vec<f64> {
        (0..reps + 1)
            .map(|_| {
                let t0 = Instant::now();
                let s = cx.cli(pool, &["ls", "--json"]).status();
                assert!(s.is_ok_and(|s| s.success()), "ls");
                ms(t0.elapsed())
            })
            .skip(1)
            .collect()
    };
    let l = time_ls(&local);
    let s = time_ls(&slurm);
    let l = cx.report.add(
        "slurm",
        format!("taskpool ls --json over {n} local records"),
        "ms",
        l,
        "",
    );
    let s = cx.report.add(
        "slurm",
        format!("taskpool ls --json over {n} Slurm tasks (10 pending: one squeue)"),
        "ms",
        s,
        "",
    );
    let ratio = cx.report.median(s) / cx.report.median(l);
    cx.report.add(
        "slurm",
        "ratio ls Slurm / local",
        "x",
        vec![ratio],
        "target: <= 2",
    );
}

/// The batch script of a held Slurm task, run by hand as Slurm would run it, against `sh -c`.
fn startup(cx: &mut Ctx, jobs: &mut Vec<String>) {
    let n = cx.n(50, 3);
    let pool = cx.pool("slurm-startup");
    let base = until_running(cx, n, |job| {
        Command::new("sh").args(["-c", job]).spawn().ok()
    });
    let b = cx.report.add(
        "slurm",
        "baseline: sh -c JOB (what sbatch --wrap runs), until running",
        "ms",
        base,
        "",
    );
    let mut ours = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let ready = Ready::new(cx.root.join(format!("slurm-ready-{i}")));
        let id = line(
            cx.cli(
                &pool,
                &[
                    "spawn",
                    "--engine",
                    "slurm",
                    "--slurm-arg=--hold",
                    "-c",
                    &ready.job(),
                ],
            )
            .stdout(Stdio::piped()),
        );
        let id: u64 = id.parse().expect("id");
        let job_id = job_of(&pool, id);
        jobs.push(job_id.clone());
        // The time starts here, as when Slurm starts the batch script.
        let t0 = Instant::now();
        let child = Command::new("sh")
            .arg(pool.task_dir(id).join("slurm.sh"))
            .env("SLURM_JOB_ID", job_id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let t1 = ready
            .wait(std::time::Duration::from_secs(30))
            .expect("the task did not run within 30 s");
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
        if i >= 2 {
            ours.push(ms(t1 - t0));
        }
    }
    let o = cx.report.add(
        "slurm",
        "batch script (exec taskpool-supervisor --in-job), until running",
        "ms",
        ours,
        "",
    );
    let added = cx.report.median(o) - cx.report.median(b);
    cx.report.add(
        "slurm",
        "supervisor start-up added inside the allocation",
        "ms",
        vec![added],
        "target: < 5",
    );
}
