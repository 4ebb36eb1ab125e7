//! Cron expressions: which local wall-clock times match.
//!
//! Fields, in order: [seconds] minute hour day-of-month month day-of-week. Each is `*` (or `?`
//! for the two day fields), a value, a range `a-b`, a step `*/s`, `a-b/s` or `a/s` (from `a` to
//! the field's end), or a comma-separated list of those. Months and weekdays also take
//! three-letter English names (`JAN`, `MON`); Sunday is 0 or 7. As in classic cron, when both day
//! fields are restricted a day matches if either does; when one of them covers every day, only the
//! other one decides.

use std::ops::ControlFlow;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

use crate::ScheduleError;

/// A parsed cron expression; [`Cron::source`] gives it back as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1..=31.
    days: u64,
    /// Bits 1..=12.
    months: u64,
    /// Bits 0..=6, Sunday 0.
    weekdays: u64,
}

/// How one field is read.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// The highest value `*` stands for (weekdays: 6, though 7 is accepted for Sunday).
    star_max: u32,
    /// Names for the values from `min` on, in order.
    names: &'static [&'static str],
    /// `?` is accepted as `*`.
    question: bool,
}

const SECONDS: Field = Field {
    name: "seconds",
    min: 0,
    max: 59,
    star_max: 59,
    names: &[],
    question: false,
};
const MINUTES: Field = Field {
    name: "minute",
    star_max: 59,
    ..SECONDS
};
const HOURS: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    star_max: 23,
    names: &[],
    question: false,
};
const DAYS: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    star_max: 31,
    names: &[],
    question: true,
};
const MONTHS: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    star_max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    question: false,
};
const WEEKDAYS: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    star_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    question: true,
};

/// Every day of the month, bits 1..=31.
const ALL_DAYS: u64 = ((1u64 << 32) - 1) & !1;
/// Every weekday, bits 0..=6.
const ALL_WEEKDAYS: u64 = (1 << 7) - 1;

