//! How failed attempts of an invocation are retried. The policy an invocation uses travels in the
//! log (inside [`crate::InvocationRequest`] and `JournalAppend`), so every replica of a partition
//! backs off and gives up exactly alike.

use serde::{Deserialize, Serialize};

/// What happens to an invocation once its attempts are used up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OnMaxAttempts {
    /// Keep the invocation and its journal; an operator resumes it.
    #[default]
    Pause,
    /// Fail the invocation with the last error; its caller gets that error.
    Kill,
}

/// Exponential backoff between attempts, then pause or kill.
///
/// Equality compares the factor bit for bit, so the type is `Eq` like the commands carrying it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry, in milliseconds.
    pub initial_interval_ms: u64,
    /// Each further delay is the previous one times this factor (>= 1).
    pub factor: f64,
    /// Upper bound of any single delay, in milliseconds.
    pub max_interval_ms: u64,
    /// Attempts (the first included) that may fail retryably before `on_max_attempts` applies.
    pub max_attempts: u32,
    /// What to do once the attempts are used up.
    pub on_max_attempts: OnMaxAttempts,
}

impl PartialEq for RetryPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.initial_interval_ms == other.initial_interval_ms
            && self.factor.to_bits() == other.factor.to_bits()
            && self.max_interval_ms == other.max_interval_ms
            && self.max_attempts == other.max_attempts
            && self.on_max_attempts == other.on_max_attempts
    }
}

impl Eq for RetryPolicy {}

impl Default for RetryPolicy {
    /// 50 ms, doubling up to 60 s, 70 attempts, then pause.
    fn default() -> Self {
        Self {
            initial_interval_ms: 50,
            factor: 2.0,
            max_interval_ms: 60_000,
            max_attempts: 70,
            on_max_attempts: OnMaxAttempts::Pause,
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after `failures` consecutive failed attempts (from 1).
    ///
    /// Computed by repeated multiplication (no `powf`), which IEEE 754 makes identical on every
    /// platform; a factor below 1 (or not a number) keeps the initial delay.
    pub fn delay_ms(&self, failures: u32) -> u64 {
        let cap = self.max_interval_ms;
        let initial = self.initial_interval_ms.min(cap);
        if initial == 0 || self.factor.is_nan() || self.factor <= 1.0 {
            return initial;
        }
        #[allow(clippy::cast_precision_loss)]
        let (mut delay, limit) = (initial as f64, cap as f64);
        for _ in 1..failures {
            delay *= self.factor;
            if delay >= limit {
                return cap;
            }
        }
        // In range by the check above: below `cap`, at least `initial`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let delay = delay.round() as u64;
        delay.min(cap)
    }

    /// Whether `failures` consecutive failed attempts use up this policy.
    pub fn exhausted(&self, failures: u32) -> bool {
        failures >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_by_the_factor_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_ms(1), 50);
        assert_eq!(policy.delay_ms(2), 100);
        assert_eq!(policy.delay_ms(5), 800);
        assert_eq!(policy.delay_ms(11), 51_200);
        assert_eq!(policy.delay_ms(12), 60_000);
        assert_eq!(policy.delay_ms(u32::MAX), 60_000);
    }

    #[test]
    fn fractional_factors_and_degenerate_policies() {
        let policy = RetryPolicy {
            initial_interval_ms: 100,
            factor: 1.5,
            max_interval_ms: 1_000,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay_ms(1), 100);
        assert_eq!(policy.delay_ms(2), 150);
        assert_eq!(policy.delay_ms(3), 225);
        assert_eq!(policy.delay_ms(7), 1_000);
        let flat = RetryPolicy {
            factor: 1.0,
            ..policy
        };
        assert_eq!(flat.delay_ms(1_000_000), 100);
        let nan = RetryPolicy {
            factor: f64::NAN,
            ..policy
        };
        assert_eq!(nan.delay_ms(9), 100);
        let capped = RetryPolicy {
            initial_interval_ms: 5_000,
            ..policy
        };
        assert_eq!(capped.delay_ms(1), 1_000);
    }

    #[test]
    fn equality_is_bitwise_on_the_factor() {
        let a = RetryPolicy::default();
        assert_eq!(a, a);
        assert_ne!(
            a,
            RetryPolicy {
                factor: 2.000_000_1,
                ..a
            }
        );
    }
}
