//! Probes that observe a process from outside: a FIFO that tells the instant a job runs, and
//! `/proc` readings (private memory, context switches, CPU time, peak RSS).

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A FIFO whose read end is open before the job starts: the job's `echo > FIFO` makes it readable,
/// so the time from starting a command to readability is "until the job runs".
pub struct Ready {
    path: PathBuf,
    fd: OwnedFd,
}

impl Ready {
    /// Make the FIFO `path` and open its read end (nonblocking: a FIFO never written stays quiet).
    pub fn new(path: PathBuf) -> Ready {
        let _ = fs::remove_file(&path);
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
            0,
            "mkfifo {}",
            path.display()
        );
        // SAFETY: as above; the returned fd is checked and owned at once.
        let raw = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        assert!(raw >= 0, "open {}", path.display());
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ready { path, fd }
    }

    /// The shell command that signals readiness.
    pub fn job(&self) -> String {
        format!("echo > {}", self.path.display())
    }

    /// Block until the job has written (or `timeout`); the instant it became readable.
    pub fn wait(&self, timeout: Duration) -> Option<Instant> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        (n == 1).then(Instant::now)
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Private memory of a process, in KiB: (USS = Private_Clean + Private_Dirty, Private_Dirty).
pub fn uss_kib(pid: i32) -> Option<(u64, u64)> {
    let t = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let clean = field_kib(&t, "Private_Clean:")?;
    let dirty = field_kib(&t, "Private_Dirty:")?;
    Some((clean + dirty, dirty))
}

/// Voluntary context switches so far.
pub fn voluntary_switches(pid: i32) -> Option<u64> {
    let t = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    t.lines()
        .find(|l| l.starts_with("voluntary_ctxt_switches:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Peak resident set (VmHWM), in KiB.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    field_kib(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM:",
    )
}

/// User + system CPU time, in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let t = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &t[t.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// Pids whose command name (`comm`) is `comm` and whose environment holds `marker`.
pub fn pids_with(comm: &str, marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let p = Path::new("/proc").join(pid.to_string());
        if fs::read_to_string(p.join("comm"))
            .map(|c| c.trim() == comm)
            .unwrap_or(false)
            && fs::read(p.join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
                .unwrap_or(false)
        {
            out.push(pid);
        }
    }
    out
}
