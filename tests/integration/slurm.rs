//! The Slurm engine against the real one-node cluster of `tests/slurm/cluster.sh` (CI starts it;
//! docs/slurm.md). These tests never skip: without `sbatch` on PATH and a controller that answers,
//! they fail saying how to start the cluster. They run one at a time (the cluster has as many
//! CPUs as the machine, one per job), except the time-limit test, which waits a minute or more
//! beside them on a CPU of its own, and they cancel every job they submitted when they end.

use crate::util::{bin_dir, code, fifo, stderr, TestPool};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// One Slurm test at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

/// A test pool whose Slurm jobs are cancelled when it is dropped (before the pool goes).
struct SlurmPool {
    tp: TestPool,
    _one: MutexGuard<'static, ()>,
}

impl std::ops::Deref for SlurmPool {
    type Target = TestPool;
    fn deref(&self) -> &TestPool {
        &self.tp
    }
}

impl Drop for SlurmPool {
    fn drop(&mut self) {
        let jobs: Vec<String> = self
            .tp
            .pool
            .ids()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| std::fs::read(self.tp.pool.record_path(id)).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter_map(|r| r["job"]["job_id"].as_u64())
            .map(|j| j.to_string())
            .collect();
        if !jobs.is_empty() {
            let _ = Command::new("scancel").args(&jobs).status();
        }
    }
}

/// The cluster must be up; a fresh pool, and this test's turn.
fn cluster() -> SlurmPool {
    let one = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    cluster_with(one)
}

/// [`cluster`] for a test that runs beside the others: it keeps one CPU busy for a minute or
/// more, and the others never need more than one at once.
fn cluster_beside() -> SlurmPool {
    static BESIDE: Mutex<()> = Mutex::new(());
    cluster_with(BESIDE.lock().unwrap_or_else(|e| e.into_inner()))
}

