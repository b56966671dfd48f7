//! `taskpool spawn --many FILE`: one job object per line (the job-file format), every line
//! checked before any task is spawned, then all of them spawned at once with
//! [`taskpool::Pool::spawn_many`]. The command line's spawn options apply on top of each line, as
//! with `--file`. Prints the new ids in line order (`--json`: an array of them). A spawn that
//! fails after the checks names its line; the ids already made are printed and the exit status
//! is 1.

use crate::args::{GlobalArgs, SpawnCmd};
use crate::{print, select};
use anyhow::{anyhow, Context, Result};
use std::io::Read;
use std::path::Path;
use taskpool::job::Job;
use taskpool::SpawnOptions;

pub fn spawn_many(global: &GlobalArgs, cmd: &SpawnCmd, path: &Path) -> Result<i32> {
    let (text, base) = if path == Path::new("-") {
        let mut t = Vec::new();
        std::io::stdin()
            .read_to_end(&mut t)
            .context("reading the jobs from stdin")?;
        (t, std::env::current_dir().context("current directory")?)
    } else {
        let t = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
        (t, abs.parent().unwrap_or(Path::new("/")).to_owned())
    };
    let shown = path.display();
    let pool = select::pool(global)?;
    let default = crate::options::default_engine(&pool)?;
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let opts = parse_line(cmd, line, &base, default)
            .map_err(|e| anyhow!("{shown}: line {}: {e} (nothing was spawned)", n + 1))?;
        lines.push(n + 1);
        all.push(opts);
    }
    let made = pool
        .spawn_many(&all)
        .map_err(|(i, e)| anyhow!("{shown}: line {}: {e} (nothing was spawned)", lines[i]))?;
    let ids: Vec<u64> = made.tasks.iter().map(|(_, t)| t.id()).collect();
    if global.json {
        print::json(&ids)?;
    } else {
        let out: Vec<String> = ids.iter().map(u64::to_string).collect();
        if !out.is_empty() {
            print::line(out.join("\n"))?;
        }
    }
    match made.failed {
        None => Ok(0),
        Some((i, e)) => Err(anyhow!(
            "{shown}: line {}: {e} ({} of {} tasks spawned; their ids are printed)",
            lines[i],
            ids.len(),
            all.len()
        )),
    }
}

fn parse_line(
    cmd: &SpawnCmd,
    line: &[u8],
    base: &Path,
    default: Option<taskpool::Engine>,
) -> taskpool::Result<SpawnOptions> {
    let job = Job::parse(line)?;
    let mut opts = job.to_options(base)?;
    crate::options::job_engine(&mut opts, &job, default);
    cmd.spawn.apply(&mut opts);
    // What spawn would refuse is refused now, before anything is spawned.
    opts.to_spec()?;
    Ok(opts)
}
