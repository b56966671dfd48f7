//! The batch queue through the CLI: group limits and FIFO order, exclusive jobs, chains,
//! schedules and recurring jobs, restarts, timeouts, warning codes, hooks and reports, restore.

use crate::util::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn a_group_limit_of_two_holds_under_fifty_tasks_from_five_spawners() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let log = work.join("log");
    tp.ok(["group", "set", "g", "--parallel", "2"]);
    // Each job notes its start and end (nanoseconds) with one append each.
    let job = format!(
        "echo \"S $TASKPOOL_TASK_ID $(date +%s%N)\" >> {l}; sleep 0.05; echo \"E $TASKPOOL_TASK_ID $(date +%s%N)\" >> {l}",
        l = log.display()
    );
    let ids: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| tp.spawn(["--group", "g", "-c", &job]))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<String> = ids.iter().flatten().map(|i| i.to_string()).collect();
    let mut wait = vec!["wait".to_string()];
    wait.extend(all.iter().cloned());
    tp.ok(&wait);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut events: Vec<(u128, i32, u64)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let d = if f[0] == "S" { 1 } else { -1 };
            (f[2].parse().unwrap(), d, f[1].parse().unwrap())
        })
        .collect();
    eq!(events.len(), 100);
    // Ends before starts at the same instant.
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, d, _) in &events {
        running += d;
        most = most.max(running);
    }
    assert!(most <= 2, "{most} ran at once:\n{text}");
    assert!(most == 2, "the limit was never used in full:\n{text}");
    // FIFO per spawner: each spawner's tasks started in the order it spawned them (the
    // supervisor's start times; a few ms of slack for two slots taken at the same moment).
    let started = |id: u64| {
        let info = tp.info(id);
        chrono::DateTime::parse_from_rfc3339(info["started_at"].as_str().unwrap()).unwrap()
    };
    for spawner in &ids {
        let times: Vec<_> = spawner.iter().map(|&i| started(i)).collect();
        for w in times.windows(2) {
            assert!(
                w[1] >= w[0] - chrono::Duration::milliseconds(20),
                "out of order: {spawner:?} {times:?}"
            );
        }
    }
}

#[test]
fn a_queued_task_waits_for_a_slot_shows_it_and_can_be_cancelled() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let first = tp.spawn(["--group", "one", "--", "sleep", "30"]);
    let second = tp.spawn(["--group", "one", "--", "true"]);
    let third = tp.spawn(["--group", "one", "--", "true"]);
    let info = tp.info(second);
    eq!(info["state"], json!("queued"));
    eq!(info["waiting_for"]["kind"], json!("slot"));
    eq!(info["waiting_for"]["group"], json!("one"));
    eq!(info["group"], json!("one"));
    // Killing a queued task cancels it: it never runs.
    tp.ok(["kill", &second.to_string()]);
    let out = tp.run(["wait", &second.to_string()]);
    eq!(code(&out), 125);
    let info = tp.info(second);
    eq!(info["state"], json!("skipped"));
    eq!(info["status"], json!("skipped"));
    eq!(info["runs"], json!([]));
    // Raising the limit starts the next one at once.
    tp.ok(["group", "set", "one", "--parallel", "2"]);
    tp.wait_ok(&third.to_string());
    let groups: Value = serde_json::from_str(&tp.ok(["group", "ls", "--json"])).unwrap();
    eq!(groups[0]["running"], json!(1));
    tp.ok(["terminate", &first.to_string()]);
    tp.ok(["rm", &second.to_string()]);
}

#[test]
fn a_slot_held_by_a_killed_supervisor_is_freed() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "one", "--parallel", "1"]);
    let first = tp.spawn(["--group", "one", "--", "sleep", "30"]);
    let second = tp.spawn(["--group", "one", "--", "true"]);
    eq!(tp.info(second)["state"], json!("queued"));
    sigkill(tp.supervisor_pid(first));
    // The kernel freed the slot; the head of the queue watched its holder and starts.
    tp.wait_ok(&second.to_string());
}

