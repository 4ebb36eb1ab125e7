//! Settings of the state machine. They decide state, so every replica must use the same values
//! for the same log: they come from the cluster configuration (the node config's `[invocation]`
//! section, which every node of a cluster must set alike), never from one node's local choices.
//!
//! Most invocations carry their own retry policy in the log (resolved from the registry when they
//! were accepted); [`Config::retry`] is the policy of those that do not.

use holdfast_types::PartitionId;
use holdfast_types::routing::partition_for_key;
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
    /// The partition these commands are applied to: a message to one of its own invocations is
    /// delivered within the command that sends it, not through the outbox and the log again.
    /// `None` (tools, tests of the outbox): every message goes through the outbox.
    #[serde(skip)]
    pub home: Option<Home>,
}

/// A partition among the cluster's partitions, as the state machine needs to know its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home {
    /// This partition.
    pub partition: PartitionId,
    /// How many partitions the cluster has (fixed when the data dir was created).
    pub partitions: u32,
}

impl Home {
    /// Whether an invocation with `partition_key` belongs to this partition.
    pub fn owns(&self, partition_key: u64) -> bool {
        partition_for_key(partition_key, self.partitions) == self.partition
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            call_retention_ms: 24 * 60 * 60 * 1000,
            tracing: false,
            home: None,
        }
    }
}
