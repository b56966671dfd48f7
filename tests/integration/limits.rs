//! Resource limits, nice and OOM score through the CLI: the task runs with them, `info` shows
//! them, a task a limit kills says which, and a raise the caller may not make is refused at spawn
//! with nothing spawned.

use crate::util::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

/// Spawn `args`, wait for the end, return (info, stdout).
fn run_to_end(tp: &TestPool, args: &[&str]) -> (serde_json::Value, String) {
    let id = tp.spawn(args).to_string();
    tp.run(["wait", &id]);
    let info: serde_json::Value =
        serde_json::from_str(&tp.ok(["info", &id, "--json"])).expect("info json");
    (info, tp.ok(["output", &id]))
}

#[test]
fn nofile_limit_binds_the_task_and_shows_in_info() {
    let tp = TestPool::new();
    let h = helper();
    let (info, out) = run_to_end(
        &tp,
        &[
            "--limit",
            "nofile=16",
            "--",
            h.to_str().unwrap(),
            "open",
            "32",
        ],
    );
    // 16 descriptors, three of them the standard streams: 13 more open.
    eq!(out.trim(), "opened 13");
    eq!(info["status"], json!("failure"));
    eq!(info["limits"], json!({"nofile": {"soft": 16, "hard": 16}}));
}

#[test]
fn limits_in_job_files_and_unlimited_values() {
    let tp = TestPool::new();
    let job = tp.scratch().join("job.json");
    std::fs::write(
        &job,
        r#"{"command": ["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -St; ulimit -Hs"],
            "limits": {"nofile": "20:30", "cpu": "1m", "stack": "8M:unlimited"}}"#,
    )
    .unwrap();
    let id = tp.spawn(["--file", job.to_str().unwrap()]).to_string();
    tp.wait_ok(&id);
    eq!(tp.ok(["output", &id]), "20\n30\n60\nunlimited\n");
    let info: serde_json::Value = serde_json::from_str(&tp.ok(["info", &id, "--json"])).unwrap();
    eq!(
        info["limits"]["stack"],
        json!({"soft": 8 << 20, "hard": null})
    );
}

#[test]
fn a_cpu_soft_limit_ends_the_task_with_sigxcpu_in_words() {
    let tp = TestPool::new();
    let h = helper();
    let (info, _) = run_to_end(
        &tp,
        &["--limit", "cpu=1:5", "--", h.to_str().unwrap(), "spin"],
    );
    eq!(info["status"], json!("killed"));
    eq!(info["reason"], json!("killed: CPU time limit (SIGXCPU)"));
    eq!(
        info["report"]["reason"],
        json!("killed: CPU time limit (SIGXCPU)")
    );
}

#[test]
fn a_cpu_hard_limit_kill_is_told_apart_from_another_sigkill() {
    let tp = TestPool::new();
    let h = helper();
    let (info, _) = run_to_end(
        &tp,
        &["--limit", "cpu=1", "--", h.to_str().unwrap(), "spin"],
    );
    eq!(info["status"], json!("killed"));
    assert_eq!(
        info["reason"],
        json!("killed: CPU time hard limit of 1s (SIGKILL)"),
        "{info:#}"
    );
    // A SIGKILL from outside under the same limit is not blamed on it.
    let id = tp
        .spawn(["--limit", "cpu=1", "--", "sleep", "30"])
        .to_string();
    tp.ok(["kill", "-s", "KILL", &id]);
    tp.run(["wait", &id]);
    let info: serde_json::Value = serde_json::from_str(&tp.ok(["info", &id, "--json"])).unwrap();
    eq!(info["status"], json!("killed"));
    assert!(
        !info["reason"].to_string().contains("limit"),
        "{}",
        info["reason"]
    );
}

#[test]
fn a_file_size_limit_ends_the_task_with_sigxfsz() {
    let tp = TestPool::new();
    let h = helper();
    let file = tp.scratch().join("big");
    let (info, _) = run_to_end(
        &tp,
        &[
            "--limit",
            "fsize=64K",
            "--",
            h.to_str().unwrap(),
            "fill",
            "1048576",
            file.to_str().unwrap(),
        ],
    );
    eq!(info["status"], json!("killed"));
    eq!(info["reason"], json!("killed: file size limit (SIGXFSZ)"));
    eq!(std::fs::metadata(&file).unwrap().len(), 64 << 10);
}

#[test]
fn nice_and_oom_score_reach_the_task() {
    let tp = TestPool::new();
    let (info, out) = run_to_end(
        &tp,
        &[
            "--nice",
            "7",
            "--oom-score-adj",
            "300",
            "--",
            "sh",
            "-c",
            "nice; cat /proc/self/oom_score_adj",
        ],
    );
    eq!(out, "7\n300\n");
    eq!(info["nice"], json!(7));
    eq!(info["oom_score_adj"], json!(300));
}

#[test]
fn bad_limits_are_refused_naming_the_limit() {
    let tp = TestPool::new();
    for (args, says) in [
        (vec!["--limit", "files=3"], "unknown limit \"files\""),
        (vec!["--limit", "cpu=10:5"], "soft limit is above"),
        (vec!["--limit", "nofile=lots"], "limit nofile: bad value"),
        (vec!["--nice", "20"], "nice 20 is out of range"),
        (vec!["--oom-score-adj", "1001"], "out of range"),
    ] {
        let mut all = vec!["spawn"];
        all.extend(&args);
        all.extend(["--", "true"]);
        let out = tp.run(&all);
        assert_ne!(code(&out), 0, "{args:?} was accepted");
        // The error is its first line (a usage error adds clap's pointer to --help).
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains(says), "{args:?}: {err}");
    }
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

/// A raise past the caller's hard limit, a lower nice value and a lower OOM score are refused
/// when the caller may not make them (run as uid 65534 when the tests run as root).
#[test]
fn raises_the_caller_may_not_make_are_refused_and_spawn_nothing() {
    let tp = TestPool::new();
    let root = nix::unistd::geteuid().is_root();
    let home = tp.scratch().join("unprivileged");
    std::fs::create_dir_all(&home).unwrap();
    if root {
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(tp.scratch(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            tp.scratch().parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let pool = home.join("pool");
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(bin("taskpool"));
        c.arg("--pool")
            .arg(&pool)
            .args(args)
            .env_remove("TASKPOOL_DIR")
            .stdin(std::process::Stdio::null());
        // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limits.
        unsafe {
            c.pre_exec(|| {
                let l = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if root {
            c.uid(65534).gid(65534);
        }
        c.output().unwrap()
    };
    for (args, says) in [
        (
            vec!["--limit", "nofile=100"],
            "limit nofile: hard limit 100 is above the caller's 64",
        ),
        (vec!["--limit", "nofile=32:unlimited"], "limit nofile"),
        (vec!["--nice", "-5"], "nice -5"),
        (vec!["--oom-score-adj", "-100"], "oom score adjustment -100"),
    ] {
        let mut all = vec!["spawn"];
        all.extend(&args);
        all.extend(["--", "true"]);
        let out = cli(&all);
        assert_ne!(code(&out), 0, "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        eq!(err.trim().lines().count(), 1);
    }
    // Lowering is always allowed.
    let out = cli(&["spawn", "--limit", "nofile=32", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    eq!(code(&cli(&["wait", &id])), 0);
    let listed: serde_json::Value = serde_json::from_slice(&cli(&["ls", "--json"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    eq!(code(&cli(&["rm", &id])), 0);
}
