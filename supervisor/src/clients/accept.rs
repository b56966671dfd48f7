//! Accepting connections: every pending one at once, each peer checked (this user, root, or a
//! member of a group-shared pool's group) and greeted, or told why not and closed.

use super::{Client, Mode, MAX_CLIENTS};
use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, SockFlag};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use taskpool::protocol::Response;

/// `SO_PEERGROUPS` (Linux 4.13+; the asm-generic value, which x86 and arm share).
const SO_PEERGROUPS: libc::c_int = 59;

/// Accept every pending connection on `listener`. Peers that are neither this user, root, nor (in
/// a group-shared pool) members of its group get one `permission_denied` error and are closed.
/// Returns `false` when the process is out of file descriptors (stop polling the listener until
/// a client goes away).
pub fn accept_all(
    listener: &OwnedFd,
    shared_gid: Option<u32>,
    hello: &Response,
    clients: &mut Vec<Client>,
) -> bool {
    loop {
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = match socket::accept4(listener.as_raw_fd(), flags) {
            // SAFETY: accept4 just returned this descriptor; nothing else owns it.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(Errno::EMFILE) | Err(Errno::ENFILE) | Err(Errno::ENOBUFS) | Err(Errno::ENOMEM) => {
                return false
            }
            Err(_) => return true,
        };
        let mut c = Client::new(fd);
        if !peer_allowed(&c.sock, shared_gid) {
            c.queue(&Response::error_of(
                taskpool::ErrorKind::PermissionDenied,
                "permission denied: this task belongs to another user",
            ));
            c.mode = Mode::Closing;
        } else if clients.len() >= MAX_CLIENTS {
            c.queue(&Response::error_of(
                taskpool::ErrorKind::Unreachable,
                format!("the supervisor already serves {MAX_CLIENTS} clients; try again later"),
            ));
            c.mode = Mode::Closing;
        } else {
            c.queue(hello);
        }
        c.flush();
        if !c.dead {
            clients.push(c);
        }
    }
}

fn peer_allowed(sock: &OwnedFd, shared_gid: Option<u32>) -> bool {
    let Ok(cred) = socket::getsockopt(sock, sockopt::PeerCredentials) else {
        return false;
    };
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        return true;
    }
    match shared_gid {
        Some(gid) => cred.gid() == gid || peer_groups(sock).contains(&gid),
        None => false,
    }
}

/// The peer's supplementary groups (`SO_PEERGROUPS`); empty when they cannot be had.
fn peer_groups(sock: &OwnedFd) -> Vec<u32> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is valid for `len` bytes and the kernel writes at most that many;
        // `len` is a valid socklen_t it updates.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return groups;
        }
        if Errno::last() == Errno::ERANGE && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Vec::new();
    }
}
