//! The command line, described with clap's derive API and nothing else: each struct only says
//! which arguments exist, what they are called and what their help text is. Values that have a
//! syntax of their own (sizes, durations, signals, `K=V` pairs, JSON) are checked by the value
//! parsers in [`crate::parse`], so a malformed one is a usage error (exit status 2) reported by
//! clap; the conversion into the library's options is in [`crate::options`].
//!
//! Groups that several subcommands share are `#[command(flatten)]`ed structs: [`SpawnArgs`] (used
//! by `spawn` and `run`, and the place to add new spawn options) and [`TaskArg`] (an id, or
//! `--pid` for the supervisor's pid).

use crate::parse;
use clap::{Args, Parser, Subcommand};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use taskpool::record::Timestamp;
use taskpool::{Backoff, Behavior, RestartPolicy, State, Status, Stdin};

/// Help shown under every option that takes a SIZE.
const SIZE_FORMS: &str = "SIZE is bytes (65536) or binary multiples (64K, 1M, 1MiB, 2G)";
/// Help shown under every option that takes a duration.
const DURATION_FORMS: &str =
    "A duration is seconds (90, 1.5) or a number with a unit (500ms, 10s, 5m, 1h, 1h30m)";

/// How `spawn` and `run` are called.
const SPAWN_USAGE: &str = "taskpool spawn [OPTIONS] (-c SCRIPT | [--] PROG [ARG]...)";
/// How `spawn` is called, with a job file.
const SPAWN_FILE_USAGE: &str =
    "taskpool spawn [OPTIONS] (-c SCRIPT | [--] PROG [ARG]... | --file JOB.json)";

/// Help shown under `spawn` and `run`: the forms of --at and --cron.
fn schedule_forms() -> String {
    format!(
        "--at TIME: {}.\n--cron EXPR: {}.",
        taskpool::schedule::AT_FORMS,
        taskpool::schedule::CRON_FORMS
    )
}

