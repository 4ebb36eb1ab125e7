//! A schedule's spec: a cron expression in a time zone, or a fixed interval, and its next tick.

use std::ops::ControlFlow;
use std::str::FromStr as _;

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, Offset as _, TimeZone as _, Timelike as _};
use chrono_tz::Tz;

use crate::{Cron, ScheduleError};

/// How far ahead a cron expression is searched for its next tick: long enough for the 29th of
/// February, which may be eight years away.
const HORIZON_DAYS: u32 = 9 * 366;

/// The longest interval: a year.
const MAX_INTERVAL_MS: u64 = 366 * 24 * 3600 * 1000;

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// At the local wall-clock times `cron` matches in `zone`.
    Cron {
        /// The expression.
        cron: Cron,
        /// The IANA time zone its times are read in.
        zone: Tz,
    },
    /// Every `period_ms`, at the multiples of it since the Unix epoch (so `every 5m` fires at
    /// :00, :05, … whenever it was created).
    Every {
        /// The interval, in milliseconds.
        period_ms: u64,
    },
}

impl Spec {
    /// A cron spec; refuses an unknown zone and an expression that never fires.
    pub fn cron(expression: &str, zone: &str) -> Result<Spec, ScheduleError> {
        let cron = Cron::parse(expression)?;
        let zone = Tz::from_str(zone.trim()).map_err(|_| ScheduleError::Zone(zone.to_owned()))?;
        let spec = Spec::Cron { cron, zone };
        // Any instant will do: an expression that fires at all does within the horizon.
        if spec.next_after(0).is_none() {
            return Err(ScheduleError::Never(expression.trim().to_owned()));
        }
        Ok(spec)
    }

    /// An interval spec of `period_ms` (1 ms to a year).
    pub fn every(period_ms: u64) -> Result<Spec, ScheduleError> {
        if period_ms == 0 || period_ms > MAX_INTERVAL_MS {
            return Err(ScheduleError::Interval(period_ms));
        }
        Ok(Spec::Every { period_ms })
    }

    /// The first tick strictly after `after_ms` (Unix milliseconds); `None` if there is none
    /// within the search horizon or the calendar's range.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            Spec::Every { period_ms } => (after_ms / period_ms)
                .checked_add(1)?
                .checked_mul(*period_ms),
            Spec::Cron { cron, zone } => {
                let after = DateTime::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
                let from = after.with_timezone(zone).naive_local().with_nanosecond(0)?;
                cron.walk(from, HORIZON_DAYS, |local| match instant(*zone, local) {
                    Some(at) if at > after_ms => ControlFlow::Break(at),
                    _ => ControlFlow::Continue(()),
                })
            }
        }
    }
}

/// The instant a matching local time fires at: itself; the first of the two when a
/// daylight-saving change repeats it; the end of the gap when a change skips it.
fn instant(zone: Tz, local: NaiveDateTime) -> Option<u64> {
    let millis = match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.timestamp_millis(),
        LocalResult::None => gap_end(zone, local)?.checked_mul(1000)?,
    };
    u64::try_from(millis).ok()
}

