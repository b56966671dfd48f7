//! Regression tests for the times that outside checks (a Vixie-cron reference, croniter, GNU
//! `date -d`) found wrong: each runs the library in a child process whose `TZ` is the zone named.

mod reference;

use chrono::{DateTime, Local};
use reference::{child_zone, run_in_zone, Zone, BERLIN, LORD_HOWE, NEW_YORK, UTC};
use taskpool::schedule::{check_cron, cron_next, parse_at};

/// `--at TEXT` at `now` (RFC 3339), as RFC 3339 in local time, or the error message.
fn at(text: &str, now: &str) -> Result<String, String> {
    let now = DateTime::parse_from_rfc3339(now)
        .unwrap()
        .with_timezone(&Local);
    parse_at(text, now)
        .map(|t| t.to_rfc3339())
        .map_err(|e| e.message().to_owned())
}

/// The next firing of `expr` after `after` (RFC 3339), as RFC 3339 in local time.
fn cron(expr: &str, after: &str) -> String {
    let after = DateTime::parse_from_rfc3339(after).unwrap();
    cron_next(expr, after).unwrap().unwrap().to_rfc3339()
}

/// Declare a test that runs its body in a child process with `TZ` set to `$zone`.
macro_rules! in_zone {
    ($name:ident, $child:ident, $zone:expr, $body:block) => {
        #[test]
        fn $name() {
            let zone: Zone = $zone;
            run_in_zone(stringify!($child), &zone, zone.tz_value());
        }

        #[test]
        #[ignore = "run in a child with TZ set"]
        fn $child() {
            if child_zone().is_none() {
                return;
            }
            $body
        }
    };
}

in_zone!(
    fall_back_wall_time_is_not_the_instant_of_the_change_berlin,
    fall_back_berlin_child,
    BERLIN,
    {
        let want = "2027-10-31T03:00:00+01:00";
        assert_eq!(cron("0 3 31 10 *", "2027-10-30T12:00:00+02:00"), want);
        assert_eq!(
            at("2027-10-31 03:00", "2027-10-30T12:00:00+02:00").as_deref(),
            Ok(want)
        );
        // The fixed-time job at the wall time of the change, from inside the repeated hour.
        assert_eq!(cron("0 3 * * *", "2027-10-31T02:30:00+01:00"), want);
    }
);

in_zone!(
    fall_back_wall_time_is_not_the_instant_of_the_change_new_york,
    fall_back_new_york_child,
    NEW_YORK,
    {
        let want = "2027-11-07T02:00:00-05:00";
        assert_eq!(cron("0 2 7 11 *", "2027-11-06T12:00:00-04:00"), want);
        assert_eq!(
            at("2027-11-07 02:00", "2027-11-06T12:00:00-04:00").as_deref(),
            Ok(want)
        );
    }
);

in_zone!(
    fall_back_wall_time_is_not_the_instant_of_the_change_lord_howe,
    fall_back_lord_howe_child,
    LORD_HOWE,
    {
        let want = "2027-04-04T02:00:00+10:30";
        assert_eq!(cron("0 2 4 4 *", "2027-04-03T12:00:00+11:00"), want);
        assert_eq!(
            at("2027-04-04 02:00", "2027-04-03T12:00:00+11:00").as_deref(),
            Ok(want)
        );
        // 01:30-02:00 is shown twice: an interval job fires in both passes.
        let after = "2027-04-04T01:50:00+11:00";
        assert_eq!(cron("*/10 * * * *", after), "2027-04-04T01:30:00+10:30");
        assert_eq!(cron("50 1 * * *", after), "2027-04-05T01:50:00+10:30");
    }
);

in_zone!(
    interval_job_has_no_firings_in_the_skipped_hour,
    interval_job_skipped_hour_child,
    BERLIN,
    {
        // 28 March 2027: 02:00 CET becomes 03:00 CEST. The interval job's hour is skipped.
        assert_eq!(
            cron("*/15 2 28 3 *", "2027-03-27T12:00:00+01:00"),
            "2028-03-28T02:00:00+02:00"
        );
        assert_eq!(
            cron("0,30 2 * * *", "2027-03-28T01:00:00+01:00"),
            "2027-03-29T02:00:00+02:00"
        );
        // A fixed-time job whose time is skipped runs once, just after the gap.
        assert_eq!(
            cron("30 2 * * *", "2027-03-27T12:00:00+01:00"),
            "2027-03-28T03:00:00+02:00"
        );
    }
);

