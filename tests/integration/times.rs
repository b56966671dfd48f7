//! Times through the CLI, as a user in Berlin sees them: the wall time at which the clock falls
//! back, a past `9am`, and the cron syntax of Vixie cron (docs/jobs.md). The library's own tests
//! (`taskpool/tests/times_*.rs`) compare thousands of cases against a reference.

use crate::util::*;
use chrono::Datelike;
use serde_json::{json, Value};

/// Berlin, by name where the system has the zone, else by its POSIX rule.
fn berlin() -> &'static str {
    if std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        "Europe/Berlin"
    } else {
        "CET-1CEST,M3.5.0,M10.5.0/3"
    }
}

/// `taskpool ARGS` with TZ set to Berlin.
fn run_in_berlin(tp: &TestPool, args: &[&str]) -> std::process::Output {
    tp.cmd()
        .env("TZ", berlin())
        .args(args)
        .output()
        .expect("run taskpool")
}

#[test]
fn at_the_wall_time_where_the_clock_falls_back_starts_after_the_change() {
    let tp = TestPool::new();
    // The next year whose 31 October is a Sunday: Berlin's clocks fall back at 03:00 that day.
    let mut year = chrono::Local::now().year() + 1;
    while chrono::NaiveDate::from_ymd_opt(year, 10, 31)
        .unwrap()
        .weekday()
        != chrono::Weekday::Sun
    {
        year += 1;
    }
    let at = format!("{year}-10-31 03:00");
    let out = run_in_berlin(&tp, &["spawn", "--at", &at, "--", "true"]);
    eq!(code(&out), 0);
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let info = tp.info(id);
    eq!(info["state"], json!("scheduled"));
    eq!(
        info["next_start"],
        json!(format!("{year}-10-31T03:00:00+01:00"))
    );
}

#[test]
fn a_past_9am_is_tomorrow_as_a_past_09_00_is() {
    let tp = TestPool::new();
    // Whatever the time now, both spellings name the same next 09:00 (never the past).
    let mut starts = Vec::new();
    for at in ["9am", "09:00"] {
        let out = tp.run(["spawn", "--at", at, "--", "true"]);
        eq!(code(&out), 0);
        let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        starts.push(tp.info(id)["next_start"].clone());
    }
    eq!(starts[0], starts[1]);
    assert!(
        starts[0].as_str().unwrap().contains("T09:00:00"),
        "{starts:?}"
    );
}

#[test]
fn cron_follows_vixie_syntax_and_names_the_field_at_fault() {
    let tp = TestPool::new();
    for (expr, want) in [
        ("1,2,,3 * * * *", "empty list item in the minute field"),
        ("0 24 * * *", "24 is out of range for the hour field"),
        (
            "0 0 L * *",
            "'L' in the day-of-month field is not supported",
        ),
    ] {
        let out = tp.run(["spawn", "--cron", expr, "--", "true"]);
        eq!(code(&out), 2);
        let err = stderr(&out);
        assert!(err.contains(want), "{expr}: {err}");
    }
    for expr in ["@midnight", "0 0 *,13 * 5"] {
        let out = run_in_berlin(&tp, &["spawn", "--cron", expr, "--", "true"]);
        eq!(code(&out), 0);
        let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let next: Value = tp.info(id)["next_start"].clone();
        assert!(
            next.as_str().unwrap().contains("T00:00:00"),
            "{expr}: {next}"
        );
    }
}
