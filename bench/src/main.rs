//! `taskpool-bench`: every measurement of issue 4 in one run, against baselines and peers measured
//! in the same run. Prints a table of medians (with min and max) and writes a JSON file. Run it
//! through `bench/run`, which builds release binaries and raises the limits; see `bench/README.md`.
//!
//! Usage: `taskpool-bench [--quick] [--json FILE] [--only SECTION,...]`
//! Sections: spawn, bulk, search (also idle cost, peers' memory, and 2000 live tasks), output,
//! follow, serve, slurm (the Slurm engine against the cluster on this machine; skipped without one).

mod bulk;
mod follow;
mod output;
mod peers;
mod probe;
mod search;
mod serve;
mod slurm;
mod spawn;
mod stats;

use serde_json::json;
use stats::Report;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use taskpool::{CreateOptions, Pool};

/// What every section needs: the mode, a private scratch directory, the binaries, the report.
pub struct Ctx {
    /// A short run that only proves every measurement works (CI).
    pub quick: bool,
    /// Scratch directory, removed at the end.
    pub root: PathBuf,
    /// Where `taskpool` and `taskpool-supervisor` are (beside this program).
    pub bin: PathBuf,
    /// The rows measured so far.
    pub report: Report,
}

impl Ctx {
    /// `full` in a full run, `quick` in a quick one.
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// A fresh, empty pool named `name` in the scratch directory.
    pub fn pool(&self, name: &str) -> Pool {
        let dir = self.root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut pool = Pool::open_or_create(&dir, CreateOptions::default()).expect("create pool");
        pool.set_supervisor_cmd(vec![self.bin.join("taskpool-supervisor").into()]);
        pool.set_timeout(Duration::from_secs(60));
        pool
    }

    /// `taskpool --pool POOL ARGS`, output discarded.
    pub fn cli(&self, pool: &Pool, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("taskpool"));
        c.arg("--pool").arg(pool.path()).args(args);
        // The CLI finds its supervisor beside itself (it forks into the one linked into it).
        c.env_remove("TASKPOOL_SUPERVISOR");
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

/// Wait until every live task of `pool` has ended (its supervisor has recorded the end).
pub fn drain(pool: &Pool) {
    for info in pool.list().expect("list") {
        if info.state.is_live() {
            if let Ok(t) = pool.task(info.id) {
                let _ = t.wait();
            }
        }
    }
}

/// End every live task of `pool` with SIGKILL and wait for the ends.
pub fn kill_all(pool: &Pool) {
    let list = pool.list().expect("list");
    for info in &list {
        if info.state.is_live() {
            if let Ok(t) = pool.task(info.id) {
                let _ = t.kill(nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    drain(pool);
}

fn machine() -> serde_json::Value {
    let sh = |c: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(c)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "kernel": sh("uname -sr"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        "cores": sh("nproc"),
        "memory": sh("grep MemTotal /proc/meminfo | awk '{print $2\" kB\"}'"),
        "rustc": sh("rustc --version"),
        "rust_backtrace": std::env::var("RUST_BACKTRACE").ok(),
        "nofile": sh("ulimit -n"),
        "pid_max": sh("cat /proc/sys/kernel/pid_max"),
    })
}

fn main() {
    let mut quick = false;
    let mut json_path = PathBuf::from("bench/results.json");
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_path = args.next().expect("--json FILE").into(),
            "--only" => {
                only = Some(
                    args.next()
                        .expect("--only LIST")
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            _ => {
                eprintln!("usage: taskpool-bench [--quick] [--json FILE] [--only spawn,search,output,follow,bulk,serve,slurm]");
                std::process::exit(2);
            }
        }
    }
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        eprintln!(
            "bench: RUST_BACKTRACE is set; measurements assume it is unset (bench/run unsets it)"
        );
    }
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.parent().expect("exe dir").to_path_buf();
    let root = std::env::temp_dir().join(format!("taskpool-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("scratch dir");
    let mut cx = Ctx {
        quick,
        root,
        bin,
        report: Report::default(),
    };
    let want = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let meta = machine();
    eprintln!(
        "bench: {} run; scratch {}",
        if quick { "quick" } else { "full" },
        cx.root.display()
    );
    if want("spawn") {
        spawn::run(&mut cx);
    }
    if want("bulk") {
        bulk::run(&mut cx);
    }
    if want("search") {
        search::run(&mut cx);
    }
    if want("output") {
        output::run(&mut cx);
    }
    if want("follow") {
        follow::run(&mut cx);
    }
    if want("slurm") {
        slurm::run(&mut cx);
    }
    if want("serve") {
        serve::run(&mut cx);
    }
    let _ = std::fs::remove_dir_all(&cx.root);
    println!("{}", cx.report.table());
    let mut meta = meta;
    meta["mode"] = json!(if quick { "quick" } else { "full" });
    let doc = cx.report.to_json(meta);
    if let Some(p) = json_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(p);
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc).unwrap()).expect("write json");
    eprintln!("bench: wrote {}", Path::new(&json_path).display());
}