/// A daemonless, directory-backed background task pool.
///
/// Each task runs under its own small supervisor process; the pool is a directory holding every
/// task's record, output and socket. Tasks survive this command, its terminal and its session.
#[derive(Debug, Parser)]
#[command(
    name = "taskpool",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options accepted by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The pool directory [default: $TASKPOOL_DIR, else $XDG_STATE_HOME/taskpool, else
    /// ~/.local/state/taskpool]. A missing pool is created with mode 0700.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub pool: Option<PathBuf>,
    /// Print JSON instead of text (info objects, arrays of them, or output records).
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a task in the background and print its id.
    ///
    /// With --file, the task is described by a job file (JSON, see docs/jobs.md); options given
    /// on the command line override the file's.
    #[command(after_help = format!("{SIZE_FORMS}.\n{DURATION_FORMS}.\n{}", schedule_forms()),
              override_usage = SPAWN_FILE_USAGE)]
    Spawn(SpawnCmd),
    /// List tasks (all of them, sorted by id), optionally filtered.
    ///
    /// The table shows ID, STATE, STATUS, NAME, PID, TIME (the age of a live task since it was
    /// created, the run's duration of an ended one), EXIT (exit code or signal) and a META
    /// summary. Filters combine: a task must match all of them.
    #[command(visible_alias = "search")]
    Ls(LsCmd),
    /// Show everything about one task, as JSON.
    Info(InfoCmd),
    /// Print a task's completion report: how its latest run ended, and what its hooks did.
    ///
    /// Human-readable by default (status, exit, times, attempts, output sizes, the last lines of
    /// stderr, each hook's exit and output); --json prints the report object. Exits 1 when the
    /// task has not ended yet.
    Report(ReportCmd),
    /// Print a task's output (raw bytes), or follow it live.
    Output(OutputCmd),
    /// Send a signal to a task's process group.
    Kill(KillCmd),
    /// Stop a task's process group (SIGSTOP).
    Pause(TaskCmd),
    /// Continue a paused task (SIGCONT).
    Resume(TaskCmd),
    /// Write to a task's standard input.
    Send(SendCmd),
    /// Connect this terminal to a task's terminal (a task spawned with --pty).
    ///
    /// What you type goes to the task, its output comes here, and window size changes are
    /// passed on. The detach key (Ctrl-] unless --detach-key says otherwise) leaves the task
    /// running. When the task ends, attach ends with its status. Needs a terminal on stdin.
    Attach(AttachCmd),
    /// Update a task's metadata (a JSON object), or print it.
    ///
    /// Each KEY=VALUE sets a key; VALUE is parsed as JSON when it parses (40, true, {"a":1}),
    /// else kept as a string; the value null deletes the key. Without an ID (no argument without
    /// `=`), the task is $TASKPOOL_TASK_ID: a task reports progress with `taskpool meta
    /// progress=40`. Without assignments, prints the task's meta.
    Meta(MetaCmd),
    /// Wait for tasks to end; exit with their status.
    ///
    /// The exit status is the tasks' own: the exit code, 128+N when killed by signal N, and for
    /// several tasks the first non-zero in argument order. 124 when --timeout ran out, 125 when a
    /// task is not found, was lost, or its supervisor cannot be reached; 127 when its last run
    /// could not start because its program (or cwd) was not found, 126 when it could not start
    /// otherwise.
    #[command(after_help = DURATION_FORMS)]
    Wait(WaitCmd),
    /// Run an ended task again under the same id (a new run); prints the id.
    ///
    /// A Slurm task's new run is a new job (docs/slurm.md).
    Restart(TaskCmd),
    /// Re-arm the tasks a reboot ended: queued, waiting, scheduled and recurring ones.
    ///
    /// Every task whose supervisor vanished while it was queued, waiting or scheduled, and every
    /// recurring task, gets a new supervisor that carries on its plan under the same id. A missed
    /// one-time start happens at once; missed firings of a recurring task are skipped (as cron
    /// does). Run it at boot: `@reboot taskpool --pool DIR restore` in a crontab. Prints the ids
    /// re-armed; exits 1 if any could not be.
    Restore(RestoreCmd),
    /// End a task: SIGINT, then SIGTERM, then SIGKILL, a grace apart; waits for the end.
    #[command(after_help = DURATION_FORMS)]
    Terminate(TerminateCmd),
    /// Remove tasks' records and output.
    Rm(RmCmd),
    /// Remove the records and output of every ended task; prints the ids removed.
    #[command(after_help = DURATION_FORMS)]
    Clean(CleanCmd),
    /// Spawn a task, stream its output here, and exit with its status.
    ///
    /// The task's stdout goes to our stdout and its stderr to our stderr. SIGINT (Ctrl-C),
    /// SIGTERM and SIGHUP are forwarded to the task. Exit status: the task's exit code, 128+N
    /// when killed by signal N; 127 when the program was not found, 126 when it could not be
    /// executed, 125 for any other failure of taskpool itself.
    #[command(after_help = format!("{SIZE_FORMS}.\n{DURATION_FORMS}.\n{}", schedule_forms()),
              override_usage = SPAWN_USAGE.replacen("spawn", "run", 1))]
    Run(RunCmd),
    /// Set or list group limits: how many tasks of a group (spawn --group) run at once.
    Group(GroupCmd),
    /// The pool's settings: the default engine of its tasks (`pool set --engine slurm`).
    Pool(PoolCmd),
    /// Spawn every job file that appears in a drop directory (see docs/jobs.md).
    ///
    /// Write a job file elsewhere on the same filesystem, or under a name starting with '.',
    /// then rename it into DIR. Each file is claimed (moved to DIR/.claimed/), then moved to
    /// DIR/accepted/ID-NAME, or to DIR/rejected/NAME with the reason in NAME.reason. Prints one
    /// line per file. Runs until SIGINT or SIGTERM (exit 0), or with --once until the files
    /// already there are done. Refuses a directory others can write to.
    Watch(WatchCmd),
    /// Serve the pool over HTTP: a web page with live output, and a JSON API (docs/http.md).
    ///
    /// Runs the taskpool-serve program installed beside this one. Prints the URL to open, token
    /// included, then serves in the foreground (one log line per request on stderr) until SIGINT
    /// or SIGTERM.
    Serve(ServeCmd),
    /// Print a shell completion script.
    Completions(CompletionsCmd),
    /// Write a man page for every command (taskpool.1, taskpool-spawn.1, ...) into DIR.
    ///
    /// For example: taskpool manpages ~/.local/share/man/man1
    Manpages(ManpagesCmd),
}

