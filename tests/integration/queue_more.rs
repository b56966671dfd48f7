//! More of the batch queue through the real binaries: paused slots, limit changes, priorities,
//! cron with seconds, following deferred tasks, cancelling schedules, `run` with queue options,
//! restarts of succeeding tasks, restore of recurring jobs, chains on scheduled tasks, cancelled
//! lock waiters, job files, the library, hooks of skipped tasks, and the info schema for every
//! new state.

use crate::util::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Wait for a CLI child to exit (pidfd, no polling) within `timeout`, and collect its output.
fn finish(child: Child, timeout: Duration) -> Output {
    let pid = child.id() as i32;
    if !wait_gone(pid, timeout) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let out = child.wait_with_output().unwrap();
        panic!(
            "the command did not end within {timeout:?}; stdout so far: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    child.wait_with_output().unwrap()
}

/// A job firing every `every`, at once first, that writes `fired` into `fifo` each time; returns
/// once the first firing has written.
fn spawn_firing(tp: &TestPool, every: &str, fifo: &Path) -> u64 {
    let id = tp.spawn([
        "--every",
        every,
        "--now",
        "-c",
        &format!("echo fired > {}", fifo.display()),
    ]);
    eq!(
        read_fifo(fifo, Duration::from_secs(5)).as_deref(),
        Some("fired\n")
    );
    id
}

/// `taskpool wait --timeout D ID`: 124 when the task is still live after D.
fn wait_for(tp: &TestPool, id: u64, timeout: &str) -> i32 {
    code(&tp.run(["wait", "--timeout", timeout, &id.to_string()]))
}

/// Ids printed by `ls --state STATE --json`.
fn ls_state(tp: &TestPool, state: &str) -> Vec<u64> {
    let v: Value = serde_json::from_str(&tp.ok(["ls", "--state", state, "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_paused_task_keeps_its_group_slot() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let first = tp.spawn(["--group", "one", "--", "sleep", "30"]);
    let second = tp.spawn(["--group", "one", "--", "true"]);
    eq!(tp.info(second)["state"], json!("queued"));
    tp.ok(["pause", &first.to_string()]);
    eq!(tp.info(first)["state"], json!("paused"));
    // `group set` wakes the first queued task: it looks, and the slot is still taken.
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    eq!(wait_for(&tp, second, "300ms"), 124);
    eq!(tp.info(second)["state"], json!("queued"));
    tp.ok(["resume", &first.to_string()]);
    eq!(tp.info(first)["state"], json!("running"));
    eq!(tp.info(second)["state"], json!("queued"));
    tp.ok(["terminate", &first.to_string()]);
    eq!(wait_for(&tp, second, "5s"), 0);
    eq!(tp.info(second)["status"], json!("success"));
}

#[test]
fn a_raised_limit_starts_every_queued_task_at_once() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "g", "--", "sleep", "30"]);
    let queued: Vec<u64> = (0..3)
        .map(|_| tp.spawn(["--group", "g", "--", "sleep", "0.2"]))
        .collect();
    eq!(ls_state(&tp, "queued"), queued.clone());
    let t0 = Instant::now();
    tp.ok(["group", "set", "g", "--parallel", "4"]);
    for id in &queued {
        eq!(wait_for(&tp, *id, "5s"), 0);
    }
    // All three ran side by side (one after the other would take 0.6 s).
    assert!(
        t0.elapsed() < Duration::from_millis(590),
        "took {:?}",
        t0.elapsed()
    );
    eq!(tp.info(blocker)["state"], json!("running"));
    tp.ok(["terminate", &blocker.to_string()]);
}

#[test]
fn unlimited_releases_the_whole_queue() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "g", "--", "sleep", "30"]);
    let queued: Vec<u64> = (0..3)
        .map(|_| tp.spawn(["--group", "g", "--", "true"]))
        .collect();
    tp.ok(["group", "set", "g", "--unlimited"]);
    for id in &queued {
        eq!(wait_for(&tp, *id, "5s"), 0);
    }
    tp.ok(["terminate", &blocker.to_string()]);
}

