//! Times: the forms `--at`, `--delay`, `--every`, `--backoff` and `--cron` accept, the next firing
//! of a cron expression, and the checks a task's [`Plan`] passes at spawn. The command line and
//! job files both parse through here, so they accept exactly the same forms.
//!
//! Times are local (the `TZ` environment variable, else `/etc/localtime`): [`crate::localtime`]
//! says which instant a wall-clock time means, [`crate::cron`] evaluates cron expressions (with
//! their daylight-saving rules). Every time returned here is shown with the offset the local zone
//! has at that instant.

use crate::cron::Cron;
use crate::error::{Error, ErrorKind, Result};
use crate::localtime::{self, SystemTz, Wall};
use crate::plan::{Backoff, Plan, Repeat};
use crate::record::Timestamp;
use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use std::time::Duration;

/// The `--at` forms, for help texts and error messages.
pub const AT_FORMS: &str = "RFC 3339 (2026-11-24T02:00:00+01:00), a time of day: HH:MM, \
HH:MM:SS, 9am, 9:30pm (the next time the clock shows it), YYYY-MM-DD HH:MM[:SS] (local time), \
or an English form: 'tomorrow 02:00', 'tomorrow 2am', 'monday 9:00' (the coming Monday), \
'next monday 9:00' (the first Monday after today), 'friday 8pm', '2 hours', '3 days 04:00', \
'today 18:00', '24 November 2026 02:00', 'November 24, 2026 2am', '24/11/2026 02:00' (day first)";

