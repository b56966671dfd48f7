//! Waking the head of the group's queue without ever blocking the loop. When this task frees a
//! slot, takes one (a raised limit cascades), or leaves the queue, the next queued task must hear
//! of it: a `wake` request on its socket, as [`taskpool::group::kick`] sends, but carried out here
//! step by step from the event loop. The socket is connected nonblocking, the request written and
//! the `hello` and reply read as the socket becomes ready; a task that does not connect, hangs up
//! or answers with an error is passed over for the next in line at once, and one that does not
//! answer within [`WAKE_TIMEOUT`] when its time is up. Meanwhile the supervisor serves its own
//! task and clients as ever: a queued supervisor that is stopped or stuck costs the sender
//! nothing but a descriptor.
//!
//! At most one wake is in flight; a kick that comes meanwhile is remembered, and the queue looked
//! at again once the wake in flight is over (kicks are hints: two coalesce into one look).

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;
use taskpool::group::{self, WAKE_TIMEOUT};
use taskpool::protocol::{encode_line, Request, Response};
use taskpool::Pool;

/// The most bytes a woken supervisor may send before its reply is complete (its `hello` and a
/// one-word reply take about a hundred).
const MAX_REPLY: usize = 4096;

/// One `wake` on its way to one queued task.
struct InFlight {
    id: u64,
    sock: OwnedFd,
    /// The request line still to write.
    out: Vec<u8>,
    /// What the task has sent so far.
    got: Vec<u8>,
    /// When it is passed over if it has not answered.
    deadline: Instant,
}

/// How a wake in flight stands after its socket was ready.
enum Step {
    /// Waiting for the socket again.
    Pending,
    /// The task answered `ok`: it is woken.
    Woken,
    /// It hung up, failed or refused: try the next.
    PassOver,
}

/// The wakes this supervisor owes its group's queue.
#[derive(Default)]
pub struct Waker {
    /// The group's name (set at the first kick; a task belongs to one group).
    group: Option<String>,
    /// Queued tasks still to try, in queue order.
    candidates: VecDeque<u64>,
    /// The wake in flight.
    current: Option<InFlight>,
    /// A kick came while a wake was in flight.
    again: bool,
}

impl Waker {
    /// Wake the head of `group`'s queue, if a slot may be free: start now, go on from the loop.
    pub fn kick(&mut self, pool: &Pool, group: &str) {
        self.group.get_or_insert_with(|| group.to_owned());
        if self.busy() {
            self.again = true;
            return;
        }
        self.candidates = group::wake_candidates(pool, group).into();
        self.try_next(pool);
    }

    /// True while a wake is in flight or queued tasks remain to be tried.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.candidates.is_empty()
    }

    /// The descriptor to poll and the events awaited, while a wake is in flight.
    pub fn pollfd(&self) -> Option<(i32, libc::c_short)> {
        let c = self.current.as_ref()?;
        let events = if c.out.is_empty() {
            libc::POLLIN
        } else {
            libc::POLLOUT
        };
        Some((c.sock.as_raw_fd(), events))
    }

    /// When the task being woken is passed over if it has not answered.
    pub fn deadline(&self) -> Option<Instant> {
        self.current.as_ref().map(|c| c.deadline)
    }

    /// The socket of the wake in flight is ready.
    pub fn on_ready(&mut self, pool: &Pool) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        match c.step() {
            Step::Pending => {}
            Step::Woken => {
                self.current = None;
                self.candidates.clear();
                self.done(pool);
            }
            Step::PassOver => {
                self.current = None;
                self.try_next(pool);
            }
        }
    }

    /// Pass over a task that has not answered in time.
    pub fn on_time(&mut self, now: Instant, pool: &Pool) {
        if self.current.as_ref().is_some_and(|c| now >= c.deadline) {
            self.current = None;
            self.try_next(pool);
        }
    }

    /// Carry every wake owed to its end, blocking: only for a supervisor that exits without a
    /// loop (its task could not be accepted), whose caller waits for its reply anyway.
    pub fn finish_blocking(&mut self, pool: &Pool) {
        while let Some((fd, events)) = self.pollfd() {
            let left = self.deadline().map_or(0, |d| {
                d.saturating_duration_since(Instant::now()).as_millis()
            });
            let mut pfd = libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            // SAFETY: one initialised pollfd, not touched during the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.min(i32::MAX as u128) as libc::c_int) };
            if n > 0 {
                self.on_ready(pool);
            } else if n == 0 {
                self.on_time(Instant::now(), pool);
            }
        }
    }

    /// Start a wake to the next candidate that accepts a connection.
    fn try_next(&mut self, pool: &Pool) {
        while let Some(id) = self.candidates.pop_front() {
            if let Some(c) = InFlight::connect(pool, id) {
                self.current = Some(c);
                return;
            }
        }
        self.done(pool);
    }

    /// Nothing is in flight: look at the queue again if a kick came meanwhile.
    fn done(&mut self, pool: &Pool) {
        if std::mem::take(&mut self.again) {
            if let Some(g) = self.group.clone() {
                self.kick(pool, &g);
            }
        }
    }
}

impl InFlight {
    /// Connect to task `id`'s socket without blocking; `None` when it does not accept now (no
    /// socket, nobody listening, a full backlog).
    fn connect(pool: &Pool, id: u64) -> Option<InFlight> {
        let sock = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()?;
        let addr = UnixAddr::new(&pool.connect_path(id)).ok()?;
        match socket::connect(sock.as_raw_fd(), &addr) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(_) => return None,
        }
        let mut out = Vec::with_capacity(32);
        encode_line(&Request::Wake, &mut out);
        Some(InFlight {
            id,
            sock,
            out,
            got: Vec::new(),
            deadline: Instant::now() + WAKE_TIMEOUT,
        })
    }

    /// Write what is left of the request, or read what the task sent.
    fn step(&mut self) -> Step {
        if !self.out.is_empty() {
            return match socket::send(self.sock.as_raw_fd(), &self.out, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => {
                    self.out.drain(..n);
                    Step::Pending
                }
                Err(Errno::EAGAIN | Errno::EINTR) => Step::Pending,
                Err(_) => Step::PassOver,
            };
        }
        let mut buf = [0u8; 512];
        let n = match nix::unistd::read(&self.sock, &mut buf) {
            Ok(0) => return Step::PassOver,
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Step::Pending,
            Err(_) => return Step::PassOver,
        };
        self.got.extend_from_slice(&buf[..n]);
        // The hello, then the reply.
        let mut lines = self.got.split(|&b| b == b'\n');
        let (Some(_hello), Some(reply), Some(_)) = (lines.next(), lines.next(), lines.next())
        else {
            return if self.got.len() > MAX_REPLY {
                Step::PassOver
            } else {
                Step::Pending
            };
        };
        match serde_json::from_slice::<Response>(reply) {
            Ok(Response::Ok) => Step::Woken,
            _ => {
                crate::note(&format!("task {}: refused a wake", self.id));
                Step::PassOver
            }
        }
    }
}
