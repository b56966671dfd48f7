//! The `taskpool-supervisor` program: one per task, started by the library. See the
//! `taskpool_supervisor` crate docs for its theory of operation.

fn main() {
    std::process::exit(taskpool_supervisor::main());
}
