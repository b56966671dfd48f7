//! Times: the forms `--at`, `--delay`, `--every`, `--backoff` and `--cron` accept, the next firing
//! of a cron expression, and the checks a task's [`Plan`] passes at spawn. The command line and
//! job files both parse through here, so they accept exactly the same forms.
//!
//! # Cron and daylight saving time
//!
//! Cron expressions are evaluated in local time (the `TZ` environment variable, else
//! `/etc/localtime`) by the [`croner`] crate. Around a DST change:
//!
//! - **Spring forward** (clocks jump from 02:00 to 03:00): a *fixed-time* job (single values in
//!   the second, minute and hour fields, e.g. `30 2 * * *`) whose time falls in the skipped hour
//!   runs once, at the first instant after the gap (03:00). An *interval* job (`*/30 * * * *`,
//!   `0 * * * *`) simply has no firings in the skipped hour.
//! - **Fall back** (clocks go from 03:00 back to 02:00): a fixed-time job runs once, at the first
//!   of the two 02:30s (still summer time). An interval job fires in both passes of the repeated
//!   hour.
//!
//! (chrono's `Local` returns the two readings of a repeated local time in the wrong order,
//! chrono issue 1625; [`SystemTz`] puts them right before croner sees them.)

use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Backoff, Plan, Repeat};
use crate::record::Timestamp;
use chrono::offset::{LocalResult, MappedLocalTime};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use croner::parser::{CronParser, Seconds, Year};
use std::time::Duration;

/// The `--at` forms, for help texts and error messages.
pub const AT_FORMS: &str = "RFC 3339 (2026-11-24T02:00:00+01:00), HH:MM or HH:MM:SS (the next \
time the clock shows it), YYYY-MM-DD HH:MM[:SS] (local time), or an English form: \
'tomorrow 02:00', 'tomorrow 2am', 'monday 9:00' (the coming Monday), 'next monday 9:00' (the \
Monday of next week), 'friday 8pm', '2 hours', '3 days 04:00', 'today 18:00', \
'24 November 2026 02:00', 'November 24, 2026 2am', '24/11/2026 02:00' (day first)";

/// The `--cron` syntax, for help texts.
pub const CRON_FORMS: &str = "5 fields (minute hour day-of-month month day-of-week) or 6 \
with a leading seconds field, in local time; names (jan, mon), ranges (1-5), steps (*/15, \
1-30/2) and lists (1,15); a day matches when day-of-month OR day-of-week matches (AND when \
either field starts with '*'), as in Vixie cron; @hourly, @daily, @weekly, @monthly, @yearly";

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// The system's local time zone, as chrono's [`Local`], except that the two readings of a repeated
/// local time (the fall-back hour) come earliest first, as [`TimeZone`] promises (chrono issue
/// 1625: `Local` returns them the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemTz;

impl TimeZone for SystemTz {
    type Offset = FixedOffset;