/// `taskpool serve`: its options, passed on to taskpool-serve.
#[derive(Debug, Args)]
pub struct ServeCmd {
    /// HOST:PORT (port 0 picks a free one) or unix:PATH (a socket, mode 0600).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8370")]
    pub listen: OsString,
    /// Read the token from FILE (mode 0600 or stricter) instead of making a random one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse every request that would change something (the page shows no buttons).
    #[arg(long)]
    pub read_only: bool,
    /// Accept POST /api/tasks (spawning jobs over HTTP).
    #[arg(long)]
    pub allow_spawn: bool,
    /// Open the page in a browser (xdg-open) once listening.
    #[arg(long)]
    pub open: bool,
    /// The most Server-Sent Event streams open at once; the next gets 503.
    #[arg(long, value_name = "N")]
    pub max_streams: Option<usize>,
}

/// Everything that describes a new task (shared by `spawn` and `run`).
#[derive(Debug, Clone, Args)]
pub struct SpawnArgs {
    /// A human name for the task.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set a meta key; VALUE is JSON when it parses, else a string. Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::parse_meta_assignment)]
    pub meta: Vec<(String, Value)>,
    /// Initial meta as a JSON object, merged with --meta (which wins).
    #[arg(long = "meta-json", value_name = "JSON", value_parser = parse::parse_json_object)]
    pub meta_json: Option<Map<String, Value>>,
    /// Add an environment variable (NAME=VALUE; the value may be any bytes). Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse::EnvParser)]
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment instead of ours (only --env and TASKPOOL_* are set).
    #[arg(long)]
    pub clear_env: bool,
    /// The working directory [default: the current one].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Standard input: `pipe` (writable with `taskpool send`), `null`, or a FILE to read
    /// [default: pipe].
    #[arg(long, value_name = "pipe|null|FILE", value_parser = parse::parse_stdin)]
    pub stdin: Option<Stdin>,
    /// A lock file the task holds (flock) while it runs; spawning fails while another holds it.
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    /// Bytes of each stream kept in the supervisor's memory [default: 1M]. See SIZE below.
    #[arg(long, value_name = "SIZE", value_parser = parse::parse_buffer_size)]
    pub buffer: Option<u64>,
    /// Cap each stream's on-disk log; the oldest bytes go beyond it [default: unlimited].
    #[arg(long, value_name = "SIZE", value_parser = parse::parse_size)]
    pub log_max: Option<u64>,
    /// Send stderr into stdout at the source, for exact ordering.
    #[arg(long)]
    pub merge_stderr: bool,
    /// A resource limit set before exec: nofile, nproc, as (or memory), cpu, fsize, core, stack;
    /// HARD defaults to SOFT; values take SIZE / DURATION forms or `unlimited`. Repeatable.
    #[arg(long = "limit", value_name = "NAME=SOFT[:HARD]", value_parser = parse::parse_limit)]
    pub limits: Vec<(String, taskpool::limits::Limit)>,
    /// Run the task at this nice value (-20 to 19; below the caller's needs CAP_SYS_NICE).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub nice: Option<i32>,
    /// The task's OOM score adjustment (-1000 to 1000; below the caller's needs CAP_SYS_RESOURCE).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// The task says it is ready by writing a newline to this fd (3 or above), as s6's
    /// notification-fd.
    #[arg(long, value_name = "N", conflicts_with = "notify")]
    pub ready_fd: Option<i32>,
    /// The task says it is ready by sending READY=1 to $NOTIFY_SOCKET, as systemd's sd_notify
    /// (STATUS=… goes into meta `status`).
    #[arg(long)]
    pub notify: bool,
    /// Run the task on a pseudo-terminal, for programs that colour or line-buffer only on a
    /// terminal: its stdin, stdout and stderr are the terminal, its output one stream (stdout,
    /// stderr merged), `send` types into it (`send --eof` types Ctrl-D), and `taskpool attach`
    /// connects to it. Not with `--stdin null|FILE`.
    #[arg(long)]
    pub pty: bool,
    /// The terminal's window size [default: 80x24]; implies --pty.
    #[arg(long, value_name = "COLSxROWS", value_parser = parse::parse_pty_size)]
    pub pty_size: Option<taskpool::pty::PtySize>,
    /// Keep the supervisor serving this long after the task ended.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration)]
    pub linger: Option<Duration>,
    /// Grace between SIGINT, SIGTERM and SIGKILL when terminating [default: 2s].
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration)]
    pub grace: Option<Duration>,
    /// daemon: survives us and our terminal; background: ended when our process group leader
    /// exits; foreground: the supervisor stays our child (spawn then waits for the end).
    #[arg(long, value_name = "BEHAVIOR", value_parser = parse::behavior_parser())]
    pub behavior: Option<Behavior>,
    /// Who starts the supervisor: local (here, now) or slurm (a batch job submitted with
    /// sbatch; docs/slurm.md) [default: $TASKPOOL_ENGINE, else the pool's (`taskpool pool
    /// set --engine`), else local].
    #[arg(long, value_name = "local|slurm", value_parser = parse::parse_engine)]
    pub engine: Option<taskpool::Engine>,
    /// Add an argument to sbatch (e.g. --slurm-arg=--partition=gpu), after the mapped ones.
    /// Repeatable.
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
    #[command(flatten)]
    pub batch: BatchArgs,
    #[command(flatten)]
    pub command: CommandArgs,
}

