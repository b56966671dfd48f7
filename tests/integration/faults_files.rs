//! Faults in the pool's files and in the task's process tree: the pool directory renamed or
//! deleted under a live task, a task's files removed by hand, a supervisor killed while it
//! rewrites its record, descriptors running out during spawn and search, and a daemon that
//! double-forks out of the task's process group.

use crate::util::*;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn spid(tp: &TestPool, id: u64) -> i32 {
    tp.info(id)["supervisor_pid"].as_i64().unwrap() as i32
}

fn pid_of(tp: &TestPool, id: u64) -> i32 {
    tp.info(id)["pid"].as_i64().unwrap() as i32
}

#[test]
fn a_pool_renamed_under_a_live_task_still_gets_the_final_record() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "cat"]);
    let (spid, pid) = (spid(&tp, id), pid_of(&tp, id));
    let moved = tp.dir.with_file_name("moved");
    std::fs::rename(&tp.dir, &moved).unwrap();
    // The supervisor works inside the task directory: its socket moved with it.
    let tp2 = taskpool::Pool::open(&moved).unwrap();
    let task = tp2.task(id).unwrap();
    task.close_stdin().unwrap();
    let info = task.wait().unwrap();
    eq!(info.state.as_str(), "exited");
    assert!(wait_gone(spid, Duration::from_secs(10)));
    assert!(!alive(pid));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tp2.record_path(id)).unwrap()).unwrap();
    eq!(
        (rec["state"].clone(), rec["runs"][0]["status"].clone()),
        (json!("exited"), json!("success"))
    );
    std::fs::rename(&moved, &tp.dir).unwrap();
}

#[test]
fn a_pool_deleted_under_a_live_task_leaves_no_process_behind() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "60"]);
    let (spid, pid) = (spid(&tp, id), pid_of(&tp, id));
    std::fs::remove_dir_all(&tp.dir).unwrap();
    // Nobody can reach it by its socket now; a signal still ends it, and it records what it can.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        wait_gone(spid, Duration::from_secs(15)),
        "supervisor {spid} stayed"
    );
    assert!(wait_gone(pid, Duration::from_secs(5)), "task {pid} stayed");
}

#[test]
fn files_removed_by_hand_give_clear_errors_and_the_run_still_ends_recorded() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "cat"]);
    let ids = id.to_string();
    let (s1, main_pid) = (spid(&tp, id), pid_of(&tp, id));
    tp.ok(["send", &ids, "first"]);
    // The output file: the supervisor keeps writing to what it has open.
    std::fs::remove_file(tp.pool.run_dir(id, 1).join("stdout")).unwrap();
    tp.ok(["send", &ids, "second"]);
    // The record: the task is not found (a clear error) until its supervisor writes the record
    // again, at its next change or at the end.
    std::fs::remove_file(tp.pool.record_path(id)).unwrap();
    let out = tp.run(["ls"]);
    assert!(
        out.status.success(),
        "ls with a record missing: {}",
        stderr(&out)
    );
    let out = tp.run(["info", &ids]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_gone(s1, Duration::from_secs(10)));
    let info = tp.info(id);
    eq!(
        (info["state"].clone(), info["status"].clone()),
        (json!("exited"), json!("killed"))
    );
    eq!(info["streams"]["stdout"]["end"], json!(13));
    // Reading what is gone is an error naming it, not a panic or a hang.
    let out = tp.run(["output", &ids, "--stdout"]);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // The socket, removed from a live task: the task is unreachable, never reported lost.
    let id2 = tp.spawn(["--", "sleep", "30"]);
    let s2 = spid(&tp, id2);
    std::fs::remove_file(tp.pool.socket_path(id2)).unwrap();
    let out = tp.run(["info", &id2.to_string()]);
    eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot connect to its supervisor"),
        "{}",
        stderr(&out)
    );
    let live: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json", "--live"])).unwrap();
    eq!(live[0]["id"], json!(id2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s2),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_gone(s2, Duration::from_secs(15)));
    eq!(tp.info(id2)["state"], json!("exited"));
}

