//! The everyday CLI: spawn, ls, info, meta, wait, restart, rm, clean, completions.

use crate::util::*;
use serde_json::json;

#[test]
fn spawn_prints_the_id_and_ls_shows_the_task() {
    let tp = TestPool::new();
    let id = tp.spawn([
        "--name",
        "greeter",
        "--meta",
        "owner=ops",
        "-c",
        "echo hello",
    ]);
    eq!(id, 1);
    tp.ok(["wait", "1"]);
    let table = tp.ok(["ls"]);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with('1'))
        .expect("a row for task 1");
    assert!(
        row.contains("exited") && row.contains("success") && row.contains("greeter"),
        "row: {row}"
    );
    let list: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap();
    eq!(list.as_array().unwrap().len(), 1);
    eq!(list[0]["name"], json!("greeter"));
    eq!(list[0]["meta"], json!({"owner": "ops"}));
    eq!(list[0]["status"], json!("success"));
    eq!(list[0]["exit_code"], json!(0));
}

#[test]
fn info_has_every_documented_field() {
    let tp = TestPool::new();
    let out = tp.ok(["spawn", "--json", "--", "sleep", "30"]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in [
        "id",
        "name",
        "state",
        "status",
        "command",
        "cwd",
        "pid",
        "supervisor_pid",
        "created_at",
        "started_at",
        "ended_at",
        "exit_code",
        "signal",
        "run",
        "meta",
        "lockfile",
        "streams",
    ] {
        assert!(info.get(key).is_some(), "info lacks {key}: {info}");
    }
    eq!(info["state"], json!("running"));
    eq!(info["status"], json!(null));
    eq!(info["command"], json!(["sleep", "30"]));
    eq!(info["run"], json!(1));
    let started = info["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "not RFC 3339: {started}"
    );
    // The task is its own process group.
    let pid = info["pid"].as_i64().unwrap() as i32;
    eq!(
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
            .unwrap()
            .as_raw(),
        pid
    );
}

#[test]
fn ids_are_never_reused_after_rm_and_clean() {
    let tp = TestPool::new();
    let a = tp.spawn(["--", "true"]);
    let b = tp.spawn(["--", "true"]);
    tp.ok(["wait", &a.to_string(), &b.to_string()]);
    tp.ok(["rm", &b.to_string()]);
    tp.ok(["clean"]);
    let c = tp.spawn(["--", "true"]);
    eq!((a, b, c), (1, 2, 3));
    let listed: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap();
    eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn concurrent_spawns_get_unique_ids() {
    let tp = TestPool::new();
    let ids: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..5).map(|_| tp.spawn(["--", "true"])).collect::<Vec<_>>()))
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    eq!(sorted, (1..=20).collect::<Vec<u64>>());
}

