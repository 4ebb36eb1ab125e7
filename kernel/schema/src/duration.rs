//! Parsing durations as users write them — the ingress's `?delay=` and the admin API's retention
//! and timeout settings: the human forms (`1s`, `500ms`, `1h 30m`, `2days`) and ISO 8601
//! durations (`PT1S`, `P1DT2H`, `PT0.5S`), the two notations Restate takes.

use std::time::Duration;

/// Why a delay is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A number was expected at this byte offset.
    #[error("expected a number at offset {0}")]
    Number(usize),
    /// A unit this parser does not know (or none after a number).
    #[error("unknown unit '{0}', use ms, s, m, h, d or w (or ISO 8601 like PT1S)")]
    Unit(String),
    /// The ISO 8601 form is malformed or uses years or months, whose length varies.
    #[error("malformed ISO 8601 duration, expected P[nW][nD][T[nH][nM][n[.f]S]]")]
    Iso,
    /// The duration does not fit.
    #[error("duration is too long")]
    Overflow,
}

/// Parses a delay in either notation.
pub fn parse(text: &str) -> Result<Duration, DelayError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DelayError::Empty);
    }
    if text.starts_with(['P', 'p']) {
        iso(&text[1..])
    } else {
        human(text)
    }
}

/// `1h 30m`, `1h30m`, `500ms`, `2 days`: integer and unit pairs, spaces optional.
fn human(text: &str) -> Result<Duration, DelayError> {
    let bytes = text.as_bytes();
    let mut total = Duration::ZERO;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b' ' {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let number: u64 = text[start..at]
            .parse()
            .map_err(|_| DelayError::Number(start))?;
        while at < bytes.len() && bytes[at] == b' ' {
            at += 1;
        }
        let unit_start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
            at += 1;
        }
        let unit = &text[unit_start..at];
        let part = scaled(number, unit).ok_or_else(|| DelayError::Unit(unit.to_owned()))??;
        total = total.checked_add(part).ok_or(DelayError::Overflow)?;
    }
    Ok(total)
}

/// `number` of `unit`; `None` for an unknown unit.
fn scaled(number: u64, unit: &str) -> Option<Result<Duration, DelayError>> {
    let seconds_per_unit: u64 = match unit {
        "ns" | "nsec" => return Some(Ok(Duration::from_nanos(number))),
        "us" | "usec" => return Some(Ok(Duration::from_micros(number))),
        "ms" | "msec" | "millis" => return Some(Ok(Duration::from_millis(number))),
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    };
    Some(
        number
            .checked_mul(seconds_per_unit)
            .map(Duration::from_secs)
            .ok_or(DelayError::Overflow),
    )
}

/// The part of an ISO 8601 duration after `P`.
fn iso(text: &str) -> Result<Duration, DelayError> {
    let upper = text.to_ascii_uppercase();
    let (date, time) = match upper.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(DelayError::Iso),
        None => (upper.as_str(), None),
    };
    if date.is_empty() && time.is_none() {
        return Err(DelayError::Iso);
    }
    let mut total = Duration::ZERO;
    for (number, designator) in components(date)? {
        let seconds = match designator {
            'W' => 604_800,
            'D' => 86_400,
            _ => return Err(DelayError::Iso),
        };
        total = add_seconds(total, number, seconds)?;
    }
    if let Some(time) = time {
        for (number, designator) in components(time)? {
            let seconds = match designator {
                'H' => 3_600,
                'M' => 60,
                'S' => 1,
                _ => return Err(DelayError::Iso),
            };
            total = add_seconds(total, number, seconds)?;
        }
    }
    Ok(total)
}

/// Splits `1W2D` into `[("1", 'W'), ("2", 'D')]`; numbers may carry a fraction (`0.5`).
fn components(text: &str) -> Result<Vec<(&str, char)>, DelayError> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            continue;
        }
        if at == start {
            return Err(DelayError::Iso);
        }
        out.push((&text[start..at], c));
        start = at + c.len_utf8();
    }
    if start != text.len() {
        return Err(DelayError::Iso);
    }
    Ok(out)
}

/// Adds `number` (decimal, maybe fractional) times `unit_seconds` to `total`.
fn add_seconds(total: Duration, number: &str, unit_seconds: u64) -> Result<Duration, DelayError> {
    let number = number.replace(',', ".");
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    let whole: u64 = whole.parse().map_err(|_| DelayError::Iso)?;
    let mut part = whole
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or(DelayError::Overflow)?;
    if !fraction.is_empty() {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DelayError::Iso);
        }
        // Nanosecond precision is plenty for a start delay; extra digits are dropped.
        let digits = &fraction[..fraction.len().min(9)];
        let scale = 10u64.pow(9 - u32::try_from(digits.len()).map_err(|_| DelayError::Iso)?);
        let nanos_of_unit: u64 = digits.parse::<u64>().map_err(|_| DelayError::Iso)? * scale;
        let nanos = u128::from(nanos_of_unit) * u128::from(unit_seconds);
        let nanos = u64::try_from(nanos).map_err(|_| DelayError::Overflow)?;
        part = part
            .checked_add(Duration::from_nanos(nanos))
            .ok_or(DelayError::Overflow)?;
    }
    total.checked_add(part).ok_or(DelayError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn human_forms_parse() {
        let cases = [
            ("1s", ms(1_000)),
            ("500ms", ms(500)),
            ("0s", ms(0)),
            ("2m", ms(120_000)),
            ("1h 30m", ms(5_400_000)),
            ("1h30m", ms(5_400_000)),
            ("1 hour 5 seconds", ms(3_605_000)),
            ("2days", ms(172_800_000)),
            ("1w", ms(604_800_000)),
            (" 10s ", ms(10_000)),
            ("1500us", Duration::from_micros(1_500)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn iso_forms_parse() {
        let cases = [
            ("PT1S", ms(1_000)),
            ("pt1s", ms(1_000)),
            ("PT0.5S", ms(500)),
            ("PT1,25S", ms(1_250)),
            ("PT1M30S", ms(90_000)),
            ("P1DT2H", ms(93_600_000)),
            ("P1W", ms(604_800_000)),
            ("PT0.5H", ms(1_800_000)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_delays_are_refused() {
        assert_eq!(parse(""), Err(DelayError::Empty));
        assert_eq!(parse("10"), Err(DelayError::Unit(String::new())));
        assert_eq!(parse("10 parsecs"), Err(DelayError::Unit("parsecs".into())));
        assert_eq!(parse("s"), Err(DelayError::Number(0)));
        assert_eq!(parse("-1s"), Err(DelayError::Number(0)));
        assert_eq!(parse("1.5s"), Err(DelayError::Unit(String::new())));
        for iso in ["P", "PT", "P1M", "P1Y", "PT1", "PTS", "P1DT", "PT1.xS"] {
            assert_eq!(parse(iso), Err(DelayError::Iso), "{iso}");
        }
        assert_eq!(
            parse("99999999999999999999w"),
            Err(DelayError::Number(0)),
            "does not fit u64"
        );
        assert_eq!(parse("9999999999999999w"), Err(DelayError::Overflow));
    }
}
