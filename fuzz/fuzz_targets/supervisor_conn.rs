//! Arbitrary byte streams to a live supervisor's connection handler. One real supervisor (found
//! through `TASKPOOL_SUPERVISOR`) runs a `cat` task in the pool at `TASKPOOL_FUZZ_POOL`; each
//! input is written to a fresh connection, which is then closed. Afterwards the supervisor must
//! answer `info` on a new connection within 5 s. A task the input legitimately ended (terminate,
//! a signal, closing its stdin) is replaced; a supervisor that vanished without recording the end
//! (`lost`) is a crash. `fuzz/run` sets both variables and cleans up afterwards.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;
use taskpool::{Pool, SpawnOptions, State};

struct Live {
    pool: Pool,
    id: u64,
}

static LIVE: Mutex<Option<Live>> = Mutex::new(None);

fn pool() -> Pool {
    let dir = std::env::var_os("TASKPOOL_FUZZ_POOL").expect("TASKPOOL_FUZZ_POOL is not set");
    Pool::open_or_create(&dir, Default::default()).expect("fuzz pool")
}

fn spawn(pool: Pool) -> Live {
    let task = pool
        .spawn(&SpawnOptions::exec(["cat"]))
        .expect("spawn the fuzzed task");
    Live {
        id: task.id(),
        pool,
    }
}

/// A new connection that asks `info`; None when the task is over (no socket).
fn ask_info(live: &Live) -> Option<String> {
    let mut s = UnixStream::connect(live.pool.socket_path(live.id)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"{\"type\":\"info\"}\n").ok()?;
    let mut r = BufReader::new(s);
    let mut hello = String::new();
    let mut reply = String::new();
    r.read_line(&mut hello).ok()?;
    r.read_line(&mut reply)
        .expect("supervisor did not answer info within 5 s");
    Some(reply)
}

fuzz_target!(|data: &[u8]| {
    let mut guard = LIVE.lock().unwrap();
    let live = guard.get_or_insert_with(|| spawn(pool()));
    if let Ok(mut s) = UnixStream::connect(live.pool.socket_path(live.id)) {
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let _ = s.write_all(data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Take what comes back for a moment (a follow or wait would go on), then hang up.
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
    match ask_info(live) {
        Some(reply) => assert!(
            reply.contains("\"type\":\"info\"") || reply.contains("\"type\":\"error\""),
            "unexpected reply to info: {reply}"
        ),
        None => {
            // Over: the input ended it (fine) unless the supervisor vanished (a crash).
            let task = live.pool.task(live.id).expect("task record");
            let info = task
                .wait_timeout(Some(Duration::from_secs(10)))
                .expect("the end")
                .expect("the run ended within 10 s");
            assert!(
                info.state != State::Lost,
                "supervisor vanished: {:?}",
                info.reason
            );
            let _ = task.remove(true);
            *live = spawn(live.pool.clone());
        }
    }
});
