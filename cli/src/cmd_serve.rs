//! `taskpool serve`: execute the `taskpool-serve` program (the HTTP server lives in its own
//! binary, so this one, and its spawn path, link none of it), found like the supervisor:
//! `$TASKPOOL_SERVE`, else beside this executable (or one directory up), else on `PATH`.

use crate::args::{GlobalArgs, ServeCmd};
use crate::select;
use anyhow::{bail, Result};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The server program's name.
const SERVE_PROGRAM: &str = "taskpool-serve";

fn is_executable(p: &std::path::Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_server() -> Result<PathBuf> {
    if let Some(v) = std::env::var_os("TASKPOOL_SERVE").filter(|v| !v.is_empty()) {
        return Ok(v.into());
    }
    let beside = std::env::current_exe().into_iter().flat_map(|exe| {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|d| d.join(SERVE_PROGRAM))
            .collect::<Vec<_>>()
    });
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(SERVE_PROGRAM))
            .collect::<Vec<_>>()
    });
    match beside.chain(on_path).find(|p| is_executable(p)) {
        Some(p) => Ok(p),
        None => bail!(
            "cannot find the server program {SERVE_PROGRAM} beside taskpool or on PATH; install it (cargo install --path server) or set TASKPOOL_SERVE to its path"
        ),
    }
}

pub fn serve(global: &GlobalArgs, cmd: &ServeCmd) -> Result<i32> {
    let prog = find_server()?;
    let mut c = std::process::Command::new(&prog);
    c.arg("--listen").arg(&cmd.listen);
    if let Some(f) = &cmd.token_file {
        c.arg("--token-file").arg(f);
    }
    for (on, flag) in [
        (cmd.read_only, "--read-only"),
        (cmd.allow_spawn, "--allow-spawn"),
        (cmd.open, "--open"),
    ] {
        if on {
            c.arg(flag);
        }
    }
    if let Some(n) = cmd.max_streams {
        c.arg("--max-streams").arg(n.to_string());
    }
    let err = c.env(taskpool::ENV_POOL, select::pool_dir(global)?).exec();
    bail!("executing {}: {err}", prog.display())
}