    fn from_offset(_: &FixedOffset) -> Self {
        SystemTz
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<FixedOffset> {
        match Local.offset_from_local_datetime(local) {
            // Of two readings of one wall-clock time, the larger offset is the earlier instant.
            LocalResult::Ambiguous(a, b) if a.local_minus_utc() < b.local_minus_utc() => {
                LocalResult::Ambiguous(b, a)
            }
            other => other,
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
        Local.offset_from_utc_date(utc).fix()
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
        Local.offset_from_utc_datetime(utc).fix()
    }
}

/// The instant a local wall-clock time means: the earlier one when the clock shows it twice; when
/// it never shows it (skipped by a spring-forward change), the same time an hour later.
fn resolve_local(naive: NaiveDateTime) -> Option<Timestamp> {
    SystemTz
        .from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            SystemTz
                .from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.fixed_offset())
}

/// Parse an `--at` time relative to `now`. Accepted forms (see also [`AT_FORMS`]):
///
/// - RFC 3339: `2026-11-24T02:00:00+01:00` (or `Z`).
/// - `HH:MM` and `HH:MM:SS`: the next time the clock shows it (today if still ahead, else
///   tomorrow).
/// - `YYYY-MM-DD HH:MM` and `YYYY-MM-DD HH:MM:SS` (also with `T`), in local time.
/// - English forms parsed by the `interim` crate, in its UK dialect: `tomorrow 02:00`,
///   `tomorrow 2am`, `monday 9:00` (the coming Monday), `next monday 9:00` (the Monday of next
///   week), `friday 8pm`, `today 18:00`, `6pm` (today), `2 hours`, `90 minutes`, `3 days`,
///   `3 days 04:00`, `next week`, `24 November 2026 02:00`, `November 24, 2026 2am`,
///   `24/11/2026 02:00` (day first). `in 2 hours`, `noon` and `+2h` are not understood.
///
/// A local time the clock shows twice (the fall-back hour) means the first; one it skips means
/// the same time an hour later. A time that is not after `now` is refused
/// ([`ErrorKind::InvalidInput`], naming the value).
pub fn parse_at(s: &str, now: DateTime<Local>) -> Result<Timestamp> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(format!("empty time (expected {AT_FORMS})")));
    }
    let now_fixed = now.fixed_offset();
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        at
    } else if t.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        let time = parse_clock(t)
            .ok_or_else(|| invalid(format!("{s:?} is not a time of day (HH:MM or HH:MM:SS)")))?;
        let today = now.date_naive();
        let at = resolve_local(today.and_time(time))
            .filter(|at| *at > now_fixed)
            .or_else(|| resolve_local(today.succ_opt()?.and_time(time)));
        at.ok_or_else(|| invalid(format!("time {s:?} does not exist in the local time zone")))?
    } else if let Some(naive) = parse_local_datetime(t) {
        resolve_local(naive)
            .ok_or_else(|| invalid(format!("time {s:?} does not exist in the local time zone")))?
    } else {
        interim::parse_date_string(t, now, interim::Dialect::Uk)
            .map_err(|e| {
                invalid(format!(
                    "cannot read time {s:?}: {} (expected {AT_FORMS})",
                    e.with_input(t)
                ))
            })?
            .fixed_offset()
    };
    if at <= now_fixed {
        return Err(invalid(format!(
            "time {s:?} is in the past ({})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(at)
}

/// `HH:MM` or `HH:MM:SS`.
fn parse_clock(t: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(t, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
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

/// The cron parser: an optional leading seconds field, no year field, Vixie's day rule (day of
/// month OR day of week, unless either field starts with `*`: then AND).
fn parse_cron(expr: &str) -> Result<croner::Cron> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let star_day = fields.len() >= 5 && {
        let (dom, dow) = (fields[fields.len() - 3], fields[fields.len() - 1]);
        dom.starts_with('*') || dow.starts_with('*')
    };
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(star_day)
        .build()
        .parse(expr)
        .map_err(|e| invalid(format!("bad cron expression {expr:?}: {e}")))
}

/// The first time strictly after `after` that the cron expression `expr` matches, in local time
/// (see the module docs for the DST rule); `None` when it never matches again (`0 0 31 2 *`).
/// Syntax: [`CRON_FORMS`]; croner's extensions (`L`, `W`, `#`) are accepted too.
pub fn cron_next(expr: &str, after: Timestamp) -> Result<Option<Timestamp>> {
    let cron = parse_cron(expr)?;
    match cron.find_next_occurrence(&after.with_timezone(&SystemTz), false) {
        // Croner may label an instant with the offset of the other side of a DST change:
        // take the offset the zone really has at that instant.
        Ok(t) => Ok(Some(
            SystemTz.from_utc_datetime(&t.naive_utc()).fixed_offset(),
        )),
        Err(croner::errors::CronError::TimeSearchLimitExceeded) => Ok(None),
        Err(e) => Err(invalid(format!(
            "cron expression {expr:?}: no next time after {after}: {e}"
        ))),
    }
}

/// Check a cron expression: it parses and matches some time in the future.
pub fn check_cron(expr: &str) -> Result<()> {
    match cron_next(expr, crate::record::now())? {
        Some(_) => Ok(()),
        None => Err(invalid(format!("cron expression {expr:?} never matches"))),
    }
}

/// A duration: plain seconds (`90`, `1.5`) or numbers with units (`500ms`, `10s`, `5m`, `1h`,
/// `1h30m`, `2days`), as the `humantime` crate reads them.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return t
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| invalid(format!("{s:?} is not a number of seconds")));
    }
    humantime::parse_duration(t).map_err(|e| {
        invalid(format!(
            "bad duration {s:?}: {e} (expected seconds such as 90, or 500ms, 10s, 5m, 1h)"
        ))
    })
}

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
    fn at_accepts_rfc3339() {
        let now = local(2026, 3, 13, 15, 0);
        let at = parse_at("2026-11-24T02:00:00+01:00", now).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-24T02:00:00+01:00");
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
            ("next monday 9:00", "2026-03-23 09:00:00"),
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

    /// Run `test` in a child test process whose local time zone is Central European Time.
    fn in_berlin(test: &str) {
        if std::env::var_os("TASKPOOL_TEST_IN_TZ").is_some() {
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--ignored", "--nocapture"])
            .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
            .env("TASKPOOL_TEST_IN_TZ", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{test} failed in TZ=CET:\n{text}");
        assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
    }

    #[test]
    fn cron_dst_spring_forward() {
        in_berlin("schedule::tests::cron_dst_spring_forward_in_tz");
    }

    #[test]
    #[ignore = "run by cron_dst_spring_forward in a child with TZ set"]
    fn cron_dst_spring_forward_in_tz() {
        // 29 March 2026: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            next_after("30 2 * * *", "2026-03-28T12:00:00+01:00")[..2],
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // An interval job has no firings in the skipped hour: 02:00 CET is 03:00 CEST.
        assert_eq!(
            next_after("*/30 * * * *", "2026-03-29T01:50:00+01:00"),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T04:30:00+02:00",
            ]
        );
    }

    #[test]
    fn cron_dst_fall_back() {
        in_berlin("schedule::tests::cron_dst_fall_back_in_tz");
    }

    #[test]
    #[ignore = "run by cron_dst_fall_back in a child with TZ set"]
    fn cron_dst_fall_back_in_tz() {
        // 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-03:00 happens twice.
        assert_eq!(
            next_after("30 2 * * *", "2026-10-24T12:00:00+02:00")[..2],
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        assert_eq!(
            next_after("*/30 * * * *", "2026-10-25T01:50:00+02:00"),
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
            ]
        );
        // `--at` of a repeated time means the first; of a skipped time, an hour later.
        let now = local(2026, 10, 24, 12, 0);
        assert_eq!(
            parse_at("2026-10-25 02:30", now).unwrap().to_rfc3339(),
            "2026-10-25T02:30:00+02:00"
        );
        let now = local(2026, 3, 28, 12, 0);
        assert_eq!(
            parse_at("2026-03-29 02:30", now).unwrap().to_rfc3339(),
            "2026-03-29T03:30:00+02:00"
        );
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