/// Queues, locks, chains, schedules, retries, timeouts and hooks (shared by `spawn` and `run`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Queue, schedule and retry options")]
pub struct BatchArgs {
    /// Count the task against group NAME's limit (`taskpool group set`): it waits (state
    /// queued) until a slot is free.
    #[arg(long, value_name = "NAME", value_parser = parse::parse_group)]
    pub group: Option<String>,
    /// Queue priority within the group: higher starts first [default: 0].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Wait (state waiting) while another process holds --lockfile, instead of failing.
    #[arg(long)]
    pub wait_lock: bool,
    /// Start once all these tasks ended with status success or warning. IDs are separated by
    /// spaces or commas (end the list with `--` before PROG); repeatable.
    #[arg(long, value_name = "ID", num_args = 1.., value_delimiter = ',')]
    pub after: Vec<u64>,
    /// Start once all these tasks ended, whatever their status.
    #[arg(long, value_name = "ID", num_args = 1.., value_delimiter = ',')]
    pub after_any: Vec<u64>,
    /// Start only if these tasks ended with failure, killed, timeout or lost.
    #[arg(long, value_name = "ID", num_args = 1.., value_delimiter = ',')]
    pub after_failure: Vec<u64>,
    /// Start no earlier than DURATION from now.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration,
          conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Start no earlier than TIME (forms below); a time in the past is refused.
    #[arg(long, value_name = "TIME", value_parser = parse::parse_at)]
    pub at: Option<Timestamp>,
    /// Run at every time the cron expression matches, in local time (syntax below).
    #[arg(long, value_name = "EXPR", value_parser = parse::parse_cron, conflicts_with = "every")]
    pub cron: Option<String>,
    /// Run every DURATION; the first run one interval after spawn (unless --now).
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_positive_duration)]
    pub every: Option<Duration>,
    /// With --every: also run once at once.
    #[arg(long, requires = "every")]
    pub now: bool,
    /// Stop a recurring task after N runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_runs: Option<u32>,
    /// Stop a recurring task after a run that exits with one of these codes (comma list).
    #[arg(long, value_name = "CODES", value_parser = parse::parse_exit_code,
          value_delimiter = ',')]
    pub stop_on: Vec<i32>,
    /// Start a run again when it ended: never, on-failure (failure, killed, timeout) or always.
    #[arg(long, value_name = "POLICY", value_parser = parse::restart_parser())]
    pub restart: Option<RestartPolicy>,
    /// The most restarts after one start [default: no limit].
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// The delay before each restart, doubling from INITIAL up to MAX [default: 1s..5m].
    #[arg(long, value_name = "INITIAL..MAX", value_parser = parse::parse_backoff)]
    pub backoff: Option<Backoff>,
    /// Terminate a run (its process group: INT, TERM, KILL) that lasts longer than this;
    /// status timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_positive_duration)]
    pub timeout: Option<Duration>,
    /// Exit codes that mean success with warnings: status warning (comma list).
    #[arg(long, value_name = "CODES", value_parser = parse::parse_exit_code,
          value_delimiter = ',')]
    pub warn_codes: Vec<i32>,
    /// Run CMD (/bin/sh -c) after an end with status success or warning; the report is in its
    /// environment (TASKPOOL_TASK_ID, TASKPOOL_STATUS, ...) and on its stdin as JSON.
    #[arg(long, value_name = "CMD")]
    pub on_success: Option<String>,
    /// Run CMD after an end with status failure, killed or timeout.
    #[arg(long, value_name = "CMD")]
    pub on_failure: Option<String>,
    /// Run CMD after every end (after the other hooks).
    #[arg(long, value_name = "CMD")]
    pub on_exit: Option<String>,
    /// How long a hook may run before it is killed [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_positive_duration)]
    pub hook_timeout: Option<Duration>,
}

