//! Cron expressions (`--cron`, a job file's `cron`): the syntax of Vixie cron, evaluated in local
//! time, with the daylight-saving rules of `docs/jobs.md`.
//!
//! Five fields (minute, hour, day of month, month, day of week) or six with a leading seconds
//! field. Each field is a comma-separated list of items; an item is `*`, a value, or a range
//! `A-B`, optionally with a step (`*/15`, `1-30/2`). Months and days of
//! the week may be named (`jan`, `mon`), and a day of the week may be 0 to 7 (0 and 7 are
//! Sunday). When both day fields are restricted a day matches if either matches; when either day
//! field starts with `*`, both must match. `@yearly` (`@annually`), `@monthly`, `@weekly`,
//! `@daily` (`@midnight`) and `@hourly` stand for their five fields. Quartz's `L`, `W`, `#` and
//! `?` are refused.
//!
//! # Daylight saving time
//!
//! A *fixed-time* job has a single value in each of its second, minute and hour fields
//! (`30 2 * * *`; a five-field expression's second is 0); any other is an *interval* job.
//!
//! - A wall-clock time the clock skips (spring forward): a fixed-time job runs once at the first
//!   instant after the gap; an interval job has no firings for the skipped times.
//! - A wall-clock time the clock shows twice (fall back): a fixed-time job runs at the first of
//!   the two instants only; an interval job runs at both.

use crate::error::{Error, ErrorKind, Result};
use crate::localtime::{self, Wall};
use crate::record::Timestamp;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// How far ahead a firing is looked for: one full cycle of the Gregorian calendar.
const HORIZON_DAYS: i64 = 146_097;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Either day field starts with `*`: a day must match both.
    day_and: bool,
    /// Single values in the second, minute and hour fields.
    fixed_time: bool,
}

/// One field of the expression: its name in messages, its bounds, its names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    /// One value: a number within bounds, or a name.
    fn value(&self, s: &str) -> std::result::Result<u32, String> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Months are named from 1, days of the week from 0.
            return Ok(i as u32 + if self.min == 1 { 1 } else { 0 });
        }
        if let Some(c) = s.chars().find(|c| matches!(c, 'L' | 'W' | '#' | '?')) {
            return Err(format!(
                "{c:?} in the {} field is not supported (Vixie cron syntax only)",
                self.name
            ));
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(if s.is_empty() {
                format!("a value is missing in the {} field", self.name)
            } else {
                format!("{s:?} is not a value of the {} field", self.name)
            });
        }
        match s.parse::<u32>() {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{s} is out of range for the {} field ({}-{})",
                self.name, self.min, self.max
            )),
        }
    }

    /// The set of values a field's text stands for, as bits.
    fn parse(&self, text: &str) -> std::result::Result<u64, String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(format!("an empty list item in the {} field", self.name));
            }
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => {
                    let step =
                        step.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| {
                            format!("bad step {step:?} in the {} field", self.name)
                        })?;
                    (base, step)
                }
                None => (item, 1),
            };
            let (from, to) = if base == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = base.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!(
                        "range {base} in the {} field goes backwards",
                        self.name
                    ));
                }
                (a, b)
            } else if item.contains('/') {
                return Err(format!(
                    "step {item:?} in the {} field needs '*' or a range before it (*/N, A-B/N)",
                    self.name
                ));
            } else {
                let a = self.value(base)?;
                (a, a)
            };
            for v in (from..=to).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        Ok(bits)
    }
}