fn cluster_with(one: MutexGuard<'static, ()>) -> SlurmPool {
    let ping = Command::new("scontrol").arg("ping").output();
    match ping {
        Err(e) => panic!(
            "scontrol cannot be run ({e}): Slurm is not installed; as root, tests/slurm/cluster.sh start installs and starts the test cluster"
        ),
        Ok(out) => assert!(
            String::from_utf8_lossy(&out.stdout).contains("is UP"),
            "the Slurm controller does not answer ({}): as root, tests/slurm/cluster.sh start",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    }
    SlurmPool {
        tp: TestPool::new(),
        _one: one,
    }
}

impl SlurmPool {
    /// `spawn --engine slurm ARGS`, with the built `taskpool` on the task's PATH.
    fn submit(&self, args: &[&str]) -> u64 {
        let out = self.submit_raw(args);
        assert!(
            out.status.success(),
            "spawn {args:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn submit_raw(&self, args: &[&str]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.cmd()
            .env("PATH", path)
            .args(["spawn", "--engine", "slurm"])
            .args(args)
            .output()
            .unwrap()
    }

    /// A Slurm task that runs `sleep 300`, once it has said it is ready (its supervisor runs).
    fn running(&self) -> u64 {
        self.running_with("echo >&3; exec sleep 300")
    }

    /// A Slurm task running `script`, once it has written a newline to fd 3 (`--ready-fd 3`).
    fn running_with(&self, script: &str) -> u64 {
        let out = self
            .cmd()
            .args([
                "spawn",
                "--engine",
                "slurm",
                "--ready-fd",
                "3",
                "--wait-ready=60s",
            ])
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The task's Slurm job id, from its info.
    fn job(&self, id: u64) -> u64 {
        self.info(id)["slurm"]["job_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("task {id} has no job id: {}", self.info(id)))
    }

    /// `taskpool wait ID` (bounded), its exit code.
    fn wait(&self, id: u64) -> i32 {
        let out = self.run(["wait", &id.to_string(), "--timeout", "60s"]);
        // 124 is also a timed-out task's own status.
        if code(&out) == 124 {
            let info = self.info(id);
            assert_eq!(
                info["status"],
                json!("timeout"),
                "task {id} did not end within 60 s"
            );
        }
        code(&out)
    }
}

/// Slurm's own state of `job` (`squeue -t all`).
fn squeue_state(job: u64) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%T", "-j", &job.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Slurm's final state of an ended `job`. Slurm shows `COMPLETING` while it cleans up after the
/// batch script (our supervisor) exited and tells nobody when it is done: look again for a while.
fn ended_state(job: u64) -> String {
    let mut state = squeue_state(job);
    for _ in 0..100 {
        if state != "COMPLETING" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        state = squeue_state(job);
    }
    state
}

fn hostname() -> String {
    let out = Command::new("hostname").arg("-s").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_slurm_task_is_a_job_with_its_output_meta_and_status() {
    let sp = cluster();
    let script =
        "printf 'one\\n\\0two\\377'; echo oops >&2; taskpool meta stage=inside n=3; exit 0";
    let id = sp.submit(&["--name", "greeter", "-c", script]);
    let job = sp.job(id);
    // The job is Slurm's: squeue knows it under the task's name.
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%j", "-j", &job.to_string()])
        .output()
        .unwrap();
    eq!(String::from_utf8_lossy(&out.stdout).trim(), "greeter");
    eq!(sp.wait(id), 0);
    let info = sp.info(id);
    eq!(info["engine"], json!("slurm"));
    eq!(info["status"], json!("success"));
    eq!(info["slurm"]["node"], json!(hostname()));
    eq!(info["meta"]["stage"], json!("inside"));
    eq!(info["meta"]["n"], json!(3));
    let stdout = sp.run(["output", &id.to_string(), "--stdout"]).stdout;
    eq!(stdout, b"one\n\0two\xff".to_vec());
    let err = sp.run(["output", &id.to_string(), "--stderr"]).stdout;
    eq!(err, b"oops\n".to_vec());
    // Slurm's own output file is in the task's directory (the supervisor prints nothing).
    let slurm_out = sp.pool.task_dir(id).join(format!("slurm-{job}.out"));
    eq!(std::fs::read(&slurm_out).unwrap(), Vec::<u8>::new());
}

#[test]
fn a_failing_job_ends_failure_runs_its_hook_and_slurm_sees_it_fail() {
    let sp = cluster();
    let mark = sp.scratch().join("hook");
    let hook = format!(
        "echo \"$TASKPOOL_STATUS $TASKPOOL_EXIT_CODE\" > {}",
        mark.display()
    );
    let id = sp.submit(&["--on-failure", &hook, "-c", "exit 3"]);
    eq!(sp.wait(id), 3);
    let info = sp.info(id);
    eq!(info["status"], json!("failure"));
    eq!(info["exit_code"], json!(3));
    eq!(std::fs::read_to_string(&mark).unwrap(), "failure 3\n");
    // The supervisor's exit code is non-zero: afterok means what --after means.
    eq!(ended_state(sp.job(id)), "FAILED");
}

#[test]
fn the_default_stdin_is_null_and_a_timeout_maps_to_whole_minutes() {
    let sp = cluster();
    let id = sp.submit(&["--timeout", "1s", "-c", "cat; exec sleep 30"]);
    let job = sp.job(id);
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", &job.to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("TimeLimit=00:01:00"), "{shown}");
    assert!(shown.contains("Requeue=0"), "{shown}");
    // cat read end of file at once; our own timeout (the precise one) ended the sleep.
    eq!(sp.wait(id), 124);
    eq!(sp.info(id)["status"], json!("timeout"));
}

#[test]
fn a_chain_waits_for_its_predecessor_and_is_skipped_when_it_fails() {
    let sp = cluster();
    let go = sp.scratch().join("go");
    let first = sp.submit(&[
        "-c",
        &format!("while [ ! -e {} ]; do sleep 0.1; done", go.display()),
    ]);
    let second = sp.submit(&["--after", &first.to_string(), "-c", "echo second"]);
    let info = sp.info(second);
    eq!(info["state"], json!("queued"));
    eq!(info["slurm"]["reason"], json!("Dependency"));
    std::fs::write(&go, "").unwrap();
    eq!(sp.wait(second), 0);
    eq!(
        sp.run(["output", &second.to_string()]).stdout,
        b"second\n".to_vec()
    );

    let failing = sp.submit(&["-c", "sleep 1; exit 1"]);
    let never = sp.submit(&["--after", &failing.to_string(), "-c", "echo never"]);
    eq!(sp.wait(failing), 1);
    let out = sp.run(["wait", &never.to_string(), "--timeout", "60s"]);
    eq!(code(&out), 125);
    let info = sp.info(never);
    eq!(info["state"], json!("skipped"));
    eq!(info["slurm"]["reason"], json!("DependencyNeverSatisfied"));
    eq!(
        info["reason"],
        json!(format!(
            "Slurm cancelled job {} (DependencyNeverSatisfied): predecessor task {failing} ended failure",
            sp.job(never)
        ))
    );
    // A predecessor that has already ended is judged from its record: no dependency at all.
    let after_ended = sp.submit(&["--after", &failing.to_string(), "-c", "true"]);
    let info = sp.info(after_ended);
    eq!(info["state"], json!("skipped"));
    eq!(
        info["reason"],
        json!(format!(
            "predecessor task {failing} ended failure (--after needs success or warning)"
        ))
    );
}

#[test]
fn a_held_job_is_queued_with_slurms_reason_and_cancelling_it_skips_the_task() {
    let sp = cluster();
    let id = sp.submit(&["--slurm-arg=--hold", "-c", "echo never"]);
    let job = sp.job(id);
    let info = sp.info(id);
    eq!(info["state"], json!("queued"));
    eq!(info["slurm"]["state"], json!("PENDING"));
    eq!(info["slurm"]["reason"], json!("JobHeldUser"));
    let ls: Value = serde_json::from_str(&sp.ok(["ls", "--json"])).unwrap();
    eq!(ls[0]["slurm"]["reason"], json!("JobHeldUser"));
    sp.ok(["terminate", &id.to_string()]);
    let info = sp.info(id);
    eq!(info["state"], json!("skipped"));
    eq!(
        info["reason"],
        json!(format!(
            "Slurm job {job} was cancelled while pending: CANCELLED (JobHeldUser)"
        ))
    );
    eq!(squeue_state(job), "CANCELLED");
}

#[test]
fn scancel_from_outside_ends_the_task_truthfully() {
    let sp = cluster();
    // Pending: cancelled before its supervisor ran.
    let held = sp.submit(&["--slurm-arg=--hold", "-c", "true"]);
    let held_job = sp.job(held);
    assert!(Command::new("scancel")
        .arg(held_job.to_string())
        .status()
        .unwrap()
        .success());
    eq!(sp.wait(held), 125);
    eq!(sp.info(held)["state"], json!("skipped"));
    // Running: Slurm's SIGTERM reaches the supervisor (the batch script execs it), which ends
    // the task and records it.
    let id = sp.running();
    let info = sp.info(id);
    eq!(info["state"], json!("running"));
    // Through the socket, and Slurm asked too.
    eq!(info["slurm"]["state"], json!("RUNNING"));
    let job = sp.job(id);
    assert!(Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap()
        .success());
    sp.wait(id);
    let info = sp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["status"], json!("killed"));
    eq!(
        info["reason"],
        json!("terminated: Slurm sent the supervisor SIGTERM (scancel, or the job's time limit)")
    );
}

#[test]
fn a_job_file_and_taskpool_engine_choose_slurm() {
    let sp = cluster();
    let job = sp.scratch().join("job.json");
    std::fs::write(
        &job,
        r#"{"command": "echo from a file", "engine": "slurm", "slurm_args": ["--hold"], "name": "filed"}"#,
    )
    .unwrap();
    let out = sp.run(["spawn", "--file", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let info = sp.info(id);
    eq!(info["engine"], json!("slurm"));
    eq!(info["slurm"]["reason"], json!("JobHeldUser"));
    sp.ok(["terminate", &id.to_string()]);
    // The environment's default, and --engine over it.
    let out = sp
        .cmd()
        .env("TASKPOOL_ENGINE", "slurm")
        .args(["spawn", "-c", "echo from the environment"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eq!(sp.info(id)["engine"], json!("slurm"));
    eq!(sp.wait(id), 0);
    let out = sp
        .cmd()
        .env("TASKPOOL_ENGINE", "slurm")
        .args(["spawn", "--engine", "local", "-c", "true"])
        .output()
        .unwrap();
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eq!(sp.info(id)["engine"], json!("local"));
    let out = sp
        .cmd()
        .env("TASKPOOL_ENGINE", "pbs")
        .args(["spawn", "-c", "true"])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    eq!(
        stderr(&out).trim(),
        "taskpool: TASKPOOL_ENGINE: unknown engine \"pbs\" (expected local or slurm)"
    );
}

#[test]
fn a_pools_default_engine_comes_after_the_command_line_a_job_file_and_the_environment() {
    let sp = cluster();
    eq!(sp.ok(["pool", "show"]), "engine -\n");
    sp.ok(["pool", "set", "--engine", "slurm"]);
    let shown: Value = serde_json::from_str(&sp.ok(["pool", "show", "--json"])).unwrap();
    eq!(shown, json!({"engine": "slurm"}));
    // Nothing else names an engine: the pool's default.
    let id = sp.spawn(["-c", "echo from the pool default"]);
    eq!(sp.info(id)["engine"], json!("slurm"));
    eq!(sp.wait(id), 0);
    eq!(
        sp.run(["output", &id.to_string()]).stdout,
        b"from the pool default\n".to_vec()
    );
    // The environment, a job file and the command line each come before it.
    let out = sp
        .cmd()
        .env("TASKPOOL_ENGINE", "local")
        .args(["spawn", "-c", "true"])
        .output()
        .unwrap();
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eq!(sp.info(id)["engine"], json!("local"));
    let job = sp.scratch().join("local.json");
    std::fs::write(&job, r#"{"command": "true", "engine": "local"}"#).unwrap();
    let id = sp.spawn(["--file", job.to_str().unwrap()]);
    eq!(sp.info(id)["engine"], json!("local"));
    let id = sp.spawn(["--engine", "local", "-c", "true"]);
    eq!(sp.info(id)["engine"], json!("local"));
    // A job file without an engine, and `spawn --many`, take the pool's.
    let job = sp.scratch().join("plain.json");
    std::fs::write(&job, r#"{"command": "true", "slurm_args": ["--hold"]}"#).unwrap();
    let id = sp.spawn(["--file", job.to_str().unwrap()]);
    eq!(sp.info(id)["engine"], json!("slurm"));
    sp.ok(["terminate", &id.to_string()]);
    let lines = sp.scratch().join("many.jsonl");
    std::fs::write(
        &lines,
        "{\"command\": \"true\", \"slurm_args\": [\"--hold\"]}\n",
    )
    .unwrap();
    let id: u64 = sp
        .ok(["spawn", "--many", lines.to_str().unwrap()])
        .trim()
        .parse()
        .unwrap();
    eq!(sp.info(id)["engine"], json!("slurm"));
    sp.ok(["terminate", &id.to_string()]);
    // Removed: local again.
    sp.ok(["pool", "set", "--engine", "none"]);
    eq!(sp.ok(["pool", "show"]), "engine -\n");
    let id = sp.spawn(["-c", "true"]);
    eq!(sp.info(id)["engine"], json!("local"));
    // Bad input.
    let out = sp.run(["pool", "set", "--engine", "pbs"]);
    eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown engine \"pbs\" (expected local, slurm or none)"),
        "{}",
        stderr(&out)
    );
    let settings = sp.pool.path().join("settings.json");
    std::fs::write(&settings, r#"{"engin": "slurm"}"#).unwrap();
    let out = sp.run(["spawn", "-c", "true"]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    eq!(err.lines().count(), 1);
    assert!(
        err.starts_with(&format!(
            "taskpool: {}: unknown field `engin`",
            settings.display()
        )),
        "{err}"
    );
}

#[test]
fn restart_of_an_ended_slurm_task_submits_a_new_job_for_its_next_run() {
    let sp = cluster();
    let count = sp.scratch().join("count");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo run $n; [ $n -gt 1 ]",
        c = count.display()
    );
    let hooks = sp.scratch().join("hooks");
    let hook = format!("echo $TASKPOOL_RUN $TASKPOOL_STATUS >> {}", hooks.display());
    let id = sp.submit(&["--on-exit", &hook, "-c", &script]);
    let first_job = sp.job(id);
    eq!(sp.wait(id), 1);
    eq!(sp.info(id)["status"], json!("failure"));
    let ids = id.to_string();
    // Without sbatch the restart is refused and the task stays as it was.
    let out = sp
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["restart", &ids])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot run sbatch"),
        "{}",
        stderr(&out)
    );
    let info = sp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["slurm"]["job_id"], json!(first_job));
    eq!(sp.ok(["restart", &ids]).trim(), ids);
    let second_job = sp.job(id);
    assert!(second_job != first_job, "the same job {first_job} again");
    eq!(sp.wait(id), 0);
    let info = sp.info(id);
    eq!(info["status"], json!("success"));
    eq!(info["run"], json!(2));
    eq!(info["runs"].as_array().unwrap().len(), 2);
    eq!(info["slurm"]["node"], json!(hostname()));
    eq!(sp.run(["output", &ids]).stdout, b"run 2\n".to_vec());
    eq!(
        sp.run(["output", &ids, "--run", "1"]).stdout,
        b"run 1\n".to_vec()
    );
    // Each run's hook ran once, after its end (wait returns once the hooks have run).
    eq!(
        std::fs::read_to_string(&hooks).unwrap(),
        "1 failure\n2 success\n"
    );
    eq!(ended_state(first_job), "FAILED");
    eq!(ended_state(second_job), "COMPLETED");
    // A live one is refused.
    let held = sp.submit(&["--slurm-arg=--hold", "-c", "true"]);
    let out = sp.run(["restart", &held.to_string()]);
    eq!(code(&out), 1);
    eq!(
        stderr(&out).trim(),
        format!("taskpool: task {held} is queued; restart is refused while it is live")
    );
}

#[test]
fn a_job_slurm_ended_before_its_supervisor_started_runs_its_hooks_once() {
    let sp = cluster();
    let marks = sp.scratch().join("hooks");
    let hook = format!(
        "echo \"$TASKPOOL_TASK_ID $TASKPOOL_STATUS $TASKPOOL_REASON\" >> {}",
        marks.display()
    );
    // Cancelled while pending, from outside; then many readers at once.
    let held = sp.submit(&[
        "--slurm-arg=--hold",
        "--on-exit",
        &hook,
        "--on-failure",
        &hook,
        "-c",
        "true",
    ]);
    let job = sp.job(held);
    assert!(Command::new("scancel")
        .arg(job.to_string())
        .status()
        .unwrap()
        .success());
    eq!(ended_state(job), "CANCELLED");
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let args: &[&str] = if i % 2 == 0 {
                &["ls", "--json"]
            } else {
                &["info", "--json"]
            };
            let mut c = sp.cmd();
            c.args(args);
            if i % 2 == 1 {
                c.arg(held.to_string());
            }
            c.stdout(std::process::Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut r in readers {
        assert!(r.wait().unwrap().success());
    }
    // wait ends once the hooks have run (as for a local task skipped at its gate).
    eq!(sp.wait(held), 125);
    let why = format!("Slurm job {job} was cancelled while pending: CANCELLED (JobHeldUser)");
    let info = sp.info(held);
    eq!(info["state"], json!("skipped"));
    eq!(info["reason"], json!(why));
    eq!(info["slurm"]["state"], json!("CANCELLED"));
    // on_failure is not for a task that never ran; on_exit ran exactly once.
    eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!("{held} skipped {why}\n")
    );
    let report: Value =
        serde_json::from_str(&sp.ok(["report", &held.to_string(), "--json"])).unwrap();
    eq!(report["status"], json!("skipped"));
    eq!(report["hooks"][0]["hook"], json!("on_exit"));
    eq!(report["hooks"][0]["exit_code"], json!(0));
    eq!(report["hooks"].as_array().unwrap().len(), 1);
    // A dependency that can never be met.
    std::fs::remove_file(&marks).unwrap();
    let failing = sp.submit(&["-c", "sleep 1; exit 1"]);
    let never = sp.submit(&[
        "--after",
        &failing.to_string(),
        "--on-exit",
        &hook,
        "-c",
        "true",
    ]);
    eq!(sp.wait(failing), 1);
    eq!(sp.wait(never), 125);
    let why = format!(
        "Slurm cancelled job {} (DependencyNeverSatisfied): predecessor task {failing} ended failure",
        sp.job(never)
    );
    eq!(sp.info(never)["reason"], json!(why));
    eq!(
        std::fs::read_to_string(&marks).unwrap(),
        format!("{never} skipped {why}\n")
    );
    // Listing again runs nothing more.
    sp.ok(["ls"]);
    eq!(std::fs::read_to_string(&marks).unwrap().lines().count(), 1);
}

#[test]
fn kill_reaches_a_running_job_through_its_socket() {
    let sp = cluster();
    let id = sp.running();
    sp.ok(["kill", &id.to_string(), "-s", "KILL"]);
    eq!(sp.wait(id), 137);
    let info = sp.info(id);
    eq!(info["signal"], json!("SIGKILL"));
    eq!(ended_state(sp.job(id)), "FAILED");
}

#[test]
fn a_rejected_submission_is_slurms_word_and_leaves_nothing() {
    let sp = cluster();
    let out = sp.submit_raw(&["--slurm-arg=--partition=nope", "-c", "true"]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    eq!(err.lines().count(), 1);
    assert!(err.contains("Invalid partition name specified"), "{err}");
    eq!(sp.pool.ids().unwrap(), Vec::<u64>::new());
    // No sbatch at all.
    let out = sp
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["spawn", "--engine", "slurm", "--", "/bin/true"])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot run sbatch"),
        "{}",
        stderr(&out)
    );
    eq!(sp.pool.ids().unwrap(), Vec::<u64>::new());
}

#[test]
fn options_without_a_mapping_are_refused_at_spawn() {
    let sp = cluster();
    let local = sp.spawn(["-c", "true"]);
    sp.wait_ok(&local.to_string());
    let lock = sp.scratch().join("lock");
    let lock = lock.to_str().unwrap();
    let local_s = local.to_string();
    for (args, says) in [
        (vec!["--every", "1m"], "a recurring task"),
        (vec!["--group", "g"], "--group"),
        (vec!["--lockfile", lock, "--wait-lock"], "--wait-lock"),
        (vec!["--stdin", "pipe"], "--stdin pipe"),
        (vec!["--pty"], "--pty cannot be mapped"),
        (
            vec!["--after", &local_s],
            "a chain cannot mix local and slurm tasks",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["-c", "true"]);
        let out = sp.submit_raw(&all);
        eq!(code(&out), 1);
        let err = stderr(&out);
        eq!(err.lines().count(), 1);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    eq!(sp.pool.ids().unwrap(), vec![local]);
    // Nor may a local task follow a Slurm one.
    let slurm = sp.submit(&["-c", "true"]);
    let out = sp.run(["spawn", "--after", &slurm.to_string(), "-c", "true"]);
    eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("a chain cannot mix slurm and local tasks"),
        "{}",
        stderr(&out)
    );
    sp.wait(slurm);
}

#[test]
fn a_start_time_maps_to_begin() {
    let sp = cluster();
    let at = (chrono::Local::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let id = sp.submit(&["--at", &at, "-c", "true"]);
    let begin = Command::new("scontrol")
        .args(["show", "job", "-o", &sp.job(id).to_string()])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&begin.stdout).into_owned();
    let want = chrono::DateTime::parse_from_rfc3339(&at).unwrap() + chrono::Duration::seconds(1);
    let want = want
        .with_timezone(&chrono::Local)
        .format("StartTime=%Y-%m-%dT%H:%M:%S");
    assert!(shown.contains(&want.to_string()), "{want} not in {shown}");
    eq!(sp.info(id)["slurm"]["reason"], json!("BeginTime"));
    sp.ok(["terminate", &id.to_string()]);
    eq!(sp.info(id)["state"], json!("skipped"));

    let id = sp.submit(&["--delay", "3s", "-c", "true"]);
    let info = sp.info(id);
    eq!(info["state"], json!("queued"));
    eq!(info["slurm"]["reason"], json!("BeginTime"));
    eq!(sp.wait(id), 0);
    let info = sp.info(id);
    let created =
        chrono::DateTime::parse_from_rfc3339(info["created_at"].as_str().unwrap()).unwrap();
    let started =
        chrono::DateTime::parse_from_rfc3339(info["started_at"].as_str().unwrap()).unwrap();
    assert!(
        started - created >= chrono::Duration::seconds(3),
        "started {started}, created {created}"
    );
}

#[test]
fn off_the_node_info_output_follow_kill_and_pause_go_through_the_record_files_and_slurm() {
    let sp = cluster();
    let fifo = fifo(&sp, "go-on");
    let script = format!(
        "echo >&3; echo first; read line < {}; echo second; exec sleep 300",
        fifo.display()
    );
    let id = sp.running_with(&script);
    // As from another node: the socket cannot be reached.
    let dir = sp.pool.task_dir(id);
    std::fs::rename(dir.join("sock"), dir.join("sock.aside")).unwrap();
    let info = sp.info(id);
    eq!(info["state"], json!("running"));
    eq!(info["slurm"]["state"], json!("RUNNING"));
    eq!(info["slurm"]["node"], json!(hostname()));
    eq!(
        sp.run(["output", &id.to_string()]).stdout,
        b"first\n".to_vec()
    );
    let follow = sp
        .cmd()
        .args(["output", &id.to_string(), "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the fifo waits for the task's reader: the task is past "first" then.
    std::fs::write(&fifo, "x\n").unwrap();
    sp.ok(["pause", &id.to_string()]);
    eq!(sp.info(id)["state"], json!("paused"));
    sp.ok(["resume", &id.to_string()]);
    eq!(sp.info(id)["state"], json!("running"));
    sp.ok(["kill", &id.to_string(), "-s", "TERM"]);
    eq!(sp.wait(id), 143);
    eq!(sp.info(id)["signal"], json!("SIGTERM"));
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success(), "follow ended with {}", out.status);
    eq!(out.stdout, b"first\nsecond\n".to_vec());
}

#[test]
fn off_the_node_terminate_reaches_the_supervisor_through_slurm() {
    let sp = cluster();
    let id = sp.running();
    let dir = sp.pool.task_dir(id);
    std::fs::rename(dir.join("sock"), dir.join("sock.aside")).unwrap();
    sp.ok(["terminate", &id.to_string(), "--grace", "200ms"]);
    let info = sp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["status"], json!("killed"));
    eq!(info["signal"], json!("SIGINT"));
}

#[test]
fn slurms_time_limit_ends_the_task_and_says_so() {
    let sp = cluster_beside();
    // One minute, Slurm's least; enforced up to about 30 s late.
    let id = sp.submit(&["--slurm-arg=--time=1", "-c", "exec sleep 300"]);
    let out = sp.run(["wait", &id.to_string(), "--timeout", "150s"]);
    eq!(code(&out), 130);
    let info = sp.info(id);
    eq!(info["status"], json!("killed"));
    eq!(info["signal"], json!("SIGINT"));
    eq!(
        info["reason"],
        json!("terminated: Slurm sent the supervisor SIGTERM (scancel, or the job's time limit)")
    );
    eq!(ended_state(sp.job(id)), "TIMEOUT");
}

/// `taskpool serve` shows Slurm tasks like any other: listed with their engine and Slurm fields
/// (one `squeue` per listing), followed (here with the socket out of reach, as from another
/// node) until the end with their final info, and their changes on `/api/events`, even one only
/// Slurm knows of (a pending job cancelled from outside).
#[test]
fn serve_shows_slurm_tasks_follows_them_off_the_node_and_sends_their_changes() {
    use crate::serve::{output_bytes, Server};
    let sp = cluster();
    let s = Server::start(&sp, &[]);
    let mut events = s.sse("/api/events", &[]);
    eq!(events.status, 200);
    let held = sp.submit(&["--slurm-arg=--hold", "-c", "true"]);
    let fifo = fifo(&sp, "go-on");
    let id = sp.running_with(&format!(
        "echo >&3; echo first; read line < {}; echo second",
        fifo.display()
    ));
    let listed = s.get("/api/tasks").json();
    let row = |t: u64| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == json!(t))
            .cloned()
            .unwrap_or_else(|| panic!("task {t} not listed: {listed}"))
    };
    eq!(row(held)["engine"], json!("slurm"));
    eq!(row(held)["state"], json!("queued"));
    eq!(row(held)["slurm"]["reason"], json!("JobHeldUser"));
    eq!(row(id)["engine"], json!("slurm"));
    eq!(row(id)["state"], json!("running"));
    eq!(row(id)["slurm"]["job_id"], json!(sp.job(id)));
    eq!(row(id)["slurm"]["node"], json!(hostname()));

    // Followed as from another node: the files, polled, and the record.
    let dir = sp.pool.task_dir(id);
    std::fs::rename(dir.join("sock"), dir.join("sock.aside")).unwrap();
    let mut f = s.sse(&format!("/api/tasks/{id}/follow"), &[]);
    eq!(f.status, 200);
    eq!(output_bytes(&f.next_named("output")), b"first\n".to_vec());
    std::fs::write(&fifo, "x\n").unwrap();
    eq!(output_bytes(&f.next_named("output")), b"second\n".to_vec());
    let end = f.next_named("end").json();
    eq!(end["id"], json!(id));
    eq!(end["status"], json!("success"));
    eq!(end["engine"], json!("slurm"));

    // Slurm cancels the held job: only Slurm knows, until the server looks.
    assert!(Command::new("scancel")
        .arg(sp.job(held).to_string())
        .status()
        .unwrap()
        .success());
    let (mut ended, mut skipped) = (false, false);
    while !(ended && skipped) {
        let e = events.next_named("task").json();
        ended |= e["id"] == json!(id) && e["status"] == json!("success");
        skipped |= e["id"] == json!(held) && e["state"] == json!("skipped");
    }
    s.stop();
}
