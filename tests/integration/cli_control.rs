//! Controlling live tasks through the CLI: kill, pause/resume, send, terminate, run, behaviors.

use crate::util::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn kill_sends_the_named_signal_to_the_process_group() {
    let tp = TestPool::new();
    let id = tp.spawn(["-c", "sleep 30 & sleep 30; wait"]).to_string();
    tp.ok(["kill", &id, "-s", "SIGUSR1"]);
    eq!(code(&tp.run(["wait", &id])), 128 + 10);
    let info = tp.info(id.parse().unwrap());
    eq!(info["status"], json!("killed"));
    eq!(info["signal"], json!("SIGUSR1"));
    eq!(info["exit_code"], json!(null));
}

#[test]
fn pause_and_resume_change_the_state() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]).to_string();
    tp.ok(["pause", &id]);
    eq!(tp.info(id.parse().unwrap())["state"], json!("paused"));
    let pid = tp.info(id.parse().unwrap())["pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let st = stat
        .rsplit(')')
        .next()
        .unwrap()
        .trim_start()
        .chars()
        .next()
        .unwrap();
    eq!(st, 'T');
    tp.ok(["resume", &id]);
    eq!(tp.info(id.parse().unwrap())["state"], json!("running"));
}

#[test]
fn send_writes_lines_and_eof_closes_stdin() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "cat"]).to_string();
    tp.ok(["send", &id, "first"]);
    tp.ok(["send", &id, "-n", "second"]);
    let mut child = tp
        .cmd()
        .args(["send", &id, "--eof"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"+piped\n").unwrap();
    assert!(child.wait().unwrap().success());
    eq!(code(&tp.run(["wait", &id])), 0);
    eq!(tp.ok(["output", &id]), "first\nsecond+piped\n");
}

#[test]
fn terminate_escalates_to_kill_within_the_grace() {
    let tp = TestPool::new();
    let id = tp
        .spawn(["--", helper().to_str().unwrap(), "ignore-term"])
        .to_string();
    // Wait for the task to have set up its signal handling.
    let mut f = tp
        .cmd()
        .args(["output", &id, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(f.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    eq!(line, "ready\n");
    let t0 = std::time::Instant::now();
    tp.ok(["terminate", &id, "--grace", "300ms"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    let info = tp.info(id.parse().unwrap());
    eq!(info["state"], json!("exited"));
    eq!(info["signal"], json!("SIGKILL"));
    assert!(f.wait().unwrap().success());
    assert!(
        !tp.dir.join(format!("tasks/{id}/sock")).exists(),
        "socket left behind"
    );
}

#[test]
fn run_follows_output_and_passes_the_status_through() {
    let tp = TestPool::new();
    let out = tp.run(["run", "-c", "echo out; echo err >&2; exit 7"]);
    eq!(code(&out), 7);
    eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    eq!(stderr(&out), "err\n");
    eq!(code(&tp.run(["run", "--", "/no/such/program"])), 127);
    let noexec = tp.dir.join("noexec.sh");
    std::fs::write(&noexec, "#!/bin/sh\necho no\n").unwrap();
    eq!(code(&tp.run(["run", "--", noexec.to_str().unwrap()])), 126);
}

#[test]
fn run_forwards_ctrl_c_to_the_task() {
    let tp = TestPool::new();
    let mut child = tp
        .cmd()
        .args(["run", "--", helper().to_str().unwrap(), "ignore-term"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    eq!(line, "ready\n");
    // ignore-term ignores INT and TERM; HUP is not ignored and is forwarded like INT.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    eq!(child.wait().unwrap().code(), Some(128 + 1));
}

#[test]
fn background_task_ends_with_its_callers_process_group() {
    let tp = TestPool::new();
    let tpbin = bin("taskpool");
    // A shell that leads its own process group spawns the task and waits to be told to exit.
    let script = format!(
        "{} --pool {} spawn --behavior background -- sleep 60; read _",
        tpbin.display(),
        tp.dir.display()
    );
    let mut leader = std::process::Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(leader.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id = line.trim().to_owned();
    eq!(tp.info(id.parse().unwrap())["state"], json!("running"));
    drop(leader.stdin.take()); // the leader reads EOF and exits
    leader.wait().unwrap();
    eq!(code(&tp.run(["wait", &id])), 128 + 2);
    eq!(
        tp.info(id.parse().unwrap())["behavior"],
        json!("background")
    );
}

#[test]
fn foreground_spawn_stays_attached_until_the_end() {
    let tp = TestPool::new();
    let out = tp.run(["spawn", "--behavior", "foreground", "-c", "echo fg"]);
    eq!(code(&out), 0);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // The task had already ended when spawn returned.
    eq!(tp.info(id.parse().unwrap())["state"], json!("exited"));
    eq!(tp.ok(["output", &id]), "fg\n");
}

#[test]
fn targeting_by_supervisor_pid() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]);
    let spid = tp.info(id)["supervisor_pid"].as_i64().unwrap().to_string();
    let info: serde_json::Value =
        serde_json::from_str(&tp.ok(["info", "--pid", &spid, "--json"])).unwrap();
    eq!(info["id"], json!(id));
    tp.ok(["kill", "--pid", &spid]);
    eq!(code(&tp.run(["wait", "--pid", &spid])), 128 + 15);
    tp.ok(["rm", "--pid", &spid]);
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn signals_to_the_supervisor_terminate_the_task() {
    let tp = TestPool::new();
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let id = tp.spawn(["--", "sleep", "30"]);
        let info = tp.info(id);
        let spid = info["supervisor_pid"].as_i64().unwrap() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(spid), sig).unwrap();
        eq!(code(&tp.run(["wait", &id.to_string()])), 128 + 2);
        let info = tp.info(id);
        eq!(
            (sig, info["state"].clone(), info["status"].clone()),
            (sig, json!("exited"), json!("killed"))
        );
        assert!(
            wait_gone(spid, Duration::from_secs(10)),
            "supervisor {spid} did not exit after {sig}"
        );
    }
}
