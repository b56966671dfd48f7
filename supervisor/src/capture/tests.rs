//! Unit tests of output capture: the splice path, the fall-back to copying, the log cap.

use super::*;
use nix::fcntl::{FcntlArg, OFlag};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A run directory with its three files opened as the supervisor opens them (appending).
struct Run {
    dir: PathBuf,
    writer: File,
    cap: Capture,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(name: &str, buffer: u64, log_max: Option<u64>) -> Run {
    let dir = std::env::temp_dir().join(format!("taskpool-capture-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let open = |n: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join(n))
            .unwrap()
    };
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
    let files = CaptureFiles {
        stdout_pipe: r,
        stderr_pipe: None,
        stdout: open("stdout"),
        stderr: open("stderr"),
        chunks: open("chunks"),
        times: open("times"),
        log: OutputLog::open(&dir).unwrap(),
    };
    Run {
        writer: File::from(w),
        cap: Capture::new(files, buffer, log_max),
        dir,
    }
}

fn pattern(from: u64, n: usize) -> Vec<u8> {
    (from..from + n as u64)
        .map(|i| (i * 7 % 251) as u8)
        .collect()
}

/// Write `data` to the pipe (nonblocking: as much as fits, pulling between) until all is in
/// and captured.
fn feed(r: &mut Run, data: &[u8], scratch: &mut [u8]) {
    let mut done = 0;
    while done < data.len() {
        match r.writer.write(&data[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        while let Pulled::Bytes(_) = r.cap.pull(Stream::Stdout, scratch) {}
    }
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

fn set_append(f: &File) {
    let flags = OFlag::from_bits_truncate(fcntl_getfl(f));
    nix::fcntl::fcntl(f.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_APPEND)).unwrap();
}

fn fcntl_getfl(f: &File) -> i32 {
    nix::fcntl::fcntl(f.as_fd(), FcntlArg::F_GETFL).unwrap()
}

#[test]
fn bytes_are_spliced_to_the_file_with_one_entry_per_splice_and_nothing_in_memory() {
    let mut r = run("splice", 1 << 20, None);
    let mut scratch = vec![0u8; 1 << 20];
    let mut all = Vec::new();
    for (i, n) in [5usize, 1, 70_000, 4099, 300_000, 3]
        .into_iter()
        .enumerate()
    {
        let piece = pattern(all.len() as u64, n);
        feed(&mut r, &piece, &mut scratch);
        all.extend_from_slice(&piece);
        let sc = &r.cap.stdout;
        assert!(sc.splicing(), "step {i}: fell back");
        eq(
            (sc.end(), sc.stored(), sc.allocated()),
            (all.len() as u64, all.len() as u64, 0),
        );
    }
    // The busy stream got a relay after its pipe was found full.
    assert!(r.cap.stdout.relay.is_some());
    eq(file(&r.dir, "stdout"), all.clone());
    let entries: u64 = file(&r.dir, "chunks")
        .chunks(4)
        .map(|e| taskpool::output::decode_entry(e.try_into().unwrap()).1 as u64)
        .sum();
    eq(entries, all.len() as u64);
    eq(r.cap.combined_end, all.len() as u64);
    // The newest bytes are read back from the file.
    eq(r.cap.stdout.held(all.len() as u64 - 3, 3), None);
    let stats = r.cap.stdout.stats(true);
    eq(
        stats.buffer_start,
        Some(all.len() as u64 - (1 << 20).min(all.len() as u64)),
    );
}

#[test]
fn a_failed_splice_falls_back_to_copying_without_losing_a_byte() {
    let mut r = run("fallback", 4096, None);
    let mut scratch = vec![0u8; 1 << 20];
    // Enough to grow the pipe and get a relay, so the failure comes after the bytes left
    // the task's pipe.
    let first = pattern(0, 200_000);
    feed(&mut r, &first, &mut scratch);
    assert!(r.cap.stdout.relay.is_some() && r.cap.stdout.splicing());
    // The kernel refuses to splice into an append-only file: the next splice fails.
    set_append(&r.cap.stdout.file);
    let second = pattern(200_000, 150_001);
    feed(&mut r, &second, &mut scratch);
    let sc = &r.cap.stdout;
    assert!(!sc.splicing(), "still splicing");
    eq((sc.end(), sc.stored()), (350_001, 350_001));
    eq(file(&r.dir, "stdout"), [first, second].concat());
    // The ring holds the newest bytes from where splicing stopped.
    let (a, b) = sc.held(350_001 - 10, 10).expect("held in memory");
    eq([a, b].concat(), pattern(350_001 - 10, 10));
    assert!(sc.allocated() <= 4096);
    eq(sc.held(100, 10), None);
    // Copying goes on, and end of file is still seen.
    feed(&mut r, b"tail", &mut scratch);
    drop(std::mem::replace(
        &mut r.writer,
        File::open("/dev/null").unwrap(),
    ));
    eq(r.cap.pull(Stream::Stdout, &mut scratch), Pulled::Eof);
    eq(file(&r.dir, "stdout").len(), 350_005);
}

#[test]
fn the_log_cap_never_punches_into_the_newest_buffer_size_bytes() {
    let buffer = 256 << 10;
    let mut r = run("cap", buffer, Some(16 << 10));
    let mut scratch = vec![0u8; 1 << 20];
    let all = pattern(0, 3 << 20);
    feed(&mut r, &all, &mut scratch);
    let s = r.cap.stdout.stats(true);
    eq(s.end, 3 << 20);
    assert!(s.start > 0, "nothing punched");
    assert!(
        s.start <= s.end - buffer,
        "start {} punches the buffer",
        s.start
    );
    eq(s.buffer_start, Some(s.end - buffer));
    let tail = r
        .cap
        .log
        .read(Stream::Stdout, s.end - buffer, buffer as usize);
    eq(tail.unwrap(), all[all.len() - buffer as usize..].to_vec());
}

fn eq<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) {
    assert!(
        actual == expected,
        "\nexpected: {expected:?}\n  actual: {actual:?}"
    );
}
