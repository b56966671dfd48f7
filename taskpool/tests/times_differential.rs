//! The library's cron firings and `--at` times against the reference of `reference/mod.rs`
//! (written from docs/jobs.md), over thousands of generated cases (a fixed seed) in each zone of
//! [`reference::ZONES`]: Berlin, New York, Lord Howe Island (a 30-minute change), Kolkata, UTC.
//! Times are drawn near the zones' daylight-saving changes half of the time. Each zone runs in a
//! child process whose `TZ` names it (`/usr/share/zoneinfo`), and again with its POSIX rule.

mod reference;

use chrono::{DateTime, Duration, Local, NaiveTime, Weekday};
use reference::{at_reference, child_zone, RefAt, RefCron, Zone, ZONES};
use taskpool::schedule::{cron_next, parse_at};

/// Cases of each kind per zone and `TZ` value.
const CRON_CASES: usize = 1500;
const AT_CASES: usize = 1500;
/// How far ahead firings are compared: four years.
const HORIZON: i64 = 4 * 366 * 86_400;

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// An instant in 2026–2029: half the time within six hours of a change of offset.
fn instant(rng: &mut Rng, zone: &Zone) -> i64 {
    let start = reference::epoch("2026-01-01T00:00:00Z");
    let end = reference::epoch("2030-01-01T00:00:00Z");
    let t = rng.range(start, end);
    if rng.below(2) == 0 {
        if let Some(change) = zone.next_change(t) {
            return change + rng.range(-6 * 3600, 6 * 3600);
        }
    }
    t
}

fn cron_expr(rng: &mut Rng) -> String {
    if rng.below(20) == 0 {
        return rng
            .pick(&[
                "@hourly",
                "@daily",
                "@midnight",
                "@weekly",
                "@monthly",
                "@yearly",
            ])
            .into();
    }
    let minute = rng.range(0, 59).to_string();
    let hour = rng.range(0, 23).to_string();
    let dom = rng.range(1, 31).to_string();
    let month = rng.range(1, 12).to_string();
    let dow = rng.range(0, 7).to_string();
    let fields = [
        rng.pick(&[
            "0", "30", "15", "45", "*/15", "*/30", "*", "0,30", "10-20", "5-59/20", "*/7", &minute,
        ]),
        rng.pick(&[
            "2", "3", "1", "0", "*", "*/2", "1-3", "2,3", "22-23", "*/5", "*,2", &hour,
        ]),
        rng.pick(&[
            "*", "*", "*", "*", "*", "1,15", "*/2", "28-31", "31", "13", &dom,
        ]),
        rng.pick(&[
            "*", "*", "*", "*", "3", "10", "11", "4", "mar,oct", "jan-jun", "*/3", &month,
        ]),
        rng.pick(&[
            "*", "*", "*", "*", "mon-fri", "sun", "0", "5", "*/2", "sat,7", &dow,
        ]),
    ];
    let mut expr = fields.join(" ");
    if rng.below(6) == 0 {
        let sec = rng.range(0, 59).to_string();
        expr = format!("{} {expr}", rng.pick(&["0", "30", "*/20", "15,45", &sec]));
    }
    expr
}

fn check_cron(zone: &Zone, rng: &mut Rng) -> usize {
    let mut compared = 0;
    for _ in 0..CRON_CASES {
        let expr = cron_expr(rng);
        let reference = RefCron::parse(&expr).unwrap_or_else(|| panic!("reference: {expr:?}"));
        let mut after = instant(rng, zone);
        for _ in 0..3 {
            let from = DateTime::from_timestamp(after, 0).unwrap().fixed_offset();
            let got = cron_next(&expr, from).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
            let got = got.filter(|t| t.timestamp() <= after + HORIZON);
            let want = reference.next(zone, after, HORIZON);
            let shown = |t: Option<i64>| t.map(|t| zone.show(t));
            assert_eq!(
                got.map(|t| t.to_rfc3339()),
                shown(want),
                "{} cron {expr:?} after {}",
                zone.name,
                zone.show(after)
            );
            compared += 1;
            match want {
                Some(t) => after = t,
                None => break,
            }
        }
    }
    compared
}

fn time_of_day(rng: &mut Rng) -> NaiveTime {
    let hour = match rng.below(3) {
        0 => rng.range(1, 3),
        _ => rng.range(0, 23),
    } as u32;
    let minute = [0, 15, 30, 45, rng.range(0, 59) as u32][rng.below(5) as usize];
    let second = if rng.below(4) == 0 {
        rng.range(0, 59)
    } else {
        0
    } as u32;
    NaiveTime::from_hms_opt(hour, minute, second).unwrap()
}

/// `HH:MM[:SS]` (24-hour) or a 12-hour time such as `9am`, `12:30:15 PM`.
fn clock(rng: &mut Rng, time: NaiveTime) -> String {
    use chrono::Timelike;
    let secs = |f: &str| {
        if time.second() == 0 {
            time.format(f).to_string()
        } else {
            time.format(&format!("{f}:%S")).to_string()
        }
    };
    match rng.below(3) {
        0 => secs("%H:%M"),
        1 if time.minute() == 0 && time.second() == 0 => time.format("%-I%P").to_string(),
        _ => format!("{} {}", secs("%-I:%M"), time.format("%p")),
    }
}