#[test]
fn a_lowered_limit_holds_back_new_starts_until_enough_have_ended() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "2"]);
    // Each runner ends when it is sent a line.
    let a = tp.spawn(["--group", "g", "-c", "read x"]);
    let b = tp.spawn(["--group", "g", "-c", "read x"]);
    let q = tp.spawn(["--group", "g", "--", "true"]);
    eq!(tp.info(q)["state"], json!("queued"));
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    tp.ok(["send", &a.to_string(), "go"]);
    eq!(wait_for(&tp, a, "5s"), 0);
    // One still runs, and the limit is 1 now.
    eq!(wait_for(&tp, q, "300ms"), 124);
    eq!(tp.info(q)["state"], json!("queued"));
    tp.ok(["send", &b.to_string(), "go"]);
    eq!(wait_for(&tp, b, "5s"), 0);
    eq!(wait_for(&tp, q, "5s"), 0);
}

#[test]
fn a_higher_priority_jumps_the_queue() {
    let tp = TestPool::new();
    let order = tp.scratch().join("order");
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "one", "-c", "read x"]);
    let job = |name: &str| format!("echo {name} >> {}", order.display());
    let low1 = tp.spawn(["--group", "one", "--priority", "0", "-c", &job("low1")]);
    let neg = tp.spawn(["--group", "one", "--priority", "-3", "-c", &job("neg")]);
    let low2 = tp.spawn(["--group", "one", "-c", &job("low2")]);
    let high = tp.spawn(["--group", "one", "--priority", "5", "-c", &job("high")]);
    tp.ok(["send", &blocker.to_string(), "go"]);
    for id in [blocker, low1, neg, low2, high] {
        eq!(wait_for(&tp, id, "5s"), 0);
    }
    eq!(
        std::fs::read_to_string(&order).unwrap(),
        "high\nlow1\nlow2\nneg\n"
    );
}

#[test]
fn cron_with_a_seconds_field_runs_until_max_runs() {
    let tp = TestPool::new();
    let t0 = Instant::now();
    let id = tp.spawn([
        "--cron",
        "*/1 * * * * *",
        "--max-runs",
        "2",
        "-c",
        "echo tick",
    ]);
    eq!(tp.info(id)["state"], json!("scheduled"));
    assert!(tp.info(id)["next_start"].is_string());
    eq!(wait_for(&tp, id, "5s"), 0);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let info = tp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["status"], json!("success"));
    eq!(info["next_start"], Value::Null);
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 2);
    for r in runs {
        eq!(r["status"], json!("success"));
    }
    // Two firings, a whole second apart.
    let start = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap()).unwrap()
    };
    let gap = start(&runs[1]) - start(&runs[0]);
    assert!(
        gap >= chrono::Duration::milliseconds(900),
        "firings {gap} apart"
    );
    eq!(tp.ok(["output", &id.to_string(), "--run", "2"]), "tick\n");
}

