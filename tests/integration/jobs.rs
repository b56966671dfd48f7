//! Job files and the drop directory: `spawn --file`, the batch spawn options' checks, and
//! `taskpool watch` (once and live).

use crate::util::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A fresh directory beside the test's pool, mode 0700.
fn private_dir(tp: &TestPool, name: &str) -> PathBuf {
    let d = tp.dir.parent().unwrap().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn spawn_file_runs_a_full_job() {
    let tp = TestPool::new();
    let jobs = private_dir(&tp, "jobs");
    std::fs::create_dir(jobs.join("work")).unwrap();
    let job = json!({
        "command": "printf '%s %s' \"$GREETING\" \"$(basename \"$PWD\")\"",
        "name": "from-file",
        "cwd": "work",
        "env": {"GREETING": "hello"},
        "meta": {"owner": "ops", "n": 3},
        "stdin": "null",
    });
    std::fs::write(jobs.join("job.json"), job.to_string()).unwrap();
    let out = tp.ok(["spawn", "--file", jobs.join("job.json").to_str().unwrap()]);
    let id = out.trim().to_string();
    tp.wait_ok(&id);
    eq!(tp.ok(["output", &id, "--stdout"]), "hello work");
    let info = tp.info(id.parse().unwrap());
    eq!(info["name"], json!("from-file"));
    eq!(info["meta"], json!({"owner": "ops", "n": 3}));
    eq!(info["cwd"], json!(jobs.join("work").to_str().unwrap()));
}

#[test]
fn spawn_file_command_line_options_override_the_file() {
    let tp = TestPool::new();
    let jobs = private_dir(&tp, "jobs");
    let file = jobs.join("job.json");
    std::fs::write(
        &file,
        json!({"command": "echo from-file", "name": "a", "meta": {"k": 1}}).to_string(),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let id = tp.spawn([
        "--file", f, "--name", "b", "--meta", "extra=2", "-c", "echo cli",
    ]);
    tp.wait_ok(&id.to_string());
    let info = tp.info(id);
    eq!(info["name"], json!("b"));
    eq!(info["meta"], json!({"k": 1, "extra": 2}));
    eq!(tp.ok(["output", &id.to_string(), "--stdout"]), "cli\n");
}

#[test]
fn spawn_file_refuses_bad_jobs_naming_the_fault() {
    let tp = TestPool::new();
    let jobs = private_dir(&tp, "jobs");
    let cases = [
        (json!({"command": "true", "colour": "red"}), "colour"),
        (
            json!({"command": "true", "cron": "61 * * * *"}),
            "61 * * * *",
        ),
        (
            json!({"command": "true", "delay": "1m", "at": "tomorrow 02:00"}),
            "\"delay\" and \"at\"",
        ),
        (json!({"name": "no command"}), "command"),
    ];
    for (i, (job, want)) in cases.iter().enumerate() {
        let file = jobs.join(format!("bad{i}.json"));
        std::fs::write(&file, job.to_string()).unwrap();
        let out = tp.run(["spawn", "--file", file.to_str().unwrap()]);
        eq!(code(&out), 1);
        let err = stderr(&out);
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "want {want:?} in: {err}"
        );
    }
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn batch_spawn_options_are_checked_by_value_parsers() {
    let tp = TestPool::new();
    for bad in [
        &["--at", "25:00"][..],
        &["--at", "2001-01-01T00:00:00Z"],
        &["--cron", "61 * * * *"],
        &["--cron", "0 0 31 2 *"],
        &["--every", "0s"],
        &["--now"],
        &["--delay", "1m", "--at", "23:59"],
        &["--cron", "@daily", "--every", "1h"],
        &["--group", ".hidden"],
        &["--backoff", "5m..1s"],
        &["--restart", "sometimes"],
        &["--stop-on", "1,x"],
        &["--max-runs", "0"],
        &["--timeout", "soon"],
    ] {
        let mut args = vec!["spawn"];
        args.extend(bad);
        args.extend(["-c", "true"]);
        let out = tp.run(&args);
        eq!(code(&out), 2);
        assert!(stderr(&out).contains("--"), "{bad:?}: {}", stderr(&out));
    }
    // `spawn` without a command and without --file is a usage error too.
    eq!(code(&tp.run(["spawn", "--name", "x"])), 2);
    // --wait-lock without a lock file (which a job file may give) is refused at spawn.
    let out = tp.run(["spawn", "--wait-lock", "-c", "true"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("--lockfile"), "{}", stderr(&out));
}

#[test]
fn batch_spawn_options_are_accepted_and_stored() {
    let tp = TestPool::new();
    let id = tp.spawn([
        "--group",
        "jobs-test",
        "--priority",
        "-3",
        "--timeout",
        "1h",
        "--warn-codes",
        "1,3",
        "--hook-timeout",
        "5s",
        "-c",
        "true",
    ]);
    tp.wait_ok(&id.to_string());
    eq!(tp.info(id)["group"], json!("jobs-test"));
    let first = tp.spawn(["-c", "true"]);
    tp.wait_ok(&first.to_string());
    let next = tp.spawn(["--after", &first.to_string(), "--", "true"]);
    tp.wait_ok(&next.to_string());
    let out = tp.run(["spawn", "--after", "999", "--", "true"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("999"), "{}", stderr(&out));
}

/// Run `taskpool watch DIR --once`, returning stdout.
fn watch_once(tp: &TestPool, dir: &Path) -> String {
    tp.ok(["watch", "--once", dir.to_str().unwrap()])
}

#[test]
fn watch_once_accepts_good_files_and_rejects_bad_ones() {
    let tp = TestPool::new();
    let drop = private_dir(&tp, "drop");
    std::fs::write(
        drop.join("good.json"),
        json!({"command": ["true"], "name": "dropped"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        drop.join("bad.json"),
        br#"{"command": "true", "colour": 1}"#,
    )
    .unwrap();
    std::fs::write(drop.join(".partial.json"), b"{").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", drop.join("link.json")).unwrap();
    nix::unistd::mkfifo(&drop.join("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let out = watch_once(&tp, &drop);
    eq!(out.lines().count(), 4);
    // Accepted: moved to accepted/ID-NAME, the task exists and records the file's name.
    let accepted = names(&drop.join("accepted"));
    eq!(accepted.len(), 1);
    let (id, name) = accepted[0].split_once('-').unwrap();
    eq!(name, "good.json");
    let info = tp.info(id.parse().unwrap());
    eq!(info["name"], json!("dropped"));
    eq!(info["meta"]["job_file"], json!("good.json"));
    assert!(out.contains(&format!("good.json: task {id}")), "{out}");
    // Rejected: beside a one-line reason naming the fault.
    let rejected = drop.join("rejected");
    eq!(
        names(&rejected),
        [
            "bad.json",
            "bad.json.reason",
            "fifo.json",
            "fifo.json.reason",
            "link.json",
            "link.json.reason"
        ]
    );
    let reason = |n: &str| std::fs::read_to_string(rejected.join(format!("{n}.reason"))).unwrap();
    assert!(
        reason("bad.json").contains("colour"),
        "{}",
        reason("bad.json")
    );
    assert!(
        reason("fifo.json").contains("FIFO"),
        "{}",
        reason("fifo.json")
    );
    assert!(
        reason("link.json").contains("symbolic link"),
        "{}",
        reason("link.json")
    );
    eq!(reason("bad.json").lines().count(), 1);
    // The symlink was moved, not followed.
    assert!(std::fs::symlink_metadata(rejected.join("link.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    // Dot files are left alone; the claim area is private and empty.
    eq!(
        names(&drop),
        [".claimed", ".partial.json", "accepted", "rejected"]
    );
    eq!(names(&drop.join(".claimed")), Vec::<String>::new());
    for sub in ["accepted", "rejected", ".claimed"] {
        let mode = std::fs::metadata(drop.join(sub))
            .unwrap()
            .permissions()
            .mode();
        eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn watch_once_prints_json_lines() {
    let tp = TestPool::new();
    let drop = private_dir(&tp, "drop");
    std::fs::write(drop.join("a.json"), br#"{"command": "true"}"#).unwrap();
    std::fs::write(drop.join("b.json"), b"not json").unwrap();
    let out = tp.ok(["watch", "--once", "--json", drop.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eq!(lines.len(), 2);
    eq!(lines[0]["file"], json!("a.json"));
    assert!(lines[0]["id"].is_u64(), "{out}");
    eq!(lines[1]["file"], json!("b.json"));
    assert!(lines[1]["error"].is_string(), "{out}");
}

#[test]
fn watch_recovers_a_claimed_file_without_submitting_it_twice() {
    let tp = TestPool::new();
    let drop = private_dir(&tp, "drop");
    std::fs::write(drop.join("a.json"), br#"{"command": "true"}"#).unwrap();
    watch_once(&tp, &drop);
    let accepted = names(&drop.join("accepted"));
    let id: u64 = accepted[0].split_once('-').unwrap().0.parse().unwrap();
    let token = tp.info(id)["meta"]["job_claim"]
        .as_str()
        .unwrap()
        .to_owned();
    // As if the watcher died after spawning but before filing the file away.
    std::fs::rename(
        drop.join("accepted").join(&accepted[0]),
        drop.join(".claimed").join(format!("{token}-a.json")),
    )
    .unwrap();
    // And a claim it died before submitting.
    std::fs::write(
        drop.join(".claimed").join("1-2-b.json"),
        br#"{"command": "true"}"#,
    )
    .unwrap();
    watch_once(&tp, &drop);
    let list: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap();
    eq!(list.as_array().unwrap().len(), 2);
    let accepted = names(&drop.join("accepted"));
    eq!(accepted.len(), 2);
    assert!(accepted.contains(&format!("{id}-a.json")), "{accepted:?}");
}

#[test]
fn watch_refuses_a_directory_others_can_write_to() {
    let tp = TestPool::new();
    let drop = private_dir(&tp, "drop");
    for mode in [0o777, 0o770, 0o1777] {
        std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = tp.run(["watch", "--once", drop.to_str().unwrap()]);
        eq!(code(&out), 1);
        assert!(stderr(&out).contains("write"), "{}", stderr(&out));
    }
    let out = tp.run(["watch", "--once", "/nonexistent-drop-dir"]);
    eq!(code(&out), 1);
}

#[test]
fn live_watch_picks_up_a_renamed_file_and_stops_on_sigterm() {
    let tp = TestPool::new();
    let drop = private_dir(&tp, "drop");
    let mut child = tp
        .cmd()
        .args(["watch", drop.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The watcher creates accepted/ before it watches: wait for that, then drop a file the
    // recommended way: written under a dot name, renamed in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !drop.join(".claimed").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(drop.join(".tmp"), br#"{"command": "true", "name": "live"}"#).unwrap();
    std::fs::rename(drop.join(".tmp"), drop.join("live.json")).unwrap();
    let accepted = drop.join("accepted");
    let deadline = Instant::now() + Duration::from_secs(20);
    while names(&accepted).is_empty() {
        assert!(Instant::now() < deadline, "live.json was not accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = names(&accepted);
    assert!(found[0].ends_with("-live.json"), "{found:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    eq!(status.code(), Some(0));
}
