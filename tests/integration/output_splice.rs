//! The output path the supervisor takes with `splice(2)` (pipe to log file, no copy in memory) and
//! `sendfile(2)` (log file to followers): every byte of large, odd-sized, interleaved output
//! reaches both logs, the combined view and a live follower; the newest `buffer_size` bytes can be
//! read live even with a smaller log cap; and when the disk fills, the stream falls back to copying
//! and its newest bytes are still read live from memory.

use crate::util::*;
use serde_json::json;
use std::io::Read;
use std::path::Path;
use taskpool::task::ReadOptions;
use taskpool::{Event, Stream};

/// `n` bytes no two runs of which look alike (xorshift), so a byte out of place shows.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The helper's `write` pattern from offset `from`.
fn pattern(from: u64, n: usize) -> Vec<u8> {
    (from..from + n as u64)
        .map(|i| b'a' + (i % 26) as u8)
        .collect()
}

/// A piece a follower received: stream, offset in it, combined offset, bytes.
type Piece = (Stream, u64, u64, Vec<u8>);

/// A follower of task `id` from offset 0, in a thread; yields every output event.
fn follower(tp: &TestPool, id: u64) -> std::thread::JoinHandle<Vec<Piece>> {
    let f = tp.pool.task(id).unwrap().follow(0).unwrap();
    std::thread::spawn(move || pieces(f))
}

/// Every output event of `f`, which must end with an end event.
fn pieces(f: taskpool::Follow) -> Vec<Piece> {
    let mut got = Vec::new();
    let mut ended = false;
    for e in f {
        match e.expect("follow event") {
            Event::Output {
                stream,
                offset,
                combined,
                data,
            } => got.push((stream, offset, combined, data)),
            Event::End(_) => ended = true,
            Event::State(_) => {}
        }
    }
    assert!(ended, "the follow ended without an end event");
    got
}

/// `pieces` of a task that wrote the helper's pattern to stdout with a log cap: in order, at
/// their offsets, right, and up to `total`; what the cap punched before it was sent is skipped,
/// never sent as zeros.
fn check_capped_pieces(pieces: &[Piece], total: u64) {
    let mut next = 0u64;
    for (stream, offset, combined, data) in pieces {
        eq!(*stream, Stream::Stdout);
        assert!(*offset >= next, "offset {offset} goes back");
        eq!(*combined, *offset);
        assert!(
            *data == pattern(*offset, data.len()),
            "bytes at {offset} differ"
        );
        next = offset + data.len() as u64;
    }
    eq!(next, total);
}

/// Spawn a task that waits for a line on stdin, then writes `total` bytes of the helper's
/// pattern in 64 KiB writes, then runs the shell commands `then`, with a 64 KiB log cap and a
/// 16 KiB buffer (and `extra` options).
fn capped_writer(tp: &TestPool, total: u64, extra: &[&str], then: &str) -> u64 {
    let script = format!(
        "read go; {} write {total} 65536; {then}",
        helper().display()
    );
    let mut args = vec!["--log-max", "64K", "--buffer", "16K"];
    args.extend_from_slice(extra);
    args.extend(["-c", &script]);
    tp.spawn(args)
}

/// Block until the task has written to `fifo` (it does so once its output is all written).
fn wait_for(fifo: &Path) {
    let mut done = Vec::new();
    std::fs::File::open(fifo)
        .unwrap()
        .read_to_end(&mut done)
        .unwrap();
}

/// A `read` of stdout answered by the supervisor (a consuming read: the library reads a peek at
/// an offset from the files itself).
fn read_at(tp: &TestPool, id: u64, offset: u64, count: u64) -> (u64, Vec<u8>) {
    let c = tp
        .pool
        .task(id)
        .unwrap()
        .read(&ReadOptions {
            offset: Some(offset),
            count: Some(count),
            peek: false,
            ..ReadOptions::new(Stream::Stdout)
        })
        .unwrap();
    (c.offset, c.data)
}

