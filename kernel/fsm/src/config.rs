//! Settings of the state machine. They decide state, so every replica must use the same values
//! for the same log (they come from the cluster configuration, fixed per data dir).

use serde::{Deserialize, Serialize};

/// How failed attempts are retried: exponential backoff, then pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// Each further retry waits this many times longer.
    pub factor: u32,
    /// Upper bound of a delay.
    pub max_delay_ms: u64,
    /// Consecutive failed attempts after which the invocation is paused instead of retried.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 50,
            factor: 2,
            max_delay_ms: 60_000,
            max_attempts: 70,
        }
    }
}

impl RetryPolicy {
    /// The delay before retrying after `failures` consecutive failed attempts (from 1).
    pub fn delay_ms(&self, failures: u32) -> u64 {
        let mut delay = self.initial_ms.min(self.max_delay_ms);
        for _ in 1..failures {
            delay = delay.saturating_mul(u64::from(self.factor));
            if delay >= self.max_delay_ms {
                return self.max_delay_ms;
            }
        }
        delay
    }
}

/// The state machine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Backoff and pause policy for failed attempts.
    pub retry: RetryPolicy,
    /// How long results of invocations started by `call`/`send` entries are kept (they carry no
    /// retention of their own): what a repeated idempotent call can still attach to.
    pub call_retention_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            call_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_the_initial_delay_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_ms(1), 50);
        assert_eq!(policy.delay_ms(2), 100);
        assert_eq!(policy.delay_ms(5), 800);
        assert_eq!(policy.delay_ms(11), 51_200);
        assert_eq!(policy.delay_ms(12), 60_000);
        assert_eq!(policy.delay_ms(u32::MAX), 60_000);
    }
}
