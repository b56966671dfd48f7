//! A smoke test of the supervisor through the library, for developers: `cargo build -p
//! taskpool-cli && cargo run -p taskpool-supervisor --example smoke`. It finds
//! `taskpool-supervisor` beside itself (target/debug), uses a fresh pool under the temporary
//! directory, ends every task it started and removes the pool. The integration tests in `tests/`
//! are the real suite; this checks the supervisor alone, without the CLI.

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};
use taskpool::task::ReadOptions;
use taskpool::{Behavior, ErrorKind, Event, Pool, SpawnOptions, State, Status, Stream};

/// One named check.
type Check = fn(&Pool);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bg-child") {
        return bg_child(&args[2]);
    }
    let dir = std::env::temp_dir().join(format!("taskpool-smoke-{}", std::process::id()));
    let pool = Pool::open_or_create(&dir, Default::default()).expect("pool");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let checks: &[(&str, Check)] = &[
        ("echo", echo),
        ("missing_program", missing_program),
        ("lockfile", lockfile),
        ("follow", follow),
        ("terminate", terminate),
        ("supervisor_killed", supervisor_killed),
        ("big_output", big_output),
        ("log_cap", log_cap),
        ("pause_resume", pause_resume),
        ("stdin", stdin),
        ("idle", idle),
        ("restart", restart),
        ("grandchild", grandchild),
        ("protocol_errors", protocol_errors),
        ("behaviors", behaviors),
        ("shared_pool", shared_pool),
        ("many_clients", many_clients),
    ];
    let mut failed = 0;
    for (name, f) in checks {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let t0 = Instant::now();
        let r = std::panic::catch_unwind(|| f(&pool));
        println!(
            "{:<20} {} ({:?})",
            name,
            if r.is_ok() { "ok" } else { "FAILED" },
            t0.elapsed()
        );
        failed += r.is_err() as i32;
    }
    for info in pool.list().unwrap_or_default() {
        if info.is_live() {
            let _ = pool
                .task(info.id)
                .and_then(|t| t.terminate_supervisor(Some(Duration::from_millis(100))));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::process::exit(failed);
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while alive(pid) {
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn echo(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::shell("echo hi; echo err >&2"))
        .unwrap();
    let info = t.wait().unwrap();
    assert_eq!(
        (info.state, info.status, info.exit_code),
        (State::Exited, Some(Status::Success), Some(0))
    );
    assert_eq!(t.read_all(Stream::Stdout).unwrap(), b"hi\n");
    assert_eq!(t.read_all(Stream::Stderr).unwrap(), b"err\n");
    assert_eq!(info.streams.combined.end, 7);
    assert!(!pool.socket_path(t.id()).exists(), "socket left behind");
}

fn missing_program(pool: &Pool) {
    let before = pool.ids().unwrap().len();
    let e = pool
        .spawn(&SpawnOptions::exec(["/no/such/prog"]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProgramNotFound, "{e}");
    assert!(e.to_string().contains("/no/such/prog"), "{e}");
    let e = pool
        .spawn(&SpawnOptions::exec(["no-such-prog-on-path"]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProgramNotFound, "{e}");
    let noexec = pool.path().join("noexec.sh");
    std::fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let e = pool.spawn(&SpawnOptions::exec([&noexec])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CannotExecute, "{e}");
    std::fs::remove_file(noexec).unwrap();
    assert_eq!(
        pool.ids().unwrap().len(),
        before,
        "a failed spawn left a task directory"
    );
}

fn lockfile(pool: &Pool) {
    let lock = pool.path().join("job.lock");
    // Held by flock(1), with a pid written in the file as a taskpool holder would.
    std::fs::write(&lock, "4242\n").unwrap();
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200)); // let flock(1) take it
    let e = pool
        .spawn(&SpawnOptions::exec(["true"]).lockfile(&lock))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LockHeld, "{e}");
    assert!(e.to_string().contains("pid 4242"), "{e}");
    let pg = nix::unistd::Pid::from_raw(holder.id() as i32);
    nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL).unwrap();
    holder.wait().unwrap();
    // Held by a task: the second names the first's supervisor.
    let a = pool
        .spawn(&SpawnOptions::exec(["sleep", "30"]).lockfile(&lock))
        .unwrap();
    let spid = a.info().unwrap().supervisor_pid.unwrap();
    let e = pool
        .spawn(&SpawnOptions::exec(["true"]).lockfile(&lock))
        .unwrap_err();
    assert!(e.to_string().contains(&format!("pid {spid}")), "{e}");
    a.terminate_supervisor(Some(Duration::from_millis(100)))
        .unwrap();
    // Released at the end of the run.
    let b = pool
        .spawn(&SpawnOptions::exec(["true"]).lockfile(&lock))
        .unwrap();
    assert_eq!(b.wait().unwrap().exit_code, Some(0));
}

