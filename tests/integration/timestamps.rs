//! `output --timestamps` and `--since`/`--until`: each line carries the time the supervisor read
//! its first byte (from the run's `times` index), close to when the task printed it, never going
//! backwards; lines are selected by those times; bad values and runs without an index are named.

use crate::util::*;
use chrono::{DateTime, FixedOffset};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

/// Let a task blocked in `read x < FIFO` go on.
fn release(fifo: &std::path::Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .unwrap()
        .write_all(b"\n")
        .unwrap();
}

/// A wall-clock window: (not before, not after).
type Window = (DateTime<FixedOffset>, DateTime<FixedOffset>);

/// A task printing `one`, then `two` and `three`, each only once the test writes a line into
/// its fifo. Returns the task id and the wall-clock windows in which each line was printed:
/// (just before it was released, just after `output --follow` showed it).
fn three_released_lines(tp: &TestPool) -> (u64, Vec<Window>) {
    // One fifo per release: with one, the second `read < fifo` could open it while the first
    // release still holds its write end, and go on at once on its end of file.
    let fifos = ["go1", "go2"].map(|n| {
        let fifo = tp.scratch().join(n);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        fifo
    });
    let [f1, f2] = [0, 1].map(|i| fifos[i].to_str().unwrap().to_owned());
    let script =
        format!("echo one; read x < {f1}; echo two; echo two-err >&2; read x < {f2}; echo three");
    let before0 = chrono::Local::now().fixed_offset();
    let id = tp.spawn(["-c", &script]);
    let mut follow = tp
        .cmd()
        .args(["output", "--follow", &id.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    eq!(next(), "one");
    let mut windows = vec![(before0, chrono::Local::now().fixed_offset())];
    for (fifo, want) in fifos
        .iter()
        .zip([["two", "two-err"].as_slice(), ["three"].as_slice()])
    {
        // Not synchronisation: so that the lines' times differ by more than their resolution.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = chrono::Local::now().fixed_offset();
        release(fifo);
        for w in want {
            eq!(next(), *w);
        }
        windows.push((before, chrono::Local::now().fixed_offset()));
    }
    assert!(follow.wait().unwrap().success());
    tp.wait_ok(&id.to_string());
    (id, windows)
}

/// `output ID ARGS...` split into (time text, line) pairs.
fn stamped(tp: &TestPool, id: u64, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["output", "--timestamps"];
    let id = id.to_string();
    all.push(&id);
    all.extend(args);
    tp.ok(&all)
        .lines()
        .map(|l| {
            let (t, rest) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("no time in {l:?}"));
            (t.to_owned(), rest.to_owned())
        })
        .collect()
}

fn ms(d: chrono::Duration) -> i64 {
    d.num_milliseconds()
}

#[test]
fn lines_carry_the_time_they_were_printed_in_order_and_in_both_forms() {
    let tp = TestPool::new();
    let (id, windows) = three_released_lines(&tp);
    let out = stamped(&tp, id, &["--stdout"]);
    let lines: Vec<&str> = out.iter().map(|(_, l)| l.as_str()).collect();
    eq!(lines, vec!["one", "two", "three"]);
    let times: Vec<DateTime<FixedOffset>> = out
        .iter()
        .map(|(t, _)| {
            assert_eq!(t.len(), "2027-03-28T03:00:00.123+02:00".len(), "{t}");
            DateTime::parse_from_rfc3339(t).unwrap()
        })
        .collect();
    for (t, (before, after)) in times.iter().zip(&windows) {
        // Shown to the millisecond, truncated.
        assert!(ms(*t - *before) >= -1, "{t} is before {before}");
        assert!(*t <= *after, "{t} is after {after}");
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The combined view has stderr's line in its place; --stderr alone has only it.
    let combined = stamped(&tp, id, &[]);
    let lines: Vec<&str> = combined.iter().map(|(_, l)| l.as_str()).collect();
    eq!(lines, vec!["one", "two", "two-err", "three"]);
    let err = stamped(&tp, id, &["--stderr"]);
    eq!(err.len(), 1);
    eq!(err[0].1, "two-err");
    let t = DateTime::parse_from_rfc3339(&err[0].0).unwrap();
    assert!(t >= times[0] && t <= windows[1].1, "{t}");

    // Relative: seconds from the run's start, the same gaps.
    let rel = tp.ok([
        "output",
        "--timestamps=relative",
        "--stdout",
        &id.to_string(),
    ]);
    let offsets: Vec<i64> = rel
        .lines()
        .map(|l| {
            let t = l.split_once(' ').unwrap().0;
            let t = t
                .strip_prefix('+')
                .and_then(|t| t.strip_suffix('s'))
                .unwrap();
            let (s, m) = t.split_once('.').unwrap();
            assert_eq!(m.len(), 3, "{l}");
            s.parse::<i64>().unwrap() * 1000 + m.parse::<i64>().unwrap()
        })
        .collect();
    eq!(offsets.len(), 3);
    assert!(offsets[0] < 1000, "{rel}");
    for k in 1..3 {
        let gap = ms(times[k] - times[0]);
        assert!(
            (offsets[k] - offsets[0] - gap).abs() <= 1,
            "{rel} vs {times:?}"
        );
    }
}

#[test]
fn since_and_until_select_lines_by_their_time() {
    let tp = TestPool::new();
    let (id, _) = three_released_lines(&tp);
    let out = stamped(&tp, id, &["--stdout"]);
    let (t_two, t_three) = (&out[1].0, &out[2].0);
    let lines = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["output".to_owned(), "--stdout".to_owned(), id.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        tp.ok(&all).lines().map(str::to_owned).collect()
    };
    eq!(lines(&["--since", t_two]), vec!["two", "three"]);
    eq!(lines(&["--until", t_two]), vec!["one", "two"]);
    eq!(lines(&["--since", t_two, "--until", t_two]), vec!["two"]);
    eq!(lines(&["--since", t_three]), vec!["three"]);
    // A duration means that long ago.
    eq!(lines(&["--since", "1h"]), vec!["one", "two", "three"]);
    eq!(lines(&["--until", "1h"]), Vec::<String>::new());
    // Selected lines can carry their times too.
    let both = stamped(&tp, id, &["--stdout", "--since", t_two]);
    eq!(both.len(), 2);
    eq!(&both[0].0, t_two);
}

#[test]
fn bad_times_and_forms_are_named() {
    let tp = TestPool::new();
    let id = tp.spawn(["echo", "hi"]).to_string();
    tp.wait_ok(&id);
    let out = tp.run(["output", &id, "--since", "soon"]);
    eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("--since") && stderr(&out).contains("\"soon\""),
        "{}",
        stderr(&out)
    );
    let out = tp.run(["output", &id, "--until", "25:99"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("--until"), "{}", stderr(&out));
    let out = tp.run(["output", &id, "--timestamps=wallclock"]);
    eq!(code(&out), 2);
    assert!(stderr(&out).contains("wallclock"), "{}", stderr(&out));
    let out = tp.run(["output", &id, "--timestamps", "--follow"]);
    eq!(code(&out), 2);
    let out = tp.run(["--json", "output", &id, "--timestamps"]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
}

#[test]
fn a_run_without_an_index_prints_plainly_with_a_note_and_cannot_select() {
    let tp = TestPool::new();
    let id = tp.spawn(["echo", "old"]);
    tp.wait_ok(&id.to_string());
    std::fs::remove_file(tp.pool.run_dir(id, 1).join("times")).unwrap();
    let out = tp.run(["output", "--timestamps", &id.to_string()]);
    eq!(code(&out), 0);
    eq!(String::from_utf8_lossy(&out.stdout), "old\n");
    assert!(stderr(&out).contains("no times index"), "{}", stderr(&out));
    let out = tp.run(["output", "--since", "1h", &id.to_string()]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("no times index"), "{}", stderr(&out));
}

#[test]
fn a_line_split_across_reads_takes_the_time_of_its_first_byte() {
    let tp = TestPool::new();
    let fifo = tp.scratch().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let f = fifo.to_str().unwrap();
    let id = tp.spawn(["-c", &format!("printf 'start-'; read x < {f}; echo end")]);
    // Once a follower has seen the first half, it has been captured; the rest comes later.
    let mut follow = tp
        .cmd()
        .args(["output", "--follow", &id.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(follow.stdout.as_mut().unwrap(), &mut first).unwrap();
    eq!(&first, b"start-");
    let released = chrono::Local::now().fixed_offset();
    release(&fifo);
    tp.wait_ok(&id.to_string());
    assert!(follow.wait().unwrap().success());
    let out = stamped(&tp, id, &[]);
    eq!(out.len(), 1);
    eq!(out[0].1, "start-end");
    let t = DateTime::parse_from_rfc3339(&out[0].0).unwrap();
    assert!(
        t <= released,
        "{t} is the time of the second half, not the first"
    );
}
