//! The protocol as `docs/protocol.md` describes it, spoken directly on a supervisor's socket, and
//! the errors a user meets at spawn. Each test is named after what an outside check found wrong.

use crate::util::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A raw connection: the reader after the `hello`, and the writer.
fn connect(tp: &TestPool, id: u64) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(tp.pool.socket_path(id)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    eq!(reply(&mut r)["type"], json!("hello"));
    (r, w)
}

fn reply(r: &mut BufReader<UnixStream>) -> Value {
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))
}

fn ask(r: &mut BufReader<UnixStream>, w: &mut UnixStream, line: &str) -> Value {
    w.write_all(format!("{line}\n").as_bytes()).unwrap();
    reply(r)
}

#[test]
fn unknown_fields_on_requests_that_take_none_are_refused_and_nothing_is_done() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "cat"]);
    let (mut r, mut w) = connect(&tp, id);
    for t in [
        "info",
        "pause",
        "resume",
        "close_stdin",
        "wake",
        "wait",
        "wait_ready",
    ] {
        let line = format!(r#"{{"type":"{t}","x":1}}"#);
        let got = ask(&mut r, &mut w, &line);
        eq!(got["type"], json!("error"));
        eq!(got["kind"], json!("invalid_input"));
        assert!(
            got["message"].as_str().unwrap().contains("`x`"),
            "{line}: {got}"
        );
    }
    // The connection stays open, and the refused close_stdin did not close stdin.
    eq!(
        ask(&mut r, &mut w, r#"{"type":"info"}"#)["type"],
        json!("info")
    );
    let ids = id.to_string();
    tp.ok(["send", &ids, "--eof", "still open"]);
    eq!(code(&tp.run(["wait", &ids])), 0);
    eq!(tp.ok(["output", &ids]), "still open\n");
}

#[test]
fn meta_past_its_limit_is_refused_and_info_stays_readable() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "60"]).to_string();
    let big = "x".repeat(30 * 1024);
    tp.ok(["meta", &id, &format!("a={big}")]);
    tp.ok(["meta", &id, &format!("b={big}")]);
    let out = tp.run(["meta", &id, &format!("c={big}")]);
    eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("task {id}")) && err.contains("over the limit of 65536"),
        "{err}"
    );
    eq!(err.lines().count(), 1);
    let info = tp.info(id.parse().unwrap());
    eq!(info["meta"]["a"].as_str().map(str::len), Some(big.len()));
    assert!(info["meta"].get("c").is_none(), "the refused patch left c");
    // An ended task's record is bounded the same way.
    tp.ok(["kill", &id]);
    tp.run(["wait", &id]);
    let out = tp.run(["meta", &id, &format!("c={big}")]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
}

#[test]
fn info_of_a_live_task_with_a_long_command_line_is_readable() {
    // Its info reply is longer than a request line may be (64 KiB).
    let tp = TestPool::new();
    let args: Vec<String> = (0..4000).map(|i| format!("argument-{i:05}")).collect();
    // The words become the script's positional parameters.
    let mut all = vec!["--", "sh", "-c", "sleep 60", "--"];
    all.extend(args.iter().map(String::as_str));
    let id = tp.spawn(all);
    let info = tp.info(id);
    eq!(info["state"], json!("running"));
    eq!(
        info["command"].as_array().map(Vec::len),
        Some(args.len() + 4)
    );
    let listed: Value = serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap();
    eq!(listed[0]["id"], json!(id));
}