fn follow(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::shell(
            "for i in 1 2 3; do echo $i; sleep 0.1; done; echo e >&2",
        ))
        .unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut times = Vec::new();
    let mut end = None;
    for ev in t.follow(0).unwrap() {
        match ev.unwrap() {
            Event::Output { data, .. } => {
                got.extend(data);
                times.push(t0.elapsed());
            }
            Event::State(_) => {}
            Event::End(i) => end = Some(i),
        }
    }
    assert_eq!(got, b"1\n2\n3\ne\n");
    assert!(
        times[0] < Duration::from_millis(150),
        "first line late: {times:?}"
    );
    assert_eq!(end.unwrap().status, Some(Status::Success));
}

fn terminate(pool: &Pool) {
    let t = pool.spawn(&SpawnOptions::exec(["sleep", "100"])).unwrap();
    let pid = t.info().unwrap().pid.unwrap();
    let t0 = Instant::now();
    let info = t.terminate_supervisor(None).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (info.state, info.status),
        (State::Exited, Some(Status::Killed))
    );
    assert_eq!(info.signal.as_deref(), Some("SIGINT"));
    assert!(!alive(pid));
    // One that ignores INT and TERM gets KILL, a grace apart.
    let t = pool
        .spawn(&SpawnOptions::shell(
            "trap '' INT TERM; echo ready; while :; do sleep 1; done",
        ))
        .unwrap();
    let mut f = t.follow(0).unwrap();
    assert!(matches!(f.next().unwrap().unwrap(), Event::Output { .. }));
    let t0 = Instant::now();
    let info = t
        .terminate_supervisor(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(info.signal.as_deref(), Some("SIGKILL"));
}

fn supervisor_killed(pool: &Pool) {
    let t = pool.spawn(&SpawnOptions::exec(["sleep", "60"])).unwrap();
    let info = t.info().unwrap();
    let (spid, pid) = (info.supervisor_pid.unwrap(), info.pid.unwrap());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_gone(spid, Duration::from_secs(5)));
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "main process survived"
    );
    let info = pool
        .list()
        .unwrap()
        .into_iter()
        .find(|i| i.id == t.id())
        .unwrap();
    assert_eq!((info.state, info.status), (State::Lost, Some(Status::Lost)));
}

