//! Small programs the integration tests run as tasks (or as other users), so tests do not depend on
//! shell tricks. `tp-helper MODE [ARGS]`:
//!
//! - `write N [CHUNK]`: write N bytes (a repeating pattern) to stdout in CHUNK-byte writes.
//! - `ignore-term`: ignore SIGTERM and SIGINT, print `ready`, sleep until killed.
//! - `grandchild SECS`: fork a grandchild that keeps stdout open for SECS seconds; print `done`; exit.
//! - `daemonize SECS [ignore-term]`: double-fork a daemon in a session of its own (out of the task's
//!   process group) that prints `daemon PID`, closes its stdio and sleeps SECS; exit at once.
//! - `bytes HEX`: write the bytes given in hex to stdout (non-UTF-8 output).
//! - `pump`: for each line `out N` or `err N` on stdin, write the next N bytes of the pattern (one
//!   counter per stream) to stdout or stderr; exit at end of input.
//! - `interleave N`: write `out I` to stdout and `err I` to stderr alternately, N times.
//! - `connect PATH`: connect to a unix socket, send an `info` request, print what comes back.
//! - `exit CODE`: exit with CODE.
//! - `open N`: open `/dev/null` N times, keeping each open; print how many opened; exit 0 if all.
//! - `spin`: burn CPU until killed.
//! - `fill N FILE`: write N bytes of zeros to FILE (to meet a file size limit).
//! - `notify MSG...`: send each MSG (`\n` in it meaning a newline) as one datagram to
//!   `$NOTIFY_SOCKET` (a path, or `@NAME` in the abstract namespace).

use std::io::{BufRead, Write};
use std::time::Duration;

fn pattern(i: u64) -> u8 {
    b'a' + (i % 26) as u8
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let mut out = std::io::stdout().lock();
    match arg(0) {
        "write" => {
            let n: u64 = arg(1).parse().expect("byte count");
            let chunk: usize = arg(2).parse().unwrap_or(4096);
            let buf: Vec<u8> = (0..chunk as u64).map(pattern).collect();
            let mut left = n;
            let mut pos = 0u64;
            while left > 0 {
                let k = left.min(chunk as u64) as usize;
                let start = (pos % 26) as usize;
                // Keep the pattern continuous across chunks.
                let piece: Vec<u8> = if start == 0 {
                    buf[..k].to_vec()
                } else {
                    (pos..pos + k as u64).map(pattern).collect()
                };
                out.write_all(&piece).expect("write");
                left -= k as u64;
                pos += k as u64;
            }
        }
        "ignore-term" => {
            // SAFETY: setting signal dispositions to SIG_IGN in a single-threaded program.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                libc::signal(libc::SIGINT, libc::SIG_IGN);
            }
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "grandchild" => {
            let secs: u64 = arg(1).parse().unwrap_or(30);
            // SAFETY: fork in a single-threaded program; the child only sleeps and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                std::thread::sleep(Duration::from_secs(secs));
                std::process::exit(0);
            }
            writeln!(out, "done {pid}").unwrap();
        }
        "daemonize" => {
            let secs: u64 = arg(1).parse().unwrap_or(60);
            let ignore = arg(2) == "ignore-term";
            // SAFETY: fork, setsid, dup2, signal and _exit in a single-threaded program.
            unsafe {
                let pid = libc::fork();
                if pid > 0 {
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                    return;
                }
                libc::setsid();
                if libc::fork() > 0 {
                    libc::_exit(0);
                }
                if ignore {
                    libc::signal(libc::SIGTERM, libc::SIG_IGN);
                }
                writeln!(out, "daemon {}", libc::getpid()).unwrap();
                out.flush().unwrap();
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
            }
            std::thread::sleep(Duration::from_secs(secs));
        }
        "bytes" => {
            let hex = arg(1);
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            out.write_all(&bytes).unwrap();
        }
        "pump" => {
            let mut err = std::io::stderr().lock();
            let mut pos = [0u64; 2];
            for line in std::io::stdin().lock().lines() {
                let line = line.expect("stdin");
                let (which, n) = line.split_once(' ').expect("`out N` or `err N`");
                let n: u64 = n.trim().parse().expect("byte count");
                let i = usize::from(which == "err");
                let piece: Vec<u8> = (pos[i]..pos[i] + n).map(pattern).collect();
                pos[i] += n;
                if i == 0 {
                    out.write_all(&piece)
                        .and_then(|_| out.flush())
                        .expect("write");
                } else {
                    err.write_all(&piece)
                        .and_then(|_| err.flush())
                        .expect("write");
                }
            }
        }
        "interleave" => {
            let n: u32 = arg(1).parse().unwrap_or(10);
            let mut err = std::io::stderr().lock();
            for i in 0..n {
                writeln!(out, "out {i}").unwrap();
                out.flush().unwrap();
                writeln!(err, "err {i}").unwrap();
                err.flush().unwrap();
            }
        }
        "connect" => {
            let mut s = match std::os::unix::net::UnixStream::connect(arg(1)) {
                Ok(s) => s,
                Err(e) => {
                    println!("connect failed: {e}");
                    std::process::exit(3);
                }
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"{\"type\":\"info\"}\n");
            // The hello (or a refusal) and the reply: two lines at most.
            let mut r = std::io::BufReader::new(s);
            for _ in 0..2 {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                print!("{line}");
            }
        }
        "exit" => std::process::exit(arg(1).parse().unwrap_or(0)),
        "open" => {
            let n: usize = arg(1).parse().expect("open N");
            let files: Vec<_> = (0..n)
                .map_while(|_| std::fs::File::open("/dev/null").ok())
                .collect();
            writeln!(out, "opened {}", files.len()).unwrap();
            std::process::exit(if files.len() == n { 0 } else { 1 });
        }
        "notify" => {
            use std::os::linux::net::SocketAddrExt;
            let to = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
            let addr = match to.strip_prefix('@') {
                Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name),
                None => std::os::unix::net::SocketAddr::from_pathname(&to),
            }
            .expect("notify address");
            let sock = std::os::unix::net::UnixDatagram::unbound().expect("socket");
            for msg in &args[1..] {
                let msg = msg.replace("\\n", "\n");
                sock.send_to_addr(msg.as_bytes(), &addr).expect("send");
            }
            writeln!(out, "sent {}", args.len() - 1).unwrap();
        }
        "spin" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "fill" => {
            let n: usize = arg(1).parse().expect("fill N FILE");
            let mut f = std::fs::File::create(arg(2)).expect("create");
            f.write_all(&vec![0u8; n]).expect("write");
        }
        other => {
            eprintln!("tp-helper: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