#[test]
fn wait_lock_waits_for_the_holder_and_names_it() {
    let tp = TestPool::new();
    let lock = tp.scratch().join("lock");
    let l = lock.to_str().unwrap();
    let holder = tp.spawn(["--lockfile", l, "--", "sleep", "30"]);
    // Without --wait-lock the second holder is refused.
    let out = tp.run(["spawn", "--lockfile", l, "--", "true"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("is held by"), "{}", stderr(&out));
    let waiter = tp.spawn(["--lockfile", l, "--wait-lock", "--", "true"]);
    let info = tp.info(waiter);
    eq!(info["state"], json!("waiting"));
    eq!(info["waiting_for"]["kind"], json!("lock"));
    eq!(info["waiting_for"]["lockfile"], json!(l));
    let sup = tp.info(holder)["supervisor_pid"].as_i64().unwrap();
    eq!(info["waiting_for"]["holder"], json!(sup.to_string()));
    tp.ok(["terminate", &holder.to_string()]);
    tp.wait_ok(&waiter.to_string());
}

#[test]
fn a_chain_with_a_failing_step_skips_and_takes_the_alternate_route() {
    let tp = TestPool::new();
    let a = tp.spawn(["--", "true"]).to_string();
    let b = tp.spawn(["--after", &a, "--", "false"]).to_string();
    let c = tp.spawn(["--after", &b, "--", "true"]).to_string();
    let d = tp.spawn(["--after-failure", &b, "--", "true"]).to_string();
    let e = tp.spawn(["--after", &c, "--", "true"]).to_string();
    let f = tp.spawn(["--after-any", &c, "--", "true"]).to_string();
    let g = tp.spawn(["--after-failure", &a, "--", "true"]).to_string();
    for id in [&d, &f] {
        tp.wait_ok(id);
    }
    for id in [&c, &e, &g] {
        eq!(code(&tp.run(["wait", id])), 125);
    }
    let status = |id: &str| tp.info(id.parse().unwrap())["status"].clone();
    eq!(status(&a), json!("success"));
    eq!(status(&b), json!("failure"));
    eq!(status(&c), json!("skipped"));
    eq!(status(&d), json!("success"));
    eq!(status(&e), json!("skipped"));
    eq!(status(&f), json!("success"));
    eq!(status(&g), json!("skipped"));
    let reason = tp.info(c.parse().unwrap())["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains(&format!("task {b} ended failure")),
        "{reason}"
    );
    let reason = tp.info(e.parse().unwrap())["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains(&format!("task {c} ended skipped")),
        "{reason}"
    );
}

#[test]
fn a_dependent_waits_in_state_waiting_naming_its_predecessor() {
    let tp = TestPool::new();
    let a = tp.spawn(["--", "sleep", "30"]);
    let b = tp.spawn(["--after", &a.to_string(), "--", "true"]);
    let info = tp.info(b);
    eq!(info["state"], json!("waiting"));
    eq!(info["waiting_for"], json!({"kind": "tasks", "ids": [a]}));
    // A predecessor killed by a signal ends `killed`: --after cannot be met.
    tp.ok(["kill", &a.to_string(), "-s", "KILL"]);
    eq!(code(&tp.run(["wait", &b.to_string()])), 125);
    eq!(tp.info(b)["status"], json!("skipped"));
}

#[test]
fn an_unknown_predecessor_is_refused_at_spawn() {
    let tp = TestPool::new();
    let out = tp.run(["spawn", "--after", "4242", "--", "true"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("task 4242"), "{}", stderr(&out));
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn a_chain_of_a_hundred_tasks_runs_in_order() {
    let tp = TestPool::new();
    let order = tp.scratch().join("order");
    let job = format!("echo $TASKPOOL_TASK_ID >> {}", order.display());
    let mut prev: Option<u64> = None;
    let mut ids = Vec::new();
    for _ in 0..100 {
        let id = match prev {
            Some(p) => tp.spawn(["--after", &p.to_string(), "-c", &job]),
            None => tp.spawn(["-c", &job]),
        };
        ids.push(id);
        prev = Some(id);
    }
    tp.wait_ok(&prev.unwrap().to_string());
    let got: Vec<u64> = std::fs::read_to_string(&order)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    eq!(got, ids);
}

#[test]
fn clean_keeps_records_that_live_dependents_need() {
    let tp = TestPool::new();
    let a = tp.spawn(["--", "true"]);
    tp.wait_ok(&a.to_string());
    let blocker = tp.spawn(["--", "sleep", "30"]);
    let b = tp.spawn([
        "--after",
        &a.to_string(),
        "--after",
        &blocker.to_string(),
        "--",
        "true",
    ]);
    tp.ok(["clean"]);
    assert!(
        tp.pool.record_path(a).exists(),
        "clean removed a needed record"
    );
    tp.ok(["terminate", &blocker.to_string()]);
    tp.run(["wait", &b.to_string()]);
}

#[test]
fn a_delayed_task_is_scheduled_then_runs() {
    let tp = TestPool::new();
    let t0 = Instant::now();
    let id = tp.spawn(["--delay", "600ms", "--", "true"]);
    let info = tp.info(id);
    eq!(info["state"], json!("scheduled"));
    assert!(info["next_start"].is_string());
    eq!(info["runs"], json!([]));
    tp.wait_ok(&id.to_string());
    assert!(t0.elapsed() >= Duration::from_millis(600));
    eq!(tp.info(id)["state"], json!("exited"));
}

#[test]
fn an_absolute_time_in_the_past_is_refused() {
    let tp = TestPool::new();
    let out = tp.run(["spawn", "--at", "2001-01-01T00:00:00Z", "--", "true"]);
    // A bad option value: a usage error.
    eq!(code(&out), 2);
    assert!(stderr(&out).contains("2001-01-01"), "{}", stderr(&out));
}

#[test]
fn a_job_every_second_records_history_skips_overlaps_and_stops_on_a_code() {
    let tp = TestPool::new();
    let work = tp.scratch();
    // Run 1 is quick; run 2 outlasts two firings; run 3 exits 3, which stops the job.
    let job = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo run $n; \
               if [ $n -eq 2 ]; then sleep 2.3; fi; if [ $n -ge 3 ]; then exit 3; fi";
    let id = tp.spawn([
        "--every",
        "1s",
        "--now",
        "--stop-on",
        "3",
        "--cwd",
        work.to_str().unwrap(),
        "-c",
        job,
    ]);
    let out = tp.run(["wait", &id.to_string()]);
    eq!(code(&out), 3);
    let info = tp.info(id);
    eq!(info["state"], json!("exited"));
    eq!(info["status"], json!("failure"));
    let runs = info["runs"].as_array().unwrap();
    eq!(runs.len(), 3);
    for (i, r) in runs.iter().enumerate() {
        eq!(r["run"], json!(i + 1));
        assert!(r["started_at"].is_string() && r["ended_at"].is_string());
        assert!(r["duration"].is_number());
    }
    eq!(runs[0]["exit_code"], json!(0));
    eq!(runs[2]["exit_code"], json!(3));
    assert!(info["overlaps"].as_u64().unwrap() >= 1, "{info}");
    assert!(
        info["reason"].as_str().unwrap().contains("stop-on"),
        "{info}"
    );
    eq!(tp.ok(["output", &id.to_string(), "--run", "2"]), "run 2\n");
}

#[test]
fn max_runs_stops_a_recurring_job() {
    let tp = TestPool::new();
    let id = tp.spawn(["--every", "200ms", "--max-runs", "2", "--", "true"]);
    eq!(tp.info(id)["state"], json!("scheduled"));
    tp.wait_ok(&id.to_string());
    eq!(tp.info(id)["runs"].as_array().unwrap().len(), 2);
}

#[test]
fn restarts_back_off_and_each_attempt_shows() {
    let tp = TestPool::new();
    let id = tp.spawn([
        "--restart",
        "on-failure",
        "--max-restarts",
        "2",
        "--backoff",
        "100ms..150ms",
        "--",
        "false",
    ]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 1);
    let info = tp.info(id);
    let attempts: Vec<Value> = info["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempt"].clone())
        .collect();
    eq!(attempts, vec![json!(1), json!(2), json!(3)]);
    eq!(info["status"], json!("failure"));
    eq!(info["report"]["attempts"], json!(3));
}

#[test]
fn a_timeout_ends_the_whole_process_tree() {
    let tp = TestPool::new();
    let pids = tp.scratch().join("pids");
    let job = format!(
        "sleep 30 & echo $! > {p}; sh -c 'sleep 30' & wait",
        p = pids.display()
    );
    let id = tp.spawn(["--timeout", "300ms", "--grace", "200ms", "-c", &job]);
    let out = tp.run(["wait", &id.to_string()]);
    eq!(code(&out), 124);
    let info = tp.info(id);
    eq!(info["status"], json!("timeout"));
    assert!(info["reason"].as_str().unwrap().contains("timed out"));
    let bg: i32 = std::fs::read_to_string(&pids)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_gone(bg, Duration::from_secs(5)),
        "the background sleep survived"
    );
}

#[test]
fn warn_codes_mean_success_with_warnings() {
    let tp = TestPool::new();
    let id = tp.spawn(["--warn-codes", "3,4", "-c", "exit 4"]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 4);
    eq!(tp.info(id)["status"], json!("warning"));
    // A warning satisfies --after.
    let next = tp.spawn(["--after", &id.to_string(), "--", "true"]);
    tp.wait_ok(&next.to_string());
}

#[test]
fn hooks_see_the_report_and_wait_returns_after_them() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let hook = "cat > hook.json; env | grep ^TASKPOOL_ | sort > hook.env; echo hook-said-this";
    let id = tp.spawn([
        "--cwd",
        work.to_str().unwrap(),
        "--on-success",
        hook,
        "--on-exit",
        "echo exit-hook",
        "-c",
        "echo out; echo complaint >&2",
    ]);
    tp.wait_ok(&id.to_string());
    // `wait` returned: the hooks have run.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("hook.json")).unwrap()).unwrap();
    eq!(report["status"], json!("success"));
    eq!(report["id"], json!(id));
    assert!(report["stderr_tail"]
        .as_str()
        .unwrap()
        .contains("complaint"));
    let env = std::fs::read_to_string(work.join("hook.env")).unwrap();
    assert!(env.contains("TASKPOOL_STATUS=success"), "{env}");
    assert!(env.contains(&format!("TASKPOOL_TASK_ID={id}")), "{env}");
    assert!(env.contains("TASKPOOL_EXIT_CODE=0"), "{env}");
    let out_path = env
        .lines()
        .find_map(|l| l.strip_prefix("TASKPOOL_OUTPUT="))
        .expect("TASKPOOL_OUTPUT");
    eq!(
        std::fs::read_to_string(Path::new(out_path)).unwrap(),
        "out\n"
    );
    let r: Value = serde_json::from_str(&tp.ok(["report", &id.to_string(), "--json"])).unwrap();
    let hooks = r["hooks"].as_array().unwrap();
    eq!(hooks.len(), 2);
    eq!(hooks[0]["hook"], json!("on_success"));
    eq!(hooks[0]["exit_code"], json!(0));
    assert!(hooks[0]["output"]
        .as_str()
        .unwrap()
        .contains("hook-said-this"));
    eq!(hooks[1]["hook"], json!("on_exit"));
    eq!(r["stdout_bytes"], json!(4));
}