#[test]
fn following_a_scheduled_task_waits_for_its_run() {
    let tp = TestPool::new();
    let id = tp.spawn(["--delay", "500ms", "-c", "echo hi"]);
    eq!(tp.info(id)["state"], json!("scheduled"));
    let child = tp
        .cmd()
        .args(["output", &id.to_string(), "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(5));
    assert!(out.status.success(), "{}", stderr(&out));
    eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

#[test]
fn following_a_queued_task_waits_for_its_run() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "one", "-c", "read x"]);
    let id = tp.spawn(["--group", "one", "-c", "echo hi"]);
    let child = tp
        .cmd()
        .args(["output", &id.to_string(), "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tp.ok(["send", &blocker.to_string(), "go"]);
    let out = finish(child, Duration::from_secs(5));
    assert!(out.status.success(), "{}", stderr(&out));
    eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

/// `taskpool terminate ID` as a child, which must end within 5 s.
fn terminate_within_5s(tp: &TestPool, id: u64) {
    let child = tp
        .cmd()
        .args(["terminate", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(5));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn terminate_of_a_queued_task_returns_and_skips_it() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "one", "-c", "read x"]);
    let queued = tp.spawn(["--group", "one", "--", "true"]);
    terminate_within_5s(&tp, queued);
    let info = tp.info(queued);
    eq!(info["state"], json!("skipped"));
    assert!(
        info["reason"].as_str().unwrap().contains("terminated"),
        "{info}"
    );
    tp.ok(["send", &blocker.to_string(), "go"]);
    eq!(wait_for(&tp, blocker, "5s"), 0);
}

#[test]
fn terminate_of_a_waiting_task_returns_and_skips_it() {
    let tp = TestPool::new();
    let pred = tp.spawn(["-c", "read x"]);
    let dependent = tp.spawn(["--after", &pred.to_string(), "--", "true"]);
    eq!(tp.info(dependent)["state"], json!("waiting"));
    terminate_within_5s(&tp, dependent);
    eq!(tp.info(dependent)["state"], json!("skipped"));
    tp.ok(["send", &pred.to_string(), "go"]);
    eq!(wait_for(&tp, pred, "5s"), 0);
}

#[test]
fn terminate_stops_a_scheduled_recurring_job_for_good() {
    let tp = TestPool::new();
    // The first firing is far off: only the terminate itself can end the job.
    let id = tp.spawn(["--every", "30s", "--", "true"]);
    eq!(tp.info(id)["state"], json!("scheduled"));
    let sup = tp.supervisor_pid(id);
    terminate_within_5s(&tp, id);
    let out = tp.run(["wait", "--timeout", "5s", &id.to_string()]);
    assert!(code(&out) != 124, "wait timed out");
    assert!(
        wait_gone(sup, Duration::from_secs(5)),
        "supervisor lives on"
    );
    let info = tp.info(id);
    eq!(info["state"], json!("skipped"));
    eq!(info["status"], json!("skipped"));
    eq!(info["runs"], json!([]));
    eq!(info["next_start"], Value::Null);
    assert!(info["reason"].is_string(), "{info}");
}

#[test]
fn terminate_between_firings_ends_a_recurring_job_that_ran() {
    let tp = TestPool::new();
    let fired = fifo(&tp, "fired");
    // The second firing is far off: only the terminate itself can end the job.
    let id = spawn_firing(&tp, "30s", &fired);
    let sup = tp.supervisor_pid(id);
    terminate_within_5s(&tp, id);
    let out = tp.run(["wait", "--timeout", "5s", &id.to_string()]);
    assert!(code(&out) != 124, "wait timed out");
    assert!(
        wait_gone(sup, Duration::from_secs(5)),
        "supervisor lives on"
    );
    let info = tp.info(id);
    assert!(
        info["state"] == json!("exited") || info["state"] == json!("skipped"),
        "{info}"
    );
    assert!(info["reason"].is_string(), "{info}");
    eq!(info["next_start"], Value::Null);
    eq!(info["runs"][0]["status"], json!("success"));
    // No more firings: nobody writes to the FIFO again.
    eq!(read_fifo(&fired, Duration::from_millis(1500)), None);
}

#[test]
fn run_with_a_timeout_or_a_delay() {
    let tp = TestPool::new();
    let t0 = Instant::now();
    let out = tp.run([
        "run",
        "--timeout",
        "300ms",
        "--grace",
        "200ms",
        "--",
        "sleep",
        "10",
    ]);
    eq!(code(&out), 124);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let t0 = Instant::now();
    let out = tp.run(["run", "--delay", "200ms", "-c", "echo x"]);
    eq!(code(&out), 0);
    eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[test]
fn restart_always_reruns_a_succeeding_task() {
    let tp = TestPool::new();
    let id = tp.spawn([
        "--restart",
        "always",
        "--max-restarts",
        "1",
        "--backoff",
        "50ms..50ms",
        "-c",
        "echo ran",
    ]);
    eq!(wait_for(&tp, id, "5s"), 0);
    let info = tp.info(id);
    eq!(info["status"], json!("success"));
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 2);
    for (i, r) in runs.iter().enumerate() {
        eq!(r["status"], json!("success"));
        eq!(r["attempt"], json!(i + 1));
    }
    eq!(tp.ok(["output", &id.to_string(), "--run", "1"]), "ran\n");
    eq!(tp.ok(["output", &id.to_string(), "--run", "2"]), "ran\n");
}

#[test]
fn restore_re_arms_a_recurring_job() {
    let tp = TestPool::new();
    let fired = fifo(&tp, "fired");
    let id = spawn_firing(&tp, "1s", &fired);
    sigkill(tp.supervisor_pid(id));
    eq!(tp.info(id)["state"], json!("lost"));
    let before = tp.info(id)["runs"].as_array().unwrap().len();
    eq!(tp.ok(["restore"]).trim(), id.to_string());
    eq!(
        read_fifo(&fired, Duration::from_secs(5)).as_deref(),
        Some("fired\n")
    );
    let info = tp.info(id);
    assert!(
        info["runs"].as_array().unwrap().len() > before,
        "runs did not grow from {before}: {info}"
    );
    tp.ok(["terminate", &id.to_string()]);
    assert!(wait_for(&tp, id, "5s") != 124);
}

#[test]
fn a_dependent_of_a_scheduled_task_waits_for_its_run() {
    let tp = TestPool::new();
    let order = tp.scratch().join("order");
    let a = tp.spawn([
        "--delay",
        "400ms",
        "-c",
        &format!("echo a >> {}", order.display()),
    ]);
    let b = tp.spawn([
        "--after",
        &a.to_string(),
        "-c",
        &format!("echo b >> {}", order.display()),
    ]);
    eq!(tp.info(a)["state"], json!("scheduled"));
    let info = tp.info(b);
    eq!(info["state"], json!("waiting"));
    eq!(info["waiting_for"], json!({"kind": "tasks", "ids": [a]}));
    eq!(wait_for(&tp, b, "5s"), 0);
    eq!(tp.info(a)["status"], json!("success"));
    eq!(std::fs::read_to_string(&order).unwrap(), "a\nb\n");
}

#[test]
fn a_cancelled_lock_waiter_leaves_no_process_holding_the_lock() {
    let tp = TestPool::new();
    let lock = tp.scratch().join("lock");
    let l = lock.to_str().unwrap();
    let holder = tp.spawn(["--lockfile", l, "-c", "read x"]);
    let waiter = tp.spawn(["--lockfile", l, "--wait-lock", "--", "true"]);
    eq!(tp.info(waiter)["state"], json!("waiting"));
    let sup = tp.supervisor_pid(waiter);
    let children = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).unwrap();
    let lock_waiters: Vec<i32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    eq!(lock_waiters.len(), 1);
    tp.ok(["kill", &waiter.to_string()]);
    eq!(wait_for(&tp, waiter, "5s"), 125);
    let info = tp.info(waiter);
    eq!(info["state"], json!("skipped"));
    eq!(info["runs"], json!([]));
    assert!(
        wait_gone(sup, Duration::from_secs(5)),
        "supervisor lives on"
    );
    assert!(
        wait_gone(lock_waiters[0], Duration::from_secs(5)),
        "the lock waiter {} survived",
        lock_waiters[0]
    );
    tp.ok(["send", &holder.to_string(), "go"]);
    eq!(wait_for(&tp, holder, "5s"), 0);
    // Nobody took the lock after the holder let it go.
    let st = std::process::Command::new("flock")
        .args(["-n", l, "true"])
        .status()
        .unwrap();
    assert!(st.success(), "the lock file is still held");
}

#[test]
fn a_job_file_with_after_group_and_every_behaves_like_the_flags() {
    let tp = TestPool::new();
    let work = tp.scratch();
    tp.ok(["group", "set", "jg", "--parallel", "1"]);
    let pred = tp.spawn(["-c", "read x"]);
    let job = work.join("job.json");
    std::fs::write(
        &job,
        json!({
            "command": "echo x >> out",
            "cwd": ".",
            "group": "jg",
            "after": [pred],
            "every": "300ms",
            "max_runs": 2,
        })
        .to_string(),
    )
    .unwrap();
    let id = tp.spawn(["--file", job.to_str().unwrap()]);
    let info = tp.info(id);
    eq!(info["state"], json!("waiting"));
    eq!(info["group"], json!("jg"));
    eq!(info["waiting_for"], json!({"kind": "tasks", "ids": [pred]}));
    tp.ok(["send", &pred.to_string(), "go"]);
    eq!(wait_for(&tp, id, "5s"), 0);
    let info = tp.info(id);
    eq!(info["runs"].as_array().unwrap().len(), 2);
    eq!(info["status"], json!("success"));
    eq!(std::fs::read_to_string(work.join("out")).unwrap(), "x\nx\n");
}

#[test]
fn the_library_spawns_a_delayed_task_and_returns_at_once() {
    use taskpool::{SpawnOptions, State, Status, Stream};
    let tp = TestPool::new();
    let t0 = Instant::now();
    let task = tp
        .pool
        .spawn(&SpawnOptions::shell("echo hi").delay(Duration::from_millis(500)))
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "spawn took {:?}",
        t0.elapsed()
    );
    let info = task.info().unwrap();
    eq!(info.state, State::Scheduled);
    assert!(info.next_start.is_some());
    let info = task.wait().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(500));
    eq!(
        (info.state, info.status),
        (State::Exited, Some(Status::Success))
    );
    eq!(task.read_all(Stream::Stdout).unwrap(), b"hi\n".to_vec());
}

