//! The `taskpool` command: parse the command line ([`args`]), run one subcommand (`cmd_*`), and
//! turn the outcome into an exit status.
//!
//! Exit status: 0 on success; 1 for a runtime failure (not found, lock held, refused,
//! unreachable, timeout); 2 for usage errors (clap's, and ours such as a bad `meta` argument).
//! `wait` and `run` pass the task's status through and use 124–127 for their own failures, by
//! returning an [`Exit`] error. Every error is exactly one line on stderr, `taskpool: <message>`.
//! When whoever reads our stdout goes away (`taskpool ls | head -1`), we stop quietly with
//! status 0, as ripgrep does: the reader got what it wanted.

// The argument types' doc comments are the command's --help text, where [ID] and HH:MM[:SS]
// mean optional parts, not links.
#![allow(rustdoc::broken_intra_doc_links)]

mod args;
mod cmd_attach;
mod cmd_control;
mod cmd_group;
mod cmd_ls;
mod cmd_many;
mod cmd_meta;
mod cmd_output;
mod cmd_pool;
mod cmd_remove;
mod cmd_report;
mod cmd_run;
mod cmd_serve;
mod cmd_spawn;
mod cmd_wait;
mod cmd_watch;
mod options;
mod output_times;
mod parse;
mod print;
mod select;
mod table;

use args::{Cli, Cmd};
use clap::{CommandFactory, Parser};
use std::io::Write;

/// An error that ends the program with a particular exit status instead of 1.
#[derive(Debug)]
pub struct Exit {
    /// The exit status.
    pub code: i32,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&one_line(&self.error))
    }
}

/// `err` and its causes joined with ": ", leaving out a cause its message already includes (the
/// library's I/O errors name their OS error and also carry it as their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

impl std::error::Error for Exit {}

/// `error`, ending the program with status `code`.
pub fn exit_with(code: i32, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        error: error.into(),
    })
}

/// A usage error found after clap's parsing (exit status 2).
pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    exit_with(2, anyhow::anyhow!("{message} (see --help)"))
}

fn main() {
    if about_to_spawn(std::env::args_os().skip(1)) {
        // The supervisor program starts on another core while we parse, check and allocate; a
        // failure here is reported, if it matters, by the spawn itself.
        let _ = taskpool::spawn::prestart_supervisor();
    }
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        taskpool::spawn::discard_prestarted();
        e.exit()
    });
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(err) => report(&err),
    };
    // One that no spawn used (the spawn failed before starting a supervisor): reaped by us,
    // not left to whoever adopts it.
    taskpool::spawn::discard_prestarted();
    std::process::exit(code);
}

/// Whether the command line names a subcommand that starts a supervisor (`spawn`, `run`,
/// `restart`, `restore`) here: not when it goes to Slurm (`--engine slurm`, or without
/// `--engine`, `TASKPOOL_ENGINE=slurm` or, without that, the pool's default engine), whose job
/// starts the supervisor, nor for `spawn --many`, which starts a batch launcher of its own. A
/// cheap guess before parsing: a wrong "yes" costs one idle supervisor that exits at once.
fn about_to_spawn(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<std::ffi::OsString> = args.collect();
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    if !words
        .iter()
        .any(|a| matches!(*a, "spawn" | "run" | "restart" | "restore"))
    {
        return false;
    }
    // A bulk submission starts its own batch launcher.
    if words
        .iter()
        .any(|a| *a == "--many" || a.starts_with("--many="))
    {
        return false;
    }
    let value = |name: &str| {
        let eq = format!("{name}=");
        words
            .iter()
            .position(|&a| a == name)
            .and_then(|i| words.get(i + 1).copied())
            .or_else(|| words.iter().find_map(|a| a.strip_prefix(eq.as_str())))
    };
    let engine = match value("--engine") {
        Some(e) => e.to_owned(),
        None => match std::env::var("TASKPOOL_ENGINE") {
            Ok(e) if !e.is_empty() => e,
            _ => select::pool_dir_from(value("--pool").map(std::path::Path::new))
                .ok()
                .and_then(|dir| taskpool::settings::read(&dir).ok())
                .and_then(|s| s.engine)
                .map_or_else(String::new, |e| e.as_str().to_owned()),
        },
    };
    engine != "slurm"
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    if !matches!(
        cli.command,
        Cmd::Spawn(_) | Cmd::Run(_) | Cmd::Restart(_) | Cmd::Restore(_)
    ) {
        taskpool::spawn::discard_prestarted();
    }
    match &cli.command {
        Cmd::Spawn(c) => cmd_spawn::spawn(g, c),
        Cmd::Restart(c) => cmd_spawn::restart(g, c),
        Cmd::Restore(c) => cmd_control::restore(g, c),
        Cmd::Run(c) => cmd_run::run(g, c),
        Cmd::Ls(c) => cmd_ls::ls(g, c),
        Cmd::Info(c) => cmd_meta::info(g, c),
        Cmd::Report(c) => cmd_report::report(g, c),
        Cmd::Group(c) => cmd_group::group(g, c),
        Cmd::Pool(c) => cmd_pool::pool(g, c),
        Cmd::Meta(c) => cmd_meta::meta(g, c),
        Cmd::Output(c) => cmd_output::output(g, c),
        Cmd::Kill(c) => cmd_control::kill(g, c),
        Cmd::Pause(c) => cmd_control::pause(g, c),
        Cmd::Resume(c) => cmd_control::resume(g, c),
        Cmd::Send(c) => cmd_control::send(g, c),
        Cmd::Attach(c) => cmd_attach::attach(g, c),
        Cmd::Terminate(c) => cmd_control::terminate(g, c),
        Cmd::Wait(c) => cmd_wait::wait(g, c),
        Cmd::Watch(c) => cmd_watch::watch(g, c),
        Cmd::Serve(c) => cmd_serve::serve(g, c),
        Cmd::Rm(c) => cmd_remove::rm(g, c),
        Cmd::Clean(c) => cmd_remove::clean(g, c),
        Cmd::Manpages(m) => {
            std::fs::create_dir_all(&m.dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &m.dir))
                .map_err(|e| anyhow::anyhow!("writing man pages into {}: {e}", m.dir.display()))?;
            Ok(0)
        }
        Cmd::Completions(c) => {
            // Generated into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(c.shell, &mut Cli::command(), "taskpool", &mut script);
            let mut out = std::io::stdout().lock();
            out.write_all(&script)?;
            out.flush()?;
            Ok(0)
        }
    }
}

/// Print `err` as one line and return the exit status it calls for.
fn report(err: &anyhow::Error) -> i32 {
    // Only our own writes surface as a bare I/O error; the library wraps its socket errors.
    if err
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return 0;
    }
    let code = err.downcast_ref::<Exit>().map_or(1, |e| e.code);
    let message = one_line(err).replace(['\n', '\r'], " ");
    let _ = writeln!(std::io::stderr(), "taskpool: {}", message.trim_end());
    code
}
