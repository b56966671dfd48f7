//! Follow latency: the time from a task's write to a `follow` client receiving the bytes. The
//! task is `cat FIFO`; the bench writes a line into the FIFO and times its arrival through the
//! supervisor. The baseline is the same `cat` writing into a plain pipe the bench reads.

use crate::stats::ms;
use crate::Ctx;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use taskpool::{Event, SpawnOptions};

pub fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Write a line `n` times into `fifo`, each time waiting until `arrived` has reported all its
/// bytes (instant and byte count of each delivery): latencies in ms.
pub fn ping(
    fifo: &std::path::Path,
    n: usize,
    arrived: &mpsc::Receiver<(Instant, usize)>,
) -> Vec<f64> {
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("open fifo");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n + 5 {
        let t0 = Instant::now();
        w.write_all(b"x\n").unwrap();
        let mut got = 0;
        let mut t1 = t0;
        while got < 2 {
            let (t, k) = arrived
                .recv_timeout(Duration::from_secs(10))
                .expect("the line did not arrive");
            got += k;
            t1 = t;
        }
        assert_eq!(got, 2, "more bytes arrived than were written");
        out.push(ms(t1 - t0));
    }
    out.split_off(5)
}

/// Every follow measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("follow:");
    let n = cx.n(1000, 20);
    let fifo = cx.root.join("follow.fifo");

    mkfifo(&fifo);
    let mut cat = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = cat.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(k) = out.read(&mut buf) {
            if k == 0 || tx.send((Instant::now(), k)).is_err() {
                break;
            }
        }
    });
    let base = ping(&fifo, n, &rx);
    let _ = cat.wait();
    let _ = reader.join();
    let b = cx.report.add(
        "follow",
        "baseline: write to a plain pipe until read",
        "ms",
        base,
        "",
    );
    let _ = std::fs::remove_file(&fifo);

    mkfifo(&fifo);
    let pool = cx.pool("follow");
    let task = pool
        .spawn(&SpawnOptions::exec([
            "cat".into(),
            fifo.clone().into_os_string(),
        ]))
        .expect("spawn");
    let f = task.follow(0).expect("follow");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for e in f {
            match e {
                Ok(Event::Output { data, .. }) => {
                    if tx.send((Instant::now(), data.len())).is_err() {
                        break;
                    }
                }
                Ok(Event::End(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let v = ping(&fifo, n, &rx);
    task.wait().expect("wait");
    let _ = reader.join();
    let o = cx.report.add(
        "follow",
        "task write until a follow client receives it",
        "ms",
        v,
        "target: median < 1",
    );
    let d = cx.report.median(o) - cx.report.median(b);
    cx.report.add(
        "follow",
        "added by the supervisor (median difference)",
        "ms",
        vec![d],
        "",
    );
}
