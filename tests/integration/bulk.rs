//! Bulk submission through the CLI: `spawn --many FILE|-`, one job object per line. Every line is
//! checked before anything is spawned; the ids come back in line order; a failure after the checks
//! names its line and keeps what was made.

use crate::util::*;
use serde_json::json;
use std::io::Write;
use std::process::Stdio;

/// The ids `spawn --many` printed, one per line.
fn ids_of(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not an id: {l:?}")))
        .collect()
}

/// The ids of the task directories in the pool.
fn task_dirs(tp: &TestPool) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(tp.dir.join("tasks"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_thousand_lines_make_a_thousand_running_tasks_and_print_every_id_in_order() {
    let tp = TestPool::new();
    let file = tp.scratch().join("jobs.jsonl");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "{{\"command\": [\"sleep\", \"600\"], \"name\": \"bulk-{i}\"}}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let out = tp.ok(["spawn", "--many", file.to_str().unwrap()]);
    let ids = ids_of(&out);
    eq!(ids.len(), 1000);
    eq!(ids, (1..=1000).collect::<Vec<u64>>());
    // Each task has started by the time spawn returns.
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&tp.ok(["--json", "ls"])).expect("ls json");
    eq!(list.len(), 1000);
    for (i, info) in list.iter().enumerate() {
        eq!(info["id"], json!(i + 1));
        assert_eq!(info["state"], json!("running"), "{info}");
        eq!(info["name"], json!(format!("bulk-{i}")));
    }
}

#[test]
fn a_bad_line_500_spawns_nothing_and_the_error_names_the_line_and_the_key() {
    let tp = TestPool::new();
    let file = tp.scratch().join("jobs.jsonl");
    let mut text = String::new();
    for i in 1..=1000 {
        if i == 500 {
            text.push_str("{\"command\": [\"sleep\", \"600\"], \"timeout\": \"soon\"}\n");
        } else {
            text.push_str("{\"command\": [\"sleep\", \"600\"]}\n");
        }
    }
    std::fs::write(&file, text).unwrap();
    let out = tp.run(["spawn", "--many", file.to_str().unwrap()]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 500"), "{err}");
    assert!(err.contains("timeout"), "{err}");
    assert!(err.contains("nothing was spawned"), "{err}");
    assert!(out.stdout.is_empty());
    eq!(task_dirs(&tp), Vec::<String>::new());
    // No id was used up: the next task is task 1.
    eq!(tp.spawn(["true"]), 1);
}

#[test]
fn a_line_that_is_not_json_or_names_an_unknown_key_is_refused_by_its_number() {
    let tp = TestPool::new();
    let file = tp.scratch().join("jobs.jsonl");
    std::fs::write(
        &file,
        "{\"command\": [\"true\"]}\n{\"command\": [\"true\"], \"colour\": 1}\n",
    )
    .unwrap();
    let out = tp.run(["spawn", "--many", file.to_str().unwrap()]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("line 2") && err.contains("colour"), "{err}");
    std::fs::write(
        &file,
        "{\"command\": [\"true\"]}\n\n{\"command\": [\"true\"\n",
    )
    .unwrap();
    let out = tp.run(["spawn", "--many", file.to_str().unwrap()]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    eq!(task_dirs(&tp), Vec::<String>::new());
}

#[test]
fn stdin_lines_with_command_line_options_on_top_and_json_prints_an_array() {
    let tp = TestPool::new();
    let mut child = tp
        .cmd()
        .args(["--json", "spawn", "--many", "-", "--group", "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"command\": \"echo one\"}\n\n   \n{\"command\": [\"echo\", \"two\"], \"meta\": {\"n\": 2}}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ids: Vec<u64> = serde_json::from_slice(&out.stdout).expect("an array of ids");
    eq!(ids, vec![1, 2]);
    tp.wait_ok("1");
    tp.wait_ok("2");
    eq!(tp.ok(["output", "1"]), "one\n");
    eq!(tp.ok(["output", "2"]), "two\n");
    let two = tp.info(2);
    eq!(two["group"], json!("batch"));
    eq!(two["meta"]["n"], json!(2));
}

#[test]
fn a_failure_after_the_checks_names_its_line_and_leaves_no_directories() {
    let tp = TestPool::new();
    let file = tp.scratch().join("jobs.jsonl");
    std::fs::write(
        &file,
        "{\"command\": [\"true\"]}\n{\"command\": [\"true\"]}\n",
    )
    .unwrap();
    // Every line is valid, but no supervisor can start.
    let out = tp
        .cmd()
        .env("TASKPOOL_SUPERVISOR", "/nonexistent/taskpool-supervisor")
        .args(["spawn", "--many", file.to_str().unwrap()])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("line "), "{err}");
    assert!(err.contains("0 of 2 tasks spawned"), "{err}");
    assert!(out.stdout.is_empty());
    eq!(task_dirs(&tp), Vec::<String>::new());
}

#[test]
fn many_is_refused_beside_a_command() {
    let tp = TestPool::new();
    let out = tp.run(["spawn", "--many", "-", "--", "true"]);
    eq!(code(&out), 2);
    assert!(stderr(&out).contains("--many"), "{}", stderr(&out));
}

#[test]
fn a_drop_directory_burst_is_spawned_together_each_file_its_own_task() {
    use std::os::unix::fs::PermissionsExt;
    let tp = TestPool::new();
    let drop = tp.dir.parent().unwrap().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o700)).unwrap();
    for i in 0..100 {
        let job = if i == 50 {
            "{\"command\": \"true\", \"after\": [999]}".to_owned()
        } else {
            format!("{{\"command\": \"echo {i}\"}}")
        };
        std::fs::write(drop.join(format!("job-{i:03}.json")), job).unwrap();
    }
    let out = tp.ok(["--json", "watch", "--once", drop.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eq!(lines.len(), 100);
    let mut claims = std::collections::BTreeSet::new();
    let mut next = 1;
    for (i, line) in lines.iter().enumerate() {
        eq!(line["file"], json!(format!("job-{i:03}.json")));
        if i == 50 {
            // A bad file is rejected alone, naming why; the rest of the burst goes on.
            assert!(line["error"].as_str().unwrap().contains("999"), "{line}");
            continue;
        }
        let id = line["id"].as_u64().unwrap_or_else(|| panic!("{line}"));
        eq!(id, next);
        next += 1;
        tp.wait_ok(&id.to_string());
        eq!(tp.ok(["output", &id.to_string()]), format!("{i}\n"));
        let info = tp.info(id);
        eq!(info["meta"]["job_file"], json!(format!("job-{i:03}.json")));
        assert!(claims.insert(info["meta"]["job_claim"].to_string()));
    }
    eq!(
        std::fs::read_dir(drop.join("accepted")).unwrap().count(),
        99
    );
}

/// A process's parent and session, from `/proc/PID/stat`.
fn parent_and_session(pid: i64) -> (i64, i64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command's name in parentheses: state, ppid, pgrp, session.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (rest[1].parse().unwrap(), rest[3].parse().unwrap())
}

#[test]
fn tasks_spawned_together_each_get_a_detached_supervisor_in_a_session_of_its_own() {
    let tp = TestPool::new();
    let file = tp.scratch().join("jobs.jsonl");
    std::fs::write(&file, "{\"command\": [\"sleep\", \"600\"]}\n".repeat(4)).unwrap();
    let ids = ids_of(&tp.ok(["spawn", "--many", file.to_str().unwrap()]));
    eq!(ids, vec![1, 2, 3, 4]);
    let me = parent_and_session(std::process::id() as i64).1;
    let mut sessions = std::collections::BTreeSet::new();
    for &id in &ids {
        let info = tp.info(id);
        let sup = info["supervisor_pid"].as_i64().unwrap();
        let (parent, session) = parent_and_session(sup);
        // Detached as a single spawn's supervisor is: a new session that it does not lead (it
        // can never get a controlling terminal), and no longer anyone's child here.
        assert!(
            session != me && session != sup,
            "task {id}: session {session}"
        );
        assert!(
            sessions.insert(session),
            "task {id} shares session {session}"
        );
        assert_ne!(parent, std::process::id() as i64);
        // The task runs under it, and it answers on its socket.
        let pid = info["pid"].as_i64().unwrap();
        eq!(parent_and_session(pid).0, sup);
    }
    tp.ok(["kill", "3"]);
    eq!(code(&tp.run(["wait", "3"])), 128 + 15);
    eq!(tp.info(3)["status"], json!("killed"));
    eq!(tp.info(4)["state"], json!("running"));
}

#[test]
fn running_out_of_inodes_mid_batch_prints_the_ids_made_names_the_line_and_leaves_nothing_else() {
    // Room for the 100 task directories and some tasks' files, not for every task's.
    let Some(tp) = TestPool::on_tmpfs_with("size=64m,nr_inodes=400") else {
        return;
    };
    let file = tp.scratch().join("jobs.jsonl");
    std::fs::write(&file, "{\"command\": [\"sleep\", \"600\"]}\n".repeat(100)).unwrap();
    let out = tp.run(["spawn", "--many", file.to_str().unwrap()]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let ids = ids_of(&String::from_utf8_lossy(&out.stdout));
    assert!(!ids.is_empty() && ids.len() < 100, "{} ids", ids.len());
    assert!(
        err.contains(&format!(
            "({} of 100 tasks spawned; their ids are printed)",
            ids.len()
        )),
        "{err}"
    );
    // The line named failed: ids are given to lines in order, so its id is its number.
    let line: u64 = err
        .split("line ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in {err}"));
    assert!(
        !ids.contains(&line),
        "line {line} failed but its id was printed"
    );
    // Every id printed is a running task; no other task directory is left.
    for &id in &ids {
        eq!(tp.info(id)["state"], json!("running"));
    }
    let mut dirs: Vec<u64> = task_dirs(&tp).iter().map(|d| d.parse().unwrap()).collect();
    dirs.sort_unstable();
    eq!(dirs, ids);
}