fn at_case(rng: &mut Rng, zone: &Zone, now: i64) -> (String, RefAt) {
    let time = time_of_day(rng);
    match rng.below(6) {
        0 => {
            let t = now + rng.range(-3 * 86_400, 3 * 86_400);
            let label = rng.pick(&["Z", "+05:00", "-03:30", "zone"]);
            let text = match label {
                "zone" => zone.show(t),
                l => {
                    let s = DateTime::from_timestamp(t, 0).unwrap().naive_utc();
                    let o = DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{l}"))
                        .unwrap()
                        .offset()
                        .local_minus_utc() as i64;
                    format!(
                        "{}{l}",
                        (s + Duration::seconds(o)).format("%Y-%m-%dT%H:%M:%S")
                    )
                }
            };
            (text, RefAt::Instant(t))
        }
        1 => {
            let date = zone.wall(now).date() + Duration::days(rng.range(-1, 3));
            let w = date.and_time(time);
            let text = if rng.below(2) == 0 {
                w.format("%Y-%m-%d %H:%M:%S").to_string()
            } else {
                w.format("%Y-%m-%dT%H:%M:%S").to_string()
            };
            (text, RefAt::Wall(w))
        }
        2 => (
            format!("tomorrow {}", time.format("%H:%M:%S")),
            RefAt::Tomorrow(time),
        ),
        3 => (clock(rng, time), RefAt::TimeOfDay(time)),
        4 => {
            use chrono::Timelike;
            let days = [
                ("monday", Weekday::Mon),
                ("tue", Weekday::Tue),
                ("wednesday", Weekday::Wed),
                ("thursday", Weekday::Thu),
                ("fri", Weekday::Fri),
                ("saturday", Weekday::Sat),
                ("sunday", Weekday::Sun),
            ];
            let (name, day) = days[rng.below(7) as usize];
            (
                format!("next {name} {}", time.format("%H:%M")),
                RefAt::NextWeekday(day, time.with_second(0).unwrap()),
            )
        }
        _ => {
            let n = rng.range(1, 30);
            if rng.below(2) == 0 {
                (format!("{n} hours"), RefAt::Elapsed(n * 3600))
            } else {
                (format!("{} minutes", n * 7), RefAt::Elapsed(n * 7 * 60))
            }
        }
    }
}

fn check_at(zone: &Zone, rng: &mut Rng) -> usize {
    for _ in 0..AT_CASES {
        let now = instant(rng, zone);
        let (text, reference) = at_case(rng, zone, now);
        let now_local = DateTime::from_timestamp(now, 0)
            .unwrap()
            .with_timezone(&Local);
        let got = parse_at(&text, now_local).map(|t| t.to_rfc3339());
        let want = at_reference(zone, &reference, now).map(|t| zone.show(t));
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{} --at {text:?} at {}", zone.name, zone.show(now)),
            (Err(e), Err(())) => assert!(e.message().contains("in the past"), "{text:?}: {e}"),
            _ => panic!(
                "{} --at {text:?} at {}: got {got:?}, want {want:?}",
                zone.name,
                zone.show(now)
            ),
        }
    }
    AT_CASES
}

/// In a child: the cases of the zone it was started for.
#[test]
#[ignore = "run by cron_and_at_agree_with_the_reference in a child with TZ set"]
fn zone_agrees_with_the_reference() {
    let Some(zone) = child_zone() else { return };
    let seed = zone
        .name
        .bytes()
        .fold(0x5eed_u64, |h, b| h.wrapping_mul(31) ^ b as u64);
    let mut rng = Rng(seed);
    let crons = check_cron(&zone, &mut rng);
    let ats = check_at(&zone, &mut rng);
    println!(
        "{}: {crons} cron firings, {ats} --at forms agree",
        zone.name
    );
}

#[test]
fn cron_and_at_agree_with_the_reference() {
    for zone in ZONES {
        let mut values = vec![zone.posix];
        if zone.tz_value() != zone.posix {
            values.push(zone.name);
        }
        for tz in values {
            reference::run_in_zone("zone_agrees_with_the_reference", &zone, tz);
        }
    }
}

/// The reference's zones are right: its changes of offset are those of the tz database.
#[test]
fn the_reference_zones_change_when_the_tz_database_says() {
    use reference::{BERLIN, LORD_HOWE, NEW_YORK};
    let cases = [
        (BERLIN, "2027-03-28T01:00:00Z", "2027-03-28T03:00:00+02:00"),
        (BERLIN, "2027-10-31T01:00:00Z", "2027-10-31T02:00:00+01:00"),
        (
            NEW_YORK,
            "2027-03-14T07:00:00Z",
            "2027-03-14T03:00:00-04:00",
        ),
        (
            NEW_YORK,
            "2027-11-07T06:00:00Z",
            "2027-11-07T01:00:00-05:00",
        ),
        (
            LORD_HOWE,
            "2027-04-03T15:00:00Z",
            "2027-04-04T01:30:00+10:30",
        ),
        (
            LORD_HOWE,
            "2027-10-02T15:30:00Z",
            "2027-10-03T02:30:00+11:00",
        ),
    ];
    for (zone, change, shown) in cases {
        let t = reference::epoch(change);
        assert_eq!(zone.next_change(t - 1), Some(t), "{}", zone.name);
        assert_eq!(zone.show(t), shown, "{}", zone.name);
        assert_ne!(zone.offset(t - 1), zone.offset(t), "{}", zone.name);
    }
}
