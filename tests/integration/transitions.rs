//! Phase transitions of the supervisor's state machine (`supervisor/src/state/`) that no other
//! test reached, each driven through the real binaries: a terminate while a hook runs, a later
//! run that cannot start (its program gone, its lock file held), a restart while the last run's leftovers are still there, hooks that
//! cannot start, one of several predecessors ending, and a pause of a task that waits.

use crate::util::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Hooks × terminate: the running hook is killed, and a recurring task is not fired again.
#[test]
fn terminate_while_a_hook_runs_kills_it_and_ends_a_recurring_task() {
    let tp = TestPool::new();
    let started = fifo(&tp, "hook-started");
    let hook = format!("echo hook > {}; exec sleep 30", started.display());
    let id = tp.spawn(["--every", "30s", "--now", "--on-exit", &hook, "--", "true"]);
    eq!(
        read_fifo(&started, Duration::from_secs(5)).as_deref(),
        Some("hook\n")
    );
    let sup = tp.supervisor_pid(id);
    let t0 = Instant::now();
    tp.ok(["terminate", &id.to_string()]);
    assert!(
        wait_gone(sup, Duration::from_secs(5)),
        "supervisor lives on"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let info = tp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["next_start"], Value::Null);
    eq!(info["runs"].as_array().unwrap().len(), 1);
    eq!(info["runs"][0]["status"], json!("success"));
    let hooks = info["report"]["hooks"].as_array().unwrap();
    eq!(hooks.len(), 1);
    eq!(hooks[0]["hook"], json!("on_exit"));
    eq!(hooks[0]["exit_code"], Value::Null);
    assert!(hooks[0]["signal"].is_string(), "{}", hooks[0]);
}

/// Gate → a run that cannot start (its program is gone at the next firing): recorded as a failed
/// run, and the plan goes on to its end.
#[test]
fn a_firing_whose_program_is_gone_is_a_failed_run_with_the_reason() {
    let tp = TestPool::new();
    let script = tp.scratch().join("once.sh");
    std::fs::write(&script, "#!/bin/sh\nrm -- \"$0\"\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = tp.spawn([
        "--every",
        "1s",
        "--now",
        "--max-runs",
        "2",
        "--",
        script.to_str().unwrap(),
    ]);
    let out = tp.run(["wait", "--timeout", "10s", &id.to_string()]);
    // As a shell says of a program not found, naming why.
    eq!(code(&out), 127);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not start") && err.contains("not found"),
        "{err}"
    );
    let info = tp.info(id);
    eq!(info["state"], json!("exited"));
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 2);
    eq!(runs[0]["status"], json!("success"));
    eq!(runs[1]["status"], json!("failure"));
    eq!(runs[1]["pid"], Value::Null);
    eq!(runs[1]["started_at"], Value::Null);
    let reason = info["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not found"), "{info}");
    eq!(info["status"], json!("failure"));
}

/// Gate → a restart whose lock file is held (without `--wait-lock`): a failed run naming the
/// lock, and the task ends.
#[test]
fn a_restart_whose_lockfile_is_held_is_a_failed_run_naming_it() {
    use std::os::fd::AsRawFd;
    let tp = TestPool::new();
    let lockfile = tp.scratch().join("the.lock");
    let go = fifo(&tp, "go");
    let id = tp.spawn([
        "--lockfile",
        lockfile.to_str().unwrap(),
        "--restart",
        "on-failure",
        "--max-restarts",
        "1",
        "--backoff",
        "1s..1s",
        "-c",
        &format!("read line < {}; exit 1", go.display()),
    ]);
    // The run holds the lock until it ends; the test takes it as soon as it is free, before the
    // restart's backoff is over.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lockfile)
        .unwrap();
    std::fs::write(&go, "go\n").unwrap();
    // SAFETY: the descriptor is open for the life of `file`.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    let out = tp.run(["wait", "--timeout", "10s", &id.to_string()]);
    let info = tp.info(id);
    eq!(code(&out), 126);
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 2);
    eq!(runs[0]["exit_code"], json!(1));
    eq!(runs[1]["status"], json!("failure"));
    eq!(runs[1]["started_at"], Value::Null);
    let reason = info["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("lockfile {} is held by", lockfile.display())),
        "{info}"
    );
    drop(file);
}

