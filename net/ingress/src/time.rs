//! Rendering [`Timestamp`]s the way Restate's ingress writes them, so clients that parse
//! `idempotency-expires` and `executionTime` keep working.

use holdfast_schema::Timestamp;

/// The parts of a UTC instant.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

fn civil(at: Timestamp) -> Civil {
    const DAY_MS: u64 = 86_400_000;
    let days = at.0 / DAY_MS;
    let in_day = at.0 % DAY_MS;
    // Days since 1970-01-01 to a proleptic Gregorian date, counting in 400-year eras that start
    // on 0000-03-01 so that the leap day falls at the end of each year.
    // `days` is below 2^38 (u64::MAX / DAY_MS), so it fits an i64.
    let shifted = days as i64 + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        // Both are small positive numbers by construction (1..=12, 1..=31).
        month: month as u32,
        day: day as u32,
        hour: in_day / 3_600_000,
        minute: in_day / 60_000 % 60,
        second: in_day / 1_000 % 60,
        millis: in_day % 1_000,
    }
}

/// `2026-11-27T17:39:03.196+00:00`, the `idempotency-expires` header's form.
pub fn header_form(at: Timestamp) -> String {
    let c = civil(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `2026-11-26T17:39:05.860000000Z`, the `executionTime` field's form.
pub fn body_form(at: Timestamp) -> String {
    let c = civil(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render() {
        assert_eq!(header_form(Timestamp(0)), "1970-01-01T00:00:00.000+00:00");
        // 2026-11-27T17:39:03.196Z
        assert_eq!(
            header_form(Timestamp(1_795_801_143_196)),
            "2026-11-27T17:39:03.196+00:00"
        );
        assert_eq!(
            body_form(Timestamp(1_795_714_745_860)),
            "2026-11-26T17:39:05.860000000Z"
        );
        // Leap day and the turn of a century that is a leap year.
        assert_eq!(
            header_form(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000+00:00"
        );
        assert_eq!(
            header_form(Timestamp(978_307_199_999)),
            "2000-12-31T23:59:59.999+00:00"
        );
    }
}
