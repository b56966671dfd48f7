//! The task's pseudo-terminal (`--pty`). The supervisor opens the pair for each run
//! ([`open`]), gives the task the slave as stdin, stdout and stderr (the child makes it its
//! controlling terminal, see [`crate::child`]) and keeps only the master: read for the output
//! (copied, since a terminal cannot be spliced), written for `send`, and the target of
//! [`set_size`] and of the end-of-file character ([`veof`]). Once every process holding the
//! slave has closed it, reading the master fails with `EIO`: that is the output's end of file.

use nix::fcntl::OFlag;
use nix::sys::termios::{tcgetattr, SpecialCharacterIndices};
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use taskpool::pty::PtySize;
use taskpool::{Error, Result};

/// A terminal pair: the supervisor's end and the task's.
pub struct Pair {
    /// The master (close-on-exec): the supervisor's.
    pub master: OwnedFd,
    /// The slave (close-on-exec, not anyone's controlling terminal yet): the task's.
    pub slave: OwnedFd,
}

/// Open a pseudo-terminal of `size` (the kernel's default modes: canonical input, echo,
/// `\n` written as `\r\n`).
pub fn open(size: PtySize) -> Result<Pair> {
    let err = |what: &str, e: nix::Error| Error::io(format!("pty: {what}"), e.into());
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).map_err(|e| err("posix_openpt", e))?;
    nix::pty::grantpt(&master).map_err(|e| err("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| err("unlockpt", e))?;
    let path = nix::pty::ptsname_r(&master).map_err(|e| err("ptsname", e))?;
    // O_NOCTTY: the supervisor must not take it as its own controlling terminal.
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::path(std::path::Path::new(&path), e).context("pty"))?;
    let master = OwnedFd::from(master);
    set_size(std::os::fd::AsFd::as_fd(&master), size)
        .map_err(|e| err("setting the window size", e))?;
    Ok(Pair {
        master,
        slave: slave.into(),
    })
}

/// Set the terminal's window size (`TIOCSWINSZ`); the kernel sends SIGWINCH to the terminal's
/// foreground process group when it changes.
pub fn set_size(master: BorrowedFd, size: PtySize) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is to a live local.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(r).map(drop)
}

/// The terminal's end-of-file character (VEOF of the slave's modes, which the master's
/// `tcgetattr` reports), Ctrl-D when they cannot be read.
pub fn veof(master: BorrowedFd) -> u8 {
    tcgetattr(master)
        .map(|t| t.control_chars[SpecialCharacterIndices::VEOF as usize])
        .unwrap_or(4)
}
