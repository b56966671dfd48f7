//! A daemonless, directory-backed background task pool.
//!
//! A [`Pool`] is a directory. [`Pool::spawn`] starts one small supervisor process per task
//! (detached from the caller), which holds the task's lock, runs the command in its own process
//! group, captures stdout and stderr (in a bounded memory buffer and, so nothing is lost, on disk)
//! and answers requests on a unix socket in the pool. [`Pool::search`] walks the pool's records;
//! a [`Task`] handle reads output, follows it live, sends signals and stdin, and waits for the end.
//! Ended tasks are answered from their records, without a live supervisor.
//!
//! ```
//! use taskpool::{CreateOptions, Pool, SpawnOptions, Stream};
//!
//! # fn main() -> taskpool::Result<()> {
//! let dir = std::env::temp_dir().join(format!("taskpool-doc-{}", std::process::id()));
//! let mut pool = Pool::open_or_create(&dir, CreateOptions::default())?;
//! # // This example runs against the supervisor built in the workspace.
//! # let target = std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from)
//! #     .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
//! # let built = std::fs::read_dir(&target).into_iter().flatten().flatten()
//! #     .map(|e| e.path().join("debug/taskpool-supervisor"))
//! #     .find(|p| p.exists());
//! # if let Some(built) = built { pool.set_supervisor_cmd(vec![built.into()]); }
//! let task = pool.spawn(
//!     &SpawnOptions::shell("echo hello; echo oops >&2")
//!         .name("greeter")
//!         .meta_value("owner", "docs".into()),
//! )?;
//! let info = task.wait()?;
//! assert_eq!(info.exit_code, Some(0));
//! assert_eq!(task.read_all(Stream::Stdout)?, b"hello\n");
//! assert_eq!(task.read_all(Stream::Stderr)?, b"oops\n");
//! let found = pool.search(&serde_json::json!({"meta": {"owner": "docs"}}))?;
//! assert_eq!(found[0].id, task.id());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! The wire protocol ([`protocol`]) is JSON lines with raw binary frames for output, documented in
//! `docs/protocol.md`, so other languages can speak to supervisors directly.

#![deny(missing_docs)]

pub mod bulk;
mod client;
pub mod cron;
pub mod engine;
pub mod error;
mod follow;
pub mod group;
pub mod info;
pub mod job;
pub mod limits;
pub mod localtime;
pub mod lock;
pub mod meta;
pub mod output;
pub mod pattern;
pub mod plan;
pub mod pool;
pub mod protocol;
pub mod pty;
pub mod reader;
pub mod ready;
mod reconcile;
pub mod record;
pub mod report;
pub mod schedule;
pub mod settings;
pub mod signal;
pub mod slurm;
pub mod spawn;
pub mod status;
mod submit;
pub mod task;
pub mod terminal;
pub mod times;
pub mod units;
pub mod wire;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use info::Info;
pub use plan::{Backoff, Hooks, Plan, Repeat, RestartPolicy};
pub use pool::{CreateOptions, Pool};
pub use protocol::Stream;
pub use record::{Behavior, Command, State, Status, Stdin, WaitingFor};
pub use report::{HookResult, Report};
pub use spawn::SpawnOptions;
pub use task::{Event, Follow, FollowStop, Task};

/// The environment variable naming the pool, set for every task (and read by the CLI).
pub const ENV_POOL: &str = "TASKPOOL_DIR";
/// The environment variable holding the task's id, set for every task.
pub const ENV_TASK_ID: &str = "TASKPOOL_TASK_ID";
/// The environment variable holding the supervisor's pid, set for every task.
pub const ENV_SUPERVISOR_PID: &str = "TASKPOOL_SUPERVISOR_PID";