fn big_output(pool: &Pool) {
    let total = 10 * 1024 * 1024;
    let t = pool
        .spawn(
            &SpawnOptions::shell(format!("yes abcdefghijklmnopqrstuvwxy | head -c {total}"))
                .buffer_size(64 * 1024)
                .linger(Duration::from_secs(10)),
        )
        .unwrap();
    let spid = t.info().unwrap().supervisor_pid.unwrap();
    let mut followed = Vec::new();
    for ev in t.follow(0).unwrap() {
        if let Event::Output { combined, data, .. } = ev.unwrap() {
            assert_eq!(combined as usize, followed.len());
            followed.extend(data);
        }
    }
    let want: Vec<u8> = b"abcdefghijklmnopqrstuvwxy\n"
        .iter()
        .copied()
        .cycle()
        .take(total)
        .collect();
    assert!(followed == want, "followed bytes differ");
    let info = t.wait().unwrap();
    assert_eq!(info.streams.stdout.end, total as u64);
    let file = std::fs::read(pool.output_path(t.id(), 1, Stream::Stdout)).unwrap();
    assert!(file == want, "the file differs");
    // A live read from the supervisor (lingering) of the newest bytes comes from its ring.
    let tail = t
        .read(&ReadOptions {
            offset: None,
            count: Some(100),
            peek: true,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    assert_eq!(tail.data, file[..100]); // nothing consumed: from offset 0, out of the file
    let newest = t
        .read(&ReadOptions {
            offset: Some(total as u64 - 10),
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    assert_eq!(newest.data, file[total - 10..]);
    let status = std::fs::read_to_string(format!("/proc/{spid}/status")).unwrap();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap()
        .to_owned();
    println!("  supervisor after 10 MB with a 64 KiB buffer: {hwm}");
    t.terminate_supervisor(None).unwrap();
    assert!(
        wait_gone(spid, Duration::from_secs(5)),
        "lingering supervisor did not exit"
    );
}

fn log_cap(pool: &Pool) {
    let t = pool
        .spawn(
            &SpawnOptions::shell("head -c 1048576 /dev/zero | tr '\\0' x")
                .log_max(64 * 1024)
                .buffer_size(16 * 1024),
        )
        .unwrap();
    let info = t.wait().unwrap();
    let s = info.streams.stdout;
    assert_eq!(s.end, 1048576);
    assert!(
        s.start >= 1048576 - 128 * 1024 && s.dropped == s.start,
        "{s:?}"
    );
    let kept = t
        .read(&ReadOptions {
            offset: Some(s.start),
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    assert_eq!(kept.data.len() as u64, 1048576 - s.start);
    assert!(kept.data.iter().all(|&b| b == b'x'));
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(pool.output_path(t.id(), 1, Stream::Stdout)).unwrap();
    assert!(
        md.blocks() * 512 <= 256 * 1024,
        "{} bytes on disk",
        md.blocks() * 512
    );
}

fn pause_resume(pool: &Pool) {
    let t = pool.spawn(&SpawnOptions::exec(["sleep", "30"])).unwrap();
    let pid = t.info().unwrap().pid.unwrap();
    let mut f = t.follow(0).unwrap();
    t.pause().unwrap();
    assert_eq!(t.info().unwrap().state, State::Paused);
    assert_eq!(pool.load_record(t.id()).unwrap().state, State::Paused);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert!(
        stat.rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('T'),
        "{stat}"
    );
    assert_eq!(f.next().unwrap().unwrap(), Event::State(State::Paused));
    t.resume().unwrap();
    assert_eq!(t.info().unwrap().state, State::Running);
    assert_eq!(f.next().unwrap().unwrap(), Event::State(State::Running));
    // Terminating a paused task works too.
    t.pause().unwrap();
    let info = t
        .terminate_supervisor(Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(info.state, State::Exited);
    assert!(matches!(f.last().unwrap().unwrap(), Event::End(_)));
}

fn stdin(pool: &Pool) {
    let t = pool.spawn(&SpawnOptions::exec(["cat"])).unwrap();
    t.write(b"one\n").unwrap();
    let big = vec![b'z'; 3 * 1024 * 1024];
    t.write(&big).unwrap();
    t.close_stdin().unwrap();
    assert!(t.write(b"late").is_err());
    let info = t.wait().unwrap();
    assert_eq!(info.exit_code, Some(0));
    let out = t.read_all(Stream::Stdout).unwrap();
    assert_eq!(out.len(), 4 + big.len());
    // Consuming reads.
    let t = pool.spawn(&SpawnOptions::exec(["cat"])).unwrap();
    t.write(b"ab\ncd\n").unwrap();
    for ev in t.follow(0).unwrap() {
        if let Event::Output { combined, data, .. } = ev.unwrap() {
            if combined + data.len() as u64 >= 6 {
                break;
            }
        }
    }
    let r = t
        .read(&ReadOptions {
            count: Some(3),
            peek: false,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    assert_eq!((r.offset, &r.data[..]), (0, &b"ab\n"[..]));
    let r = t
        .read(&ReadOptions {
            peek: false,
            ..ReadOptions::new(Stream::Combined)
        })
        .unwrap();
    assert_eq!((r.offset, &r.data[..]), (0, &b"ab\ncd\n"[..]));
    let r = t
        .read(&ReadOptions {
            peek: false,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    assert_eq!((r.offset, &r.data[..]), (3, &b"cd\n"[..]));
    let e = pool
        .spawn(&SpawnOptions::exec(["sleep", "5"]).stdin(taskpool::Stdin::Null))
        .unwrap();
    assert_eq!(e.write(b"x").unwrap_err().kind(), ErrorKind::State);
    e.terminate_supervisor(None).unwrap();
    t.close_stdin().unwrap();
    assert_eq!(t.wait().unwrap().exit_code, Some(0));
}

fn ctx_switches(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("voluntary_ctxt_switches"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn idle(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::exec(["sleep", "100"]).meta_value("k", json!(1)))
        .unwrap();
    let info = t.info().unwrap();
    assert_eq!(info.meta.get("k"), Some(&json!(1)));
    let spid = info.supervisor_pid.unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = ctx_switches(spid);
    std::thread::sleep(Duration::from_secs(5));
    let after = ctx_switches(spid);
    println!(
        "  idle supervisor: {} voluntary context switches in 5 s",
        after - before
    );
    assert_eq!(after, before);
    let rollup = std::fs::read_to_string(format!("/proc/{spid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    let uss = field("Private_Clean:") + field("Private_Dirty:");
    println!(
        "  idle supervisor: Rss {} KiB, Pss {} KiB, USS {} KiB (of which Private_Dirty {} KiB)",
        field("Rss:"),
        field("Pss:"),
        uss,
        field("Private_Dirty:")
    );
    let info = t
        .apply_meta(json!({"k": null, "p": 40}).as_object().unwrap())
        .unwrap();
    assert_eq!(info.meta, *json!({"p": 40}).as_object().unwrap());
    t.terminate_supervisor(None).unwrap();
}

fn restart(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::shell("echo run $TASKPOOL_TASK_ID").meta_value("m", json!("x")))
        .unwrap();
    t.wait().unwrap();
    let t2 = t.restart().unwrap();
    let info = t2.wait().unwrap();
    assert_eq!((info.run, info.exit_code), (2, Some(0)));
    assert_eq!(info.meta.get("m"), Some(&json!("x")));
    assert_eq!(pool.load_record(t.id()).unwrap().runs.len(), 2);
    let want = format!("run {}\n", t.id());
    assert_eq!(
        t.read(&ReadOptions {
            run: Some(1),
            offset: Some(0),
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap()
        .data,
        want.as_bytes()
    );
    assert_eq!(t.read_all(Stream::Stdout).unwrap(), want.as_bytes());
    let live = pool.spawn(&SpawnOptions::exec(["sleep", "30"])).unwrap();
    assert_eq!(live.restart().unwrap_err().kind(), ErrorKind::State);
    live.terminate_supervisor(None).unwrap();
}

fn grandchild(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::shell("sleep 60 & echo done $!"))
        .unwrap();
    let t0 = Instant::now();
    let info = t.wait().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "wait took {:?}",
        t0.elapsed()
    );
    assert_eq!(info.exit_code, Some(0));
    let out = String::from_utf8(t.read_all(Stream::Stdout).unwrap()).unwrap();
    let gpid: i32 = out.trim().strip_prefix("done ").unwrap().parse().unwrap();
    assert!(
        wait_gone(gpid, Duration::from_secs(5)),
        "grandchild {gpid} outlived its task"
    );
}

fn protocol_errors(pool: &Pool) {
    let t = pool.spawn(&SpawnOptions::exec(["sleep", "30"])).unwrap();
    let s = UnixStream::connect(pool.socket_path(t.id())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut next = |r: &mut BufReader<UnixStream>| -> serde_json::Value {
        line.clear();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next(&mut r)["type"], "hello");
    w.write_all(b"not json\n{\"type\":\"bogus\"}\n{\"type\":\"signal\",\"signal\":\"NOPE\"}\n")
        .unwrap();
    for _ in 0..3 {
        let v = next(&mut r);
        assert_eq!(
            (v["type"].as_str(), v["kind"].as_str()),
            (Some("error"), Some("invalid_input")),
            "{v}"
        );
    }
    w.write_all(&vec![b'x'; 1 << 20]).unwrap();
    w.write_all(b"\n{\"type\":\"info\"}\n").unwrap();
    assert_eq!(next(&mut r)["type"], "error");
    assert_eq!(next(&mut r)["info"]["state"], "running");
    // A follower that never reads and a client that leaves mid-request do not matter.
    let mut quiet = UnixStream::connect(pool.socket_path(t.id())).unwrap();
    quiet.write_all(b"{\"type\":\"follow\"}\n").unwrap();
    drop(UnixStream::connect(pool.socket_path(t.id())).unwrap());
    assert_eq!(t.info().unwrap().state, State::Running);
    t.terminate_supervisor(None).unwrap();
}

fn behaviors(pool: &Pool) {
    // Foreground: the supervisor is our child; wait reaps it.
    let t = pool
        .spawn(&SpawnOptions::shell("echo fg").behavior(Behavior::Foreground))
        .unwrap();
    assert_eq!(t.wait().unwrap().exit_code, Some(0));
    assert_eq!(t.read_all(Stream::Stdout).unwrap(), b"fg\n");
    // Background: ends when the caller's process-group leader exits. The caller is this program
    // again, run as the leader of a group of its own.
    let mut leader = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--bg-child")
        .arg(pool.path())
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(leader.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let t = pool.task(line.trim().parse().unwrap()).unwrap();
    assert_eq!(t.info().unwrap().state, State::Running);
    drop(leader.stdin.take()); // the leader reads EOF and exits
    leader.wait().unwrap();
    let info = t.wait().unwrap();
    assert_eq!(info.signal.as_deref(), Some("SIGINT"), "{info:?}");
    assert_eq!(info.behavior, Behavior::Background);
}

/// `smoke --bg-child POOL`: spawn a background task, print its id, wait for stdin to close.
fn bg_child(pool: &str) {
    let pool = Pool::open(pool).unwrap();
    let t = pool
        .spawn(&SpawnOptions::exec(["sleep", "60"]).behavior(Behavior::Background))
        .unwrap();
    println!("{}", t.id());
    let mut s = String::new();
    let _ = std::io::stdin().read_line(&mut s);
}

fn shared_pool(pool: &Pool) {
    use std::os::unix::fs::PermissionsExt;
    let dir = pool.path().join("shared");
    let create = taskpool::CreateOptions {
        mode: 0o2770,
        ..Default::default()
    };
    let shared = Pool::open_or_create(&dir, create).unwrap();
    assert!(shared.shared_gid().is_some());
    let t = shared.spawn(&SpawnOptions::exec(["sleep", "30"])).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&shared.socket_path(t.id())), 0o660);
    assert_eq!(mode(&shared.record_path(t.id())), 0o660);
    assert_eq!(mode(&shared.run_dir(t.id(), 1)), 0o770);
    assert_eq!(t.info().unwrap().state, State::Running);
    t.terminate_supervisor(None).unwrap();
}

fn many_clients(pool: &Pool) {
    let t = pool
        .spawn(&SpawnOptions::shell(
            "read _; i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
        ))
        .unwrap();
    let id = t.id();
    std::thread::scope(|s| {
        let mut hs = Vec::new();
        for k in 0..60 {
            hs.push(s.spawn(move || {
                let t = pool.task(id).unwrap();
                if k % 2 == 0 {
                    t.wait().unwrap().exit_code
                } else {
                    let mut n = 0;
                    let mut code = None;
                    for ev in t.follow(0).unwrap() {
                        match ev.unwrap() {
                            Event::Output { data, .. } => n += data.len(),
                            Event::End(i) => code = i.exit_code,
                            _ => {}
                        }
                    }
                    assert_eq!(n, t.read_all(Stream::Stdout).unwrap().len());
                    code
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(300));
        t.write(b"go\n").unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap(), Some(0));
        }
    });
}
