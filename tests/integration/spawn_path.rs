//! The spawn path's shortcuts: `taskpool` starts a supervisor while it parses its command line
//! (so the supervisor's own start-up overlaps that work), and the library starts one before it
//! allocates the id. What a user must see: the task runs under that supervisor, and when the
//! command does not spawn after all, no supervisor outlives it.

use crate::util::{bin, code, TestPool};
use std::path::PathBuf;

/// The pids of live supervisor programs whose environment holds `TP_TEST_MARK=mark`.
fn marked_supervisors(mark: &str) -> Vec<i32> {
    let want = format!("TP_TEST_MARK={mark}");
    let supervisor = std::fs::canonicalize(bin("taskpool-supervisor")).expect("supervisor");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let exe: Option<PathBuf> = std::fs::read_link(entry.path().join("exe")).ok();
        if exe.as_deref() != Some(supervisor.as_path()) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn the_cli_hands_its_task_to_the_supervisor_it_started_while_parsing() {
    let p = TestPool::new();
    let out = p
        .cmd()
        .args(["spawn", "--", "sleep", "30"])
        .output()
        .expect("run taskpool");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let sup = p.supervisor_pid(id);
    // Started before the pool was known: no `--pool` on its command line.
    let cmdline = std::fs::read(format!("/proc/{sup}/cmdline")).expect("supervisor cmdline");
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(args.len(), 1, "{:?}", String::from_utf8_lossy(&cmdline));
    assert!(args[0].ends_with(b"taskpool-supervisor"));
    let info = p.info(id);
    assert_eq!(info["state"], "running");
    p.ok(["terminate", &id.to_string()]);
}

#[test]
fn a_command_that_does_not_spawn_after_all_leaves_no_supervisor_behind() {
    let p = TestPool::new();
    let first = p.spawn(["--", "true"]);
    p.wait_ok(&first.to_string());
    let cases: &[(&[&str], i32)] = &[
        // The program is checked before any supervisor is asked to run it.
        (&["spawn", "--", "/nonexistent/program"], 1),
        // A usage error ends the command while parsing.
        (&["spawn", "--no-such-option", "--", "true"], 2),
        // Not a spawn, though the word is on the command line.
        (&["ls", "--meta", "spawn=run"], 0),
        // A foreground supervisor stays the command's child: the prestarted one is not used.
        (&["spawn", "--behavior", "foreground", "--", "true"], 0),
        // An unknown predecessor is refused before an id is allocated.
        (&["spawn", "--after", "999999", "--", "true"], 1),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let mark = format!("{}-{i}", std::process::id());
        let out = p
            .cmd()
            .env("TP_TEST_MARK", &mark)
            .args(*args)
            .output()
            .expect("run taskpool");
        assert_eq!(
            code(&out),
            *want,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The command has returned: whatever supervisor it started and did not use is gone
        // already (reaped by the command, not left to exit later).
        assert_eq!(marked_supervisors(&mark), Vec::<i32>::new(), "{args:?}");
    }
    // Nothing was half-made in the pool either: only the first task and the foreground one.
    let ls = p.ok(["ls", "--json"]);
    let tasks: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 2, "{ls}");
}

#[test]
fn programs_are_found_and_run_as_execvp_would_on_the_tasks_own_path() {
    let p = TestPool::new();
    let dir = p.scratch();
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // No `#!` line: run by /bin/sh, with its arguments.
    let plain = bin_dir.join("tp-plain-script");
    std::fs::write(&plain, "echo plain \"$1\" \"$2\"\n").unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Found on the PATH given to the task, not on ours.
    let path = format!("PATH={}:/usr/bin:/bin", bin_dir.display());
    let id = p.spawn(["--env", &path, "--", "tp-plain-script", "a b", "c"]);
    p.wait_ok(&id.to_string());
    assert_eq!(p.ok(["output", &id.to_string()]), "plain a b c\n");
    // A directory earlier on PATH without the program does not hide it further on; one where
    // it is not executable is passed over.
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("tp-plain-script"), "echo wrong\n").unwrap();
    let path = format!(
        "PATH={}:{}:{}:/bin",
        dir.join("missing").display(),
        blocked.display(),
        bin_dir.display()
    );
    let id = p.spawn(["--env", &path, "--", "tp-plain-script", "x"]);
    p.wait_ok(&id.to_string());
    assert_eq!(p.ok(["output", &id.to_string()]), "plain x \n");
}
