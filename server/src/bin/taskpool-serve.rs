//! `taskpool-serve`: the program behind `taskpool serve` (see `docs/http.md`).

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use taskpool::{CreateOptions, Pool};

/// Serve a pool as a JSON API over HTTP.
#[derive(Debug, Parser)]
#[command(name = "taskpool serve", version)]
struct Args {
    /// The pool directory [default: $TASKPOOL_DIR].
    #[arg(long, value_name = "DIR", env = "TASKPOOL_DIR")]
    pool: PathBuf,
    /// HOST:PORT (port 0 picks a free one) or unix:PATH.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8370")]
    listen: String,
    /// Read the token from FILE (mode 0600 or stricter) instead of making a random one.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Refuse every request that would change something.
    #[arg(long)]
    read_only: bool,
    /// Accept POST /api/tasks (spawning jobs over HTTP).
    #[arg(long)]
    allow_spawn: bool,
    /// The most Server-Sent Event streams open at once; the next gets 503.
    #[arg(long, value_name = "N", default_value_t = taskpool_server::MAX_STREAMS)]
    max_streams: usize,
    /// Open the page in a browser (xdg-open) once listening.
    #[arg(long)]
    open: bool,
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "taskpool serve: starting the runtime: {e}"
            );
            std::process::exit(1);
        }
    };
    let r = rt.block_on(run(args));
    // Threads still blocked in library calls (a follow waiting for output) are not waited for.
    rt.shutdown_background();
    if let Err(e) = r {
        let _ = writeln!(std::io::stderr(), "taskpool serve: {e:#}");
        std::process::exit(1);
    }
}

/// Start `xdg-open URL`, not waiting for it; its failure is only reported.
fn open_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("taskpool serve: --open: xdg-open: {e}"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Caught from before the URL is printed: whoever reads it may stop us at once.
    let stop = stop_signals()?;
    let token = match &args.token_file {
        Some(f) => taskpool_server::auth::token_from_file(f)?,
        None => taskpool_server::auth::random_token()?,
    };
    let pool = Pool::open_or_create(&args.pool, CreateOptions::default())?;
    let state = taskpool_server::state(
        pool,
        taskpool_server::Options {
            token: token.clone(),
            read_only: args.read_only,
            allow_spawn: args.allow_spawn,
            max_streams: args.max_streams,
        },
    )?;
    let app = taskpool_server::app(state);
    let mut out = std::io::stdout().lock();
    if let Some(path) = args.listen.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        let l = unix_listener(&path)?;
        writeln!(out, "unix:{}?token={token}", path.display())?;
        out.flush()?;
        drop(out);
        let serve = axum::serve(taskpool_server::PeerChecked(l), app);
        tokio::select! { r = serve => r?, _ = stop => {} }
        let _ = std::fs::remove_file(&path);
    } else {
        let l = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
        let addr = l.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "taskpool serve: warning: listening on {addr}, beyond this machine: the traffic (token included) is plain HTTP"
            );
        }
        let url = format!("http://{addr}/?token={token}");
        writeln!(out, "{url}")?;
        out.flush()?;
        drop(out);
        if args.open {
            open_browser(&url);
        }
        let serve = axum::serve(l, app);
        tokio::select! { r = serve => r?, _ = stop => {} }
    }
    Ok(())
}

/// A unix socket at `path`, mode 0600.
fn unix_listener(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    use nix::sys::stat::{umask, Mode};
    use std::os::unix::fs::PermissionsExt;
    // Bound under a umask of 077 so it is never open to others, even for a moment.
    let old = umask(Mode::from_bits_truncate(0o077));
    let l = tokio::net::UnixListener::bind(path);
    umask(old);
    let l = l.map_err(|e| anyhow::anyhow!("--listen unix:{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// SIGINT and SIGTERM caught from now on; the future ends at the first.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("taskpool serve: stopping");
    })
}