/// What the task runs: a shell string or an argv (`spawn --file` may leave both out).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct CommandArgs {
    /// Run this string with /bin/sh -c.
    #[arg(short = 'c', value_name = "SCRIPT")]
    pub shell: Option<String>,
    /// The program and its arguments, executed directly (put them after `--` when an argument
    /// starts with `-`). Arguments may be any bytes.
    #[arg(
        value_name = "PROG",
        trailing_var_arg = true,
        required_unless_present = "shell"
    )]
    pub argv: Vec<OsString>,
}

/// A single task: its id, or its supervisor's pid.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TaskArg {
    /// The task id.
    #[arg(value_name = "ID")]
    pub id: Option<u64>,
    /// Name the task by its supervisor's pid instead.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
}

#[derive(Debug, Args)]
#[command(mut_arg("argv", |a| a.required_unless_present_any(["shell", "file", "many"])))]
pub struct SpawnCmd {
    #[command(flatten)]
    pub spawn: SpawnArgs,
    /// Read the task from a job file (JSON: every spawn option; see docs/jobs.md). Relative
    /// paths in it are relative to the file's directory.
    #[arg(long, value_name = "JOB.json")]
    pub file: Option<PathBuf>,
    /// Spawn one task per line of FILE (`-`: stdin), each line a job object as in a job file;
    /// every line is checked before any task is spawned. Prints the ids, one per line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "wait_ready", "shell", "argv"])]
    pub many: Option<PathBuf>,
    /// Return only once the task is ready (--ready-fd or --notify), waiting at most TIMEOUT;
    /// exit 1 if it ends first, 124 if the time runs out (the task goes on).
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          value_parser = parse::parse_duration)]
    pub wait_ready: Option<Option<Duration>>,
}

#[derive(Debug, Args)]
pub struct WatchCmd {
    /// The drop directory: owned by you and writable by nobody else.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Process the files already in DIR, then exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct RunCmd {
    #[command(flatten)]
    pub spawn: SpawnArgs,
}