#[test]
fn a_supervisor_killed_while_rewriting_its_record_leaves_the_previous_record_intact() {
    let tp = TestPool::new();
    for round in 0..15u64 {
        let id = tp.spawn(["--", "sleep", "60"]);
        let s = spid(&tp, id);
        // Keep the supervisor rewriting its record (each meta change is a new record, made
        // large so a write takes a while) from two threads, and kill it meanwhile.
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for t in 0..2 {
                let (tp, stop) = (&tp, &stop);
                scope.spawn(move || {
                    let task = tp.pool.task(id).unwrap();
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let mut patch = serde_json::Map::new();
                        patch.insert(format!("k{t}"), json!(format!("{n:0>40000}")));
                        if task.apply_meta(&patch).is_err() {
                            break;
                        }
                        n += 1;
                    }
                });
            }
            // fault injection at a varying point, not synchronisation
            std::thread::sleep(Duration::from_millis(5 + round * 7));
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(s),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(wait_gone(s, Duration::from_secs(10)));
        let bytes = std::fs::read(tp.pool.record_path(id)).unwrap();
        let rec: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: torn record ({} bytes): {e}", bytes.len()));
        eq!(rec["id"], json!(id));
        eq!(tp.info(id)["state"], json!("lost"));
    }
}

/// Run `taskpool ARGS` with at most `n` open descriptors.
fn run_with_fd_limit(tp: &TestPool, n: u64, args: &[&str]) -> std::process::Output {
    let mut c = tp.cmd();
    c.args(args);
    // SAFETY: setrlimit is async-signal-safe; the hook allocates nothing.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    c.output().unwrap()
}

#[test]
fn running_out_of_descriptors_in_spawn_and_search_is_a_clean_error_that_leaves_nothing() {
    let tp = TestPool::new();
    for _ in 0..5 {
        tp.spawn(["--", "sleep", "30"]);
    }
    let before = tp.pool.list().unwrap().len();
    // Too few to load the program's libraries is the loader's failure, not ours: start above it.
    let mut failures = 0;
    for n in 4..=24 {
        let out = run_with_fd_limit(&tp, n, &["spawn", "--", "sleep", "30"]);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "limit {n}: {err}");
        if !out.status.success() {
            failures += 1;
            eq!(code(&out), 1);
            assert!(err.contains("Too many open files"), "limit {n}: {err}");
            assert!(
                !err.contains("TASKPOOL_SUPERVISOR"),
                "misleading hint: {err}"
            );
        }
        let out = run_with_fd_limit(&tp, n, &["ls", "--json"]);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "limit {n}: {err}");
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v.as_array().unwrap().len() >= before);
        } else {
            eq!(code(&out), 1);
        }
    }
    assert!(failures > 0, "no limit made spawn fail");
    // Every failed spawn left nothing: each task in the pool is a live, reachable one.
    for info in tp.pool.list().unwrap() {
        assert!(info.is_live(), "task {} is {:?}", info.id, info.state);
        eq!(tp.info(info.id)["state"], json!("running"));
    }
    let dirs = std::fs::read_dir(tp.dir.join("tasks")).unwrap().count();
    eq!(dirs, tp.pool.list().unwrap().len());
}

#[test]
fn a_daemon_that_left_the_process_group_is_ended_with_the_task() {
    let tp = TestPool::new();
    for (extra, grace) in [(None, "2s"), (Some("ignore-term"), "300ms")] {
        let mut args = vec![
            "--grace".to_owned(),
            grace.to_owned(),
            "--".to_owned(),
            helper().to_str().unwrap().to_owned(),
            "daemonize".to_owned(),
            "60".to_owned(),
        ];
        args.extend(extra.map(str::to_owned));
        let id = tp.spawn(&args);
        let ids = id.to_string();
        eq!(code(&tp.run(["wait", &ids])), 0);
        let out = tp.ok(["output", &ids]);
        let daemon: i32 = out
            .trim()
            .strip_prefix("daemon ")
            .unwrap_or_else(|| panic!("output {out:?}"))
            .parse()
            .unwrap();
        let s = spid(&tp, id);
        assert!(
            wait_gone(daemon, Duration::from_secs(10)),
            "daemon {daemon} ({extra:?}) survived its task"
        );
        assert!(wait_gone(s, Duration::from_secs(10)));
    }
}
