//! Groups (`taskpool group set/ls`) and completion reports (`taskpool report`).
//!
//! Scenario tests still to add:
//! - a limit of 2 under 50 tasks from 5 concurrent spawners never has more than 2 running (judged
//!   from start/end marks the jobs write) and keeps FIFO order per spawner;
//! - `--priority` jumps the queue; equal priorities start in spawn order;
//! - SIGKILL of a running task's supervisor frees its slot: the head of the queue starts;
//! - `group set --parallel` raised from 1 to 3 starts two queued tasks at once (the cascade of
//!   kicks); lowered, it holds back new starts without stopping running ones;
//! - a paused task keeps its slot;
//! - killing or removing a queued task takes it out of the queue (`group ls` QUEUED drops) and
//!   the next one still starts;
//! - `ls --json` shows `state: queued` and `waiting_for: {kind: slot, group, parallel}`;
//! - `report` of a hook that times out (`--hook-timeout`), and of a skipped task's `on_exit`.

use crate::util::*;
use serde_json::json;

#[test]
fn group_set_and_ls_round_trip() {
    let tp = TestPool::new();
    eq!(tp.ok(["group", "ls"]), "NAME  PARALLEL  RUNNING  QUEUED\n");
    eq!(tp.ok(["group", "ls", "--json"]).trim(), "[]");
    tp.ok(["group", "set", "db", "--parallel", "2"]);
    tp.ok(["group", "set", "io", "--parallel", "5"]);
    tp.ok(["group", "set", "io", "--unlimited"]);
    eq!(
        tp.ok(["group", "ls"]),
        "NAME  PARALLEL  RUNNING  QUEUED\n\
         db    2         0        0\n\
         io    -         0        0\n"
    );
    let list: serde_json::Value = serde_json::from_str(&tp.ok(["group", "ls", "--json"])).unwrap();
    eq!(
        list,
        json!([
            {"name": "db", "parallel": 2, "running": 0, "queued": []},
            {"name": "io", "parallel": null, "running": 0, "queued": []},
        ])
    );
    eq!(tp.pool.group_limit("db").unwrap(), Some(2));
    let set: serde_json::Value =
        serde_json::from_str(&tp.ok(["group", "set", "db", "--parallel", "3", "--json"])).unwrap();
    eq!(set["parallel"], json!(3));
}

#[test]
fn bad_group_values_are_usage_errors() {
    let tp = TestPool::new();
    for args in [
        &["group", "set", "db", "--parallel", "0"][..],
        &["group", "set", "db", "--parallel", "-1"],
        &["group", "set", "db", "--parallel", "x"],
        &["group", "set", "db"],
        &["group", "set", "db", "--parallel", "2", "--unlimited"],
        &["group", "set", "../etc", "--parallel", "2"],
        &["group", "set", "", "--parallel", "2"],
    ] {
        let out = tp.run(args);
        eq!(out.status.code(), Some(2));
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    let out = tp.run(["group", "set", "a/b", "--parallel", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad group name"), "stderr: {err}");
    assert!(!tp.dir.join("groups").join("a").exists());
}

#[test]
fn report_of_a_live_task_says_it_has_none_yet() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]).to_string();
    for args in [&["report", &id][..], &["report", &id, "--json"]] {
        let out = tp.run(args);
        eq!(out.status.code(), Some(1));
        eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            format!("taskpool: task {id} has no report yet (it is running)")
        );
    }
    let out = tp.run(["report", "999"]);
    eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("task 999 not found"),
        "{out:?}"
    );
}

#[test]
fn a_limit_of_one_runs_a_group_one_task_at_a_time_in_spawn_order() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "serial", "--parallel", "1"]);
    let marks = tp.dir.join("marks");
    let script = format!(
        "echo start $TASKPOOL_TASK_ID >> {m}; sleep 0.1; echo end $TASKPOOL_TASK_ID >> {m}",
        m = marks.display()
    );
    let ids: Vec<String> = (0..4)
        .map(|_| tp.spawn(["--group", "serial", "-c", &script]).to_string())
        .collect();
    let mut wait = vec!["wait".to_owned()];
    wait.extend(ids.iter().cloned());
    tp.ok(&wait);
    let expected: String = ids
        .iter()
        .map(|id| format!("start {id}\nend {id}\n"))
        .collect();
    eq!(std::fs::read_to_string(&marks).unwrap(), expected);
    let groups: serde_json::Value =
        serde_json::from_str(&tp.ok(["group", "ls", "--json"])).unwrap();
    eq!(
        groups,
        json!([{"name": "serial", "parallel": 1, "running": 0, "queued": []}])
    );
}

#[test]
fn report_shows_the_stderr_tail_and_what_the_hooks_did() {
    let tp = TestPool::new();
    let id = tp
        .spawn([
            "--on-failure",
            "echo status=$TASKPOOL_STATUS code=$TASKPOOL_EXIT_CODE; cat",
            "-c",
            "echo oops >&2; exit 3",
        ])
        .to_string();
    let _ = tp.run(["wait", &id]);
    let report: serde_json::Value =
        serde_json::from_str(&tp.ok(["report", &id, "--json"])).unwrap();
    eq!(report["status"], json!("failure"));
    eq!(report["exit_code"], json!(3));
    eq!(report["stderr_tail"], json!("oops\n"));
    let hooks = report["hooks"].as_array().unwrap();
    eq!(hooks.len(), 1);
    eq!(hooks[0]["hook"], json!("on_failure"));
    eq!(hooks[0]["exit_code"], json!(0));
    let output = hooks[0]["output"].as_str().unwrap();
    let mut lines = output.lines();
    eq!(lines.next(), Some("status=failure code=3"));
    let stdin: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    eq!(stdin["id"], json!(id.parse::<u64>().unwrap()));
    eq!(stdin["stderr_tail"], json!("oops\n"));
    let text = tp.ok(["report", &id]);
    assert!(
        text.starts_with(&format!("task {id}: failure, exit code 3\n")),
        "report:\n{text}"
    );
    assert!(
        text.contains("stderr (last lines):\n    oops\n"),
        "report:\n{text}"
    );
    assert!(
        text.contains("hook on_failure: exit code 0 after"),
        "report:\n{text}"
    );
}