/// The instant (Unix seconds) at which the gap that skips `local` ends.
fn gap_end(zone: Tz, local: NaiveDateTime) -> Option<i64> {
    let as_utc = local.and_utc().timestamp();
    let offset_at = |seconds: i64| {
        DateTime::from_timestamp(seconds, 0).map(|at| {
            i64::from(
                zone.offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        })
    };
    let before = offset_at(as_utc - 86_400)?;
    let after = offset_at(as_utc + 86_400)?;
    // The gap ends at T: the offset is `before` until T and `after` from T on, and `local` lies
    // in [T + before, T + after), so T is in (as_utc - after, as_utc - before].
    let (mut low, mut high) = (as_utc - after, as_utc - before);
    if low >= high || offset_at(high)? != after {
        // Not one simple change around `local`: the first whole minute that exists.
        return (1..=48 * 60).find_map(|minutes| {
            let later = local + chrono::Duration::minutes(minutes);
            match zone.from_local_datetime(&later) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Some(at.timestamp()),
                LocalResult::None => None,
            }
        });
    }
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset_at(middle)? == after {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix milliseconds of an RFC 3339 time.
    fn ms(rfc3339: &str) -> u64 {
        let at = DateTime::parse_from_rfc3339(rfc3339).expect("test time");
        u64::try_from(at.timestamp_millis()).expect("after 1970")
    }

    /// The `n` ticks after `from`, as RFC 3339 in UTC.
    fn ticks(spec: &Spec, from: &str, n: usize) -> Vec<String> {
        let mut at = ms(from);
        (0..n)
            .map(|_| {
                at = spec.next_after(at).expect("a next tick");
                let when = DateTime::from_timestamp_millis(i64::try_from(at).expect("ms"))
                    .expect("in range");
                when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .collect()
    }

    #[test]
    fn ticks_are_strictly_after_and_read_in_the_zone() {
        let spec = Spec::cron("0 9 * * *", "Europe/Berlin").expect("valid");
        // 09:00 in Berlin in winter is 08:00 UTC; a tick at exactly `after` is not next.
        assert_eq!(
            ticks(&spec, "2026-01-10T08:00:00Z", 2),
            ["2026-01-11T08:00:00Z", "2026-01-12T08:00:00Z"]
        );
        assert_eq!(
            ticks(&spec, "2026-01-10T07:59:59.999Z", 1),
            ["2026-01-10T08:00:00Z"]
        );
        // And 07:00 UTC in summer.
        assert_eq!(
            ticks(&spec, "2026-07-01T00:00:00Z", 1),
            ["2026-07-01T07:00:00Z"]
        );
    }

    #[test]
    fn a_time_the_spring_change_skips_fires_once_at_the_end_of_the_gap() {
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let daily = Spec::cron("30 2 * * *", "America/New_York").expect("valid");
        assert_eq!(
            ticks(&daily, "2026-03-06T12:00:00Z", 3),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 02:30 does not exist: 03:00 EDT
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
        // Every 20 minutes: 02:00, 02:20 and 02:40 are skipped and fire once, at 03:00, which
        // also matches; 03:20 follows.
        let often = Spec::cron("*/20 * * * *", "America/New_York").expect("valid");
        assert_eq!(
            ticks(&often, "2026-03-08T06:30:00Z", 4),
            [
                "2026-03-08T06:40:00Z", // 01:40 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-08T07:20:00Z", // 03:20 EDT
                "2026-03-08T07:40:00Z",
            ]
        );
    }

    #[test]
    fn a_time_the_autumn_change_repeats_fires_once_at_its_first_occurrence() {
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:xx happens twice.
        let daily = Spec::cron("30 1 * * *", "America/New_York").expect("valid");
        assert_eq!(
            ticks(&daily, "2026-10-31T12:00:00Z", 3),
            [
                "2026-11-01T05:30:00Z", // 01:30 EDT; not again at 01:30 EST
                "2026-11-02T06:30:00Z", // 01:30 EST
                "2026-11-03T06:30:00Z",
            ]
        );
        let hourly = Spec::cron("0 * * * *", "America/New_York").expect("valid");
        assert_eq!(
            ticks(&hourly, "2026-11-01T04:30:00Z", 3),
            [
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T07:00:00Z", // 02:00 EST; 01:00 EST is the repeat
                "2026-11-01T08:00:00Z",
            ]
        );
        // Asked from inside the repeated hour, the next tick is after it.
        assert_eq!(
            ticks(&hourly, "2026-11-01T06:10:00Z", 1),
            ["2026-11-01T07:00:00Z"]
        );
    }

    #[test]
    fn half_hour_zones_and_their_changes() {
        // Lord Howe Island moves by 30 minutes: 2026-10-04 02:00 LHST (+10:30) → 02:30 (+11).
        let spec = Spec::cron("15 2 * * *", "Australia/Lord_Howe").expect("valid");
        assert_eq!(
            ticks(&spec, "2026-10-02T12:00:00Z", 3),
            [
                "2026-10-02T15:45:00Z", // 02:15 +10:30
                "2026-10-03T15:30:00Z", // skipped: 02:30 +11, the end of the gap
                "2026-10-04T15:15:00Z", // 02:15 +11
            ]
        );
    }

    #[test]
    fn intervals_are_multiples_since_the_epoch() {
        let spec = Spec::every(5 * 60 * 1000).expect("valid");
        assert_eq!(
            ticks(&spec, "2026-03-08T06:31:10Z", 3),
            [
                "2026-03-08T06:35:00Z",
                "2026-03-08T06:40:00Z",
                "2026-03-08T06:45:00Z"
            ]
        );
        assert_eq!(spec.next_after(0), Some(300_000));
        assert_eq!(spec.next_after(299_999), Some(300_000));
        assert_eq!(spec.next_after(300_000), Some(600_000));
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        assert_eq!(
            Spec::cron("0 0 * * *", "Mars/Olympus")
                .expect_err("zone")
                .to_string(),
            "unknown time zone `Mars/Olympus`; expected an IANA name such as Europe/Berlin or UTC"
        );
        assert_eq!(
            Spec::cron("0 0 30 2 *", "UTC")
                .expect_err("never")
                .to_string(),
            "cron expression `0 0 30 2 *` never fires"
        );
        assert!(Spec::cron("0 0 29 2 *", "UTC").is_ok());
        assert!(Spec::every(0).is_err());
        assert!(Spec::every(MAX_INTERVAL_MS + 1).is_err());
        assert!(Spec::every(1).is_ok());
    }

    #[test]
    fn every_second_cron_is_not_slow() {
        let spec = Spec::cron("* * * * * *", "Europe/Berlin").expect("valid");
        let mut at = ms("2026-10-25T00:00:00Z");
        // Across the autumn change (01:00 UTC), 10,000 ticks one after the other.
        for _ in 0..10_000 {
            let next = spec.next_after(at).expect("next");
            assert!(next > at);
            at = next;
        }
        // Berlin's 02:00–02:59 happens twice; the second pass fires nothing.
        assert_eq!(at, ms("2026-10-25T00:00:00Z") + 10_000 * 1000 + 3600 * 1000);
    }
}
