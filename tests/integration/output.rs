//! Output capture: streams, combined view, offsets, tail, follow, bytes that are not UTF-8, big
//! output with a small buffer, the log cap, and a grandchild that holds the pipe open.

use crate::util::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn streams_combined_view_tail_and_offsets() {
    let tp = TestPool::new();
    let h = helper();
    let id = tp
        .spawn(["--", h.to_str().unwrap(), "interleave", "3"])
        .to_string();
    tp.ok(["wait", &id]);
    eq!(tp.ok(["output", &id, "--stdout"]), "out 0\nout 1\nout 2\n");
    eq!(tp.ok(["output", &id, "--stderr"]), "err 0\nerr 1\nerr 2\n");
    let combined = tp.ok(["output", &id]);
    eq!(combined.len(), 36);
    eq!(combined.lines().filter(|l| l.starts_with("out")).count(), 3);
    eq!(
        tp.ok(["output", &id, "--stdout", "--tail", "2"]),
        "out 1\nout 2\n"
    );
    eq!(
        tp.ok(["output", &id, "--stdout", "--from", "6"]),
        "out 1\nout 2\n"
    );
    let info = tp.info(id.parse().unwrap());
    eq!(info["streams"]["stdout"]["end"], json!(18));
    eq!(info["streams"]["stderr"]["end"], json!(18));
    eq!(info["streams"]["combined"]["end"], json!(36));
}

#[test]
fn merge_stderr_keeps_exact_order() {
    let tp = TestPool::new();
    let id = tp
        .spawn([
            "--merge-stderr",
            "--",
            helper().to_str().unwrap(),
            "interleave",
            "50",
        ])
        .to_string();
    tp.ok(["wait", &id]);
    let want: String = (0..50).map(|i| format!("out {i}\nerr {i}\n")).collect();
    eq!(tp.ok(["output", &id]), want);
    eq!(tp.ok(["output", &id, "--stderr"]), "");
}

#[test]
fn non_utf8_output_and_arguments_round_trip_exactly() {
    let tp = TestPool::new();
    let id = tp
        .spawn([
            "--",
            helper().to_str().unwrap(),
            "bytes",
            "ff00fe0a1b5b33316d",
        ])
        .to_string();
    tp.ok(["wait", &id]);
    let out = tp.run(["output", &id]);
    eq!(
        out.stdout,
        vec![0xff, 0x00, 0xfe, 0x0a, 0x1b, b'[', b'3', b'1', b'm']
    );
    // A non-UTF-8 argument reaches the program unchanged and shows in info losslessly.
    use std::os::unix::ffi::OsStrExt;
    let arg = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = tp
        .cmd()
        .args(["spawn", "--json", "--", "printf", "%s"])
        .arg(arg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eq!(info["command"][2], json!({"base64": "Y2Fm6Q=="}));
    let id = info["id"].to_string();
    tp.ok(["wait", &id]);
    eq!(tp.run(["output", &id]).stdout, b"caf\xe9".to_vec());
    // The table shows it escaped, never raw control bytes.
    let table = tp.ok(["ls"]);
    assert!(!table.contains('\u{1b}'), "raw escape in table");
}

#[test]
fn follow_streams_until_the_end() {
    let tp = TestPool::new();
    let id = tp
        .spawn([
            "-c",
            "for i in 1 2 3; do echo line $i; sleep 0.05; done; echo bye >&2",
        ])
        .to_string();
    let out = tp.run(["output", &id, "--follow"]);
    eq!(code(&out), 0);
    eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\nbye\n"
    );
    // JSON lines mode ends with an end event carrying the final info.
    let out = tp.ok(["output", &id, "--follow", "--json"]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    eq!(last["event"], json!("end"));
    eq!(last["info"]["status"], json!("success"));
}

#[test]
fn far_more_output_than_the_buffer_is_all_on_disk_and_memory_stays_bounded() {
    let tp = TestPool::new();
    let total: u64 = 32 * 1024 * 1024;
    let id = tp.spawn_writer(&["--buffer", "64K", "--linger", "30s"], total, 65536);
    let spid = tp.info(id.parse().unwrap())["supervisor_pid"]
        .as_i64()
        .unwrap();
    // Follow live while it writes: every byte arrives, in order.
    let followed = tp.run(["output", &id, "--follow"]);
    assert!(followed.status.success(), "{}", stderr(&followed));
    let got = followed.stdout;
    eq!(got.len() as u64, total);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == b'a' + (i % 26) as u8),
        "followed bytes out of order"
    );
    let file = std::fs::read(tp.dir.join(format!("tasks/{id}/run-1/stdout"))).unwrap();
    eq!(file.len() as u64, total);
    eq!(
        tp.info(id.parse().unwrap())["streams"]["stdout"]["end"],
        json!(total)
    );
    // The supervisor lingers: its peak memory is far below the output size.
    let status = std::fs::read_to_string(format!("/proc/{spid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        hwm_kib < 16 * 1024,
        "supervisor peak RSS {hwm_kib} KiB for 32 MiB of output"
    );
}

