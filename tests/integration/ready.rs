//! Readiness through the CLI: a task that says it is ready by fd (`--ready-fd`) or by datagram
//! (`--notify`); `spawn --wait-ready` and `wait --ready` return once it has, and not before; a
//! task that ends first, or a timeout, fails naming why; only the owner's datagrams count.

use crate::util::*;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

fn millis_between(info: &serde_json::Value, from: &str, to: &str) -> i64 {
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(info[k].as_str().unwrap_or_else(|| panic!("{k}")))
            .unwrap()
    };
    (t(to) - t(from)).num_milliseconds()
}

#[test]
fn spawn_wait_ready_returns_once_the_task_writes_to_its_ready_fd() {
    let tp = TestPool::new();
    let t0 = Instant::now();
    let out = tp.run([
        "spawn",
        "--ready-fd",
        "3",
        "--wait-ready",
        "--",
        "sh",
        "-c",
        "sleep 0.5; echo >&3; exec sleep 30",
    ]);
    let took = t0.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        took >= Duration::from_millis(500),
        "returned after {took:?}"
    );
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let info = tp.info(id);
    eq!(info["state"], json!("running"));
    eq!(info["ready"], json!(true));
    eq!(info["readiness"], json!({"fd": 3}));
    assert!(
        millis_between(&info, "started_at", "ready_at") >= 450,
        "{info}"
    );
    // Later waits return at once.
    tp.ok(["wait", "--ready", &id.to_string()]);
    tp.ok(["terminate", &id.to_string()]);
}