#[test]
fn meta_from_inside_the_task_and_merge_patch() {
    let tp = TestPool::new();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tp
        .cmd()
        .env("PATH", &path)
        .args([
            "spawn",
            "--meta",
            "keep=1",
            "-c",
            "taskpool meta progress=40 'note=half way' && taskpool meta keep=null",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    tp.wait_ok(&id);
    let info: serde_json::Value = serde_json::from_str(&tp.ok(["info", &id, "--json"])).unwrap();
    eq!(info["meta"], json!({"progress": 40, "note": "half way"}));
    // From outside, on an ended task: JSON values, and null deletes.
    tp.ok(["meta", &id, "flags={\"a\":true}", "progress=null"]);
    let info: serde_json::Value = serde_json::from_str(&tp.ok(["info", &id, "--json"])).unwrap();
    eq!(
        info["meta"],
        json!({"note": "half way", "flags": {"a": true}})
    );
}

#[test]
fn ls_filters_by_meta_state_status_and_where() {
    let tp = TestPool::new();
    let a = tp.spawn(["--meta", "team=red", "--", "sleep", "30"]);
    let b = tp.spawn(["--meta", "team=blue", "--", "false"]);
    tp.run(["wait", &b.to_string()]);
    let ids = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["ls", "--json"];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&tp.ok(all)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_u64().unwrap())
            .collect()
    };
    eq!(ids(&["--meta", "team=red"]), vec![a]);
    eq!(ids(&["--live"]), vec![a]);
    eq!(ids(&["--state", "exited"]), vec![b]);
    eq!(ids(&["--status", "failure"]), vec![b]);
    eq!(ids(&["--where", r#"{"meta":{"team":"blue"}}"#]), vec![b]);
    eq!(ids(&["--meta", "team=green"]), Vec::<u64>::new());
    // `search` is an alias of `ls`.
    eq!(
        tp.ok(["search", "--json", "--live"])
            .matches("\"id\"")
            .count(),
        1
    );
}

#[test]
fn wait_passes_statuses_through() {
    let tp = TestPool::new();
    let ok = tp.spawn(["--", "true"]);
    let three = tp.spawn(["-c", "exit 3"]);
    let five = tp.spawn(["-c", "exit 5"]);
    eq!(code(&tp.run(["wait", &ok.to_string()])), 0);
    eq!(
        code(&tp.run([
            "wait",
            &ok.to_string(),
            &three.to_string(),
            &five.to_string()
        ])),
        3
    );
    eq!(
        code(&tp.run(["wait", &five.to_string(), &three.to_string()])),
        5
    );
    let killed = tp.spawn(["--", "sleep", "30"]);
    tp.ok(["kill", &killed.to_string(), "-s", "KILL"]);
    eq!(code(&tp.run(["wait", &killed.to_string()])), 128 + 9);
    let missing = tp.run(["wait", "999"]);
    eq!(code(&missing), 125);
    assert!(stderr(&missing).contains("999"), "{}", stderr(&missing));
    let slow = tp.spawn(["--", "sleep", "30"]);
    eq!(
        code(&tp.run(["wait", &slow.to_string(), "--timeout", "200ms"])),
        124
    );
}

#[test]
fn restart_makes_a_new_run_and_keeps_the_old_output() {
    let tp = TestPool::new();
    let id = tp.spawn(["-c", "echo run $TASKPOOL_TASK_ID"]).to_string();
    tp.ok(["wait", &id]);
    let refused = {
        let live = tp.spawn(["--", "sleep", "30"]).to_string();
        tp.run(["restart", &live])
    };
    eq!(code(&refused), 1);
    assert!(
        stderr(&refused).contains("live") || stderr(&refused).contains("running"),
        "{}",
        stderr(&refused)
    );
    eq!(tp.ok(["restart", &id]).trim(), id.as_str());
    tp.ok(["wait", &id]);
    let info = tp.info(id.parse().unwrap());
    eq!(info["run"], json!(2));
    eq!(tp.ok(["output", &id, "--run", "1"]), format!("run {id}\n"));
    eq!(tp.ok(["output", &id]), format!("run {id}\n"));
}

#[test]
fn rm_refuses_live_tasks_without_force_and_clean_keeps_live_ones() {
    let tp = TestPool::new();
    let live = tp.spawn(["--", "sleep", "30"]).to_string();
    let done = tp.spawn(["--", "true"]).to_string();
    tp.ok(["wait", &done]);
    let refused = tp.run(["rm", &live]);
    eq!(code(&refused), 1);
    assert!(stderr(&refused).contains(&live), "{}", stderr(&refused));
    let cleaned = tp.ok(["clean"]);
    eq!(
        cleaned.split_whitespace().collect::<Vec<_>>(),
        vec![done.as_str()]
    );
    assert!(!tp.dir.join("tasks").join(&done).exists());
    let pid = tp.info(live.parse().unwrap())["pid"].as_i64().unwrap() as i32;
    tp.ok(["rm", "--force", &live]);
    assert!(
        wait_gone(pid, std::time::Duration::from_secs(10)),
        "task process {pid} survived rm --force"
    );
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn completions_are_generated() {
    let tp = TestPool::new();
    let out = tp.ok(["completions", "bash"]);
    assert!(
        out.contains("taskpool") && out.contains("spawn"),
        "{}",
        &out[..out.len().min(200)]
    );
}

#[test]
fn bad_input_gets_one_line_errors_and_exit_codes() {
    let tp = TestPool::new();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["info", "42"], 1, "42"),
        (&["kill", "42"], 1, "42"),
        (&["spawn", "--buffer", "lots", "--", "true"], 2, "lots"),
        (&["spawn", "--meta-json", "[1]", "--", "true"], 2, "object"),
        (
            &["spawn", "--cwd", "/no/such/dir", "--", "true"],
            1,
            "/no/such/dir",
        ),
        (&["spawn", "--", "/no/such/program"], 1, "/no/such/program"),
        (&["bogus-command"], 2, "bogus-command"),
    ];
    for (args, want, names) in cases {
        let out = tp.run(*args);
        eq!((args, code(&out)), (args, *want));
        let err = stderr(&out);
        assert!(
            err.contains(names),
            "{args:?}: stderr does not name {names:?}: {err}"
        );
        if *want == 1 {
            eq!((args, err.trim_end().lines().count()), (args, 1));
        }
    }
    let id = tp.spawn(["--", "sleep", "30"]).to_string();
    let out = tp.run(["kill", &id, "-s", "NOSUCHSIG"]);
    eq!(code(&out), 2);
    assert!(stderr(&out).contains("NOSUCHSIG"), "{}", stderr(&out));
    // Nothing was left behind by the failed spawns.
    let list: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap();
    eq!(list.as_array().unwrap().len(), 1);
    eq!(std::fs::read_dir(tp.dir.join("tasks")).unwrap().count(), 1);
}

#[test]
fn a_task_finds_its_own_record_the_moment_it_starts() {
    // Regression: the record used to be written only after the command was started, so a task
    // asking for itself at once could be told it did not exist.
    let tp = TestPool::new();
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for _ in 0..10 {
        let out = tp
            .cmd()
            .env("PATH", &path)
            .args([
                "spawn",
                "-c",
                "taskpool info \"$TASKPOOL_TASK_ID\" >/dev/null",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        tp.wait_ok(String::from_utf8_lossy(&out.stdout).trim());
    }
}

#[test]
fn restart_right_after_wait_and_of_a_lingering_task() {
    // Regression: a restart issued the moment `wait` returned could find the previous run's
    // supervisor still holding the task's lock ("already has a live supervisor").
    let tp = TestPool::new();
    let id = tp.spawn(["--", "true"]).to_string();
    for run in 2..=6 {
        tp.wait_ok(&id);
        tp.ok(["restart", &id]);
        eq!(tp.info(id.parse().unwrap())["run"], json!(run));
    }
    tp.wait_ok(&id);
    // A supervisor lingering after the end is told to go, and the restart proceeds.
    let lingering = tp.spawn(["--linger", "1h", "--", "true"]).to_string();
    tp.wait_ok(&lingering);
    assert!(tp.pool.socket_path(lingering.parse().unwrap()).exists());
    tp.ok(["restart", &lingering]);
    tp.wait_ok(&lingering);
    eq!(tp.info(lingering.parse().unwrap())["run"], json!(2));
}

#[test]
fn clean_removes_directories_abandoned_by_an_interrupted_spawn() {
    let tp = TestPool::new();
    let live = tp.spawn(["--", "sleep", "30"]);
    // What a spawn killed between taking id 2 and starting its supervisor leaves: a directory.
    let tasks = tp.dir.join("tasks");
    let (old, fresh) = (tasks.join("900"), tasks.join("901"));
    std::fs::create_dir(&old).unwrap();
    std::fs::create_dir(&fresh).unwrap();
    let status = std::process::Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(status.success());
    eq!(tp.ok(["clean"]), "");
    assert!(!old.exists(), "abandoned directory kept");
    assert!(
        fresh.exists(),
        "a directory that may be a spawn in progress was removed"
    );
    assert!(
        tp.pool.record_path(live).exists(),
        "a live task was touched"
    );
}

#[test]
fn every_command_has_a_man_page_listing_its_options() {
    let tp = TestPool::new();
    let dir = tp.scratch().join("man1");
    tp.ok(["manpages".as_ref(), dir.as_os_str()]);
    let top = std::fs::read_to_string(dir.join("taskpool.1")).unwrap();
    assert!(top.contains(".TH taskpool 1"), "{top}");
    // The commands `taskpool --help` lists, each with its page and every long option it takes.
    let help = tp.ok(["--help"]);
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    for c in commands {
        let page = std::fs::read_to_string(dir.join(format!("taskpool-{c}.1")))
            .unwrap_or_else(|e| panic!("no man page for {c}: {e}"));
        let sub_help = tp.ok([c, "--help"]);
        for flag in sub_help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ')', ']', '=']))
            .map(|w| w.split(['=', '[', '<']).next().unwrap())
        {
            // roff escapes '-' as '\-'.
            let escaped = flag.replace('-', "\\-");
            assert!(
                page.contains(&escaped) || page.contains(flag),
                "the man page of {c} lacks {flag}"
            );
        }
    }
}
