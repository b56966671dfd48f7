//! `taskpool serve` (the `taskpool-serve` program beside this one): `GET /api/tasks` over N live
//! tasks against `taskpool ls --json` over the same pool; an SSE follow's latency from a task's
//! write to the event; an idle server's wake-ups (context switches of all its threads) and memory;
//! a task writing while 1 and then many SSE clients follow it.

use crate::follow::{mkfifo, ping};
use crate::search::time_cmd;
use crate::stats::ms;
use crate::{kill_all, Ctx};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use taskpool::{Pool, SpawnOptions};

/// A running `taskpool-serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Server {
    fn start(cx: &Ctx, pool: &Pool) -> Server {
        let mut child = Command::new(cx.bin.join("taskpool-serve"))
            .arg("--pool")
            .arg(pool.path())
            .args(["--listen", "127.0.0.1:0", "--max-streams", "1024"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start taskpool-serve (built beside taskpool-bench?)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the URL line");
        let (base, token) = line
            .trim()
            .split_once("/?token=")
            .expect("URL with a token");
        Server {
            child,
            base: base.to_owned(),
            token: token.to_owned(),
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .max_idle_connections(1)
                    .build(),
            ),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// GET `path`; the body's length.
    fn get(&self, path: &str) -> usize {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .expect("GET");
        r.into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
            .len()
    }

    /// Open an SSE stream; its lines.
    fn sse(&self, path: &str) -> impl Iterator<Item = String> {
        let r = ureq::get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .expect("GET (SSE)");
        BufReader::with_capacity(1 << 20, r.into_body().into_reader())
            .lines()
            .map_while(Result::ok)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Context switches (voluntary, involuntary) of every thread of `pid` so far.
fn switches(pid: i32) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(t) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let field = |k: &str| {
            t.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total.0 += field("voluntary_ctxt_switches:");
        total.1 += field("nonvoluntary_ctxt_switches:");
    }
    total
}

fn status_kib(pid: i32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Every serve measurement.
pub fn run(cx: &mut Ctx) {
    eprintln!("serve:");
    let n = cx.n(1000, 20);
    let reps = cx.n(20, 3);
    let idle_for = Duration::from_secs(cx.n(10, 2) as u64);
    let pool = cx.pool("serve");
    let all: Vec<SpawnOptions> = (0..n)
        .map(|_| SpawnOptions::exec(["sleep", "1000000"]))
        .collect();
    pool.spawn_many(&all)
        .map_err(|(_, e)| e)
        .expect("spawn the idle tasks");

    // The server's wake-ups while nothing happens, before any request and after some (by then
    // its blocking threads have timed out: tokio keeps an idle one 10 s).
    let s = Server::start(cx, &pool);
    let pid = s.pid();
    // Past its start-up, and past the records the new tasks write as they start.
    std::thread::sleep(Duration::from_secs(1));
    let before = switches(pid);
    std::thread::sleep(idle_for);
    let after = switches(pid);
    cx.report.add(
        "serve",
        format!(
            "idle server, {n} live tasks: wake-ups over {}s, fresh",
            idle_for.as_secs()
        ),
        "count",
        vec![(after.0 - before.0 + after.1 - before.1) as f64],
        "target: 0",
    );

    let api = time_cmd_fn(reps, || {
        s.get("/api/tasks");
    });
    let a = cx.report.add(
        "serve",
        format!("GET /api/tasks, {n} live tasks"),
        "ms",
        api,
        "",
    );
    let ls = time_cmd(reps, || cx.cli(&pool, &["ls", "--json"]));
    let l = cx.report.add(
        "serve",
        format!("taskpool ls --json, {n} live tasks (same pool)"),
        "ms",
        ls,
        "",
    );
    let ratio = cx.report.median(a) / cx.report.median(l);
    cx.report.add(
        "serve",
        "GET /api/tasks / ls --json (median ratio)",
        "x",
        vec![ratio],
        "target: <= 1.5",
    );
    cx.report.add(
        "serve",
        format!("server RSS after serving {n} tasks"),
        "KiB",
        vec![status_kib(pid, "VmRSS:")],
        "target: <= 20480",
    );
    cx.report.add(
        "serve",
        "server peak RSS (VmHWM)",
        "KiB",
        vec![status_kib(pid, "VmHWM:")],
        "",
    );
    // Let the blocking threads of those requests retire, then measure again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while threads(pid) > 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = switches(pid);
    std::thread::sleep(idle_for);
    let after = switches(pid);
    cx.report.add(
        "serve",
        format!(
            "idle server: wake-ups over {}s after serving",
            idle_for.as_secs()
        ),
        "count",
        vec![(after.0 - before.0 + after.1 - before.1) as f64],
        format!("target: 0; {} threads", threads(pid)),
    );
    kill_all(&pool);

    latency(cx, &s, &pool);
    followers(cx, &s, &pool);
}

/// `f` timed `reps` times (after one warm-up), in ms.
fn time_cmd_fn(reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..reps + 1)
        .map(|_| {
            let t0 = Instant::now();
            f();
            ms(t0.elapsed())
        })
        .skip(1)
        .collect()
}

/// A task's write (`cat FIFO`; the bench writes a line) until the SSE event arrives.
fn latency(cx: &mut Ctx, s: &Server, pool: &Pool) {
    let fifo = cx.root.join("serve.fifo");
    mkfifo(&fifo);
    let task = pool
        .spawn(&SpawnOptions::exec([
            "cat".into(),
            fifo.clone().into_os_string(),
        ]))
        .expect("spawn");
    let lines = s.sse(&format!("/api/tasks/{}/follow", task.id()));
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in lines {
            if let Some(d) = l.strip_prefix("data: {\"text\":") {
                let text: String = serde_json::from_str(d.trim_end_matches('}')).unwrap();
                if tx.send((Instant::now(), text.len())).is_err() {
                    break;
                }
            }
        }
    });
    let v = ping(&fifo, cx.n(1000, 20), &rx);
    task.wait().expect("wait");
    drop(rx);
    let _ = reader.join();
    let _ = std::fs::remove_file(&fifo);
    cx.report.add(
        "serve",
        "SSE follow: task write until the event is received",
        "ms",
        v,
        "target: median <= 2",
    );
}

/// What the followers of [`run_followed`] are.
#[derive(Clone, Copy)]
enum Followers<'a> {
    /// SSE clients of the server.
    Sse(&'a Server),
    /// `Task::follow` in this process: each its own connection to the supervisor, as the
    /// server's follows are.
    Library,
}

/// A task writing `bytes` (`yes | head -c`) while `k` clients follow it: the task's run time,
/// and the time from its start until every client has every byte.
fn run_followed(how: Followers, pool: &Pool, k: usize, bytes: u64) -> (f64, f64) {
    let task = pool
        .spawn(&SpawnOptions::exec([
            "sh".to_owned(),
            "-c".to_owned(),
            format!("read go; yes 0123456789abcdef | head -c {bytes}"),
        ]))
        .expect("spawn");
    let path = format!("/api/tasks/{}/follow", task.id());
    let (ready_tx, ready_rx) = mpsc::channel();
    let clients: Vec<_> = (0..k)
        .map(|_| {
            let ready = ready_tx.clone();
            match how {
                Followers::Sse(s) => {
                    let lines = s.sse(&path);
                    std::thread::spawn(move || {
                        let _ = ready.send(());
                        let mut last = 0u64;
                        for l in lines {
                            // `RUN:OFFSET` (a bare offset from servers before runs were named).
                            if let Some(id) = l.strip_prefix("id: ") {
                                let at = id.rsplit(':').next().unwrap_or(id);
                                last = at.parse().unwrap_or(last);
                            } else if l == "event: end" {
                                break;
                            }
                        }
                        (last, Instant::now())
                    })
                }
                Followers::Library => {
                    let f = task.follow(0).expect("follow");
                    std::thread::spawn(move || {
                        let _ = ready.send(());
                        let mut got = 0u64;
                        for e in f {
                            match e {
                                Ok(taskpool::Event::Output { data, .. }) => {
                                    got += data.len() as u64
                                }
                                Ok(taskpool::Event::End(_)) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                        (got, Instant::now())
                    })
                }
            }
        })
        .collect();
    for _ in 0..k {
        ready_rx.recv().unwrap();
    }
    let t0 = Instant::now();
    task.write(b"go\n").expect("start the writer");
    let info = task.wait().expect("wait");
    let ran = info.duration.unwrap_or(f64::NAN) * 1000.0;
    let mut done = t0;
    for c in clients {
        let (got, at) = c.join().unwrap();
        assert_eq!(got, bytes, "a follower got {got} of {bytes} bytes");
        done = done.max(at);
    }
    (ran, ms(done - t0))
}

fn followers(cx: &mut Ctx, s: &Server, pool: &Pool) {
    let bytes: u64 = std::env::var("TASKPOOL_BENCH_SERVE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cx.quick { 16 << 20 } else { 1 << 30 });
    let many = cx.n(100, 10);
    let mib = bytes >> 20;
    let mut ran = Vec::new();
    for (how, k, what) in [
        (Followers::Sse(s), 1, "1 SSE follower"),
        (Followers::Sse(s), many, "SSE followers"),
        (Followers::Library, 1, "1 library follower"),
        (Followers::Library, many, "library followers (no server)"),
    ] {
        let (run, done) = run_followed(how, pool, k, bytes);
        let what = if k > 1 {
            format!("{k} {what}")
        } else {
            what.to_owned()
        };
        cx.report.add(
            "serve",
            format!("task writing {mib} MiB, {what}: run time"),
            "ms",
            vec![run],
            format!("all delivered after {done:.0} ms"),
        );
        ran.push(run);
    }
    cx.report.add(
        "serve",
        format!("{many} SSE followers / 1: the task's run time"),
        "x",
        vec![ran[1] / ran[0]],
        "target: <= 1.1",
    );
    cx.report.add(
        "serve",
        format!("{many} library followers / 1: the task's run time"),
        "x",
        vec![ran[3] / ran[2]],
        "the supervisor's share",
    );
}