#[test]
fn odd_sized_interleaved_writes_to_both_streams_reach_the_logs_the_combined_view_and_a_follower() {
    let tp = TestPool::new();
    let work = tp.scratch();
    // stdout: 20 MiB in 4099-byte writes, then 10 MiB in writes larger than a grown pipe;
    // stderr at the same time: 20 MiB in 65537-byte writes (larger than a default pipe).
    let out1 = noise(1, 20 << 20);
    let out2 = noise(2, 10 << 20);
    let err = noise(3, 20 << 20);
    for (name, data) in [("o1", &out1), ("o2", &out2), ("e", &err)] {
        std::fs::write(work.join(name), data).unwrap();
    }
    let script = format!(
        "read go; cd {}; {{ dd if=o1 bs=4099 status=none; dd if=o2 bs=1048583 status=none; }} & \
         dd if=e bs=65537 status=none >&2; wait",
        work.display()
    );
    // Lingering, so the follower gets every byte from the supervisor, however far behind it is.
    let id = tp.spawn(["--linger", "30s", "-c", &script]);
    let ids = id.to_string();
    // Subscribed before the first byte: the follower is served live by the supervisor.
    let follow = follower(&tp, id);
    tp.ok(["send", &ids, "go"]);
    tp.wait_ok(&ids);
    let out = [out1, out2].concat();
    eq!(tp.run(["output", &ids, "--stdout"]).stdout == out, true);
    eq!(tp.run(["output", &ids, "--stderr"]).stdout == err, true);
    let info = tp.info(id);
    eq!(
        (
            info["streams"]["stdout"]["end"].clone(),
            info["streams"]["stderr"]["end"].clone(),
            info["streams"]["combined"]["end"].clone()
        ),
        (
            json!(out.len()),
            json!(err.len()),
            json!(out.len() + err.len())
        )
    );
    // The combined view is both streams' bytes in the order of the chunk entries.
    let chunks = std::fs::read(tp.dir.join(format!("tasks/{id}/run-1/chunks"))).unwrap();
    let (mut o, mut e, mut want) = (0usize, 0usize, Vec::new());
    for entry in chunks.chunks(4) {
        let (s, len) = taskpool::output::decode_entry(entry.try_into().unwrap());
        let (src, pos) = match s {
            Stream::Stderr => (&err, &mut e),
            _ => (&out, &mut o),
        };
        want.extend_from_slice(&src[*pos..*pos + len as usize]);
        *pos += len as usize;
    }
    eq!((o, e), (out.len(), err.len()));
    let combined = tp.run(["output", &ids]).stdout;
    eq!(combined.len(), want.len());
    assert!(
        combined == want,
        "the combined view differs from the chunk order"
    );
    // The follower got every byte once, each piece at its offsets.
    let pieces = follow.join().unwrap();
    let (mut next, mut o, mut e) = (0u64, 0u64, 0u64);
    for (stream, offset, comb, data) in &pieces {
        eq!(*comb, next);
        let (src, pos) = match stream {
            Stream::Stderr => (&err, &mut e),
            _ => (&out, &mut o),
        };
        eq!(*offset, *pos);
        let at = *offset as usize;
        assert!(
            data[..] == src[at..at + data.len()],
            "{stream:?} bytes at {offset} differ"
        );
        *pos += data.len() as u64;
        next += data.len() as u64;
    }
    eq!((o, e), (out.len() as u64, err.len() as u64));
}

#[test]
fn the_newest_buffer_size_bytes_can_be_read_live_with_a_log_cap_smaller_than_the_buffer() {
    let tp = TestPool::new();
    let done = fifo(&tp, "written.fifo");
    let total = 3_000_000u64;
    let buffer = 256 * 1024u64;
    let script = format!(
        "{} write {total} 4096; echo > {}; read x",
        helper().display(),
        done.display()
    );
    let id = tp.spawn(["--buffer", "256K", "--log-max", "16K", "-c", &script]);
    wait_for(&done);
    let s = tp.info(id)["streams"]["stdout"].clone();
    eq!(s["end"], json!(total));
    let start = s["start"].as_u64().unwrap();
    assert!(start > 0, "the log cap dropped nothing: {s}");
    // The cap never punches into the newest buffer_size bytes.
    assert!(
        start <= total - buffer,
        "start {start} is inside the buffer"
    );
    eq!(s["buffer_start"], json!(total - buffer));
    let (offset, data) = read_at(&tp, id, total - buffer, buffer);
    eq!(offset, total - buffer);
    assert!(
        data == pattern(total - buffer, buffer as usize),
        "newest bytes differ"
    );
    // Older than what the log keeps: the read starts at the first byte kept.
    let (offset, data) = read_at(&tp, id, 0, 100);
    eq!(offset, start);
    assert!(data == pattern(start, 100), "first kept bytes differ");
    tp.ok(["send", &id.to_string(), "x"]);
    tp.wait_ok(&id.to_string());
}

