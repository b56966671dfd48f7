//! The per-task supervisor of taskpool (work in progress).

/// Run the supervisor; returns the process exit code.
pub fn main() -> i32 {
    0
}
