//! Settings of the state machine. They decide state, so every replica must use the same values
//! for the same log: they come from the cluster configuration (the node config's `[invocation]`
//! section, which every node of a cluster must set alike), never from one node's local choices.
//!
//! Most invocations carry their own retry policy in the log (resolved from the registry when they
//! were accepted); [`Config::retry`] is the policy of those that do not.

pub use holdfast_types::{OnMaxAttempts, RetryPolicy};
use serde::{Deserialize, Serialize};

/// The state machine's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Backoff and pause policy for failed attempts of invocations that carry none.
    pub retry: RetryPolicy,
    /// How long results of invocations started by `call`/`send` entries are kept (they carry no
    /// retention of their own): what a repeated idempotent call can still attach to.
    pub call_retention_ms: u64,
    /// Whether applying commands also yields the spans of sampled invocations
    /// ([`crate::Observation::Span`]). Spans are effects, not state, so nodes may differ here.
    pub tracing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            call_retention_ms: 24 * 60 * 60 * 1000,
            tracing: false,
        }
    }
}
