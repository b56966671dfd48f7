//! The test harness: [`TestPool`] makes a fresh private pool directory, runs the CLI against it,
//! and on drop terminates whatever is still live and removes the directory.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use taskpool::Pool;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The directory holding the workspace's built binaries (target/<profile>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/integration-HASH
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// Path of a built workspace binary; fails the test clearly if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// The helper program of these tests.
pub fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tp-helper"))
}

/// A fresh pool directory for one test.
pub struct TestPool {
    pub dir: PathBuf,
    pub pool: Pool,
    root: PathBuf,
    /// A tmpfs is mounted at `root` (see [`TestPool::on_tmpfs`]).
    mounted: bool,
}

impl TestPool {
    pub fn new() -> TestPool {
        Self::with_name("pool")
    }

    /// A pool at `root/NAME` (NAME may be long or nested).
    pub fn with_name(name: &str) -> TestPool {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("taskpool-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self::in_root(root, name, false)
    }

    /// A pool on a tmpfs of `size` bytes of its own (a small disk to fill), or `None` when
    /// mounting is not possible here (not root; see [`root_or_skip`]).
    pub fn on_tmpfs(size: u64) -> Option<TestPool> {
        Self::on_tmpfs_with(&format!("size={size}"))
    }

    /// [`TestPool::on_tmpfs`] with the tmpfs's own options (`size=…,nr_inodes=…`).
    pub fn on_tmpfs_with(options: &str) -> Option<TestPool> {
        if !root_or_skip("mounting a tmpfs") {
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("taskpool-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("{options},mode=0755"),
                "tmpfs",
            ])
            .arg(&root)
            .output()
            .expect("running mount");
        if !mounted.status.success() {
            let _ = std::fs::remove_dir(&root);
            panic!(
                "mount -t tmpfs -o {options} failed as root: {}",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
        }
        Some(Self::in_root(root, "pool", true))
    }

    fn in_root(root: PathBuf, name: &str, mounted: bool) -> TestPool {
        let dir = root.join(name);
        let mut pool = Pool::open_or_create(&dir, Default::default()).expect("create pool");
        pool.set_supervisor_cmd(vec![bin("taskpool-supervisor").into()]);
        TestPool {
            dir,
            pool,
            root,
            mounted,
        }
    }

    /// A `taskpool` command against this pool (environment cleaned of any enclosing task's).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("taskpool"));
        c.arg("--pool")
            .arg(&self.dir)
            .env_remove("TASKPOOL_DIR")
            .env_remove("TASKPOOL_TASK_ID")
            .env_remove("TASKPOOL_SUPERVISOR_PID")
            .env_remove("TASKPOOL_ENGINE")
            .stdin(Stdio::null());
        c
    }

    /// Run `taskpool ARGS` to completion.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd().args(args).output().expect("run taskpool")
    }

    /// Run `taskpool ARGS`, assert success, return stdout as text.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "taskpool {:?} failed with {}\nstdout: {}\nstderr: {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `taskpool spawn ARGS`, returning the id it printed.
    pub fn spawn<I, S>(&self, args: I) -> u64
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["spawn".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let out = self.ok(&all);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("spawn printed {out:?}"))
    }

    /// Spawn the helper writing `bytes` bytes of a known pattern in `chunk`-byte writes, with
    /// spawn options `opts`; returns the id as text.
    pub fn spawn_writer(&self, opts: &[&str], bytes: u64, chunk: usize) -> String {
        let (bytes, chunk) = (bytes.to_string(), chunk.to_string());
        let h = helper();
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["--", h.to_str().unwrap(), "write", &bytes, &chunk]);
        self.spawn(args).to_string()
    }

    /// `taskpool info ID --json` parsed.
    pub fn info(&self, id: u64) -> serde_json::Value {
        serde_json::from_str(&self.ok(["info", &id.to_string(), "--json"])).expect("info json")
    }

    /// A scratch directory beside the pool, for files the jobs write.
    pub fn scratch(&self) -> PathBuf {
        let d = self.dir.parent().unwrap().join("work");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The supervisor pid in task `id`'s info.
    pub fn supervisor_pid(&self, id: u64) -> i32 {
        self.info(id)["supervisor_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("task {id} has no supervisor pid")) as i32
    }

    /// `taskpool wait ID`, asserting the task succeeded; on failure the task's output is shown.
    pub fn wait_ok(&self, id: &str) {
        let out = self.run(["wait", id]);
        if !out.status.success() {
            let task_out = self.run(["output", id]);
            panic!(
                "task {id} did not succeed ({})\ntask output: {}",
                out.status,
                String::from_utf8_lossy(&task_out.stdout)
            );
        }
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        if let Ok(list) = self.pool.list() {
            // Live tasks, and ended ones whose supervisor lingers (its socket is still there).
            let pool = &self.pool;
            for info in list
                .into_iter()
                .filter(|i| i.is_live() || pool.socket_path(i.id).exists())
            {
                if let Ok(t) = self.pool.task(info.id) {
                    let _ = t.terminate_supervisor(Some(Duration::from_millis(200)));
                }
            }
        }
        if self.mounted {
            // Lazily: a supervisor that is just exiting may still have its working directory there.
            let _ = Command::new("umount").arg("-l").arg(&self.root).status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Assert with both sides printed.
#[macro_export]
macro_rules! eq {
    ($actual:expr, $expected:expr $(,)?) => {
        match (&$actual, &$expected) {
            (a, e) => assert!(
                *a == *e,
                "\nexpected: {:?}\n  actual: {:?}\n      at: {}",
                e,
                a,
                stringify!($actual)
            ),
        }
    };
}

/// Wait until process `pid` has exited (via a pidfd, no polling), at most `timeout`.
/// Returns false if it is still running then.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return true; // no such process
    }
    // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    r == 1
}

/// SIGKILL `pid` and wait (pidfd) until it is gone.
pub fn sigkill(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "pid {pid} survived SIGKILL"
    );
}

/// True while a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
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

/// Exit code of a finished CLI run.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// stderr of a finished CLI run as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A FIFO named `name` in the pool's scratch directory: a task or hook writes to it, a test
/// waits on it ([`read_fifo`]).
pub fn fifo(tp: &TestPool, name: &str) -> PathBuf {
    let p = tp.scratch().join(name);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    p
}

/// Read one writer's whole message from `fifo`, waiting at most `timeout` for a writer.
pub fn read_fifo(fifo: &Path, timeout: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.to_owned();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let _ = std::io::Read::read_to_string(&mut f, &mut s);
        }
        let _ = tx.send(s);
    });
    rx.recv_timeout(timeout).ok()
}

/// Whether this test may do what needs root (`what`, for the note): true as root. Run as another
/// user, the test (or that part of it) is skipped with a note on stderr, unless `TASKPOOL_TESTS_NEED_ROOT` is set (as
/// `.ci/run` sets it), where it fails instead: CI never skips.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    if std::env::var_os("TASKPOOL_TESTS_NEED_ROOT").is_some() {
        panic!("{test} needs root ({what}), and TASKPOOL_TESTS_NEED_ROOT is set");
    }
    eprintln!("{test}: {what} needs root; skipped");
    false
}
