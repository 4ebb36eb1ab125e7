//! Flow-control limits: at most so many attempts of some handlers running at once, at most so
//! many started per period. A limit is granted by one partition, its home (the partition its
//! name routes to), so its budget holds across the cluster exactly, not per partition.

use crate::Target;
use serde::{Deserialize, Serialize};

/// One limit as the partitions apply it: which invocations it covers and its budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Unique name; the limit's home partition is derived from it.
    pub name: String,
    /// The service it covers.
    pub service: String,
    /// Only this handler of the service, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Only objects (or workflows) whose key starts with this, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// At most this many attempts of covered invocations run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// At most this many attempts start per period (a token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// A token bucket: `count` tokens per `period_ms`, holding at most `burst`; each attempt that
/// starts takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens added per period.
    pub count: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// The most tokens the bucket holds (attempts that may start at once after a quiet time).
    pub burst: u32,
}

/// Thousandths of a token: the bucket's unit, so refills of a few milliseconds are not lost.
pub const MILLI: u64 = 1000;

impl Rate {
    /// The bucket's level `elapsed_ms` after it held `level` milli-tokens, capped at the burst.
    /// While requests wait (`backlogged`) it may hold one token more: a wake that comes a little
    /// late then grants that token too, instead of losing the lateness and starting fewer than
    /// the rate over time.
    pub fn refill(&self, level: u64, elapsed_ms: u64, backlogged: bool) -> u64 {
        let added = u128::from(elapsed_ms) * u128::from(self.count) * u128::from(MILLI)
            / u128::from(self.period_ms.max(1));
        let full = (u64::from(self.burst.max(1)) + u64::from(backlogged)) * MILLI;
        u64::try_from(u128::from(level) + added)
            .unwrap_or(u64::MAX)
            .min(full)
    }

    /// Milliseconds until a bucket at `level` milli-tokens holds a whole token.
    pub fn wait_ms(&self, level: u64) -> u64 {
        let missing = u128::from(MILLI.saturating_sub(level));
        let per_ms = u128::from(self.count.max(1)) * u128::from(MILLI);
        let wait = (missing * u128::from(self.period_ms.max(1))).div_ceil(per_ms);
        u64::try_from(wait).unwrap_or(u64::MAX).max(1)
    }

    /// The rate as the admin API writes it: `50/s`, `10/m`, `3/2s`.
    pub fn display(&self) -> String {
        let period = match self.period_ms {
            1000 => "s".to_owned(),
            60_000 => "m".to_owned(),
            3_600_000 => "h".to_owned(),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        format!("{}/{period}", self.count)
    }
}

impl Limit {
    /// Whether invocations of `target` are covered.
    pub fn covers(&self, target: &Target) -> bool {
        target.service == self.service
            && self.handler.as_ref().is_none_or(|h| *h == target.handler)
            && self
                .key_prefix
                .as_ref()
                .is_none_or(|prefix| target.key.as_ref().is_some_and(|k| k.starts_with(prefix)))
    }

    /// The partition key of the limit's home, which grants it.
    pub fn partition_key(&self) -> u64 {
        crate::routing::limit_partition_key(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(handler: Option<&str>, key_prefix: Option<&str>) -> Limit {
        Limit {
            name: "l".into(),
            service: "S".into(),
            handler: handler.map(Into::into),
            key_prefix: key_prefix.map(Into::into),
            max_concurrency: Some(1),
            rate: None,
        }
    }

    #[test]
    fn a_limit_covers_its_service_handler_and_key_prefix() {
        let t = |h: &str, k: Option<&str>| Target::new("S", h, k.map(Into::into));
        assert!(limit(None, None).covers(&t("a", None)));
        assert!(!limit(None, None).covers(&Target::new("T", "a", None)));
        assert!(limit(Some("a"), None).covers(&t("a", Some("x"))));
        assert!(!limit(Some("a"), None).covers(&t("b", None)));
        assert!(limit(None, Some("eu-")).covers(&t("a", Some("eu-1"))));
        assert!(!limit(None, Some("eu-")).covers(&t("a", Some("us-1"))));
        assert!(!limit(None, Some("eu-")).covers(&t("a", None)));
    }

    #[test]
    fn the_bucket_refills_at_its_rate_up_to_its_burst() {
        let rate = Rate {
            count: 50,
            period_ms: 1000,
            burst: 2,
        };
        assert_eq!(rate.refill(0, 20, false), 1000);
        assert_eq!(rate.refill(0, 1, false), 50);
        assert_eq!(rate.refill(500, 1000, false), 2000);
        assert_eq!(rate.refill(500, 1000, true), 3000);
        assert_eq!(rate.refill(0, 21, true), 1050);
        assert_eq!(rate.wait_ms(0), 20);
        assert_eq!(rate.wait_ms(990), 1);
        let slow = Rate {
            count: 10,
            period_ms: 60_000,
            burst: 1,
        };
        assert_eq!(slow.wait_ms(0), 6000);
        assert_eq!(slow.refill(0, 3000, false), 500);
        assert_eq!(slow.display(), "10/m");
        assert_eq!(rate.display(), "50/s");
    }
}
