//! A reference for local times, written from the rules in `docs/jobs.md` and not from the library:
//! the zones' offsets from their POSIX rules (computed here, not by chrono), cron firings found by
//! walking the clock second by second, and the instants the `--at` forms mean. Shared by the
//! differential test and the regression tests, which run the library in a child process whose
//! `TZ` names the zone.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Weekday};
use std::process::Command;

/// A transition rule `Mm.w.d/time`: the `week`th (5: last) `weekday` of `month`, at `secs`
/// seconds of local time (the offset in force before the change).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    month: u32,
    week: u32,
    weekday: Weekday,
    secs: i64,
}

/// A zone: its name, its POSIX `TZ` rule, standard offset, and summer time if it has one.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    pub name: &'static str,
    pub posix: &'static str,
    std: i64,
    dst: Option<(i64, Rule, Rule)>,
}

const fn rule(month: u32, week: u32, weekday: Weekday, hours: i64) -> Rule {
    Rule {
        month,
        week,
        weekday,
        secs: hours * 3600,
    }
}

pub const BERLIN: Zone = Zone {
    name: "Europe/Berlin",
    posix: "CET-1CEST,M3.5.0,M10.5.0/3",
    std: 3600,
    dst: Some((
        7200,
        rule(3, 5, Weekday::Sun, 2),
        rule(10, 5, Weekday::Sun, 3),
    )),
};
pub const NEW_YORK: Zone = Zone {
    name: "America/New_York",
    posix: "EST5EDT,M3.2.0,M11.1.0",
    std: -5 * 3600,
    dst: Some((
        -4 * 3600,
        rule(3, 2, Weekday::Sun, 2),
        rule(11, 1, Weekday::Sun, 2),
    )),
};
/// Half-hour summer time: 02:00 becomes 02:30 in October, 02:00 becomes 01:30 in April.
pub const LORD_HOWE: Zone = Zone {
    name: "Australia/Lord_Howe",
    posix: "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    std: 10 * 3600 + 1800,
    dst: Some((
        11 * 3600,
        rule(10, 1, Weekday::Sun, 2),
        rule(4, 1, Weekday::Sun, 2),
    )),
};
pub const KOLKATA: Zone = Zone {
    name: "Asia/Kolkata",
    posix: "IST-5:30",
    std: 5 * 3600 + 1800,
    dst: None,
};
pub const UTC: Zone = Zone {
    name: "UTC",
    posix: "UTC0",
    std: 0,
    dst: None,
};

pub const ZONES: [Zone; 5] = [BERLIN, NEW_YORK, LORD_HOWE, KOLKATA, UTC];

/// Seconds since the epoch of a naive date-time read as UTC.
pub fn secs(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp()
}

/// The naive date-time of epoch seconds read as UTC.
pub fn naive(secs: i64) -> NaiveDateTime {
    DateTime::from_timestamp(secs, 0).unwrap().naive_utc()
}

