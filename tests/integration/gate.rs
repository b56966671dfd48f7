//! The gate's waits as a user sees them: a recurring job that waits for a group slot or a lock
//! file counts the firings it misses meanwhile, a task queued past its start time sleeps, and the
//! task that frees a slot is not held up by a queued task that does not answer its `wake`.

use crate::util::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// The CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A job firing every 200 ms that cannot start for 1.5 s has missed firings: they are counted.
fn assert_overlaps_counted_while_held_back(tp: &TestPool, job: u64) {
    eq!(wait_for_code(tp, job), 0);
    let info = tp.info(job);
    eq!(info["runs"].as_array().unwrap().len(), 1);
    assert!(
        info["overlaps"].as_u64().unwrap() >= 2,
        "firings while the job waited at the gate were not counted: {info}"
    );
}

fn wait_for_code(tp: &TestPool, id: u64) -> i32 {
    code(&tp.run(["wait", &id.to_string()]))
}

#[test]
fn overlaps_are_counted_while_a_recurring_job_waits_for_a_slot() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    tp.spawn(["--group", "g", "--", "sleep", "1.5"]);
    let job = tp.spawn([
        "--group",
        "g",
        "--every",
        "200ms",
        "--max-runs",
        "1",
        "--",
        "true",
    ]);
    assert_overlaps_counted_while_held_back(&tp, job);
}

#[test]
fn overlaps_are_counted_while_a_recurring_job_waits_for_a_lock() {
    let tp = TestPool::new();
    let lock = tp.scratch().join("lock");
    let l = lock.to_str().unwrap();
    tp.spawn(["--lockfile", l, "--", "sleep", "1.5"]);
    let job = tp.spawn([
        "--lockfile",
        l,
        "--wait-lock",
        "--every",
        "200ms",
        "--max-runs",
        "1",
        "--",
        "true",
    ]);
    assert_overlaps_counted_while_held_back(&tp, job);
}

#[test]
fn a_task_queued_past_its_start_time_does_not_spin() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let holder = tp.spawn(["--group", "g", "--", "sleep", "1.5"]);
    // Due after 100 ms, then queued behind the holder for well over a second.
    let job = tp.spawn([
        "--group", "g", "--delay", "100ms", "--linger", "10s", "--", "true",
    ]);
    let sup = tp.supervisor_pid(job);
    tp.wait_ok(&holder.to_string());
    tp.wait_ok(&job.to_string());
    eq!(tp.info(job)["status"], json!("success"));
    // Start-up, one run and a few wake-ups take a few ticks; a busy loop takes about 100 a second.
    let ticks = cpu_ticks(sup);
    assert!(
        ticks < 30,
        "the queued supervisor used {ticks} ticks of CPU while it waited"
    );
}

#[test]
fn queued_tasks_that_do_not_answer_a_wake_do_not_hold_up_the_task_that_frees_the_slot() {
    let tp = TestPool::new();
    tp.ok(["group", "set", "g", "--parallel", "1"]);
    let holder = tp.spawn(["--group", "g", "--", "sleep", "30"]);
    let queued: Vec<u64> = (0..3)
        .map(|_| tp.spawn(["--group", "g", "--", "true"]))
        .collect();
    // Stopped, their supervisors still hold their locks and listen, but answer nothing: each
    // wake sent to them can only time out.
    let stopped = Stopped(queued.iter().map(|&id| tp.supervisor_pid(id)).collect());
    stopped.signal(libc::SIGSTOP);
    let holder_sup = tp.supervisor_pid(holder);
    tp.ok(["kill", &holder.to_string()]);
    let t0 = Instant::now();
    eq!(wait_for_code(&tp, holder), 143);
    let took = t0.elapsed();
    // Passing over three silent supervisors takes three wake timeouts; the holder's end must not
    // wait for them.
    assert!(
        took < Duration::from_millis(1500),
        "the end of the task that freed the slot took {took:?}"
    );
    drop(stopped);
    // Once the holder's supervisor is gone, the head (watching it) takes the slot, and each
    // queued task wakes the next.
    assert!(
        wait_gone(holder_sup, Duration::from_secs(10)),
        "the holder's supervisor lives on"
    );
    for id in queued {
        tp.wait_ok(&id.to_string());
    }
}

/// Processes stopped (SIGSTOP) until this is dropped, also when the test fails: a stopped
/// supervisor would not hear the pool's clean-up.
struct Stopped(Vec<i32>);

impl Stopped {
    fn signal(&self, sig: libc::c_int) {
        for &pid in &self.0 {
            // SAFETY: kill takes a pid and a signal number; it touches no memory of ours.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
    }
}