#[test]
fn a_missing_program_is_not_found_and_told_from_one_that_cannot_run() {
    let tp = TestPool::new();
    let work = tp.scratch();
    let noexec = work.join("noexec");
    std::fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let dir = work.join("adir");
    std::fs::create_dir_all(&dir).unwrap();
    let (noexec, dir) = (noexec.to_str().unwrap(), dir.to_str().unwrap());
    let cases: [(&str, &str, i32); 4] = [
        ("/no/such/prog", "program /no/such/prog not found", 127),
        (
            "no-such-prog-anywhere",
            "program no-such-prog-anywhere not found (searched PATH=",
            127,
        ),
        (noexec, "is not executable (no execute permission)", 126),
        (dir, "is a directory", 126),
    ];
    for (prog, message, run_code) in cases {
        let out = tp.run(["spawn", "--", prog]);
        eq!(code(&out), 1);
        let err = stderr(&out);
        assert!(err.contains(message), "spawn {prog}: {err}");
        eq!(err.lines().count(), 1);
        let out = tp.run(["run", "--", prog]);
        eq!(code(&out), run_code);
        assert!(
            stderr(&out).contains(message),
            "run {prog}: {}",
            stderr(&out)
        );
    }
    // Nothing of the refused spawns was left in the pool.
    eq!(tp.ok(["ls", "--json"]).trim(), "[]");
}

#[test]
fn clients_that_connect_as_the_task_ends_get_its_end_from_the_record() {
    // A supervisor that is exiting may close a fresh connection after its hello without
    // answering: `wait` and `info` then judge from the record, never fail.
    let tp = TestPool::new();
    for _ in 0..20 {
        let id = tp.spawn(["--", "true"]).to_string();
        let waits: Vec<_> = (0..4)
            .map(|_| {
                let mut c = tp.cmd();
                c.args(["wait", &id])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        let info = tp.run(["info", &id, "--json"]);
        eq!(code(&info), 0);
        for w in waits {
            let w = w.wait_with_output().unwrap();
            assert!(w.status.success(), "wait {id}: {}", stderr(&w));
        }
    }
}

#[test]
fn replies_after_the_end_are_as_documented() {
    let tp = TestPool::new();
    let id = tp.spawn(["--linger", "60s", "--", "true"]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 0);
    let (mut r, mut w) = connect(&tp, id);
    for (req, kind) in [
        (r#"{"type":"signal","signal":"TERM"}"#, "state"),
        (r#"{"type":"pause"}"#, "state"),
        (r#"{"type":"resume"}"#, "state"),
        (r#"{"type":"read"}"#, "invalid_input"),
    ] {
        let got = ask(&mut r, &mut w, req);
        eq!(
            (got["type"].clone(), got["kind"].clone()),
            (json!("error"), json!(kind))
        );
    }
    eq!(
        ask(&mut r, &mut w, r#"{"type":"close_stdin"}"#)["type"],
        json!("ok")
    );
    eq!(
        ask(&mut r, &mut w, r#"{"type":"wake"}"#)["type"],
        json!("ok")
    );
    eq!(
        ask(&mut r, &mut w, r#"{"type":"wait"}"#)["type"],
        json!("end")
    );
    // Integers past 64 bits become floats in meta.
    let got = ask(
        &mut r,
        &mut w,
        r#"{"type":"meta","patch":{"big":123456789012345678901234567890}}"#,
    );
    eq!(got["info"]["meta"]["big"], json!(1.2345678901234568e29));
    // A write frame over MAX_FRAME is refused and closes the connection.
    let got = ask(&mut r, &mut w, r#"{"type":"write","len":1048577}"#);
    eq!(got["kind"], json!("invalid_input"));
    let mut rest = String::new();
    eq!(r.read_line(&mut rest).unwrap(), 0);
}

#[test]
fn requests_on_a_follow_connection_are_dropped() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "cat"]);
    let (mut r, mut w) = connect(&tp, id);
    w.write_all(b"{\"type\":\"follow\"}\n{\"type\":\"info\"}\n")
        .unwrap();
    let ids = id.to_string();
    tp.ok(["send", &ids, "--eof", "hi"]);
    let mut types = Vec::new();
    loop {
        let v = reply(&mut r);
        let t = v["type"].as_str().unwrap().to_owned();
        if t == "data" {
            let mut buf = vec![0; v["len"].as_u64().unwrap() as usize];
            std::io::Read::read_exact(&mut r, &mut buf).unwrap();
        }
        types.push(t.clone());
        if t == "end" {
            break;
        }
    }
    assert!(!types.contains(&"info".to_owned()), "{types:?}");
    eq!(types.last().map(String::as_str), Some("end"));
}
