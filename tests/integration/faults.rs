//! Faults: lock contention, a caller killed around spawn, a supervisor killed or stopped, a reused
//! pid, malformed and oversized requests, a pool path too long for a unix socket.

use crate::util::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use taskpool::ErrorKind;

#[test]
fn lockfile_contention_lets_exactly_one_run_and_names_the_holder() {
    let tp = TestPool::new();
    let lock = tp.dir.join("job.lock");
    let lock = lock.to_str().unwrap();
    let outs: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| tp.run(["spawn", "--lockfile", lock, "--", "sleep", "30"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    eq!(winners.len(), 1);
    let id: u64 = String::from_utf8_lossy(&winners[0].stdout)
        .trim()
        .parse()
        .unwrap();
    let holder = tp.info(id)["supervisor_pid"].as_i64().unwrap();
    for o in outs.iter().filter(|o| !o.status.success()) {
        eq!(code(o), 1);
        let err = stderr(o);
        assert!(
            err.contains(&format!("pid {holder}")),
            "loser does not name holder {holder}: {err}"
        );
    }
    eq!(
        std::fs::read_to_string(lock).unwrap().trim(),
        holder.to_string()
    );
    // Only the winner has a record; the losers left nothing behind.
    eq!(std::fs::read_dir(tp.dir.join("tasks")).unwrap().count(), 1);
    // The lock is released when the run ends.
    tp.ok(["terminate", &id.to_string()]);
    tp.ok(["spawn", "--lockfile", lock, "--", "true"]);
}

#[test]
fn supervisor_killed_leaves_no_task_running_and_shows_lost() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "60"]);
    let info = tp.info(id);
    let (spid, pid) = (
        info["supervisor_pid"].as_i64().unwrap() as i32,
        info["pid"].as_i64().unwrap() as i32,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_gone(spid, Duration::from_secs(10)));
    assert!(
        wait_gone(pid, Duration::from_secs(10)),
        "main process {pid} survived its supervisor"
    );
    let info = tp.info(id);
    eq!(info["state"], json!("lost"));
    eq!(info["status"], json!("lost"));
    eq!(code(&tp.run(["wait", &id.to_string()])), 125);
    // The record on disk says so too.
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tp.dir.join(format!("tasks/{id}/record.json"))).unwrap(),
    )
    .unwrap();
    eq!(rec["state"], json!("lost"));
}

#[test]
fn a_reused_pid_is_never_reported_live() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "true"]);
    tp.ok(["wait", &id.to_string()]);
    // Forge what a crash would leave: a live-looking record whose supervisor pid now belongs to
    // another process (this test process), with the lock free.
    let path = tp.dir.join(format!("tasks/{id}/record.json"));
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rec["state"] = json!("running");
    rec["supervisor_pid"] = json!(std::process::id());
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let list: serde_json::Value = serde_json::from_str(&tp.ok(["ls", "--json", "--live"])).unwrap();
    eq!(list, json!([]));
    eq!(tp.info(id)["state"], json!("lost"));
}

#[test]
fn caller_killed_during_and_right_after_spawn_leaves_no_orphan() {
    let tp = TestPool::new();
    for delay_ms in [0u64, 1, 3, 10, 30] {
        let mut child = tp
            .cmd()
            .args(["spawn", "--", "sleep", "60"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms)); // fault injection, not synchronisation
        let _ = child.kill();
        let _ = child.wait();
    }
    // Whatever got started is a proper task: recorded, supervised, reachable, and can be ended.
    for info in tp.pool.list().unwrap() {
        if info.is_live() {
            let spid = info.supervisor_pid.unwrap();
            assert!(
                alive(spid),
                "task {} is live but supervisor {spid} is gone",
                info.id
            );
            let t = tp.pool.task(info.id).unwrap();
            let ended = t
                .terminate_supervisor(Some(Duration::from_millis(100)))
                .unwrap();
            assert!(!ended.is_live());
            // Listed while still starting, its command's pid was not known yet.
            if let Some(pid) = ended.pid.or(info.pid) {
                assert!(wait_gone(pid, Duration::from_secs(10)));
            }
        }
    }
    // No supervisor of this pool is left running.
    let pool = tp.dir.to_str().unwrap().to_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("taskpool-supervisor") && text.contains(&pool) {
            let pid: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            assert!(
                wait_gone(pid, Duration::from_secs(5)),
                "orphaned supervisor {pid}: {text}"
            );
        }
    }
}

