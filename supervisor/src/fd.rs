//! The two small fd helpers several phases share: a pipe whose read end the event loop polls,
//! and switching an fd to non-blocking.

use nix::fcntl::{FcntlArg, OFlag};
use std::os::fd::{AsFd, OwnedFd};
use taskpool::{Error, Result};

/// A close-on-exec pipe whose read end (the first) is non-blocking; the write end blocks, as the
/// program that inherits it expects.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e.into()))?;
    set_nonblocking(&r)?;
    Ok((r, w))
}

/// Set `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map(drop)
        .map_err(|e| Error::io("fcntl", e.into()))
}
