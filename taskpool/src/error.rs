//! The library's error type: one [`Error`] carrying an [`ErrorKind`] the caller can match on, and a
//! one-line message that names the task, pid or path at fault.

use std::io;
use std::path::Path;

/// What went wrong, coarsely, so callers (and the CLI's exit codes) can react without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A task, pool or file does not exist.
    NotFound,
    /// The caller gave something invalid (a bad meta object, an unknown signal, a bad size…).
    InvalidInput,
    /// The pool or socket belongs to someone else, or is open to others.
    PermissionDenied,
    /// A lock (the task's `--lockfile`) is held by another process.
    LockHeld,
    /// The operation does not fit the task's state (restarting a live task, removing one without force).
    State,
    /// A supervisor did not answer in time.
    Timeout,
    /// A supervisor could not be reached, or hung up mid-conversation.
    Unreachable,
    /// The task's program could not be found.
    ProgramNotFound,
    /// The task's program was found but could not be executed.
    CannotExecute,
    /// The supervisor program could not be found or started.
    Supervisor,
    /// A peer spoke the protocol wrongly, or a record could not be parsed.
    Protocol,
    /// The cluster scheduler (`sbatch`, `squeue`, `scancel`) refused a request or could not be
    /// run; the message is the scheduler's own.
    Scheduler,
    /// Any other operating-system error.
    Io,
}

/// The error type of every fallible operation in this crate.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<io::Error>,
}

/// Shorthand for `Result<T, taskpool::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a one-line `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An I/O error, kind derived from the OS error, with `what` (naming the path or id) as context.
    pub fn io(what: impl std::fmt::Display, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ErrorKind::Unreachable,
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ErrorKind::InvalidInput,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            message: format!("{what}: {err}"),
            source: Some(err),
        }
    }

    /// An I/O error about `path`.
    pub fn path(path: &Path, err: io::Error) -> Self {
        Self::io(path.display(), err)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `prefix: ` put in front of its message.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// The stable lower-case name of the kind, as sent in protocol error replies.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind)
    }
}

/// The wire name of an [`ErrorKind`].
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::PermissionDenied => "permission_denied",
        ErrorKind::LockHeld => "lock_held",
        ErrorKind::State => "state",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Unreachable => "unreachable",
        ErrorKind::ProgramNotFound => "program_not_found",
        ErrorKind::CannotExecute => "cannot_execute",
        ErrorKind::Supervisor => "supervisor",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Scheduler => "scheduler",
        ErrorKind::Io => "io",
    }
}

/// The [`ErrorKind`] for a wire name; unknown names map to [`ErrorKind::Io`].
pub fn kind_from_name(name: &str) -> ErrorKind {
    match name {
        "not_found" => ErrorKind::NotFound,
        "invalid_input" => ErrorKind::InvalidInput,
        "permission_denied" => ErrorKind::PermissionDenied,
        "lock_held" => ErrorKind::LockHeld,
        "state" => ErrorKind::State,
        "timeout" => ErrorKind::Timeout,
        "unreachable" => ErrorKind::Unreachable,
        "program_not_found" => ErrorKind::ProgramNotFound,
        "cannot_execute" => ErrorKind::CannotExecute,
        "supervisor" => ErrorKind::Supervisor,
        "protocol" => ErrorKind::Protocol,
        "scheduler" => ErrorKind::Scheduler,
        _ => ErrorKind::Io,
    }
}