fn raw_conn(tp: &TestPool, id: u64) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(tp.pool.socket_path(id)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut hello = String::new();
    r.read_line(&mut hello).unwrap();
    let v: serde_json::Value = serde_json::from_str(&hello).unwrap();
    eq!(v["type"], json!("hello"));
    eq!(v["protocol"], json!(1));
    (r, w)
}

fn reply(r: &mut BufReader<UnixStream>) -> serde_json::Value {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
}

#[test]
fn malformed_unknown_and_oversized_requests_get_errors_and_the_supervisor_carries_on() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]);
    let (mut r, mut w) = raw_conn(&tp, id);
    w.write_all(b"this is not json\n").unwrap();
    eq!(reply(&mut r)["type"], json!("error"));
    w.write_all(b"{\"type\":\"no_such_request\"}\n").unwrap();
    let e = reply(&mut r);
    eq!(
        (e["type"].clone(), e["kind"].clone()),
        (json!("error"), json!("invalid_input"))
    );
    w.write_all(b"{\"type\":\"signal\",\"signal\":\"NOPE\"}\n")
        .unwrap();
    eq!(reply(&mut r)["type"], json!("error"));
    w.write_all(b"{\"type\":\"info\"}\n").unwrap();
    eq!(reply(&mut r)["info"]["id"], json!(id));
    // An oversized line: an error (or a closed connection), never a dead supervisor.
    let big = vec![b'x'; 1024 * 1024];
    let _ = w.write_all(&big);
    let _ = w.write_all(b"\n");
    let mut rest = String::new();
    let _ = r.read_line(&mut rest);
    if !rest.is_empty() {
        let v: serde_json::Value = serde_json::from_str(&rest).unwrap();
        eq!(v["type"], json!("error"));
    }
    // A client that sends and disconnects mid-reply.
    {
        let (_r2, mut w2) = raw_conn(&tp, id);
        w2.write_all(b"{\"type\":\"follow\"}\n{\"type\":\"info\"}\n")
            .unwrap();
    }
    let (mut r3, mut w3) = raw_conn(&tp, id);
    w3.write_all(b"{\"type\":\"info\"}\n").unwrap();
    eq!(reply(&mut r3)["info"]["state"], json!("running"));
}

#[test]
fn a_stopped_supervisor_gives_a_timeout_not_a_hang() {
    let mut tp = TestPool::new();
    tp.pool.set_timeout(Duration::from_millis(300));
    let id = tp.spawn(["--", "sleep", "30"]);
    let spid = tp.info(id)["supervisor_pid"].as_i64().unwrap() as i32;
    let pid = nix::unistd::Pid::from_raw(spid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let err = tp.pool.task(id).unwrap().info().unwrap_err();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains(&spid.to_string()), "{err}");
    // Listing reads records and does not hang on it either.
    eq!(tp.pool.list().unwrap().len(), 1);
}

#[test]
fn a_pool_path_longer_than_a_socket_path_works() {
    let long = format!("{}/{}", "d".repeat(60), "e".repeat(60));
    let tp = TestPool::with_name(&long);
    assert!(tp.pool.socket_path(1).as_os_str().len() > 108);
    let id = tp.spawn(["--", "cat"]).to_string();
    tp.ok(["send", &id, "--eof", "through a long path"]);
    eq!(code(&tp.run(["wait", &id])), 0);
    eq!(tp.ok(["output", &id]), "through a long path\n");
}

#[test]
fn a_client_that_never_reads_does_not_block_the_task() {
    let tp = TestPool::new();
    let id = tp.spawn_writer(&[], 20_000_000, 65536);
    // Subscribe, then never read.
    let (_r, mut w) = raw_conn(&tp, id.parse().unwrap());
    w.write_all(b"{\"type\":\"follow\"}\n").unwrap();
    eq!(code(&tp.run(["wait", &id])), 0);
    let all = tp.run(["output", &id, "--stdout"]).stdout;
    eq!(all.len(), 20_000_000);
}