#[test]
fn a_hook_that_runs_too_long_is_killed_and_never_changes_the_status() {
    let tp = TestPool::new();
    let id = tp.spawn([
        "--on-failure",
        "sleep 30",
        "--hook-timeout",
        "300ms",
        "-c",
        "exit 2",
    ]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 2);
    let info = tp.info(id);
    eq!(info["status"], json!("failure"));
    let hook = &info["report"]["hooks"][0];
    eq!(hook["hook"], json!("on_failure"));
    eq!(hook["timed_out"], json!(true));
    eq!(hook["signal"], json!("SIGKILL"));
}

#[test]
fn restore_re_arms_a_scheduled_task_after_its_supervisor_is_killed() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let id = tp.spawn([
        "--delay",
        "1s",
        "--cwd",
        work.to_str().unwrap(),
        "-c",
        "echo ran > ran",
    ]);
    sigkill(tp.supervisor_pid(id));
    eq!(tp.info(id)["state"], json!("lost"));
    // A one-time task that was running when lost is not re-armed.
    let plain = tp.spawn(["--", "sleep", "30"]);
    sigkill(tp.supervisor_pid(plain));
    eq!(tp.ok(["restore"]).trim(), id.to_string());
    eq!(tp.info(id)["state"], json!("scheduled"));
    tp.wait_ok(&id.to_string());
    eq!(std::fs::read_to_string(work.join("ran")).unwrap(), "ran\n");
    eq!(tp.info(plain)["state"], json!("lost"));
}

#[test]
fn report_prints_the_completion_report() {
    let tp = TestPool::new();
    let id = tp.spawn(["-c", "echo oops >&2; exit 5"]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 5);
    let text = tp.ok(["report", &id.to_string()]);
    assert!(text.contains("failure"), "{text}");
    assert!(text.contains("oops"), "{text}");
}