impl Zone {
    /// The zone the child process runs in: by name when the system has it, else its rule.
    pub fn tz_value(&self) -> &'static str {
        if std::path::Path::new("/usr/share/zoneinfo")
            .join(self.name)
            .exists()
        {
            self.name
        } else {
            self.posix
        }
    }

    /// The offsets the zone ever has, smallest first.
    pub fn offsets(&self) -> Vec<i64> {
        match self.dst {
            Some((dst, ..)) => vec![self.std.min(dst), self.std.max(dst)],
            None => vec![self.std],
        }
    }

    /// The instant of a rule's change in `year`, from the local time `before` was in force.
    fn change(rule: Rule, year: i32, before: i64) -> i64 {
        let first = NaiveDate::from_ymd_opt(year, rule.month, 1).unwrap();
        let lead =
            (rule.weekday.num_days_from_sunday() + 7 - first.weekday().num_days_from_sunday()) % 7;
        let mut day = 1 + lead + 7 * (rule.week - 1);
        while NaiveDate::from_ymd_opt(year, rule.month, day).is_none() {
            day -= 7;
        }
        let date = NaiveDate::from_ymd_opt(year, rule.month, day).unwrap();
        secs(date.and_hms_opt(0, 0, 0).unwrap()) + rule.secs - before
    }

    /// The instants summer time starts and ends in `year`.
    fn changes(&self, year: i32) -> Option<(i64, i64)> {
        let (dst, start, end) = self.dst?;
        Some((
            Self::change(start, year, self.std),
            Self::change(end, year, dst),
        ))
    }

    /// The zone's offset at instant `t` (seconds since the epoch).
    pub fn offset(&self, t: i64) -> i64 {
        let Some((dst, ..)) = self.dst else {
            return self.std;
        };
        let (start, end) = self.changes(naive(t).year()).unwrap();
        let summer = if start < end {
            start <= t && t < end
        } else {
            t < end || t >= start
        };
        if summer {
            dst
        } else {
            self.std
        }
    }

    /// The first change of offset strictly after `t`.
    pub fn next_change(&self, t: i64) -> Option<i64> {
        let year = naive(t).year();
        let (a, b) = self.changes(year)?;
        let (c, d) = self.changes(year + 1)?;
        [a, b, c, d].into_iter().filter(|&x| x > t).min()
    }

    /// The wall-clock time at instant `t`.
    pub fn wall(&self, t: i64) -> NaiveDateTime {
        naive(t + self.offset(t))
    }

    /// The instant as the library should show it: with the zone's offset at that instant.
    pub fn show(&self, t: i64) -> String {
        let offset = FixedOffset::east_opt(self.offset(t) as i32).unwrap();
        DateTime::from_timestamp(t, 0)
            .unwrap()
            .with_timezone(&offset)
            .to_rfc3339()
    }

    /// Every instant at which the clock shows `w`, earliest first.
    pub fn showings(&self, w: NaiveDateTime) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .offsets()
            .into_iter()
            .map(|o| secs(w) - o)
            .filter(|&t| self.wall(t) == w)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// What a wall-clock time given to `--at` means (docs/jobs.md): its first showing; a skipped
    /// time moved forward by the length of the gap, that is, read with the offset before it.
    pub fn at_wall(&self, w: NaiveDateTime) -> i64 {
        match self.showings(w).first() {
            Some(&t) => t,
            None => secs(w) - self.offset(secs(w) - self.offsets().last().unwrap()),
        }
    }
}

/// Run the ignored test `test` of this test binary in a child process whose local zone is `tz`,
/// with `TASKPOOL_TEST_ZONE` naming `zone`; fails when the child fails or runs nothing.
pub fn run_in_zone(test: &str, zone: &Zone, tz: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TZ", tz)
        .env("TASKPOOL_TEST_ZONE", zone.name)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test} failed with TZ={tz}:\n{text}\n{err}"
    );
    assert!(text.contains("1 passed"), "{test} did not run:\n{text}");
}

/// In a child started by [`run_in_zone`]: the zone it runs in (`None` elsewhere: the test then
/// does nothing).
pub fn child_zone() -> Option<Zone> {
    let name = std::env::var("TASKPOOL_TEST_ZONE").ok()?;
    Some(*ZONES.iter().find(|z| z.name == name).unwrap())
}

/// Parse RFC 3339 into epoch seconds.
pub fn epoch(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// One cron field's set of values, read by the rules of docs/jobs.md.
fn cron_field(text: &str, min: u32, max: u32, names: &[&str]) -> Option<Vec<bool>> {
    let value = |s: &str| -> Option<u32> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Some(i as u32 + min);
        }
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|v| (min..=max).contains(v))
    };
    let mut set = vec![false; max as usize + 1];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|&s| s > 0)?),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else if item.contains('/') {
            return None;
        } else {
            (value(range)?, value(range)?)
        };
        if lo > hi {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            set[v as usize] = true;
            v += step;
        }
    }
    Some(set)
}

/// A cron expression read by the rules of docs/jobs.md.
#[derive(Debug)]
pub struct RefCron {
    sets: Vec<Vec<bool>>,
    and_days: bool,
    fixed: bool,
}