#[test]
fn notify_sets_ready_and_status_and_a_restart_keeps_the_option() {
    let tp = TestPool::new();
    let h = helper();
    let script = format!(
        "sleep 0.5; {} notify 'STATUS=warming up' 'STATUS=serving\\nREADY=1' >/dev/null; exec sleep 30",
        h.display()
    );
    let t0 = Instant::now();
    let out = tp.run([
        "--json",
        "spawn",
        "--notify",
        "--wait-ready=20s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let text = String::from_utf8_lossy(&out.stdout);
    let (id_line, rest) = text.split_once('\n').unwrap();
    let info: serde_json::Value = serde_json::from_str(rest).unwrap();
    eq!(info["ready"], json!(true));
    eq!(info["meta"]["status"], json!("serving"));
    eq!(info["readiness"], json!("notify"));
    let id = id_line.trim().to_owned();
    // The socket is in the task's directory while the run lasts.
    assert!(tp
        .pool
        .task_dir(id.parse().unwrap())
        .join("notify")
        .exists());
    tp.ok(["terminate", &id]);
    assert!(!tp
        .pool
        .task_dir(id.parse().unwrap())
        .join("notify")
        .exists());
    // A new run is not ready until it says so again.
    tp.ok(["restart", &id]);
    let out = tp.run(["wait", "--ready", "--timeout", "20s", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let info = tp.info(id.parse().unwrap());
    eq!(info["run"], json!(2));
    eq!(info["ready"], json!(true));
    tp.ok(["terminate", &id]);
}

#[test]
fn a_task_that_ends_before_it_is_ready_fails_the_wait() {
    let tp = TestPool::new();
    let out = tp.run([
        "spawn",
        "--notify",
        "--wait-ready",
        "--",
        "sh",
        "-c",
        "sleep 0.2; exit 3",
    ]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("ended (failure) before it was ready"), "{err}");
    // The id was printed: the task exists, ended.
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eq!(tp.info(id)["ready"], json!(false));
    // A pipe closed without a newline is no notification either.
    let out = tp.run([
        "spawn",
        "--ready-fd",
        "5",
        "--wait-ready",
        "--",
        "sh",
        "-c",
        "printf x >&5; exec 5>&-; sleep 0.2",
    ]);
    eq!(code(&out), 1);
}

#[test]
fn a_timeout_fails_the_wait_and_the_task_goes_on() {
    let tp = TestPool::new();
    let out = tp.run([
        "spawn",
        "--ready-fd",
        "3",
        "--wait-ready=300ms",
        "--",
        "sleep",
        "30",
    ]);
    eq!(code(&out), 124);
    assert!(
        stderr(&out).contains("is not ready within 300ms (it goes on)"),
        "{}",
        stderr(&out)
    );
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eq!(tp.info(id)["state"], json!("running"));
    let out = tp.run(["wait", "--ready", "--timeout", "200ms", &id.to_string()]);
    eq!(code(&out), 124);
    tp.ok(["terminate", &id.to_string()]);
}

#[test]
fn readiness_options_are_checked_before_anything_is_spawned() {
    let tp = TestPool::new();
    for (args, says) in [
        (
            vec!["--wait-ready"],
            "--wait-ready needs --ready-fd or --notify",
        ),
        (
            vec!["--ready-fd", "2"],
            "ready fd 2: must be from 3 to 1023",
        ),
        (vec!["--ready-fd", "3", "--notify"], "cannot be used with"),
    ] {
        let mut all = vec!["spawn"];
        all.extend(&args);
        all.extend(["--", "true"]);
        let out = tp.run(&all);
        assert_ne!(code(&out), 0, "{args:?}");
        let err = stderr(&out);
        assert!(
            err.lines().next().unwrap_or_default().contains(says),
            "{args:?}: {err}"
        );
    }
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
    let id = tp.spawn(["--", "sleep", "30"]).to_string();
    let out = tp.run(["wait", "--ready", &id]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("spawned without --ready-fd or --notify"),
        "{}",
        stderr(&out)
    );
    tp.ok(["terminate", &id]);
}

/// A pool whose path is too long for a socket address gets an abstract notify socket; there,
/// anyone on the machine may send, so only the owner's datagrams may count. An oversized
/// datagram is dropped whole.
#[test]
fn only_the_owners_datagrams_of_up_to_4096_bytes_count() {
    let tp = TestPool::new();
    let deep = tp.scratch().join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let pool = deep.join("pool");
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(bin("taskpool"));
        c.arg("--pool")
            .arg(&pool)
            .args(args)
            .env_remove("TASKPOOL_DIR");
        c.stdin(std::process::Stdio::null()).output().unwrap()
    };
    let fifo = tp.scratch().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The task tells its NOTIFY_SOCKET through a FIFO, then waits for the test's go before it
    // notifies.
    let addr_fifo = tp.scratch().join("addr");
    nix::unistd::mkfifo(&addr_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let h = helper();
    let big = format!("STATUS=big{}", "x".repeat(5000));
    let script = format!(
        "printf %s \"$NOTIFY_SOCKET\" > {addr}; read go < {fifo}; \
         {h} notify '{big}' >/dev/null; {h} notify READY=1 >/dev/null; exec sleep 30",
        addr = addr_fifo.display(),
        fifo = fifo.display(),
        h = h.display(),
    );
    let out = cli(&["spawn", "--notify", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let addr = std::fs::read_to_string(&addr_fifo).unwrap();
    assert!(addr.starts_with('@'), "{addr}");
    if root_or_skip("sending as another user") {
        // Another user's READY=1 is ignored.
        let sent = std::process::Command::new(&h)
            .args(["notify", "READY=1"])
            .env("NOTIFY_SOCKET", &addr)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(sent.status.success(), "{sent:?}");
    }
    let out = cli(&["wait", "--ready", "--timeout", "300ms", &id]);
    eq!(code(&out), 124);
    std::fs::write(&fifo, "go\n").unwrap();
    let out = cli(&["wait", "--ready", "--timeout", "20s", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let info: serde_json::Value =
        serde_json::from_slice(&cli(&["info", "--json", &id]).stdout).unwrap();
    // The oversized datagram, sent before READY=1, was dropped whole.
    eq!(info["meta"].get("status"), None);
    eq!(code(&cli(&["terminate", &id])), 0);
    eq!(code(&cli(&["rm", &id])), 0);
}
