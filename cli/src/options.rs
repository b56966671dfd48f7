//! From parsed arguments to validated values the library understands: the one conversion of
//! [`SpawnArgs`] (and a batch's [`BatchArgs`]) into [`SpawnOptions`]. The value parsers that check
//! each argument's text are in [`crate::parse`].

use crate::args::{BatchArgs, CommandArgs, SpawnArgs};
use std::ffi::OsString;
use taskpool::{Command, Plan, Repeat, SpawnOptions};

impl SpawnArgs {
    /// The library's options for these arguments; the behavior defaults to daemon, the engine
    /// to `default` ([`default_engine`]). Without a command (only `spawn --file` allows that)
    /// the argv is empty and `spawn` refuses it.
    pub fn to_options(&self, default: Option<taskpool::Engine>) -> anyhow::Result<SpawnOptions> {
        let mut o = match self.command_given() {
            Some(Command::Shell(script)) => SpawnOptions::shell(script),
            Some(Command::Exec(argv)) => SpawnOptions::exec(argv),
            None => SpawnOptions::exec(Vec::<OsString>::new()),
        };
        if let Some(e) = default {
            o.set_engine(e);
        }
        self.apply(&mut o);
        Ok(o)
    }

    /// The command given on the command line (`-c SCRIPT` or `PROG ARG...`), if any.
    pub fn command_given(&self) -> Option<Command> {
        match &self.command {
            CommandArgs {
                shell: Some(script),
                ..
            } => Some(Command::Shell(script.clone())),
            CommandArgs { argv, .. } if !argv.is_empty() => Some(Command::Exec(argv.clone())),
            _ => None,
        }
    }

    /// Set, on top of `o` (defaults, or a job file's options), every option given on the
    /// command line: given values replace, `--env`, `--meta-json` and `--meta` add keys.
    pub fn apply(&self, o: &mut SpawnOptions) {
        // First: a scheduler engine changes the default stdin, which --stdin then overrides.
        if let Some(e) = self.engine {
            o.set_engine(e);
        }
        o.slurm_args.extend(self.slurm_args.iter().cloned());
        if let Some(n) = &self.name {
            o.name = Some(n.clone());
        }
        let meta = self.meta.iter().map(|(k, v)| (k, v));
        for (k, v) in self.meta_json.iter().flatten().chain(meta) {
            o.meta.insert(k.clone(), v.clone());
        }
        o.env.extend(self.env.iter().cloned());
        o.clear_env |= self.clear_env;
        if let Some(d) = &self.cwd {
            o.cwd = Some(d.clone());
        }
        if let Some(s) = &self.stdin {
            o.stdin = s.clone();
        }
        if let Some(l) = &self.lockfile {
            o.lockfile = Some(l.clone());
        }
        if let Some(b) = self.buffer {
            o.buffer_size = b;
        }
        if self.log_max.is_some() {
            o.log_max = self.log_max;
        }
        o.merge_stderr |= self.merge_stderr;
        o.limits.extend(self.limits.iter().cloned());
        if self.nice.is_some() {
            o.nice = self.nice;
        }
        if self.oom_score_adj.is_some() {
            o.oom_score_adj = self.oom_score_adj;
        }
        if let Some(n) = self.ready_fd {
            o.readiness = Some(taskpool::ready::Readiness::Fd(n));
        }
        if self.notify {
            o.readiness = Some(taskpool::ready::Readiness::Notify);
        }
        if let Some(size) = self.pty_size {
            o.pty = Some(size);
        } else if self.pty && o.pty.is_none() {
            o.pty = Some(Default::default());
        }
        if self.linger.is_some() {
            o.linger = self.linger;
        }
        if let Some(g) = self.grace {
            o.grace = g;
        }
        if let Some(b) = self.behavior {
            o.behavior = b;
        }
        self.batch.apply(&mut o.plan);
    }
}

/// The engine of a task in `pool` whose command line and job file name none:
/// `$TASKPOOL_ENGINE`, else the pool's setting (`taskpool pool set --engine`); `None`: local.
pub fn default_engine(pool: &taskpool::Pool) -> anyhow::Result<Option<taskpool::Engine>> {
    match std::env::var("TASKPOOL_ENGINE") {
        Ok(v) if !v.is_empty() => taskpool::Engine::parse(&v)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("TASKPOOL_ENGINE: {}", e.message())),
        _ => Ok(pool.settings()?.engine),
    }
}

/// `opts` from a job file: the default engine when the file names none.
pub fn job_engine(
    opts: &mut SpawnOptions,
    job: &taskpool::job::Job,
    default: Option<taskpool::Engine>,
) {
    if job.engine.is_none() {
        if let Some(e) = default {
            opts.set_engine(e);
        }
    }
}

impl BatchArgs {
    /// Set the plan's parts given on the command line.
    fn apply(&self, p: &mut Plan) {
        let b = self;
        if b.group.is_some() {
            p.group.clone_from(&b.group);
        }
        if let Some(n) = b.priority {
            p.priority = n;
        }
        p.wait_lock |= b.wait_lock;
        for (given, ids) in [
            (&b.after, &mut p.after),
            (&b.after_any, &mut p.after_any),
            (&b.after_failure, &mut p.after_failure),
        ] {
            if !given.is_empty() {
                ids.clone_from(given);
            }
        }
        if let Some(d) = b.delay {
            let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            p.start_at = Some(taskpool::record::now() + d);
        }
        if b.at.is_some() {
            p.start_at = b.at;
        }
        if let Some(expr) = &b.cron {
            p.repeat = Some(Repeat::Cron(expr.clone()));
        }
        if let Some(every) = b.every {
            p.repeat = Some(Repeat::Every {
                every_ms: every.as_millis() as u64,
                now: b.now,
            });
        }
        if b.max_runs.is_some() {
            p.max_runs = b.max_runs;
        }
        if !b.stop_on.is_empty() {
            p.stop_on.clone_from(&b.stop_on);
        }
        if let Some(r) = b.restart {
            p.restart = r;
        }
        if b.max_restarts.is_some() {
            p.max_restarts = b.max_restarts;
        }
        if b.backoff.is_some() {
            p.backoff = b.backoff;
        }
        if let Some(t) = b.timeout {
            p.timeout_ms = Some(t.as_millis() as u64);
        }
        if !b.warn_codes.is_empty() {
            p.warn_codes.clone_from(&b.warn_codes);
        }
        let h = &mut p.hooks;
        for (given, hook) in [
            (&b.on_success, &mut h.on_success),
            (&b.on_failure, &mut h.on_failure),
            (&b.on_exit, &mut h.on_exit),
        ] {
            if given.is_some() {
                hook.clone_from(given);
            }
        }
        if let Some(t) = b.hook_timeout {
            h.timeout_ms = Some(t.as_millis() as u64);
        }
    }
}
