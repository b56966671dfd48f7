//! The system's local time zone (the `TZ` environment variable, else `/etc/localtime`, as chrono's
//! [`Local`] reads them), and the one rule for what a wall-clock time means in it: which instants
//! show it ([`resolve`]), and the offset an instant is shown with ([`label`]).
//!
//! Only chrono's UTC-to-local direction is used. A wall-clock time is resolved by trying the
//! offsets the zone has around it and keeping those that give it back, so the edges of a daylight
//! saving change come out right: the wall time at which a clock falls back (03:00 in Berlin) is
//! shown once, after the change, and is not the instant of the change (chrono's `Local` counts it
//! as shown twice, and returns the two readings of a repeated time in the wrong order, chrono
//! issue 1625).

use crate::record::Timestamp;
use chrono::offset::MappedLocalTime;
use chrono::{
    DateTime, Duration, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
};

/// What a local wall-clock time means in the local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wall {
    /// The clock shows it once.
    Single(Timestamp),
    /// The clock shows it twice (the hour repeated when it falls back): earlier, later.
    Twice(Timestamp, Timestamp),
    /// The clock skips it (it jumps forward over it); `resumes` is the instant of the jump, the
    /// first one after the gap, and `before` the offset in force until then.
    Skipped {
        /// The first instant after the gap.
        resumes: Timestamp,
        /// The offset the zone has before the gap.
        before: FixedOffset,
    },
}

/// The offset the local zone has at the UTC time `utc`.
fn offset_at(utc: NaiveDateTime) -> FixedOffset {
    Local.offset_from_utc_datetime(&utc).fix()
}

/// An instant, shown with the offset the local zone has at that instant.
pub fn label<Tz: TimeZone>(t: &DateTime<Tz>) -> Timestamp {
    let utc = t.naive_utc();
    DateTime::from_naive_utc_and_offset(utc, offset_at(utc))
}

/// The local wall-clock time of an instant.
pub fn wall_of<Tz: TimeZone>(t: &DateTime<Tz>) -> NaiveDateTime {
    label(t).naive_local()
}

/// The offsets the local zone has within a day of wall-clock time `w`, smallest first.
pub fn offsets_near(w: NaiveDateTime) -> Vec<FixedOffset> {
    let mut offsets: Vec<FixedOffset> = [w - Duration::days(1), w, w + Duration::days(1)]
        .iter()
        .map(|&probe| offset_at(probe))
        .collect();
    let more: Vec<FixedOffset> = offsets.iter().map(|o| offset_at(w - *o)).collect();
    offsets.extend(more);
    offsets.sort_by_key(|o| o.local_minus_utc());
    offsets.dedup();
    offsets
}

/// The instants at which the local clock shows wall-clock time `w`.
pub fn resolve(w: NaiveDateTime) -> Wall {
    let offsets = offsets_near(w);
    // An offset is right for `w` when the zone has it at the instant it gives.
    let mut fits: Vec<Timestamp> = offsets
        .iter()
        .filter(|&&o| offset_at(w - o) == o)
        .map(|&o| DateTime::from_naive_utc_and_offset(w - o, o))
        .collect();
    fits.sort();
    match fits[..] {
        [one] => Wall::Single(one),
        [first, .., last] => Wall::Twice(first, last),
        [] => {
            // Skipped: with the offset before the gap (the smallest) `w` lands after the jump,
            // with the one after it (the largest) before: the jump lies in between.
            let (before, after) = (offsets[0], offsets[offsets.len() - 1]);
            let (mut lo, mut hi) = (w - after, w - before);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + Duration::seconds((hi - lo).num_seconds() / 2);
                if offset_at(mid) == offset_at(lo) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Wall::Skipped {
                resumes: DateTime::from_naive_utc_and_offset(hi, offset_at(hi)),
                before,
            }
        }
    }
}

/// The system's local time zone as a chrono [`TimeZone`] that resolves wall-clock times by
/// [`resolve`]: a repeated time gives its two instants earliest first; a skipped one is read with
/// the offset before the gap, so it lands as far past the gap's start as it was into it (02:30
/// becomes 03:30 where the clock jumps from 02:00 to 03:00). Instants made in it are shown with
/// whatever offset was used to read them: pass them through [`label`].
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
        match resolve(*local) {
            Wall::Single(t) => MappedLocalTime::Single(*t.offset()),
            Wall::Twice(a, b) => MappedLocalTime::Ambiguous(*a.offset(), *b.offset()),
            Wall::Skipped { before, .. } => MappedLocalTime::Single(before),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
        offset_at(utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
        offset_at(*utc)
    }
}