#[test]
fn log_cap_drops_the_oldest_bytes_and_says_how_many() {
    let tp = TestPool::new();
    let id = tp.spawn_writer(&["--log-max", "64K", "--buffer", "16K"], 1 << 20, 4096);
    tp.ok(["wait", &id]);
    let info = tp.info(id.parse().unwrap());
    let s = &info["streams"]["stdout"];
    eq!(s["end"], json!(1048576));
    let start = s["start"].as_u64().unwrap();
    assert!(
        start >= 1048576 - 128 * 1024,
        "start {start}: too much kept"
    );
    eq!(s["dropped"].as_u64().unwrap(), start);
    // What is kept reads back exactly, at its absolute offsets.
    let tail = tp
        .run(["output", &id, "--stdout", "--from", &start.to_string()])
        .stdout;
    eq!(tail.len() as u64, 1048576 - start);
    assert!(tail
        .iter()
        .enumerate()
        .all(|(i, b)| *b == b'a' + ((start + i as u64) % 26) as u8));
    let disk = std::fs::metadata(tp.dir.join(format!("tasks/{id}/run-1/stdout"))).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        disk.blocks() * 512 <= 256 * 1024,
        "log file still uses {} bytes",
        disk.blocks() * 512
    );
}

#[test]
fn a_grandchild_holding_stdout_does_not_keep_wait_hanging() {
    let tp = TestPool::new();
    let id = tp
        .spawn(["--", helper().to_str().unwrap(), "grandchild", "60"])
        .to_string();
    let t0 = Instant::now();
    eq!(code(&tp.run(["wait", &id])), 0);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "wait took {:?}",
        t0.elapsed()
    );
    let out = tp.ok(["output", &id]);
    let gpid: i32 = out.trim().strip_prefix("done ").unwrap().parse().unwrap();
    // The straggler in the task's process group is ended with the task.
    assert!(
        wait_gone(gpid, Duration::from_secs(10)),
        "grandchild {gpid} outlived its task"
    );
}

/// The pattern the helper writes, from stream offset `start` on.
fn is_pattern_from(bytes: &[u8], start: u64) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == b'a' + ((start + i as u64) % 26) as u8)
}

#[test]
fn reads_of_a_capped_log_return_only_kept_bytes_not_zeros() {
    let tp = TestPool::new();
    let h = helper();
    let script = format!("{} write 2097152 4096; echo done >&2; cat", h.display());
    let id = tp
        .spawn(["--log-max", "64K", "--buffer", "16K", "-c", &script])
        .to_string();
    // Live: `done` on stderr comes after every stdout byte was captured.
    let mut follow = tp.cmd();
    follow.args(["output", &id, "--stderr", "--follow"]);
    let mut child = follow.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    eq!(line, "done\n");
    let _ = child.kill();
    let _ = child.wait();
    let check = |live: bool| {
        let info = tp.info(id.parse().unwrap());
        let start = info["streams"]["stdout"]["start"].as_u64().unwrap();
        assert!(start > 0, "nothing was dropped: {info}");
        let kept = 2097152 - start;
        let stdout = tp.run(["output", &id, "--stdout"]).stdout;
        eq!(stdout.len() as u64, kept);
        assert!(is_pattern_from(&stdout, start), "--stdout (live {live})");
        let combined = tp.run(["output", &id]).stdout;
        eq!(combined.len() as u64, kept + 5);
        assert!(
            !combined.contains(&0),
            "combined output has NUL bytes (live {live})"
        );
        assert!(is_pattern_from(&combined[..kept as usize], start));
        eq!(&combined[kept as usize..], b"done\n");
        let j: serde_json::Value =
            serde_json::from_slice(&tp.run(["output", &id, "--json"]).stdout).unwrap();
        eq!(j["start"], json!(start));
        eq!(j["offset"], json!(start));
        let j: serde_json::Value =
            serde_json::from_slice(&tp.run(["output", &id, "--json", "--stdout"]).stdout).unwrap();
        eq!(j["start"], json!(start));
        let task = tp.pool.task(id.parse().unwrap()).unwrap();
        let all = task.read_all(taskpool::Stream::Combined).unwrap();
        eq!(all.len() as u64, kept + 5);
        assert!(!all.contains(&0), "read_all has NUL bytes (live {live})");
        let c = task
            .read(&taskpool::task::ReadOptions {
                offset: Some(0),
                ..taskpool::task::ReadOptions::new(taskpool::Stream::Stdout)
            })
            .unwrap();
        eq!(c.offset, start);
        eq!(c.data.len() as u64, kept);
    };
    check(true);
    // The live supervisor's own combined read starts at the first kept byte too.
    let consumed: serde_json::Value =
        serde_json::from_slice(&tp.run(["output", &id, "--consume", "--json"]).stdout).unwrap();
    let start = tp.info(id.parse().unwrap())["streams"]["stdout"]["start"]
        .as_u64()
        .unwrap();
    eq!(consumed["offset"], json!(start));
    tp.ok(["send", &id, "--eof"]);
    tp.ok(["wait", &id]);
    check(false);
}