#[test]
fn the_exit_hook_of_a_skipped_task_sees_the_reason() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let a = tp.spawn(["--", "true"]);
    tp.wait_ok(&a.to_string());
    let b = tp.spawn([
        "--after-failure",
        &a.to_string(),
        "--cwd",
        work.to_str().unwrap(),
        "--on-exit",
        "echo \"$TASKPOOL_STATUS|$TASKPOOL_REASON\" > hook.txt",
        "--on-success",
        "echo wrong > success.txt",
        "--",
        "true",
    ]);
    eq!(wait_for(&tp, b, "5s"), 125);
    let info = tp.info(b);
    eq!(info["status"], json!("skipped"));
    let reason = info["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains(&format!("task {a}")), "{reason}");
    eq!(
        std::fs::read_to_string(work.join("hook.txt")).unwrap(),
        format!("skipped|{reason}\n")
    );
    assert!(!work.join("success.txt").exists());
    let hooks = info["report"]["hooks"].as_array().unwrap();
    eq!(hooks.len(), 1);
    eq!(hooks[0]["hook"], json!("on_exit"));
}

#[test]
fn rm_force_of_a_queued_task_leaves_the_queue_working() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let blocker = tp.spawn(["--group", "g", "-c", "read x"]);
    let gone = tp.spawn(["--group", "g", "--", "true"]);
    let next = tp.spawn(["--group", "g", "--", "true"]);
    let sup = tp.supervisor_pid(gone);
    let child = tp
        .cmd()
        .args(["rm", "--force", &gone.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(5));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_gone(sup, Duration::from_secs(5)));
    assert!(
        !tp.pool.task_dir(gone).exists(),
        "task {gone} still has a directory"
    );
    let queue: Vec<_> = std::fs::read_dir(tp.dir.join("groups/g/queue"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    eq!(queue.len(), 1);
    tp.ok(["send", &blocker.to_string(), "go"]);
    eq!(wait_for(&tp, next, "5s"), 0);
    tp.ok(["rm", &blocker.to_string(), &next.to_string()]);
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn ls_state_finds_each_deferred_state() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let running = tp.spawn(["--group", "g", "-c", "read x"]);
    let queued = tp.spawn(["--group", "g", "--", "true"]);
    let waiting = tp.spawn(["--after", &running.to_string(), "--", "true"]);
    let scheduled = tp.spawn(["--delay", "30s", "--", "true"]);
    eq!(ls_state(&tp, "running"), vec![running]);
    eq!(ls_state(&tp, "queued"), vec![queued]);
    eq!(ls_state(&tp, "waiting"), vec![waiting]);
    eq!(ls_state(&tp, "scheduled"), vec![scheduled]);
    let live: Value = serde_json::from_str(&tp.ok(["ls", "--live", "--json"])).unwrap();
    eq!(live.as_array().unwrap().len(), 4);
    tp.ok(["kill", &scheduled.to_string()]);
    eq!(wait_for(&tp, scheduled, "5s"), 125);
    eq!(ls_state(&tp, "skipped"), vec![scheduled]);
    eq!(ls_state(&tp, "scheduled"), Vec::<u64>::new());
    // The table shows the new states too.
    let table = tp.ok(["ls"]);
    for word in ["queued", "waiting", "skipped"] {
        assert!(table.contains(word), "{word} missing from\n{table}");
    }
    tp.ok(["send", &running.to_string(), "go"]);
    for id in [running, queued, waiting] {
        eq!(wait_for(&tp, id, "5s"), 0);
    }
}

#[test]
fn concurrent_limit_changes_while_tasks_end_never_exceed_the_limit_or_stall() {
    let tp = TestPool::new();
    let log = tp.scratch().join("log");
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let job = format!(
        "echo \"S $(date +%s%N)\" >> {l}; sleep 0.02; echo \"E $(date +%s%N)\" >> {l}",
        l = log.display()
    );
    let ids: Vec<u64> = (0..12)
        .map(|_| tp.spawn(["--group", "g", "-c", &job]))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..20 {
                let n = if i % 2 == 0 { "2" } else { "1" };
                tp.ok(["group", "set", "g", "--parallel", n]);
            }
        });
    });
    for id in &ids {
        eq!(wait_for(&tp, *id, "10s"), 0);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let (k, t) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), if k == "S" { 1 } else { -1 })
        })
        .collect();
    eq!(events.len(), 24);
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, d) in &events {
        running += d;
        most = most.max(running);
    }
    assert!(most <= 2, "{most} ran at once:\n{text}");
}