/// The `--cron` syntax, for help texts.
pub const CRON_FORMS: &str = "5 fields (minute hour day-of-month month day-of-week) or 6 \
with a leading seconds field, in local time; names (jan, mon), ranges (1-5), steps (*/15, \
1-30/2) and lists (1,15); a day matches when day-of-month OR day-of-week matches (AND when \
either field starts with '*'), as in Vixie cron; @hourly, @daily (@midnight), @weekly, \
@monthly, @yearly (@annually)";

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// Parse an `--at` time relative to `now`. Accepted forms (see also [`AT_FORMS`]):
///
/// - RFC 3339: `2026-11-24T02:00:00+01:00` (or `Z`).
/// - A time of day, `HH:MM`, `HH:MM:SS`, `9am`, `9:30pm`, `12am` (midnight): the next time the
///   clock shows it (today if still ahead, else tomorrow).
/// - `YYYY-MM-DD HH:MM` and `YYYY-MM-DD HH:MM:SS` (also with `T`), in local time.
/// - `next DAY [TIME]`: the first such weekday after today (`next monday 9:00` on a Wednesday is
///   in five days), at TIME (default midnight).
/// - English forms parsed by the `interim` crate, in its UK dialect: `tomorrow 02:00`,
///   `tomorrow 2am`, `monday 9:00` (the coming Monday: today if 9:00 is still ahead), `friday
///   8pm`, `today 18:00`, `2 hours`, `90 minutes`, `3 days`, `3 days 04:00`, `next week`,
///   `24 November 2026 02:00`, `November 24, 2026 2am`, `24/11/2026 02:00` (day first). `in 2
///   hours`, `noon` and `+2h` are not understood.
///
/// A local time the clock shows twice (the fall-back hour) means the first (a time of day alone:
/// the first of the two still ahead); one it skips means the same time moved forward by the
/// length of the gap (02:30 becomes 03:30 where the clock jumps from 02:00 to 03:00). The result
/// carries the offset the local zone has at that instant. Any other time that is not after `now`
/// is refused ([`ErrorKind::InvalidInput`], naming the value).
pub fn parse_at(s: &str, now: DateTime<Local>) -> Result<Timestamp> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(format!("empty time (expected {AT_FORMS})")));
    }
    let now_fixed = localtime::label(&now);
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        at
    } else if let Some(time) = parse_time_of_day(t) {
        next_time_of_day(time, now_fixed)
    } else if t.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return Err(invalid(format!(
            "{s:?} is not a time of day (HH:MM or HH:MM:SS)"
        )));
    } else if let Some(naive) = parse_local_datetime(t) {
        earliest(naive)
    } else {
        let now_tz = now.with_timezone(&SystemTz);
        let text = next_weekday(t, now_tz.date_naive()).unwrap_or_else(|| t.to_owned());
        interim::parse_date_string(&text, now_tz, interim::Dialect::Uk)
            .map_err(|e| {
                invalid(format!(
                    "cannot read time {s:?}: {} (expected {AT_FORMS})",
                    e.with_input(&text)
                ))
            })?
            .fixed_offset()
    };
    let at = localtime::label(&at);
    if at <= now_fixed {
        return Err(invalid(format!(
            "time {s:?} is in the past ({})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(at)
}

/// The instant a local wall-clock time means: the first when the clock shows it twice; when it
/// skips it, the time moved forward by the length of the gap.
fn earliest(naive: NaiveDateTime) -> Timestamp {
    match localtime::resolve(naive) {
        Wall::Single(t) | Wall::Twice(t, _) => t,
        Wall::Skipped { before, .. } => DateTime::from_naive_utc_and_offset(naive - before, before),
    }
}

/// The next time after `now` that the clock shows `time`: today (either showing of a repeated
/// time) if one is still ahead, else tomorrow.
fn next_time_of_day(time: NaiveTime, now: Timestamp) -> Timestamp {
    let today = now.naive_local().date();
    let ahead = match localtime::resolve(today.and_time(time)) {
        Wall::Single(t) => [Some(t), None],
        Wall::Twice(a, b) => [Some(a), Some(b)],
        Wall::Skipped { .. } => [Some(earliest(today.and_time(time))), None],
    };
    ahead
        .into_iter()
        .flatten()
        .find(|t| *t > now)
        .unwrap_or_else(|| earliest(today.succ_opt().unwrap_or(today).and_time(time)))
}

/// A time of day alone: `HH:MM`, `HH:MM:SS`, or a 12-hour clock time `9am`, `9:30 pm`,
/// `12:05:30AM`.
fn parse_time_of_day(t: &str) -> Option<NaiveTime> {
    if t.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return NaiveTime::parse_from_str(t, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok();
    }
    let lower = t.to_ascii_lowercase();
    let (clock, pm) = if let Some(c) = lower.strip_suffix("am") {
        (c.trim_end(), false)
    } else {
        (lower.strip_suffix("pm")?.trim_end(), true)
    };
    let mut parts = clock.split(':');
    let mut number = |max: u32| -> Option<Option<u32>> {
        match parts.next() {
            None => Some(None),
            Some(p) if (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|v| *v <= max).map(Some)
            }
            Some(_) => None,
        }
    };
    let hour = number(12)?.filter(|h| *h >= 1)?;
    let minute = number(59)?.unwrap_or(0);
    let second = number(59)?.unwrap_or(0);
    if parts.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(hour % 12 + if pm { 12 } else { 0 }, minute, second)
}

/// `next DAY [REST]` as a date interim reads (`7 December 2026 REST`): the first DAY after
/// `today`, as GNU date reads it (interim's UK dialect would skip a week).
fn next_weekday(t: &str, today: NaiveDate) -> Option<String> {
    let mut words = t.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("next") {
        return None;
    }
    let day = words.next()?.to_ascii_lowercase();
    let weekday = [
        ("monday", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("thursday", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
        ("sunday", Weekday::Sun),
    ]
    .iter()
    .find(|(name, _)| day.len() >= 3 && name.starts_with(day.as_str()))?
    .1;
    let ahead = (weekday.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
    let date = today + chrono::Duration::days(if ahead == 0 { 7 } else { ahead.into() });
    let rest: Vec<&str> = words.collect();
    Some(
        format!("{} {}", date.format("%-d %B %Y"), rest.join(" "))
            .trim_end()
            .to_owned(),
    )
}

/// `YYYY-MM-DD HH:MM[:SS]`, with a space or a `T`.
fn parse_local_datetime(t: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
}

/// The first time strictly after `after` that the cron expression `expr` matches, in local time,
/// with the daylight-saving rules of [`crate::cron`]; `None` when it never matches again
/// (`0 0 31 2 *`). Syntax: [`CRON_FORMS`].
pub fn cron_next(expr: &str, after: Timestamp) -> Result<Option<Timestamp>> {
    Ok(Cron::parse(expr)?.next_after(after))
}

/// Check a cron expression: it parses and matches some time in the future.
pub fn check_cron(expr: &str) -> Result<()> {
    match cron_next(expr, crate::record::now())? {
        Some(_) => Ok(()),
        None => Err(invalid(format!("cron expression {expr:?} never matches"))),
    }
}

pub use crate::units::parse_duration;

/// A duration that must not be zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(invalid(format!("duration {s:?} must be more than zero"))),
        d => Ok(d),
    }
}

/// A `--backoff` range: `INITIAL..MAX`, two durations with `0 < INITIAL <= MAX` (`1s..5m`).
pub fn parse_backoff(s: &str) -> Result<Backoff> {
    let (a, b) = s.split_once("..").ok_or_else(|| {
        invalid(format!(
            "backoff {s:?} is not of the form INITIAL..MAX (1s..5m)"
        ))
    })?;
    let context = |e: Error| e.context(format!("backoff {s:?}"));
    let backoff = Backoff {
        initial_ms: parse_duration(a).map_err(context)?.as_millis() as u64,
        max_ms: parse_duration(b).map_err(context)?.as_millis() as u64,
    };
    check_backoff(&backoff).map_err(context)?;
    Ok(backoff)
}

fn check_backoff(b: &Backoff) -> Result<()> {
    if b.initial_ms == 0 {
        return Err(invalid("the initial delay must be at least 1 ms".into()));
    }
    if b.max_ms < b.initial_ms {
        return Err(invalid(format!(
            "the largest delay ({} ms) is below the initial one ({} ms)",
            b.max_ms, b.initial_ms
        )));
    }
    Ok(())
}

/// Check a group name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_group_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "bad group name {name:?}: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'"
        )))
    }
}

