//! The peers measured beside taskpool, each in its own private state directory: task-spooler
//! (`tsp`), pueue (`pueued` + `pueue`), s6 (`s6-supervise`) and supervisord. A peer that is not
//! installed is `None`, and its rows are reported as skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when `prog` is on `PATH`.
pub fn installed(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Run a command to completion with its output discarded; its success.
pub fn quiet(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A task-spooler server on a private socket (`TS_SOCKET`); killed on drop. Its jobs' output
/// files (`ts-out.*`) go to the same directory, so they go with the bench's scratch directory.
pub struct Tsp {
    sock: PathBuf,
    dir: PathBuf,
}

impl Tsp {
    /// A server on `dir/tsp.sock`, started by its first command.
    pub fn new(dir: &Path) -> Option<Tsp> {
        installed("tsp").then(|| Tsp {
            sock: dir.join("tsp.sock"),
            dir: dir.to_path_buf(),
        })
    }

    /// `tsp ARGS` against this server.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tsp");
        c.args(args)
            .env("TS_SOCKET", &self.sock)
            .env("TS_SAVELIST", "/dev/null")
            .env("TMPDIR", &self.dir);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// The server's pid (found by its environment).
    pub fn server_pid(&self) -> Option<i32> {
        crate::probe::pids_with("tsp", &format!("TS_SOCKET={}", self.sock.display()))
            .into_iter()
            .min()
    }
}

impl Drop for Tsp {
    fn drop(&mut self) {
        let _ = self.cmd(&["-K"]).status();
        // Each queued or running job is a tsp client process of its own (the running one with
        // its command as a child): the server's end does not end them. Everything that carries
        // this server's socket in its environment goes.
        let marker = format!("TS_SOCKET={}", self.sock.display());
        for comm in ["tsp", "sleep"] {
            for pid in crate::probe::pids_with(comm, &marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A pueue daemon with a private configuration and state directory; shut down on drop.
pub struct Pueue {
    config: PathBuf,
    daemon: Child,
}

impl Pueue {
    /// Start `pueued` in `dir` and wait until it answers.
    pub fn start(dir: &Path) -> Option<Pueue> {
        if !installed("pueued") || !installed("pueue") {
            return None;
        }
        fs::create_dir_all(dir).ok()?;
        let config = dir.join("pueue.yml");
        let d = dir.display();
        fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {d}\n  runtime_directory: {d}\n  use_unix_socket: true\n  unix_socket_path: {d}/pueue.sock\n\
                 daemon:\n  default_parallel_tasks: 1\nclient:\n  restart_in_place: false\n"
            ),
        )
        .ok()?;
        let daemon = Command::new("pueued")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let p = Pueue { config, daemon };
        let t0 = Instant::now();
        while !quiet(&mut p.cmd(&["status"])) {
            if t0.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(p)
    }

    /// `pueue ARGS` against this daemon.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("pueue");
        c.arg("-c").arg(&self.config).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.id() as i32
    }
}

impl Drop for Pueue {
    fn drop(&mut self) {
        let _ = quiet(&mut self.cmd(&["kill", "--all"]));
        let _ = quiet(&mut self.cmd(&["shutdown"]));
        if self.daemon.wait().is_err() {
            let _ = self.daemon.kill();
        }
    }
}

/// `n` s6-supervise processes, each supervising `sleep`; brought down and exited on drop.
pub struct S6 {
    dirs: Vec<PathBuf>,
    procs: Vec<Child>,
}

impl S6 {
    /// Start `n` supervised `sleep` services under `dir`.
    pub fn start(dir: &Path, n: usize) -> Option<S6> {
        if !installed("s6-supervise") {
            return None;
        }
        let mut s = S6 {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for i in 0..n {
            let d = dir.join(format!("svc{i}"));
            fs::create_dir_all(&d).ok()?;
            let run = d.join("run");
            fs::write(&run, "#!/bin/sh\nexec sleep 1000000\n").ok()?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).ok()?;
            let c = Command::new("s6-supervise")
                .arg(&d)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            s.dirs.push(d);
            s.procs.push(c);
        }
        Some(s)
    }

    /// The supervisors' pids.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|c| c.id() as i32).collect()
    }
}

impl Drop for S6 {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = quiet(Command::new("s6-svc").arg("-dx").arg(d));
        }
        for c in &mut self.procs {
            let _ = c.wait();
        }
    }
}

/// supervisord in the foreground with `n` `sleep` programs; stopped on drop.
pub struct Supervisord {
    daemon: Child,
}

impl Supervisord {
    /// Start it with its configuration, socket and logs under `dir`.
    pub fn start(dir: &Path, n: usize) -> Option<Supervisord> {
        if !installed("supervisord") {
            return None;
        }
        fs::create_dir_all(dir).ok()?;
        let d = dir.display();
        let mut conf = format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\
             [unix_http_server]\nfile={d}/supervisor.sock\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        );
        for i in 0..n {
            conf.push_str(&format!("[program:sleep{i}]\ncommand=sleep 1000000\nstdout_logfile={d}/sleep{i}.log\nredirect_stderr=true\n"));
        }
        let cf = dir.join("supervisord.conf");
        fs::write(&cf, conf).ok()?;
        let daemon = Command::new("supervisord")
            .arg("-c")
            .arg(&cf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Supervisord { daemon })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.id() as i32
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
    }
}