// ----- the info schema for every new state -----

/// Resolve a local `$ref` (`#/a/b`) in `root`.
fn resolve<'a>(root: &'a Value, r: &str) -> &'a Value {
    r.trim_start_matches("#/")
        .split('/')
        .fold(root, |v, k| &v[k])
}

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// The errors of `v` against `schema`: the keywords the shipped schemas use (type, enum, const,
/// required, properties, additionalProperties: false, items, minimum, anyOf, oneOf, $ref).
fn check(root: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(r) = schema["$ref"].as_str() {
        errs.extend(check(root, resolve(root, r), v, at));
    }
    match &schema["type"] {
        Value::String(t) if !type_matches(v, t) => errs.push(format!("{at}: {v} is not {t}")),
        Value::Array(ts) if !ts.iter().any(|t| type_matches(v, t.as_str().unwrap())) => {
            errs.push(format!("{at}: {v} is none of {ts:?}"))
        }
        _ => {}
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            errs.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), v.as_f64()) {
        if n < min {
            errs.push(format!("{at}: {n} < {min}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for k in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(k.as_str().unwrap()) {
                errs.push(format!("{at}: lacks {k}"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, sub) in obj {
                match props.get(k) {
                    Some(p) => errs.extend(check(root, p, sub, &format!("{at}.{k}"))),
                    None if schema["additionalProperties"] == json!(false) || at == "info" => {
                        errs.push(format!("{at}: {k} is not in the schema"))
                    }
                    None => {}
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            errs.extend(check(root, items, x, &format!("{at}[{i}]")));
        }
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(|s| check(root, s, v, at).is_empty()) {
            errs.push(format!("{at}: {v} matches no anyOf branch"));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one
            .iter()
            .filter(|s| check(root, s, v, at).is_empty())
            .count();
        if n != 1 {
            errs.push(format!("{at}: {v} matches {n} oneOf branches"));
        }
    }
    errs
}

#[test]
fn info_of_every_new_state_matches_the_shipped_schema() {
    let schema: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/info.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let tp = TestPool::new();
    let lock = tp.scratch().join("lock");
    let l = lock.to_str().unwrap();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let running = tp.spawn(["--group", "g", "--lockfile", l, "-c", "read x"]);
    let queued = tp.spawn(["--group", "g", "--", "true"]);
    let on_tasks = tp.spawn(["--after", &running.to_string(), "--", "true"]);
    let on_lock = tp.spawn(["--lockfile", l, "--wait-lock", "--", "true"]);
    let scheduled = tp.spawn(["--delay", "30s", "--", "true"]);
    let recurring = tp.spawn([
        "--every",
        "1s",
        "--max-runs",
        "1",
        "--warn-codes",
        "3",
        "-c",
        "exit 3",
    ]);
    let skipped = tp.spawn(["--after-failure", &recurring.to_string(), "--", "true"]);
    let mut infos = vec![
        ("queued", tp.info(queued)),
        ("waiting for tasks", tp.info(on_tasks)),
        ("waiting for a lock", tp.info(on_lock)),
        ("scheduled", tp.info(scheduled)),
        ("scheduled recurring", tp.info(recurring)),
    ];
    tp.ok(["kill", &scheduled.to_string()]);
    wait_for(&tp, scheduled, "5s");
    infos.push(("cancelled", tp.info(scheduled)));
    eq!(wait_for(&tp, recurring, "5s"), 3);
    infos.push(("recurring, ended warning", tp.info(recurring)));
    wait_for(&tp, skipped, "5s");
    infos.push(("skipped", tp.info(skipped)));
    let expected_states = [
        "queued",
        "waiting",
        "waiting",
        "scheduled",
        "scheduled",
        "skipped",
        "exited",
        "skipped",
    ];
    for ((what, info), state) in infos.iter().zip(expected_states) {
        eq!(info["state"], json!(state));
        let errs = check(&schema, &schema, info, "info");
        assert!(errs.is_empty(), "{what}: {errs:#?}\n{info:#}");
    }
    tp.ok(["send", &running.to_string(), "go"]);
    for id in [running, queued, on_tasks, on_lock] {
        eq!(wait_for(&tp, id, "5s"), 0);
    }
}
