//! What a task's process sets on itself between `clone` and `exec`: resource limits
//! (`--limit`), priority (`--nice`) and OOM score (`--oom-score-adj`). [`Setup`] is what the spec
//! asks; [`InChild`] is the same prepared so the child, sharing the supervisor's memory, applies
//! it without allocating and with async-signal-safe calls only.

use taskpool::record::Spec;

/// What the child sets on itself before `exec` (a hook sets nothing).
#[derive(Debug, Default)]
pub struct Setup {
    /// `setrlimit` calls, in order.
    pub limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    /// `setpriority(PRIO_PROCESS, 0, n)`.
    pub nice: Option<i32>,
    /// Written to `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// `dup2(ours, its)`: the write end of the `--ready-fd` pipe, as the number asked for.
    pub ready_fd: Option<(libc::c_int, libc::c_int)>,
}

impl Setup {
    /// What `spec` asks of its task's process.
    pub fn of(spec: &Spec) -> Setup {
        Setup {
            limits: spec
                .limits
                .iter()
                .filter_map(|(name, l)| {
                    taskpool::limits::resource(name).map(|r| (r, taskpool::limits::to_rlimit(l)))
                })
                .collect(),
            nice: spec.nice,
            oom_score_adj: spec.oom_score_adj,
            ready_fd: None,
        }
    }
}

/// [`Setup`]'s limits, priority and OOM score as the child applies them: prepared in the parent,
/// read by the child.
pub(super) struct InChild {
    limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    nice: Option<i32>,
    /// The OOM score adjustment as the text to write, and its length.
    oom: Option<([u8; 8], usize)>,
}

impl InChild {
    /// Prepare `setup` for the child (in the parent: this allocates).
    pub(super) fn of(setup: &Setup) -> InChild {
        InChild {
            limits: setup.limits.clone(),
            nice: setup.nice,
            oom: setup.oom_score_adj.map(|n| {
                let text = n.to_string();
                let mut b = [0u8; 8];
                b[..text.len()].copy_from_slice(text.as_bytes());
                (b, text.len())
            }),
        }
    }

    /// Set the limits, then the priority, then the OOM score on the calling process; `false` at
    /// the first that fails, with `errno` saying why.
    ///
    /// # Safety
    ///
    /// Meant for the child of `clone(CLONE_VM | CLONE_VFORK)`: it allocates nothing and makes
    /// async-signal-safe system calls only, so it is sound there; it changes the calling process.
    pub(super) unsafe fn apply(&self) -> bool {
        for (res, lim) in &self.limits {
            if libc::setrlimit(*res, lim) != 0 {
                return false;
            }
        }
        if let Some(n) = self.nice {
            if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                return false;
            }
        }
        if let Some((text, len)) = &self.oom {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 || libc::write(fd, text.as_ptr().cast(), *len) != *len as isize {
                return false;
            }
            libc::close(fd);
        }
        true
    }
}