impl Cron {
    /// Parses a 5- or 6-field expression or an alias (`@yearly`, `@annually`, `@monthly`,
    /// `@weekly`, `@daily`, `@midnight`, `@hourly`); field names in errors are the user's words.
    pub fn parse(expression: &str) -> Result<Cron, ScheduleError> {
        let trimmed = expression.trim();
        let expanded = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => return Err(ScheduleError::Alias(trimmed.to_owned())),
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(ScheduleError::FieldCount {
                    expression: trimmed.to_owned(),
                    fields: n,
                });
            }
        };
        Ok(Cron {
            source: trimmed.to_owned(),
            seconds: parse_field(&SECONDS, seconds)?,
            minutes: parse_field(&MINUTES, rest[0])?,
            hours: parse_field(&HOURS, rest[1])?,
            days: parse_field(&DAYS, rest[2])?,
            months: parse_field(&MONTHS, rest[3])?,
            weekdays: fold_sunday(parse_field(&WEEKDAYS, rest[4])?),
        })
    }

    /// The expression as it was written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the local wall-clock time `at` matches (fractions of a second ignored).
    pub fn matches(&self, at: NaiveDateTime) -> bool {
        use chrono::Timelike as _;
        self.matches_date(at.date())
            && bit(self.hours, at.hour())
            && bit(self.minutes, at.minute())
            && bit(self.seconds, at.second())
    }

    fn matches_date(&self, date: NaiveDate) -> bool {
        if !bit(self.months, date.month()) {
            return false;
        }
        let by_day = bit(self.days, date.day());
        let by_weekday = bit(self.weekdays, date.weekday().num_days_from_sunday());
        match (self.days == ALL_DAYS, self.weekdays == ALL_WEEKDAYS) {
            (true, _) => by_weekday,
            (false, true) => by_day,
            (false, false) => by_day || by_weekday,
        }
    }

    /// Visits the matching local times from `from` on (inclusive, whole seconds), in order, for
    /// at most `days` calendar days; returns what `visit` breaks with.
    pub(crate) fn walk<T>(
        &self,
        from: NaiveDateTime,
        days: u32,
        mut visit: impl FnMut(NaiveDateTime) -> ControlFlow<T>,
    ) -> Option<T> {
        let mut date = from.date();
        let start = from.time();
        for day in 0..days {
            if self.matches_date(date) {
                let earliest = (day == 0).then_some(start);
                for time in self.times(earliest) {
                    if let ControlFlow::Break(found) = visit(date.and_time(time)) {
                        return Some(found);
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// The matching times of one day, at or after `earliest`, in order.
    fn times(&self, earliest: Option<NaiveTime>) -> impl Iterator<Item = NaiveTime> + '_ {
        use chrono::Timelike as _;
        let (h0, m0, s0) = earliest.map_or((0, 0, 0), |t| (t.hour(), t.minute(), t.second()));
        ones_from(self.hours, h0).flat_map(move |hour| {
            let first_hour = hour == h0;
            ones_from(self.minutes, if first_hour { m0 } else { 0 }).flat_map(move |minute| {
                let first_minute = first_hour && minute == m0;
                ones_from(self.seconds, if first_minute { s0 } else { 0 })
                    .filter_map(move |second| NaiveTime::from_hms_opt(hour, minute, second))
            })
        })
    }
}

/// The set bits of `mask` from bit `from` on, lowest first.
fn ones_from(mask: u64, from: u32) -> impl Iterator<Item = u32> {
    (from..64).filter(move |b| bit(mask, *b))
}

fn bit(mask: u64, b: u32) -> bool {
    b < 64 && mask >> b & 1 == 1
}

/// Day-of-week 7 is Sunday, as 0 is.
fn fold_sunday(mask: u64) -> u64 {
    if bit(mask, 7) {
        (mask & !(1 << 7)) | 1
    } else {
        mask
    }
}

fn parse_field(field: &Field, text: &str) -> Result<u64, ScheduleError> {
    let refuse = |reason: String| ScheduleError::Field {
        field: field.name,
        value: text.to_owned(),
        reason,
    };
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(refuse("an empty item in the list".into()));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                    refuse(format!("step `{step}` is not a whole number of 1 or more"))
                })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (low, high) = if range == "*" || (field.question && range == "?") {
            (field.min, field.star_max)
        } else if let Some((low, high)) = range.split_once('-') {
            (
                value(field, low).map_err(&refuse)?,
                value(field, high).map_err(&refuse)?,
            )
        } else {
            let single = value(field, range).map_err(&refuse)?;
            (single, if step.is_some() { field.max } else { single })
        };
        if low > high {
            return Err(refuse(format!("the range {low}-{high} runs backwards")));
        }
        let step = usize::try_from(step.unwrap_or(1)).unwrap_or(usize::MAX);
        for v in (low..=high).step_by(step) {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

/// One value of `field`, as a number or a name.
fn value(field: &Field, text: &str) -> Result<u32, String> {
    let found = match text.parse::<u32>() {
        Ok(number) => number,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let Some(position) = field.names.iter().position(|name| *name == upper) else {
                return Err(if field.names.is_empty() {
                    format!("`{text}` is not a number")
                } else {
                    format!(
                        "`{text}` is neither a number nor one of {}",
                        field.names.join(", ")
                    )
                });
            };
            field.min + u32::try_from(position).unwrap_or(u32::MAX)
        }
    };
    if found < field.min || found > field.max {
        return Err(format!("{found} is outside {}-{}", field.min, field.max));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("test time")
    }

    fn matching(expression: &str, from: &str, n: usize) -> Vec<String> {
        let cron = Cron::parse(expression).expect("valid");
        let mut found = Vec::new();
        cron.walk(at(from), 3000, |t| {
            found.push(t.format("%Y-%m-%d %H:%M:%S %a").to_string());
            if found.len() == n {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    #[test]
    fn five_fields_fire_on_the_minute() {
        assert_eq!(
            matching("*/20 9-10 * * *", "2026-03-02 09:15:30", 4),
            [
                "2026-03-02 09:20:00 Mon",
                "2026-03-02 09:40:00 Mon",
                "2026-03-02 10:00:00 Mon",
                "2026-03-02 10:20:00 Mon"
            ]
        );
    }

    #[test]
    fn six_fields_take_seconds_first() {
        assert_eq!(
            matching("*/15 0 12 * * *", "2026-03-02 12:00:14", 3),
            [
                "2026-03-02 12:00:15 Mon",
                "2026-03-02 12:00:30 Mon",
                "2026-03-02 12:00:45 Mon"
            ]
        );
    }

    #[test]
    fn the_walk_starts_at_its_first_second_inclusive() {
        assert_eq!(
            matching("0 12 * * *", "2026-03-02 12:00:00", 1),
            ["2026-03-02 12:00:00 Mon"]
        );
    }

    #[test]
    fn aliases_expand_to_their_expressions() {
        for (alias, expression) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@MIDNIGHT", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            let a = Cron::parse(alias).expect("alias");
            let b = Cron::parse(expression).expect("expression");
            assert_eq!(
                (a.seconds, a.minutes, a.hours, a.days, a.months, a.weekdays),
                (b.seconds, b.minutes, b.hours, b.days, b.months, b.weekdays),
                "{alias}"
            );
            assert_eq!(a.source(), alias);
        }
        assert_eq!(
            matching("@weekly", "2026-03-02 00:00:01", 2),
            ["2026-03-08 00:00:00 Sun", "2026-03-15 00:00:00 Sun"]
        );
    }

    #[test]
    fn names_ranges_lists_and_steps() {
        assert_eq!(
            matching("30 8 * jan,Mar MON-wed", "2026-02-27 00:00:00", 4),
            [
                "2026-03-02 08:30:00 Mon",
                "2026-03-03 08:30:00 Tue",
                "2026-03-04 08:30:00 Wed",
                "2026-03-09 08:30:00 Mon"
            ]
        );
        assert_eq!(
            matching("0 0 10/10 * *", "2026-03-01 00:00:00", 4),
            [
                "2026-03-10 00:00:00 Tue",
                "2026-03-20 00:00:00 Fri",
                "2026-03-30 00:00:00 Mon",
                "2026-04-10 00:00:00 Fri"
            ]
        );
        assert_eq!(
            matching("0 6-18/6 * * *", "2026-03-01 00:00:00", 3),
            [
                "2026-03-01 06:00:00 Sun",
                "2026-03-01 12:00:00 Sun",
                "2026-03-01 18:00:00 Sun"
            ]
        );
    }

    #[test]
    fn sunday_is_zero_or_seven() {
        let zero = Cron::parse("0 0 * * 0").expect("0");
        let seven = Cron::parse("0 0 * * 7").expect("7");
        assert_eq!(zero.weekdays, seven.weekdays);
        assert_eq!(
            matching("0 0 * * 5-7", "2026-03-02 00:00:00", 3),
            [
                "2026-03-06 00:00:00 Fri",
                "2026-03-07 00:00:00 Sat",
                "2026-03-08 00:00:00 Sun"
            ]
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 13th, or any Friday.
        assert_eq!(
            matching("0 0 13 * FRI", "2026-03-01 00:00:00", 4),
            [
                "2026-03-06 00:00:00 Fri",
                "2026-03-13 00:00:00 Fri",
                "2026-03-20 00:00:00 Fri",
                "2026-03-27 00:00:00 Fri"
            ]
        );
        assert_eq!(
            matching("0 0 14 * FRI", "2026-03-12 00:00:00", 2),
            ["2026-03-13 00:00:00 Fri", "2026-03-14 00:00:00 Sat"]
        );
        // One of them unrestricted (`?` is `*`): the other decides alone.
        assert_eq!(
            matching("0 0 ? * FRI", "2026-03-12 00:00:00", 1),
            ["2026-03-13 00:00:00 Fri"]
        );
    }

    #[test]
    fn months_without_the_day_are_skipped() {
        assert_eq!(
            matching("0 0 31 * *", "2026-01-31 00:00:01", 3),
            [
                "2026-03-31 00:00:00 Tue",
                "2026-05-31 00:00:00 Sun",
                "2026-07-31 00:00:00 Fri"
            ]
        );
        assert_eq!(
            matching("0 0 29 2 *", "2026-01-01 00:00:00", 2),
            ["2028-02-29 00:00:00 Tue", "2032-02-29 00:00:00 Sun"]
        );
    }

    #[test]
    fn matches_reads_one_time() {
        let cron = Cron::parse("5 4 * * SUN").expect("valid");
        assert!(cron.matches(at("2026-03-08 04:05:00")));
        assert!(!cron.matches(at("2026-03-08 04:05:01")));
        assert!(!cron.matches(at("2026-03-09 04:05:00")));
    }

    #[test]
    fn bad_expressions_name_the_field_and_the_reason() {
        let cases = [
            ("* * * *", "has 4 fields"),
            ("* * * * * * *", "has 7 fields"),
            ("", "has 0 fields"),
            ("@fortnightly", "unknown cron alias `@fortnightly`"),
            ("60 * * * *", "minute field `60`: 60 is outside 0-59"),
            ("* 24 * * *", "hour field `24`: 24 is outside 0-23"),
            ("* * 0 * *", "day-of-month field `0`: 0 is outside 1-31"),
            ("* * * 13 *", "month field `13`: 13 is outside 1-12"),
            ("* * * * 8", "day-of-week field `8`: 8 is outside 0-7"),
            (
                "* * * FOO *",
                "month field `FOO`: `FOO` is neither a number nor one of JAN",
            ),
            ("x * * * *", "minute field `x`: `x` is not a number"),
            (
                "*/0 * * * *",
                "minute field `*/0`: step `0` is not a whole number of 1 or more",
            ),
            (
                "10-5 * * * *",
                "minute field `10-5`: the range 10-5 runs backwards",
            ),
            (
                "1,,2 * * * *",
                "minute field `1,,2`: an empty item in the list",
            ),
            ("? * * * *", "minute field `?`"),
            ("70 * * * * *", "seconds field `70`"),
        ];
        for (expression, expected) in cases {
            let error = Cron::parse(expression).expect_err(expression).to_string();
            assert!(
                error.contains(expected),
                "{expression:?}: {error:?} lacks {expected:?}"
            );
        }
    }
}