#[derive(Debug, Args)]
pub struct LsCmd {
    /// Only tasks whose meta has KEY equal to VALUE (JSON when it parses). Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::parse_meta_assignment)]
    pub meta: Vec<(String, Value)>,
    /// Only tasks whose info matches this JSON pattern (a deep subset, e.g.
    /// '{"meta":{"owner":"ci"},"exit_code":0}').
    #[arg(long = "where", value_name = "JSON", value_parser = parse::parse_json_object)]
    pub where_: Option<Map<String, Value>>,
    /// Only tasks in this state.
    #[arg(long, value_name = "STATE", value_parser = parse::state_parser())]
    pub state: Option<State>,
    /// Only tasks that ended with this status.
    #[arg(long, value_name = "STATUS", value_parser = parse::status_parser())]
    pub status: Option<Status>,
    /// Only live tasks (running or paused).
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct RestoreCmd {}

#[derive(Debug, Args)]
pub struct InfoCmd {
    #[command(flatten)]
    pub task: TaskArg,
}

#[derive(Debug, Args)]
pub struct TaskCmd {
    #[command(flatten)]
    pub task: TaskArg,
}

#[derive(Debug, Args)]
pub struct OutputCmd {
    #[command(flatten)]
    pub task: TaskArg,
    /// Only standard output [default: both, in the order they were read].
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only standard error.
    #[arg(long)]
    pub stderr: bool,
    /// Which run [default: the latest].
    #[arg(long, value_name = "N")]
    pub run: Option<u32>,
    /// Keep printing output as it arrives, until the task has ended (an older --run has ended:
    /// it is printed as it is).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines (then keep following, with --follow).
    #[arg(long, value_name = "N", conflicts_with = "from")]
    pub tail: Option<u64>,
    /// Start at this byte offset of the stream (of the combined view by default).
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<u64>,
    /// Take the output from the live supervisor and move its consume position past it, so the
    /// next --consume returns only newer output.
    #[arg(long, conflicts_with_all = ["run", "follow", "tail", "from"])]
    pub consume: bool,
    /// Prefix each line with the time its first byte was read: RFC 3339 local time with
    /// milliseconds (`2027-03-28T03:00:00.123+02:00 line`), or `relative` to the run's start
    /// (`+1.250s line`).
    #[arg(long, value_name = "FORM", num_args = 0..=1, require_equals = true,
          default_missing_value = "absolute", conflicts_with_all = ["follow", "consume"])]
    pub timestamps: Option<TimestampForm>,
    /// Only the lines read at or after TIME: RFC 3339 (fractions allowed), HH:MM[:SS] (the
    /// latest past one, local time), or a DURATION meaning that long ago.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["follow", "consume"])]
    pub since: Option<String>,
    /// Only the lines read at or before TIME (the forms of --since).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["follow", "consume"])]
    pub until: Option<String>,
}

/// How `output --timestamps` shows a line's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimestampForm {
    /// RFC 3339 local time with milliseconds and the offset.
    Absolute,
    /// Seconds since the run's start, with milliseconds (`+1.250s`).
    Relative,
}

#[derive(Debug, Args)]
pub struct KillCmd {
    #[command(flatten)]
    pub task: TaskArg,
    /// The signal, by name (TERM, SIGTERM, any case) or number.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL", default_value = "TERM",
          value_parser = parse::parse_signal)]
    pub signal: Signal,
}

#[derive(Debug, Args)]
pub struct SendCmd {
    #[command(flatten)]
    pub task: TaskArg,
    /// The text to write (followed by a newline). Without it, our standard input is copied to
    /// the task's as it arrives, until it ends.
    #[arg(value_name = "TEXT")]
    pub text: Option<OsString>,
    /// Do not add a newline after TEXT.
    #[arg(short = 'n')]
    pub no_newline: bool,
    /// Close the task's standard input afterwards (after TEXT, or after copying our standard
    /// input to its end: `taskpool send ID --eof < FILE`). When our standard input is a
    /// terminal and no TEXT is given, only close it. A task on a terminal (--pty) gets its
    /// end-of-file character (Ctrl-D) typed instead, and its terminal stays open.
    #[arg(long)]
    pub eof: bool,
}

#[derive(Debug, Args)]
pub struct AttachCmd {
    #[command(flatten)]
    pub task: TaskArg,
    /// The key that detaches (the task goes on): ctrl-X or ^X.
    #[arg(long, value_name = "KEY", default_value = "ctrl-]",
          value_parser = |s: &str| parse::parse_detach_key(s).map(|_| s.to_owned()))]
    pub detach_key: String,
}

#[derive(Debug, Args)]
pub struct MetaCmd {
    /// Name the task by its supervisor's pid instead of an ID.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
    /// [ID] KEY=VALUE...: an optional task id, then the keys to set.
    #[arg(value_name = "ID|KEY=VALUE")]
    pub items: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitCmd {
    /// The tasks to wait for.
    #[arg(value_name = "ID", required_unless_present = "pids")]
    pub ids: Vec<u64>,
    /// Name a task by its supervisor's pid instead (repeatable; after the ids).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,
    /// Give up after this long (exit status 124).
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration)]
    pub timeout: Option<Duration>,
    /// Wait until the task's current run is ready (--ready-fd or --notify) instead of its end;
    /// exit 1 if it ends first.
    #[arg(long)]
    pub ready: bool,
}

