//! `taskpool attach ID`: connect our terminal to a task's pseudo-terminal (`--pty`). Our
//! terminal is put in raw mode (restored on every way out), what we type goes to the task's
//! terminal, its output comes to ours, and our window size follows us (SIGWINCH, passed on as a
//! `resize`). The detach key (Ctrl-] unless `--detach-key` says otherwise) ends the attachment;
//! the task goes on. When the task ends, so does `attach`, with the task's status.
//!
//! Two connections to the supervisor: a `follow` from the current end of the output (read by a
//! thread that writes to our stdout), and a [`Terminal`] for input and sizes, written from the
//! main thread's `poll` over our stdin, a signalfd and the follower's wake-up pipe.

use crate::args::{AttachCmd, GlobalArgs};
use crate::select;
use anyhow::{anyhow, bail, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use taskpool::pty::PtySize;
use taskpool::terminal::Terminal;
use taskpool::{Event, Info};

/// How attaching ended.
enum Outcome {
    /// The detach key, our terminal's end, or a signal to us.
    Detached,
    /// The task's run is over (the follow ended).
    Ended(Box<Info>),
    /// The follow failed.
    Failed(taskpool::Error),
}

pub fn attach(global: &GlobalArgs, cmd: &AttachCmd) -> Result<i32> {
    let pool = select::pool(global)?;
    let task = select::task(&pool, &cmd.task)?;
    let detach = crate::parse::parse_detach_key(&cmd.detach_key).map_err(|e| anyhow!(e))?;
    // The task is checked first: the error names what is wrong with it.
    let mut term = Terminal::open(&task)?;
    let id = task.id();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("task {id}: attach needs a terminal, and standard input is not one");
    }
    let signals = block_signals()?;
    let (tx, rx) = mpsc::channel();
    let (wake_r, wake_w) = nix::unistd::pipe().map_err(|e| anyhow!("pipe: {e}"))?;
    let follow = task.follow(term.info.streams.combined.end)?;
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || forward_output(follow, tx, wake_w))
        .map_err(|e| anyhow!("task {id}: cannot start the output thread: {e}"))?;
    let outcome = {
        let _raw = RawMode::enter(stdin.as_fd())?;
        eprint!(
            "[attached to task {id}; detach with {}]\r\n",
            cmd.detach_key
        );
        if let Some(size) = window_size(stdin.as_fd()) {
            term.resize(size)?;
        }
        serve(&mut term, &signals, &wake_r, &rx, detach)
    };
    match outcome? {
        Outcome::Detached => {
            eprintln!("[detached from task {id}; it goes on]");
            Ok(0)
        }
        Outcome::Ended(info) if info.is_live() => {
            eprintln!("[task {id}: run {} is over; the task runs again]", info.run);
            Ok(0)
        }
        Outcome::Ended(info) => {
            let status = info.status.map_or("ended", |s| s.as_str());
            eprintln!("[task {id} ended: {status}]");
            Ok(info.shell_status().unwrap_or(1))
        }
        Outcome::Failed(e) => Err(e.into()),
    }
}

/// The main loop: our keystrokes to the task until the detach key, window sizes as they change,
/// and the follower's news.
fn serve(
    term: &mut Terminal,
    signals: &SignalFd,
    wake: &OwnedFd,
    rx: &mpsc::Receiver<Outcome>,
    detach: u8,
) -> Result<Outcome> {
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let (typed, signalled, woken) = (ready(0), ready(1), ready(2));
        if woken {
            return Ok(rx.recv().unwrap_or(Outcome::Detached));
        }
        if signalled {
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo as i32 == Signal::SIGWINCH as i32 {
                    if let Some(size) = window_size(stdin.as_fd()) {
                        if let Err(e) = term.resize(size) {
                            return ended_or(rx, e);
                        }
                    }
                } else {
                    return Ok(Outcome::Detached);
                }
            }
        }
        if typed {
            let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => return Ok(Outcome::Detached),
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(e) => bail!("reading the terminal: {e}"),
            };
            let (keys, detached) = match buf[..n].iter().position(|&b| b == detach) {
                Some(at) => (&buf[..at], true),
                None => (&buf[..n], false),
            };
            if !keys.is_empty() {
                if let Err(e) = term.write(keys) {
                    return ended_or(rx, e);
                }
            }
            if detached {
                return Ok(Outcome::Detached);
            }
        }
    }
}

/// A request failed: most likely because the task has just ended, which the follower is about to
/// say (its `end` comes once every byte was sent); else the error.
fn ended_or(rx: &mpsc::Receiver<Outcome>, e: taskpool::Error) -> Result<Outcome> {
    match rx.recv_timeout(std::time::Duration::from_secs(2)) {
        Ok(o @ Outcome::Ended(_)) => Ok(o),
        _ => Err(e.into()),
    }
}

/// The output thread: the follow's bytes to our stdout as they come, then the outcome.
fn forward_output(follow: taskpool::Follow, tx: mpsc::Sender<Outcome>, wake: OwnedFd) {
    let mut out = std::io::stdout().lock();
    let mut outcome = Outcome::Detached;
    for event in follow {
        match event {
            Ok(Event::Output { data, .. }) => {
                if out.write_all(&data).and_then(|()| out.flush()).is_err() {
                    break; // our terminal is gone
                }
            }
            Ok(Event::State(_)) => {}
            Ok(Event::End(info)) => {
                outcome = Outcome::Ended(info);
                break;
            }
            Err(e) => {
                outcome = Outcome::Failed(e);
                break;
            }
        }
    }
    let _ = tx.send(outcome);
    let _ = nix::unistd::write(&wake, b"x");
}

/// Block the signals `attach` handles and read them from a signalfd: SIGWINCH (our window
/// changed) and SIGTERM, SIGHUP, SIGINT, SIGQUIT (detach, restoring the terminal). Done before
/// the output thread starts, which inherits the mask.
fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| anyhow!("blocking signals: {e}"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| anyhow!("signalfd: {e}"))
}

/// Our terminal's window size, if it has one.
fn window_size(fd: BorrowedFd) -> Option<PtySize> {
    // SAFETY: an all-zero winsize is a valid value; TIOCGWINSZ writes one into it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live local of the type TIOCGWINSZ writes.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some(PtySize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

/// Our terminal in raw mode while this lives; its modes are put back when dropped (and by a
/// panic hook, should anything panic meanwhile).
struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    fn enter(fd: BorrowedFd<'a>) -> Result<RawMode<'a>> {
        let saved =
            termios::tcgetattr(fd).map_err(|e| anyhow!("reading the terminal's modes: {e}"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
            .map_err(|e| anyhow!("setting the terminal to raw mode: {e}"))?;
        // A panic (release builds abort, without running Drop) puts the modes back too.
        let (raw_fd, modes) = (fd.as_raw_fd(), libc::termios::from(saved.clone()));
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // SAFETY: tcsetattr only reads the termios this closure owns.
            unsafe { libc::tcsetattr(raw_fd, libc::TCSANOW, &modes) };
            previous(info);
        }));
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::parse_detach_key;

    #[test]
    fn detach_keys_are_control_characters() {
        assert_eq!(parse_detach_key("ctrl-]"), Ok(0x1d));
        assert_eq!(parse_detach_key("^]"), Ok(0x1d));
        assert_eq!(parse_detach_key("Ctrl-A"), Ok(1));
        assert_eq!(parse_detach_key("ctrl-a"), Ok(1));
        assert_eq!(parse_detach_key("^@"), Ok(0));
        assert!(parse_detach_key("a").is_err());
        assert!(parse_detach_key("ctrl-1").is_err());
    }
}