impl RefCron {
    pub fn parse(expr: &str) -> Option<RefCron> {
        let expr = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            e => e,
        };
        let mut fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() == 5 {
            fields.insert(0, "0");
        }
        if fields.len() != 6 {
            return None;
        }
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let bounds: [(u32, u32, &[&str]); 6] = [
            (0, 59, &[]),
            (0, 59, &[]),
            (0, 23, &[]),
            (1, 31, &[]),
            (1, 12, &MONTHS),
            (0, 7, &DAYS),
        ];
        let mut sets = Vec::new();
        for (text, (min, max, names)) in fields.iter().zip(bounds) {
            sets.push(cron_field(text, min, max, names)?);
        }
        if sets[5][7] {
            sets[5][0] = true;
        }
        let plain = |f: &str| f.chars().all(|c| c.is_ascii_digit());
        Some(RefCron {
            sets,
            and_days: fields[3].starts_with('*') || fields[5].starts_with('*'),
            fixed: plain(fields[0]) && plain(fields[1]) && plain(fields[2]),
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.sets[3][d.day() as usize];
        let dow = self.sets[5][d.weekday().num_days_from_sunday() as usize];
        self.sets[4][d.month() as usize]
            && if self.and_days {
                dom && dow
            } else {
                dom || dow
            }
    }

    /// The wall-clock time `w` matches every field.
    pub fn matches(&self, w: NaiveDateTime) -> bool {
        use chrono::Timelike;
        self.sets[0][w.second() as usize]
            && self.sets[1][w.minute() as usize]
            && self.sets[2][w.hour() as usize]
            && self.day_matches(w.date())
    }

    /// Fires at instant `t` (docs/jobs.md): its wall time matches, and a fixed-time job only at
    /// the first showing of a repeated time; a fixed-time job whose time the clock skipped fires
    /// at the first instant after the gap.
    fn fires(&self, zone: &Zone, t: i64) -> bool {
        let w = zone.wall(t);
        if self.matches(w) && (!self.fixed || zone.showings(w)[0] == t) {
            return true;
        }
        let before = zone.wall(t - 1);
        if self.fixed && w - before > Duration::seconds(1) {
            // `t` ends a gap: the skipped wall times are those after `before`, before `w`.
            let mut s = before + Duration::seconds(1);
            while s < w {
                if self.matches(s) {
                    return true;
                }
                s += Duration::seconds(1);
            }
        }
        false
    }

    /// The first firing strictly after `after`, within `horizon` seconds, found by walking the
    /// clock: each second is visited, except that runs of seconds between two changes of offset
    /// whose wall-clock day, hour or minute does not match are stepped over whole.
    pub fn next(&self, zone: &Zone, after: i64, horizon: i64) -> Option<i64> {
        use chrono::Timelike;
        let mut t = after + 1;
        while t <= after + horizon {
            if self.fires(zone, t) {
                return Some(t);
            }
            let w = zone.wall(t);
            let to_minute = 60 - w.second() as i64;
            let step = if !self.day_matches(w.date()) {
                86_400 - w.num_seconds_from_midnight() as i64
            } else if !self.sets[2][w.hour() as usize] {
                3600 - (w.minute() * 60 + w.second()) as i64
            } else if !self.sets[1][w.minute() as usize] {
                to_minute
            } else {
                1
            };
            let limit = zone.next_change(t).unwrap_or(i64::MAX);
            t = (t + step).min(limit);
        }
        None
    }
}

/// What an `--at` form means by docs/jobs.md, for the forms the differential test makes:
/// `Ok(instant)`, or `Err(())` where the time must be refused.
pub fn at_reference(zone: &Zone, input: &RefAt, now: i64) -> Result<i64, ()> {
    let today = zone.wall(now).date();
    let t = match *input {
        RefAt::Instant(t) => t,
        RefAt::Wall(w) => zone.at_wall(w),
        RefAt::Tomorrow(time) => zone.at_wall(today.succ_opt().unwrap().and_time(time)),
        RefAt::TimeOfDay(time) => {
            let w = today.and_time(time);
            let mut ahead = zone.showings(w);
            if ahead.is_empty() {
                ahead.push(zone.at_wall(w));
            }
            return Ok(match ahead.into_iter().find(|&t| t > now) {
                Some(t) => t,
                None => zone.at_wall(today.succ_opt().unwrap().and_time(time)),
            });
        }
        RefAt::NextWeekday(day, time) => {
            let mut date = today.succ_opt().unwrap();
            while date.weekday() != day {
                date = date.succ_opt().unwrap();
            }
            zone.at_wall(date.and_time(time))
        }
        RefAt::Elapsed(secs) => now + secs,
    };
    if t > now {
        Ok(t)
    } else {
        Err(())
    }
}

/// An `--at` form the differential test makes, with what it says.
#[derive(Debug, Clone)]
pub enum RefAt {
    /// RFC 3339.
    Instant(i64),
    /// `YYYY-MM-DD HH:MM[:SS]`.
    Wall(NaiveDateTime),
    /// `tomorrow HH:MM`.
    Tomorrow(chrono::NaiveTime),
    /// `HH:MM`, `9am`, …
    TimeOfDay(chrono::NaiveTime),
    /// `next monday HH:MM`.
    NextWeekday(Weekday, chrono::NaiveTime),
    /// `N hours`, `N minutes`.
    Elapsed(i64),
}