/// A plain number or name: what makes a second, minute or hour field fixed.
fn single_value(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The first set bit of `bits` at or after `from`, up to `max`.
fn next_bit(bits: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let rest = bits >> from;
    let n = from + rest.trailing_zeros();
    (rest != 0 && n <= max).then_some(n)
}

impl Cron {
    /// Parse an expression; the error names the field at fault.
    pub fn parse(expr: &str) -> Result<Cron> {
        Self::parse_fields(expr).map_err(|why| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("bad cron expression {expr:?}: {why}"),
            )
        })
    }

    fn parse_fields(expr: &str) -> std::result::Result<Cron, String> {
        let trimmed = expr.trim();
        let nickname = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => Some("0 0 1 1 *"),
            "@monthly" => Some("0 0 1 * *"),
            "@weekly" => Some("0 0 * * 0"),
            "@daily" | "@midnight" => Some("0 0 * * *"),
            "@hourly" => Some("0 * * * *"),
            _ if trimmed.starts_with('@') => {
                return Err(format!(
                    "unknown nickname {trimmed:?} (@yearly, @annually, @monthly, @weekly, \
                     @daily, @midnight, @hourly)"
                ))
            }
            _ => None,
        };
        let mut fields: Vec<&str> = nickname.unwrap_or(trimmed).split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => {
                return Err(format!(
                    "{n} fields, expected 5 (minute hour day-of-month month day-of-week) or 6 \
                     (with a leading second)"
                ))
            }
        }
        let weekdays = WEEKDAY.parse(fields[5])?;
        let cron = Cron {
            seconds: SECOND.parse(fields[0])?,
            minutes: MINUTE.parse(fields[1])?,
            hours: HOUR.parse(fields[2])?,
            days: DAY.parse(fields[3])?,
            months: MONTH.parse(fields[4])?,
            // 7 is Sunday too.
            weekdays: (weekdays | weekdays >> 7) & 0x7f,
            day_and: fields[3].starts_with('*') || fields[5].starts_with('*'),
            fixed_time: fields[..3].iter().all(|f| single_value(f)),
        };
        Ok(cron)
    }

    /// True for a fixed-time job (see the module docs).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & 1 << d.month() == 0 {
            return false;
        }
        let dom = self.days & 1 << d.day() != 0;
        let dow = self.weekdays & 1 << d.weekday().num_days_from_sunday() != 0;
        if self.day_and {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time of day at or after `t` that the time fields match.
    fn time_from(&self, t: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (t.hour(), t.minute(), t.second());
        let mut h = next_bit(self.hours, h0, 23)?;
        loop {
            let mut m = next_bit(self.minutes, if h == h0 { m0 } else { 0 }, 59);
            while let Some(min) = m {
                let from = if h == h0 && min == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, from, 59) {
                    return NaiveTime::from_hms_opt(h, min, s);
                }
                m = next_bit(self.minutes, min + 1, 59);
            }
            h = next_bit(self.hours, h + 1, 23)?;
        }
    }

    /// The first wall-clock time at or after `from` that matches, up to the date `limit`.
    fn next_wall(&self, from: NaiveDateTime, limit: NaiveDate) -> Option<NaiveDateTime> {
        let (mut date, mut time) = (from.date(), from.time());
        while date <= limit {
            if self.day_matches(date) {
                if let Some(t) = self.time_from(time) {
                    return Some(date.and_time(t));
                }
            }
            date = date.succ_opt()?;
            time = NaiveTime::MIN;
        }
        None
    }

    /// The instants at which a matching wall-clock time fires, by the daylight-saving rules.
    fn firings(&self, w: NaiveDateTime) -> Vec<Timestamp> {
        match localtime::resolve(w) {
            Wall::Single(t) => vec![t],
            Wall::Twice(first, _) if self.fixed_time => vec![first],
            Wall::Twice(first, second) => vec![first, second],
            Wall::Skipped { resumes, .. } if self.fixed_time => vec![resumes],
            Wall::Skipped { .. } => vec![],
        }
    }

    /// The first firing strictly after `after`, shown with the local offset at that instant;
    /// `None` when the expression never matches again.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let utc = after.naive_utc();
        let near = localtime::offsets_near(utc);
        let (least, most) = (near[0], near[near.len() - 1]);
        // A wall time shows at `wall - offset`: below `after + least` every instant is past.
        let start = (utc + least).with_nanosecond(0)?;
        let limit = start.date() + Duration::days(HORIZON_DAYS);
        let mut best: Option<Timestamp> = None;
        let mut bound = most;
        let mut from = start;
        while let Some(w) = self.next_wall(from, limit) {
            if let Some(b) = best {
                // Every later wall time shows after `w - bound`, so none can beat `b`.
                if w - bound > b.naive_utc() {
                    break;
                }
            }
            if w - least > utc {
                for t in self.firings(w) {
                    if t > after && best.is_none_or(|b| t < b) {
                        best = Some(t);
                        let near = localtime::offsets_near(t.naive_utc());
                        bound = near[near.len() - 1];
                    }
                }
            }
            from = w + Duration::seconds(1);
        }
        best.map(|t| localtime::label(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(expr: &str) -> String {
        Cron::parse(expr).unwrap_err().message().to_owned()
    }

    #[test]
    fn an_empty_list_item_is_refused_naming_its_field() {
        let e = err("1,2,,3 * * * *");
        assert!(e.contains("empty list item in the minute field"), "{e}");
        assert!(err("0 0 1, * *").contains("day-of-month field"));
    }

    #[test]
    fn a_star_inside_a_list_and_midnight_are_accepted_as_in_vixie_cron() {
        let star = Cron::parse("0 0 *,13 * 5").unwrap();
        // The day of month starts with `*`: AND, so every Friday.
        assert_eq!(star, Cron::parse("0 0 * * 5").unwrap());
        assert_eq!(
            Cron::parse("@midnight").unwrap(),
            Cron::parse("0 0 * * *").unwrap()
        );
        assert_eq!(
            Cron::parse("@annually").unwrap(),
            Cron::parse("@yearly").unwrap()
        );
    }

    #[test]
    fn quartz_extensions_are_refused() {
        for (expr, field) in [
            ("0 0 L * *", "day-of-month"),
            ("0 0 * * 5#2", "day-of-week"),
            ("0 0 15W * *", "day-of-month"),
            ("0 0 ? * 1", "day-of-month"),
            ("0 0 * * 5L", "day-of-week"),
        ] {
            let e = err(expr);
            assert!(e.contains(&format!("the {field} field")), "{expr}: {e}");
            assert!(e.contains("not supported"), "{expr}: {e}");
        }
    }

    #[test]
    fn an_out_of_bounds_value_names_its_field() {
        for (expr, want) in [
            (
                "60 * * * *",
                "60 is out of range for the minute field (0-59)",
            ),
            ("0 24 * * *", "24 is out of range for the hour field (0-23)"),
            (
                "0 0 32 * *",
                "32 is out of range for the day-of-month field (1-31)",
            ),
            (
                "0 0 0 * *",
                "0 is out of range for the day-of-month field (1-31)",
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
                "61 0 0 * * *",
                "61 is out of range for the second field (0-59)",
            ),
            (
                "0 1-70 * * *",
                "70 is out of range for the hour field (0-23)",
            ),
        ] {
            let e = err(expr);
            assert!(e.contains(want), "{expr}: {e}");
            assert!(e.contains(&format!("{expr:?}")), "{expr}: {e}");
        }
    }

    #[test]
    fn other_bad_syntax_is_refused() {
        for bad in [
            "",
            "* * * *",
            "0 0 * * * * 2026",
            "bananas",
            "@often",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "0 0 * foo *",
            "1-/2 * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_mean_what_they_say() {
        let c = Cron::parse("5-59/20 1-3,7 */10 jan-MAR,dec sun,7").unwrap();
        assert_eq!(c.minutes, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(c.hours, 0b1000_1110);
        assert_eq!(c.days, (0..4).map(|k| 1u64 << (1 + 10 * k)).sum::<u64>());
        assert_eq!(c.months, 0b1_0000_0000_1110 | 1 << 12);
        assert_eq!(c.weekdays, 1);
        assert!(!c.is_fixed_time());
        assert!(Cron::parse("30 2 * * *").unwrap().is_fixed_time());
        assert!(Cron::parse("@daily").unwrap().is_fixed_time());
        assert!(!Cron::parse("@hourly").unwrap().is_fixed_time());
        assert!(!Cron::parse("*/15 2 28 3 *").unwrap().is_fixed_time());
    }
}