#[test]
fn disk_full_falls_back_to_memory_and_the_newest_bytes_are_still_read_live() {
    let Some(tp) = TestPool::on_tmpfs(512 << 10) else {
        return;
    };
    let done = fifo(&tp, "written.fifo");
    let total = 2_000_000u64;
    let script = format!(
        "{} write {total} 4096; echo > {}; read x",
        helper().display(),
        done.display()
    );
    let id = tp.spawn(["--buffer", "64K", "-c", &script]);
    wait_for(&done);
    let s = tp.info(id)["streams"]["stdout"].clone();
    eq!(s["end"], json!(total));
    let unstored = s["unstored"].as_u64().unwrap_or(0);
    let stored = total - unstored;
    assert!(unstored > 64 * 1024, "{s}");
    // The newest 64 KiB are not in the (full) log: they come from the fallback's ring.
    eq!(s["buffer_start"], json!(total - 64 * 1024));
    let (offset, data) = read_at(&tp, id, total - 1000, 1000);
    eq!(offset, total - 1000);
    assert!(data == pattern(total - 1000, 1000), "newest bytes differ");
    // What the log holds is the exact start of the stream.
    let (offset, data) = read_at(&tp, id, stored - 100, 100);
    eq!((offset, data.len()), (stored - 100, 100));
    assert!(data == pattern(stored - 100, 100), "stored bytes differ");
    let ids = id.to_string();
    tp.ok(["send", &ids, "x"]);
    eq!(code(&tp.run(["wait", &ids])), 0);
    tp.ok(["rm", &ids]);
}

#[test]
fn a_follower_of_a_capped_log_gets_every_byte_it_is_sent_at_its_offset() {
    let tp = TestPool::new();
    let total = 8u64 << 20;
    // Lingering, so every byte is sent by the supervisor (the next test covers a follower that
    // goes on from the files).
    let id = capped_writer(&tp, total, &["--linger", "30s"], "");
    let follow = follower(&tp, id);
    tp.ok(["send", &id.to_string(), "go"]);
    tp.wait_ok(&id.to_string());
    check_capped_pieces(&follow.join().unwrap(), total);
}

#[test]
fn a_follower_left_behind_by_its_supervisor_skips_what_the_cap_dropped() {
    let tp = TestPool::new();
    let total = 8u64 << 20;
    let id = capped_writer(&tp, total, &[], "");
    let sup = tp.supervisor_pid(id);
    // Following from 0, but reading nothing until the supervisor is gone: what its socket did
    // not take comes from the files, where the cap punched out all but the tail.
    let follow = tp.pool.task(id).unwrap().follow(0).unwrap();
    tp.ok(["send", &id.to_string(), "go"]);
    tp.wait_ok(&id.to_string());
    assert!(wait_gone(sup, std::time::Duration::from_secs(10)));
    check_capped_pieces(&pieces(follow), total);
}

#[test]
fn a_follower_of_a_killed_supervisors_capped_log_skips_the_holes_its_record_did_not_know() {
    let tp = TestPool::new();
    let total = 8u64 << 20;
    let done = fifo(&tp, "done");
    let id = capped_writer(
        &tp,
        total,
        &[],
        &format!("echo > {}; sleep 60", done.display()),
    );
    let sup = tp.supervisor_pid(id);
    tp.ok(["send", &id.to_string(), "go"]);
    wait_for(&done);
    // Killed after the cap punched out most of the log, but before any store of the record
    // could say so: the record still puts the kept bytes at offset 0.
    sigkill(sup);
    let got = pieces(tp.pool.task(id).unwrap().follow(0).unwrap());
    assert!(!got.is_empty(), "nothing delivered");
    let mut next = 0u64;
    for (stream, offset, _, data) in &got {
        eq!(*stream, Stream::Stdout);
        assert!(*offset >= next, "offset {offset} goes back");
        assert!(
            *data == pattern(*offset, data.len()),
            "bytes at {offset} differ (a hole read as zeros?)"
        );
        next = offset + data.len() as u64;
    }
    // Only the tail the cap kept (and what the pipe held when the supervisor died) is there.
    assert!(got[0].1 > 0, "the punched start was delivered");
}