in_zone!(
    a_time_inside_a_gap_is_shown_with_an_offset_the_zone_has,
    time_inside_a_gap_child,
    BERLIN,
    {
        let now = "2027-03-27T12:00:00+01:00";
        for text in [
            "2027-03-28T02:30:00+01:00",
            "2027-03-28 02:30",
            "tomorrow 02:30",
            "28 March 2027 2:30am",
        ] {
            assert_eq!(
                at(text, now).as_deref(),
                Ok("2027-03-28T03:30:00+02:00"),
                "{text}"
            );
        }
    }
);

in_zone!(
    a_time_inside_a_half_hour_gap_moves_by_half_an_hour,
    half_hour_gap_child,
    LORD_HOWE,
    {
        // 3 October 2027: 02:00 becomes 02:30.
        let now = "2027-10-02T12:00:00+10:30";
        assert_eq!(
            at("2027-10-03 02:10", now).as_deref(),
            Ok("2027-10-03T02:40:00+11:00")
        );
        assert_eq!(cron("10 2 * * *", now), "2027-10-03T02:30:00+11:00");
    }
);

in_zone!(next_monday_is_the_coming_one, next_monday_child, UTC, {
    // 2 December 2026 is a Wednesday; 7 December a Monday.
    let wednesday = "2026-12-02T12:00:00Z";
    assert_eq!(
        at("next monday 9:00", wednesday).as_deref(),
        Ok("2026-12-07T09:00:00+00:00")
    );
    assert_eq!(
        at("monday 9:00", wednesday).as_deref(),
        Ok("2026-12-07T09:00:00+00:00")
    );
    // On a Monday, `next monday` is a week later.
    assert_eq!(
        at("next monday 9:00", "2026-12-07T08:00:00Z").as_deref(),
        Ok("2026-12-14T09:00:00+00:00")
    );
});

in_zone!(a_past_9am_rolls_over_like_09_00, past_9am_child, UTC, {
    let now = "2026-12-02T12:00:00Z";
    for text in ["9am", "09:00", "9:00 AM", "9:00:00am"] {
        assert_eq!(
            at(text, now).as_deref(),
            Ok("2026-12-03T09:00:00+00:00"),
            "{text}"
        );
    }
    assert_eq!(at("6pm", now).as_deref(), Ok("2026-12-02T18:00:00+00:00"));
});

in_zone!(cron_syntax_as_vixie_cron, cron_syntax_child, UTC, {
    let after = "2026-12-02T12:00:00Z";
    let refused = |expr: &str| check_cron(expr).unwrap_err().message().to_owned();
    assert!(refused("1,2,,3 * * * *").contains("empty list item in the minute field"));
    // `*` in a list, and @midnight.
    assert_eq!(cron("0 0 *,13 * 5", after), "2026-12-04T00:00:00+00:00");
    assert_eq!(cron("@midnight", after), "2026-12-03T00:00:00+00:00");
    for (expr, field) in [
        ("0 0 L * *", "day-of-month"),
        ("0 0 * * 5#2", "day-of-week"),
        ("0 0 15W * *", "day-of-month"),
        ("0 0 ? * 1", "day-of-month"),
    ] {
        let e = refused(expr);
        assert!(
            e.contains(&format!("in the {field} field is not supported")),
            "{e}"
        );
    }
    for (expr, want) in [
        ("0 24 * * *", "24 is out of range for the hour field (0-23)"),
        (
            "0 0 32 * *",
            "32 is out of range for the day-of-month field (1-31)",
        ),
        (
            "0 0 * 13 *",
            "13 is out of range for the month field (1-12)",
        ),
        (
            "0 0 * * 8",
            "8 is out of range for the day-of-week field (0-7)",
        ),
        (
            "60 * * * *",
            "60 is out of range for the minute field (0-59)",
        ),
    ] {
        let e = refused(expr);
        assert!(e.contains(want), "{expr}: {e}");
    }
});
