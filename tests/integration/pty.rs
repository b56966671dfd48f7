//! Tasks on a pseudo-terminal (`--pty`): the task sees a terminal (its controlling one, as a
//! session leader), its output is one stream, `--pty-size` is the size it sees, `send` types into
//! it and `send --eof` types end-of-file; `taskpool attach` under tmux: type, see the echo, resize,
//! detach, and the task goes on.

use crate::util::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use taskpool::terminal::Terminal;
use taskpool::{Event, SpawnOptions, Stream};

fn text(tp: &TestPool, id: u64, args: &[&str]) -> String {
    let mut all = vec!["output".to_owned(), id.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tp.ok(&all)
}

#[test]
fn a_pty_task_runs_on_its_own_controlling_terminal_and_its_output_is_one_stream() {
    let tp = TestPool::new();
    let script = "tty; test -t 0 && test -t 1 && test -t 2 && echo all three; \
                  echo on stderr >&2; echo via /dev/tty > /dev/tty; \
                  [ \"$(cut -d' ' -f6 /proc/$$/stat)\" = $$ ] && echo session leader; \
                  ls --color=auto -d /";
    let id = tp.spawn(["--pty", "-c", script]);
    tp.wait_ok(&id.to_string());
    let out = text(&tp, id, &[]);
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(
        lines[0].starts_with("/dev/pts/"),
        "tty printed {:?}",
        lines[0]
    );
    eq!(
        lines[1..5],
        ["all three", "on stderr", "via /dev/tty", "session leader"]
    );
    // ls colours (an escape sequence around the name) only on a terminal.
    assert!(
        lines[5].contains("\x1b[") && lines[5].contains('/'),
        "ls printed {:?}",
        lines[5]
    );
    // One stream: stderr was the terminal too.
    eq!(text(&tp, id, &["--stderr"]), "");
    let info = tp.info(id);
    eq!(info["pty"], json!({"cols": 80, "rows": 24}));
    eq!(info["streams"]["stderr"]["end"], json!(0));
    eq!(info["streams"]["stdout"]["end"], json!(out.len()));
}

#[test]
fn without_pty_the_same_script_sees_pipes() {
    let tp = TestPool::new();
    let id = tp.spawn(["-c", "test -t 1 && echo tty || echo pipe; tty || true"]);
    tp.wait_ok(&id.to_string());
    eq!(text(&tp, id, &[]), "pipe\nnot a tty\n");
    eq!(tp.info(id)["pty"], json!(null));
}

#[test]
fn pty_size_is_what_stty_size_reports_and_a_restart_keeps_it() {
    let tp = TestPool::new();
    let id = tp.spawn(["--pty-size", "132x43", "-c", "stty size"]);
    let ids = id.to_string();
    tp.wait_ok(&ids);
    eq!(text(&tp, id, &[]), "43 132\r\n");
    tp.ok(["restart", &ids]);
    tp.wait_ok(&ids);
    let info = tp.info(id);
    eq!(info["run"], json!(2));
    eq!(info["pty"], json!({"cols": 132, "rows": 43}));
    eq!(text(&tp, id, &[]), "43 132\r\n");
    let plain = tp.spawn(["--pty", "-c", "stty size"]);
    tp.wait_ok(&plain.to_string());
    eq!(text(&tp, plain, &[]), "24 80\r\n");
}

#[test]
fn send_types_into_the_terminal_and_send_eof_ends_cat() {
    let tp = TestPool::new();
    let id = tp.spawn(["--pty", "--", "cat"]);
    let ids = id.to_string();
    tp.ok(["send", &ids, "hello"]);
    tp.ok(["send", &ids, "--eof"]);
    let out = tp.run(["wait", &ids, "--timeout", "10s"]);
    eq!(code(&out), 0);
    // The terminal's echo of what was typed, then cat's copy; both with terminal line ends.
    eq!(text(&tp, id, &[]), "hello\r\nhello\r\n");
    // The run is over: nothing more can be typed.
    let late = tp.run(["send", &ids, "late"]);
    eq!(code(&late), 1);
}

#[test]
fn a_job_file_and_the_library_ask_for_a_pty_too() {
    let tp = TestPool::new();
    let job = tp.scratch().join("job.json");
    std::fs::write(&job, r#"{"command": "stty size", "pty_size": "100x5"}"#).unwrap();
    let id = tp.spawn(["--file", job.to_str().unwrap()]);
    tp.wait_ok(&id.to_string());
    eq!(text(&tp, id, &[]), "5 100\r\n");

    let opts = SpawnOptions::exec(["sh", "-c", "read l; stty size; echo \"[$l]\""])
        .pty("40x10".parse().unwrap());
    let task = tp.pool.spawn(&opts).unwrap();
    let mut term = Terminal::open(&task).unwrap();
    term.resize("50x12".parse().unwrap()).unwrap();
    term.write(b"typed\n").unwrap();
    let info = task.wait().unwrap();
    eq!(info.exit_code, Some(0));
    eq!(info.pty, Some("40x10".parse().unwrap()));
    let out = task.read_all(Stream::Stdout).unwrap();
    eq!(
        String::from_utf8_lossy(&out),
        "typed\r\n12 50\r\n[typed]\r\n"
    );
}

#[test]
fn what_makes_no_sense_with_a_pty_is_refused_in_one_line() {
    let tp = TestPool::new();
    let refused = |args: &[&str], code_wanted: i32, says: &str| {
        let out = tp.run(args);
        let err = stderr(&out);
        eq!(code(&out), code_wanted);
        // Usage errors (2) are clap's: the message on the first line, then a hint.
        assert!(
            err.lines().next().unwrap_or("").contains(says),
            "{args:?}: {err}"
        );
        if code_wanted == 1 {
            eq!(err.trim_end().lines().count(), 1);
        }
    };
    refused(
        &["spawn", "--pty", "--stdin", "null", "--", "cat"],
        1,
        "--stdin",
    );
    refused(&["spawn", "--pty-size", "80", "--", "cat"], 2, "COLSxROWS");
    let job = tp.scratch().join("job.json");
    std::fs::write(&job, r#"{"command": "cat", "pty": true, "stdin": "null"}"#).unwrap();
    refused(&["spawn", "--file", job.to_str().unwrap()], 1, "\"stdin\"");
    eq!(tp.pool.list().unwrap().len(), 0);

    let plain = tp.spawn(["--", "sleep", "30"]).to_string();
    refused(&["attach", &plain], 1, "not spawned with --pty");
    let e = tp
        .pool
        .task(plain.parse().unwrap())
        .unwrap()
        .resize("90x20".parse().unwrap());
    let e = e.unwrap_err();
    eq!(e.kind(), taskpool::ErrorKind::State);
    assert!(e.message().contains("no terminal to resize"), "{e}");
    let ended = tp.spawn(["--pty", "-c", "true"]).to_string();
    tp.wait_ok(&ended);
    refused(&["attach", &ended], 1, "has ended");
    let live = tp.spawn(["--pty", "--", "cat"]).to_string();
    // tp.run gives the command /dev/null as stdin: not a terminal.
    refused(&["attach", &live], 1, "standard input is not one");
    refused(&["attach", &live, "--detach-key", "q"], 2, "control key");
}

/// A tmux server of our own (`tmux -L NAME`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server running one detached session `s` of 100x30 cells running `command`. Fails when
    /// tmux is not installed (`.ci/run` installs it): attach is never left untested.
    fn start(command: &str) -> Tmux {
        let socket = format!("taskpool-test-{}-{:?}", std::process::id(), Instant::now());
        let socket = socket.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "");
        let t = Tmux { socket };
        let started = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "30",
                "-s",
                "s",
                command,
            ])
            .status();
        match started {
            Ok(s) if s.success() => t,
            Ok(s) => panic!("tmux new-session failed: {s}"),
            Err(e) => panic!("tmux (needed for the attach tests; `.ci/run` installs it): {e}"),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "s"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success(), "tmux send-keys {keys:?}");
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "s"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the pane shows `want`. tmux cannot tell us when a pane changes, so this looks
    /// every 20 ms, for at most 10 s.
    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pane = self.pane();
            if pane.contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the tmux pane did not show {want:?} within 10 s; it shows:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The shell command a tmux pane runs: `taskpool attach ID` (its pid written to `pidfile`),
/// then what it exited with and whether the terminal is back in its normal (canonical) mode.
fn attach_command(tp: &TestPool, id: u64, pidfile: &std::path::Path) -> String {
    format!(
        "sh -c 'echo $$ > {}; exec {} --pool {} attach {id}'; echo \"attach exited $?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -qx icanon && echo terminal cooked again; exec cat",
        pidfile.display(),
        bin("taskpool").display(),
        tp.dir.display()
    )
}

#[test]
fn attach_under_tmux_types_sees_the_echo_follows_a_resize_and_detaches_leaving_the_task() {
    let tp = TestPool::new();
    let script = "while read l; do case $l in size) stty size;; *) echo \"got:$l\";; esac; done";
    let id = tp.spawn(["--pty", "-c", script]);
    let pidfile = tp.scratch().join("attach.pid");
    let attach = attach_command(&tp, id, &pidfile);
    let tmux = Tmux::start(&attach);
    tmux.wait_for("[attached to task");
    tmux.keys(&["hello", "Enter"]);
    // The terminal's echo of what was typed, and the task's answer to it.
    tmux.wait_for("hello\ngot:hello");
    // attach passed tmux's 100x30 on when it started, and passes on a resize.
    tmux.keys(&["size", "Enter"]);
    tmux.wait_for("size\n30 100");
    let resized = tmux
        .cmd()
        .args(["resize-window", "-t", "s", "-x", "120", "-y", "40"])
        .status()
        .unwrap();
    assert!(resized.success(), "tmux resize-window");
    tmux.keys(&["size", "Enter"]);
    tmux.wait_for("size\n40 120");
    tmux.keys(&["C-]"]);
    tmux.wait_for("attach exited 0");
    tmux.wait_for("terminal cooked again");
    assert!(
        tmux.pane().contains("[detached from task"),
        "{}",
        tmux.pane()
    );
    // The task goes on: still running, and it still answers.
    let task = tp.pool.task(id).unwrap();
    let info = task.info().unwrap();
    eq!(info.state, taskpool::State::Running);
    let end = info.streams.combined.end;
    task.write(b"after\n").unwrap();
    let mut seen = Vec::new();
    for event in task.follow(end).unwrap() {
        if let Event::Output { data, .. } = event.unwrap() {
            seen.extend_from_slice(&data);
            if String::from_utf8_lossy(&seen).contains("got:after") {
                break;
            }
        }
    }
    tp.ok(["terminate", &id.to_string()]);
}

#[test]
fn attach_ends_with_the_task_and_a_signal_detaches_both_restoring_the_terminal() {
    let tp = TestPool::new();
    let pidfile = tp.scratch().join("attach.pid");
    let id = tp.spawn(["--pty", "-c", "read l; echo \"bye $l\"; exit 7"]);
    let tmux = Tmux::start(&attach_command(&tp, id, &pidfile));
    tmux.wait_for("[attached to task");
    tmux.keys(&["now", "Enter"]);
    tmux.wait_for("bye now");
    tmux.wait_for(&format!("[task {id} ended: failure]"));
    tmux.wait_for("attach exited 7");
    tmux.wait_for("terminal cooked again");
    drop(tmux);

    let cat = tp.spawn(["--pty", "--", "cat"]);
    let tmux = Tmux::start(&attach_command(&tp, cat, &pidfile));
    tmux.wait_for("[attached to task");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
    tmux.wait_for("attach exited 0");
    tmux.wait_for("terminal cooked again");
    eq!(tp.info(cat)["state"], json!("running"));
}
