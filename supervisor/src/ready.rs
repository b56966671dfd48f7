//! The supervisor's end of a run's readiness channel ([`taskpool::ready`]): the read end of the
//! `--ready-fd` pipe, or the `--notify` datagram socket. One [`Endpoint`] per run, made before the
//! command starts (the child inherits its end) and polled by the event loop: a notification is an
//! event, so waiting for one costs no wake-ups. The endpoint is closed once the run is ready (the
//! pipe) or over; the notify socket's path is removed with it.

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr, UnixCredentials,
};
use std::ffi::OsString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use taskpool::ready::{parse_notice, Notice, Readiness, MAX_DATAGRAM};
use taskpool::{Error, Result};

/// The socket's name in the task directory.
pub const NOTIFY_SOCK: &str = "notify";

/// A run's readiness channel, supervisor side.
#[derive(Debug)]
pub enum Endpoint {
    /// `--ready-fd`: our read end, and (until the child has started) the write end it inherits.
    Pipe {
        /// Read end (non-blocking).
        read: OwnedFd,
        /// Write end, dropped once the child has its copy.
        write: Option<OwnedFd>,
        /// The fd number the task gets it as.
        target: i32,
    },
    /// `--notify`: the bound datagram socket and its path (`None` when abstract).
    Notify {
        /// The socket (non-blocking, `SO_PASSCRED`).
        sock: OwnedFd,
        /// Its path, removed on drop.
        path: Option<PathBuf>,
        /// `NOTIFY_SOCKET`'s value for the task.
        address: OsString,
    },
}

/// What reading an endpoint found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// The task said it is ready.
    pub ready: bool,
    /// The latest `STATUS=` it sent.
    pub status: Option<String>,
    /// The channel is over (the pipe's write end closed, or readiness already told).
    pub closed: bool,
}

impl Endpoint {
    /// Make the channel `how` asks for, for a task whose directory is `task_dir`.
    pub fn new(how: Readiness, task_dir: &Path, id: u64) -> Result<Endpoint> {
        match how {
            Readiness::Fd(target) => {
                let (r, w) = crate::fd::pipe()?;
                Ok(Endpoint::Pipe {
                    read: r,
                    write: Some(w),
                    target,
                })
            }
            Readiness::Notify => {
                let sock = socket(
                    AddressFamily::Unix,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                    None,
                )
                .map_err(|e| Error::io("notify socket", e.into()))?;
                let path = task_dir.join(NOTIFY_SOCK);
                let _ = std::fs::remove_file(&path);
                // sun_path holds 108 bytes with the NUL: a longer path goes abstract.
                let (addr, path, address) = match UnixAddr::new(&path) {
                    Ok(a) => (a, Some(path.clone()), path.into_os_string()),
                    Err(_) => {
                        let name =
                            format!("taskpool-notify-{}-{id}", nix::unistd::getpid().as_raw());
                        let a = UnixAddr::new_abstract(name.as_bytes())
                            .map_err(|e| Error::io("notify socket", e.into()))?;
                        (a, None, OsString::from(format!("@{name}")))
                    }
                };
                bind(sock.as_raw_fd(), &addr)
                    .map_err(|e| Error::io("notify socket", e.into()).context("bind"))?;
                setsockopt(&sock, sockopt::PassCred, &true)
                    .map_err(|e| Error::io("notify socket", e.into()))?;
                Ok(Endpoint::Notify {
                    sock,
                    path,
                    address,
                })
            }
        }
    }

    /// The fd the child gets (`(ours, its number)`), for `--ready-fd`.
    pub fn child_fd(&self) -> Option<(RawFd, i32)> {
        match self {
            Endpoint::Pipe {
                write: Some(w),
                target,
                ..
            } => Some((w.as_raw_fd(), *target)),
            _ => None,
        }
    }

    /// `NOTIFY_SOCKET`'s value, for `--notify`.
    pub fn notify_socket(&self) -> Option<&OsString> {
        match self {
            Endpoint::Notify { address, .. } => Some(address),
            _ => None,
        }
    }

    /// The child has started with its copy: close ours of its end.
    pub fn child_started(&mut self) {
        if let Endpoint::Pipe { write, .. } = self {
            *write = None;
        }
    }

    /// The descriptor to poll for input.
    pub fn fd(&self) -> RawFd {
        match self {
            Endpoint::Pipe { read, .. } => read.as_raw_fd(),
            Endpoint::Notify { sock, .. } => sock.as_raw_fd(),
        }
    }

    /// Read what is there. `owner` is the only uid whose notifications count.
    pub fn read(&mut self, owner: u32) -> Heard {
        match self {
            Endpoint::Pipe { read, .. } => read_pipe(read),
            Endpoint::Notify { sock, .. } => read_datagrams(sock, owner),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Endpoint::Notify { path: Some(p), .. } = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_pipe(fd: &OwnedFd) -> Heard {
    let mut heard = Heard::default();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => {
                heard.closed = true;
                return heard;
            }
            Ok(n) => {
                if buf[..n].contains(&b'\n') {
                    // As s6: the newline is the notification, and the channel is done.
                    heard.ready = true;
                    heard.closed = true;
                    return heard;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return heard, // EAGAIN: all read
        }
    }
}

fn read_datagrams(sock: &OwnedFd, owner: u32) -> Heard {
    let mut heard = Heard::default();
    // One more byte than the limit, to tell a datagram at the limit from a longer one.
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let mut space = nix::cmsg_space!(UnixCredentials, [RawFd; 16]);
    loop {
        let (uid, len, truncated) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = match recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return heard, // EAGAIN: all read
            };
            let mut uid = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    match c {
                        ControlMessageOwned::ScmCredentials(cred) => uid = Some(cred.uid()),
                        ControlMessageOwned::ScmRights(fds) => {
                            for fd in fds {
                                // SAFETY: the kernel just installed these descriptors for us;
                                // no one else owns them.
                                drop(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                        _ => {}
                    }
                }
            }
            let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.bytes > MAX_DATAGRAM;
            (uid, msg.bytes, truncated)
        };
        if truncated || uid != Some(owner) {
            continue;
        }
        let Notice { ready, status } = parse_notice(&buf[..len]);
        heard.ready |= ready;
        if status.is_some() {
            heard.status = status;
        }
    }
}