/// Gate → Run while the previous run's leftovers have had their SIGTERM: they are killed at once,
/// not after the grace, and the new run starts.
#[test]
fn a_restart_kills_the_last_runs_leftovers_before_it_starts() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let (marker, pidfile) = (work.join("ran"), work.join("leftover.pid"));
    let job = format!(
        "if [ -e {m} ]; then exit 0; fi; touch {m}; \
         sh -c 'trap \"\" TERM; exec sleep 30' </dev/null >/dev/null 2>&1 & echo $! > {p}; exit 1",
        m = marker.display(),
        p = pidfile.display()
    );
    let t0 = Instant::now();
    let id = tp.spawn([
        "--restart",
        "on-failure",
        "--max-restarts",
        "1",
        "--backoff",
        "100ms..100ms",
        "--grace",
        "20s",
        "-c",
        &job,
    ]);
    let out = tp.run(["wait", "--timeout", "10s", &id.to_string()]);
    eq!(code(&out), 0);
    let leftover: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(leftover, Duration::from_secs(5)),
        "the first run's leftover {leftover} outlived the restart"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let info = tp.info(id);
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 2);
    eq!(runs[0]["status"], json!("failure"));
    eq!(runs[1]["status"], json!("success"));
}

/// Hooks × a hook that cannot start (the task removed its working directory): the failure is in
/// the report, the next hook is tried, and the task ends.
#[test]
fn hooks_that_cannot_start_are_reported_and_the_task_ends() {
    let tp = TestPool::new();
    let doomed = tp.scratch().join("doomed");
    std::fs::create_dir_all(&doomed).unwrap();
    let id = tp.spawn([
        "--cwd",
        doomed.to_str().unwrap(),
        "--on-success",
        "echo success-hook",
        "--on-exit",
        "echo exit-hook",
        "-c",
        "rmdir \"$PWD\"",
    ]);
    tp.wait_ok(&id.to_string());
    let r: Value = serde_json::from_str(&tp.ok(["report", &id.to_string(), "--json"])).unwrap();
    let hooks = r["hooks"].as_array().unwrap();
    eq!(hooks.len(), 2);
    for (h, which) in hooks.iter().zip(["on_success", "on_exit"]) {
        eq!(h["hook"], json!(which));
        eq!(h["exit_code"], Value::Null);
        let error = h["error"].as_str().unwrap_or_default();
        assert!(error.contains(&format!("hook {which}")), "{h}");
    }
    eq!(r["status"], json!("success"));
}

/// Gate × one of several predecessors ends: the task waits on for the others.
#[test]
fn a_task_after_two_waits_for_the_second_when_the_first_ends() {
    let tp = TestPool::new();
    let a = tp.spawn(["--", "sleep", "30"]).to_string();
    let b = tp.spawn(["--", "sleep", "30"]).to_string();
    let c = tp.spawn(["--after-any", &a, "--after-any", &b, "--", "true"]);
    tp.ok(["terminate", &a]);
    let out = tp.run(["wait", "--timeout", "300ms", &c.to_string()]);
    eq!(code(&out), 124);
    let info = tp.info(c);
    eq!(info["state"], json!("waiting"));
    eq!(
        info["waiting_for"]["ids"],
        json!([b.parse::<u64>().unwrap()])
    );
    tp.ok(["terminate", &b]);
    tp.wait_ok(&c.to_string());
    eq!(tp.info(c)["runs"].as_array().unwrap().len(), 1);
}

/// Gate × pause: refused with the state named; the task still waits.
#[test]
fn pause_of_a_scheduled_task_is_refused_naming_its_state() {
    let tp = TestPool::new();
    let id = tp.spawn(["--every", "30s", "--", "true"]);
    let out = tp.run(["pause", &id.to_string()]);
    assert!(code(&out) != 0);
    let err = stderr(&out);
    eq!(err.trim().lines().count(), 1);
    assert!(
        err.contains(&format!(
            "task {id} is scheduled, not running; cannot pause it"
        )),
        "{err}"
    );
    eq!(tp.info(id)["state"], json!("scheduled"));
}