#[derive(Debug, Args)]
pub struct TerminateCmd {
    #[command(flatten)]
    pub task: TaskArg,
    /// Grace between the signals [default: the task's --grace].
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration)]
    pub grace: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RmCmd {
    /// The tasks to remove.
    #[arg(value_name = "ID", required_unless_present = "pids")]
    pub ids: Vec<u64>,
    /// Name a task by its supervisor's pid instead (repeatable; after the ids).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,
    /// Terminate live tasks first instead of refusing to remove them.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CleanCmd {
    /// Only tasks that ended at least this long ago.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration)]
    pub older_than: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct ReportCmd {
    #[command(flatten)]
    pub task: TaskArg,
}

#[derive(Debug, Args)]
pub struct GroupCmd {
    #[command(subcommand)]
    pub action: GroupAction,
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// Set a group's limit. Takes effect at once: raising it starts queued tasks, lowering it
    /// holds back new starts (running tasks are not stopped).
    Set(GroupSetCmd),
    /// List the groups: NAME, PARALLEL (the limit), RUNNING (slots held), QUEUED (tasks waiting).
    ///
    /// With --json, an array of {name, parallel, running, queued: [ids in start order]}.
    Ls,
}

#[derive(Debug, Args)]
pub struct GroupSetCmd {
    /// The group's name (letters, digits, '_', '-', '.').
    #[arg(value_name = "NAME", value_parser = parse::parse_name)]
    pub name: String,
    /// At most N of the group's tasks run at once (N >= 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          required_unless_present = "unlimited", conflicts_with = "unlimited")]
    pub parallel: Option<u32>,
    /// Remove the limit.
    #[arg(long)]
    pub unlimited: bool,
}

#[derive(Debug, Args)]
pub struct PoolCmd {
    #[command(subcommand)]
    pub action: PoolAction,
}

#[derive(Debug, Subcommand)]
pub enum PoolAction {
    /// Change the pool's settings (POOL/settings.json); the others are kept.
    Set(PoolSetCmd),
    /// Print the pool's settings, one `KEY VALUE` line each ('-': not set).
    ///
    /// With --json, the settings object ({"engine": "slurm"}; a key not set is absent).
    Show,
}

#[derive(Debug, Args)]
pub struct PoolSetCmd {
    /// The engine of every task that names none and whose caller has no $TASKPOOL_ENGINE
    /// (the command line and a job file's "engine" come first); `none` removes the setting.
    #[arg(long, value_name = "local|slurm|none", value_parser = parse::parse_engine_setting,
          required = true)]
    pub engine: Option<parse::EngineSetting>,
}

#[derive(Debug, Args)]
pub struct CompletionsCmd {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `taskpool manpages`.
#[derive(Debug, Args)]
pub struct ManpagesCmd {
    /// The directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spawn_takes_a_script_or_an_argv_but_not_both() {
        let argv = |a: &[&str]| Cli::try_parse_from(a.iter().copied());
        assert!(argv(&["taskpool", "spawn", "-c", "echo hi"]).is_ok());
        assert!(argv(&["taskpool", "spawn", "--", "ls", "-l"]).is_ok());
        assert!(argv(&["taskpool", "spawn", "--name", "x", "sleep", "--help"]).is_ok());
        assert!(argv(&["taskpool", "spawn", "-c", "x", "--", "ls"]).is_err());
        assert!(argv(&["taskpool", "spawn", "--name", "x"]).is_err());
        assert!(argv(&["taskpool", "kill", "1", "--pid", "5"]).is_err());
        assert!(argv(&["taskpool", "kill"]).is_err());
        assert!(argv(&["taskpool", "ls", "--pool", "/tmp/p", "--json"]).is_ok());
    }

    #[test]
    fn trailing_argv_is_kept_verbatim() {
        let cli =
            Cli::try_parse_from(["taskpool", "run", "--", "grep", "-v", "--pool", "x"]).unwrap();
        let Cmd::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.spawn.command.argv, ["grep", "-v", "--pool", "x"]);
        assert!(cli.global.pool.is_none());
    }
}