/// Check a plan's times and expressions at spawn: the cron expression parses and fires again,
/// the interval is not zero, the start time is not in the past (1 s of slack), the group name is
/// valid, the backoff is a range, `max_runs` and the timeouts are not zero.
pub fn check_plan(plan: &Plan) -> Result<()> {
    match &plan.repeat {
        Some(Repeat::Cron(expr)) => check_cron(expr)?,
        Some(Repeat::Every { every_ms: 0, .. }) => {
            return Err(invalid(
                "the interval of --every must be more than zero".into(),
            ))
        }
        _ => {}
    }
    if let Some(at) = plan.start_at {
        if at < crate::record::now() - chrono::Duration::seconds(1) {
            return Err(invalid(format!(
                "start time {} is in the past",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
    }
    if let Some(g) = &plan.group {
        check_group_name(g)?;
    }
    if let Some(b) = &plan.backoff {
        check_backoff(b).map_err(|e| e.context("backoff"))?;
    }
    if plan.max_runs == Some(0) {
        return Err(invalid("max runs must be at least 1".into()));
    }
    if plan.timeout_ms == Some(0) {
        return Err(invalid("the timeout must be more than zero".into()));
    }
    if plan.hooks.timeout_ms == Some(0) {
        return Err(invalid("the hook timeout must be more than zero".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Hooks;
    use chrono::TimeZone;

    /// A local time on the machine running the tests.
    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
    }

    fn naive(t: Timestamp) -> String {
        t.naive_local().format("%Y-%m-%d %H:%M:%S").to_string()
    }

    #[test]
    fn at_accepts_rfc3339_shown_in_local_time() {
        let now = local(2026, 3, 13, 15, 0);
        let at = parse_at("2026-11-24T02:00:00+01:00", now).unwrap();
        let want = DateTime::parse_from_rfc3339("2026-11-24T01:00:00Z").unwrap();
        assert_eq!(at, want);
        assert_eq!(*at.offset(), *localtime::label(&want).offset());
    }

    #[test]
    fn at_clock_time_is_the_next_time_the_clock_shows_it() {
        let now = local(2026, 3, 13, 15, 0);
        assert_eq!(
            naive(parse_at("18:30", now).unwrap()),
            "2026-03-13 18:30:00"
        );
        assert_eq!(
            naive(parse_at("14:59:30", now).unwrap()),
            "2026-03-14 14:59:30"
        );
        assert_eq!(
            naive(parse_at("15:00", now).unwrap()),
            "2026-03-14 15:00:00"
        );
    }

    #[test]
    fn at_accepts_local_dates_and_friendly_forms() {
        let now = local(2026, 3, 13, 15, 0); // a Friday
        let cases = [
            ("2026-11-24 02:00", "2026-11-24 02:00:00"),
            ("2026-11-24 02:00:07", "2026-11-24 02:00:07"),
            ("2026-11-24T02:00", "2026-11-24 02:00:00"),
            ("tomorrow 02:00", "2026-03-14 02:00:00"),
            ("tomorrow 2am", "2026-03-14 02:00:00"),
            ("monday 9:00", "2026-03-16 09:00:00"),
            ("next monday 9:00", "2026-03-16 09:00:00"),
            ("next friday 9:00", "2026-03-20 09:00:00"),
            ("next fri", "2026-03-20 00:00:00"),
            ("next monday 9am", "2026-03-16 09:00:00"),
            ("Next Sunday 8:30pm", "2026-03-15 20:30:00"),
            ("9am", "2026-03-14 09:00:00"),
            ("9:30 PM", "2026-03-13 21:30:00"),
            ("12am", "2026-03-14 00:00:00"),
            ("12:15:30pm", "2026-03-14 12:15:30"),
            ("friday 8pm", "2026-03-13 20:00:00"),
            ("friday", "2026-03-20 00:00:00"),
            ("today 18:00", "2026-03-13 18:00:00"),
            ("6pm", "2026-03-13 18:00:00"),
            ("2 hours", "2026-03-13 17:00:00"),
            ("90 minutes", "2026-03-13 16:30:00"),
            ("3 days 04:00", "2026-03-16 04:00:00"),
            ("24 November 2026 02:00", "2026-11-24 02:00:00"),
            ("November 24, 2026 2am", "2026-11-24 02:00:00"),
            ("24/11/2026 02:00", "2026-11-24 02:00:00"),
        ];
        for (input, want) in cases {
            let got = parse_at(input, now).map(naive);
            assert_eq!(got.as_deref().ok(), Some(want), "input {input:?}: {got:?}");
        }
    }

    #[test]
    fn at_refuses_the_past_and_nonsense_naming_the_value() {
        let now = local(2026, 3, 13, 15, 0);
        for bad in [
            "2020-01-01T00:00:00Z",
            "2026-03-13 14:00",
            "2 days ago",
            "noon",
            "in 2 hours",
            "25:00",
            "",
        ] {
            let e = parse_at(bad, now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.message().contains(&format!("{bad:?}")) || bad.is_empty(),
                "{e}"
            );
            assert!(!e.message().contains('\n'), "{e}");
        }
        assert!(parse_at("2020-01-01T00:00:00Z", now)
            .unwrap_err()
            .message()
            .contains("in the past"));
    }

    /// The next four firings of `expr` after `after`, as RFC 3339 in local time.
    fn next_after(expr: &str, after: &str) -> Vec<String> {
        let mut t = DateTime::parse_from_rfc3339(after).unwrap();
        let mut out = Vec::new();
        for _ in 0..4 {
            match cron_next(expr, t).unwrap() {
                Some(n) => {
                    out.push(n.to_rfc3339());
                    t = n;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn cron_day_of_month_or_day_of_week() {
        // Every 13th AND every Friday (1 March 2026 is a Sunday; 13 April a Monday).
        let mut t = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap();
        let mut days = Vec::new();
        while days.len() < 8 {
            t = cron_next("0 12 13 * 5", t).unwrap().unwrap();
            days.push(t.naive_local().format("%a %d").to_string());
        }
        assert_eq!(
            days,
            ["Fri 06", "Fri 13", "Fri 20", "Fri 27", "Fri 03", "Fri 10", "Mon 13", "Fri 17"]
        );
        // A day-of-month starting with '*' makes it AND, as in Vixie cron: odd days (1, 3, …)
        // that are Fridays.
        let mut t = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap();
        let mut days = Vec::new();
        while days.len() < 3 {
            t = cron_next("0 12 */2 * fri", t).unwrap().unwrap();
            days.push(t.naive_local().format("%a %d").to_string());
        }
        assert_eq!(days, ["Fri 13", "Fri 27", "Fri 03"]);
    }

    #[test]
    fn cron_is_strictly_after_and_accepts_seconds_names_and_nicknames() {
        let after = "2026-03-01T00:00:00+00:00";
        let t = DateTime::parse_from_rfc3339(after).unwrap();
        // Naive local results, whatever the machine's zone: compare in local time.
        let next = |e: &str| naive(cron_next(e, t).unwrap().unwrap());
        let base = t.with_timezone(&SystemTz).naive_local();
        let n =
            |e: &str| NaiveDateTime::parse_from_str(&next(e), "%Y-%m-%d %H:%M:%S").unwrap() - base;
        assert_eq!(n("*/15 * * * * *"), chrono::Duration::seconds(15));
        assert!(n("* * * * *") <= chrono::Duration::seconds(60));
        assert!(n("* * * * *") > chrono::Duration::zero());
        assert_eq!(next("@yearly")[5..], *"01-01 00:00:00");
        assert_eq!(next("@monthly")[8..], *"01 00:00:00");
        assert!(next("@daily").ends_with("00:00:00"));
        assert!(next("@hourly").ends_with(":00:00"));
        let weekly = cron_next("@weekly", t).unwrap().unwrap();
        assert_eq!(
            weekly.naive_local().format("%a %T").to_string(),
            "Sun 00:00:00"
        );
        let jan = cron_next("0 9 * jan-mar mon-fri", t).unwrap().unwrap();
        assert_eq!(jan.naive_local().format("%T").to_string(), "09:00:00");
        assert!(matches!(
            jan.naive_local().format("%a").to_string().as_str(),
            "Mon" | "Tue" | "Wed" | "Thu" | "Fri"
        ));
        assert_eq!(next_after("0 0 31 2 *", after), Vec::<String>::new());
    }

    #[test]
    fn cron_refuses_bad_expressions_naming_them() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "0 0 * * * * 2026",
            "bananas",
            "@often",
        ] {
            let e = check_cron(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
        let e = check_cron("0 0 31 2 *").unwrap_err();
        assert!(e.message().contains("never matches"), "{e}");
        check_cron("0 2 * * *").unwrap();
        check_cron("30 0 2 * * mon").unwrap();
    }

    #[test]
    fn durations_accept_seconds_and_units() {
        let d = |s| parse_duration(s).ok();
        assert_eq!(d("90"), Some(Duration::from_secs(90)));
        assert_eq!(d("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("1h30m"), Some(Duration::from_secs(5400)));
        for bad in ["", "soon", "1.2.3", "-5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_positive_duration("0").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn backoff_is_a_range() {
        assert_eq!(
            parse_backoff("1s..5m").unwrap(),
            Backoff {
                initial_ms: 1000,
                max_ms: 300_000
            }
        );
        assert_eq!(parse_backoff("200ms..200ms").unwrap().max_ms, 200);
        for bad in ["1s", "5m..1s", "0..1s", "..", "x..1s"] {
            let e = parse_backoff(bad).unwrap_err();
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn group_names() {
        for good in ["nightly", "a", "db.backup_2-x", &"g".repeat(64)] {
            check_group_name(good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "with space", "é", &"g".repeat(65)] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plans_are_checked() {
        check_plan(&Plan::default()).unwrap();
        let ok = Plan {
            group: Some("nightly".into()),
            repeat: Some(Repeat::Cron("0 2 * * *".into())),
            after: vec![1],
            start_at: Some(crate::record::now()),
            max_runs: Some(3),
            ..Plan::default()
        };
        check_plan(&ok).unwrap();
        let past = crate::record::now() - chrono::Duration::seconds(5);
        let bad = [
            Plan {
                repeat: Some(Repeat::Cron("nope".into())),
                ..Plan::default()
            },
            Plan {
                repeat: Some(Repeat::Every {
                    every_ms: 0,
                    now: false,
                }),
                ..Plan::default()
            },
            Plan {
                start_at: Some(past),
                ..Plan::default()
            },
            Plan {
                group: Some(".x".into()),
                ..Plan::default()
            },
            Plan {
                backoff: Some(Backoff {
                    initial_ms: 0,
                    max_ms: 10,
                }),
                ..Plan::default()
            },
            Plan {
                backoff: Some(Backoff {
                    initial_ms: 10,
                    max_ms: 5,
                }),
                ..Plan::default()
            },
            Plan {
                max_runs: Some(0),
                ..Plan::default()
            },
            Plan {
                timeout_ms: Some(0),
                ..Plan::default()
            },
            Plan {
                hooks: Hooks {
                    timeout_ms: Some(0),
                    ..Hooks::default()
                },
                ..Plan::default()
            },
        ];
        for plan in bad {
            let e = check_plan(&plan).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{plan:?}");
        }
    }
}
