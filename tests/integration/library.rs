//! The library API against the real supervisor: spawn, wait, read, follow, search, meta, stdin,
//! and pool opening rules.

use crate::util::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use taskpool::task::ReadOptions;
use taskpool::{ErrorKind, Event, Pool, SpawnOptions, State, Status, Stream};

#[test]
fn spawn_wait_read_and_search() {
    let tp = TestPool::new();
    let t = tp
        .pool
        .spawn(
            &SpawnOptions::shell("echo hello; echo oops >&2")
                .name("g")
                .meta_value("k", json!(1)),
        )
        .unwrap();
    let info = t.wait().unwrap();
    eq!(
        (info.state, info.status, info.exit_code),
        (State::Exited, Some(Status::Success), Some(0))
    );
    eq!(t.read_all(Stream::Stdout).unwrap(), b"hello\n".to_vec());
    eq!(t.read_all(Stream::Stderr).unwrap(), b"oops\n".to_vec());
    let other = tp.pool.spawn(&SpawnOptions::exec(["sleep", "30"])).unwrap();
    eq!(
        tp.pool
            .search(&json!({"meta": {"k": 1}}))
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![t.id()]
    );
    eq!(
        tp.pool
            .search_with(|i| i.is_live())
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![other.id()]
    );
    let spid = other.info().unwrap().supervisor_pid.unwrap();
    eq!(tp.pool.task_by_pid(spid).unwrap().id(), other.id());
    eq!(
        tp.pool.task_by_pid(1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn spawn_errors_carry_the_real_reason_and_leave_nothing() {
    let tp = TestPool::new();
    let e = tp
        .pool
        .spawn(&SpawnOptions::exec(["/no/such/prog"]))
        .unwrap_err();
    eq!(e.kind(), ErrorKind::ProgramNotFound);
    assert!(e.to_string().contains("/no/such/prog"), "{e}");
    let e = tp
        .pool
        .spawn(&SpawnOptions::exec(["true"]).cwd("/no/such/dir"))
        .unwrap_err();
    eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("/no/such/dir"), "{e}");
    eq!(std::fs::read_dir(tp.dir.join("tasks")).unwrap().count(), 0);
    let mut bad = tp.pool.clone();
    bad.set_supervisor_cmd(vec!["/no/such/supervisor".into()]);
    let e = bad.spawn(&SpawnOptions::exec(["true"])).unwrap_err();
    eq!(e.kind(), ErrorKind::Supervisor);
    assert!(e.to_string().contains("TASKPOOL_SUPERVISOR"), "{e}");
    eq!(std::fs::read_dir(tp.dir.join("tasks")).unwrap().count(), 0);
}

#[test]
fn follow_yields_output_then_end() {
    let tp = TestPool::new();
    let t = tp
        .pool
        .spawn(&SpawnOptions::shell(
            "echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c",
        ))
        .unwrap();
    let mut text = Vec::new();
    let mut streams = Vec::new();
    let mut end = None;
    for ev in t.follow(0).unwrap() {
        match ev.unwrap() {
            Event::Output { stream, data, .. } => {
                streams.push(stream);
                text.extend(data);
            }
            Event::State(_) => {}
            Event::End(info) => end = Some(info),
        }
    }
    eq!(String::from_utf8(text).unwrap(), "a\nb\nc\n");
    eq!(
        streams,
        vec![Stream::Stdout, Stream::Stderr, Stream::Stdout]
    );
    eq!(end.unwrap().status, Some(Status::Success));
    // Following an ended task replays its files.
    let replay: Vec<_> = t.follow(2).unwrap().map(Result::unwrap).collect();
    assert!(matches!(&replay[0], Event::Output { combined: 2, data, .. } if data == b"b\n"));
    assert!(matches!(replay.last().unwrap(), Event::End(_)));
}

#[test]
fn stdin_meta_and_consuming_reads() {
    let tp = TestPool::new();
    let t = tp.pool.spawn(&SpawnOptions::exec(["cat"])).unwrap();
    t.write(b"one\ntwo\n").unwrap();
    // Await the echo through follow rather than sleeping.
    let mut seen = Vec::new();
    for ev in t.follow(0).unwrap() {
        if let Event::Output { data, .. } = ev.unwrap() {
            seen.extend(data);
            if seen.len() >= 8 {
                break;
            }
        }
    }
    let first = t
        .read(&ReadOptions {
            count: Some(4),
            peek: false,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    eq!((first.offset, first.data), (0, b"one\n".to_vec()));
    let second = t
        .read(&ReadOptions {
            peek: false,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    eq!((second.offset, second.data), (4, b"two\n".to_vec()));
    let info = t
        .apply_meta(json!({"progress": 50}).as_object().unwrap())
        .unwrap();
    eq!(info.meta.get("progress"), Some(&json!(50)));
    t.close_stdin().unwrap();
    eq!(t.wait().unwrap().exit_code, Some(0));
    eq!(t.info().unwrap().meta.get("progress"), Some(&json!(50)));
}

#[test]
fn pool_open_rules() {
    let tp = TestPool::new();
    let missing = tp.dir.join("missing");
    let e = Pool::open(&missing).unwrap_err();
    eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("missing"), "{e}");
    let open = tp.dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Pool::open(&open).unwrap_err();
    eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("writable by others"), "{e}");
    let made = Pool::open_or_create(tp.dir.join("new/nested"), Default::default()).unwrap();
    eq!(
        std::fs::metadata(made.path()).unwrap().permissions().mode() & 0o7777,
        0o700
    );
}
