//! Disk full while a task writes output, on a small tmpfs pool (needs root to mount; skipped with
//! a note otherwise). The task keeps running; from the first failed write its logs stop growing
//! (so every stored byte stays at its offset), info reports the failure and counts the bytes that
//! could not be stored, the final record is still written (the supervisor keeps room for it), and
//! the pool works again once space is freed.

use crate::util::*;
use serde_json::json;
use std::io::Read;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn disk_full_while_a_task_writes_keeps_the_task_the_stored_bytes_and_the_final_record() {
    let Some(tp) = TestPool::on_tmpfs(512 << 10) else {
        return;
    };
    let fifo = tp.dir.join("written.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let script = format!(
        "{} write 2000000 4096; echo; echo marker; echo > {}; read x; echo got $x",
        helper().display(),
        fifo.display()
    );
    let id = tp.spawn(["-c", &script]);
    let ids = id.to_string();
    // The task has written everything once it opens the fifo.
    let mut done = Vec::new();
    std::fs::File::open(&fifo)
        .unwrap()
        .read_to_end(&mut done)
        .unwrap();
    // Live: still running, the failure reported, the bytes not stored counted.
    let info = tp.info(id);
    eq!(info["state"], json!("running"));
    let reason = info["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("No space left on device"),
        "reason: {reason:?}"
    );
    let out = &info["streams"]["stdout"];
    eq!(out["end"], json!(2_000_008));
    assert!(out["unstored"].as_u64().unwrap() > 0, "{out}");
    let live_stored = (out["end"].as_u64().unwrap() - out["unstored"].as_u64().unwrap()) as usize;
    // The task goes on and ends normally.
    tp.ok(["send", &ids, "hi"]);
    eq!(code(&tp.run(["wait", &ids])), 0);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tp.pool.record_path(id)).unwrap()).unwrap();
    eq!(
        (rec["state"].clone(), rec["runs"][0]["status"].clone()),
        (json!("exited"), json!("success"))
    );
    let info = tp.info(id);
    let out = &info["streams"]["stdout"];
    let end = out["end"].as_u64().unwrap() as usize;
    let unstored = out["unstored"].as_u64().unwrap() as usize;
    eq!(end, 2_000_015);
    assert!(info["reason"].as_str().unwrap().contains("No space left"));
    // What was stored is exactly the start of the stream: nothing lost or shifted.
    let stored = tp.run(["output", &ids, "--stdout"]).stdout;
    eq!(stored.len(), end - unstored);
    eq!(stored.len(), live_stored);
    assert!(stored.len() > 100_000, "only {} bytes stored", stored.len());
    assert!(
        stored == pattern(stored.len()),
        "stored bytes differ from what the task wrote"
    );
    // The combined view agrees with the stream it is made of.
    let combined = tp.ok(["output", &ids]);
    assert!(
        combined.as_bytes() == stored.as_slice(),
        "combined view differs from stdout"
    );
    // Space freed: the pool works again.
    tp.ok(["rm", &ids]);
    let id2 = tp.spawn(["--", "echo", "again"]).to_string();
    eq!(code(&tp.run(["wait", &id2])), 0);
    eq!(tp.ok(["output", &id2]), "again\n");
    let info = tp.info(id2.parse().unwrap());
    eq!(info["reason"], json!(null));
    eq!(info["streams"]["stdout"].get("unstored"), None);
}
