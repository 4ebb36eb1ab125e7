//! Flow-control limits as the registry holds them ([`holdfast_types::Limit`]): their rules, and
//! rates as users write them (`50/s`, `10/m`, `3/2s`).

use holdfast_types::{Limit, Rate};

/// The most permits a `max_concurrency` may allow.
pub const MAX_CONCURRENCY: u32 = 100_000;

/// What is wrong with a limit's definition (`None`: nothing). Limits may name services not yet
/// registered: a limit declared in the configuration exists before its service does.
pub fn invalid(limit: &Limit) -> Option<String> {
    if let Some(problem) = crate::schedule::name_problem("limit", &limit.name) {
        return Some(problem);
    }
    if limit.service.is_empty() {
        return Some("a limit needs a service".to_owned());
    }
    if limit.handler.as_deref() == Some("") {
        return Some("handler must not be empty when given".to_owned());
    }
    if limit.max_concurrency.is_none() && limit.rate.is_none() {
        return Some("a limit needs max_concurrency, rate, or both".to_owned());
    }
    if let Some(max) = limit.max_concurrency
        && !(1..=MAX_CONCURRENCY).contains(&max)
    {
        return Some(format!(
            "max_concurrency {max}: expected 1 to {MAX_CONCURRENCY}"
        ));
    }
    if let Some(rate) = limit.rate {
        if rate.count == 0 || rate.period_ms == 0 {
            return Some("rate must be at least one per period".to_owned());
        }
        if rate.burst == 0 || rate.burst > MAX_CONCURRENCY {
            return Some(format!(
                "burst {}: expected 1 to {MAX_CONCURRENCY}",
                rate.burst
            ));
        }
    }
    None
}

/// Parses `<count>/<period>` with a period like `s`, `m`, `h`, `10s` or `500ms` (a bare unit is
/// one of it); the bucket holds `burst` tokens (default 1: starts are spread evenly).
pub fn parse_rate(text: &str, burst: Option<u32>) -> Result<Rate, String> {
    let bad = || format!("rate {text:?}: expected <count>/<period>, like 50/s, 10/m or 3/2s");
    let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        period.to_owned()
    } else {
        format!("1{period}")
    };
    let period = crate::duration::parse(&period).map_err(|e| format!("{}: {e}", bad()))?;
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    let rate = Rate {
        count,
        period_ms,
        burst: burst.unwrap_or(1),
    };
    if count == 0 || period_ms == 0 {
        return Err(bad());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_users_write_them() {
        let rate = |text| parse_rate(text, None).map(|r| (r.count, r.period_ms));
        assert_eq!(rate("50/s"), Ok((50, 1000)));
        assert_eq!(rate("10/m"), Ok((10, 60_000)));
        assert_eq!(rate("3/2s"), Ok((3, 2000)));
        assert_eq!(rate(" 7 / 500ms "), Ok((7, 500)));
        assert_eq!(rate("1/h"), Ok((1, 3_600_000)));
        for bad in ["", "50", "x/s", "0/s", "5/0s", "5/parsec", "-1/s"] {
            assert!(rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rate("5/s", Some(9)).map(|r| r.burst), Ok(9));
    }

    #[test]
    fn a_limit_needs_a_name_a_service_and_a_budget() {
        let ok = Limit {
            name: "api".into(),
            service: "S".into(),
            handler: None,
            key_prefix: None,
            max_concurrency: Some(5),
            rate: None,
        };
        assert_eq!(invalid(&ok), None);
        let broken = [
            Limit {
                name: "a b".into(),
                ..ok.clone()
            },
            Limit {
                service: String::new(),
                ..ok.clone()
            },
            Limit {
                max_concurrency: None,
                ..ok.clone()
            },
            Limit {
                max_concurrency: Some(0),
                ..ok.clone()
            },
            Limit {
                handler: Some(String::new()),
                ..ok.clone()
            },
            Limit {
                rate: Some(Rate {
                    count: 1,
                    period_ms: 1000,
                    burst: 0,
                }),
                ..ok.clone()
            },
        ];
        for limit in broken {
            assert!(invalid(&limit).is_some(), "{limit:?}");
        }
    }
}
