//! The partition actor: one per log partition, owning that partition's openraft group and its
//! redb stores, and turning concurrent proposals into group commits.
//!
//! ```text
//!   Propose ──► PartitionActor ── pending batch ──► Raft::client_write(Batch) ──► log.redb (fsync)
//!                  ▲    │                                      │
//!                  │    └── acks every proposal of the batch ◄─┘ after commit + apply
//!                  └── RaftObserved (leader, term, applied) from the raft metrics watch
//! ```
//!
//! At most one batch per partition is in flight; proposals that arrive meanwhile form the next
//! batch, so under load each fsync carries many commands. Leadership is observed, never assumed:
//! a follower refuses proposals with [`ProposeError::NotLeader`].

mod actor;
mod metrics;

pub use actor::{PartitionActor, Settings};
pub use metrics::Histogram;

use actix::Message;
use holdfast_types::{Command, LogIndex, NodeId, PartitionId, Term};
use serde::Serialize;

/// Asks a partition to make `Command` durable; answered once it is committed and applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<LogIndex, ProposeError>")]
pub struct Propose(pub Command);

/// Asks a partition for its status and metrics.
#[derive(Debug, Message)]
#[rtype(result = "PartitionStatus")]
pub struct GetStatus;

/// Asks a partition to finish its in-flight commits, make its state durable and stop its raft
/// group. Later proposals are refused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Why a proposal was not acknowledged. Only [`ProposeError::Storage`] means the outcome is
/// unknown; every other refusal means the command was not written.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// Another node leads this partition; retry there.
    #[error("partition {partition} is led by {leader:?}, not by this node")]
    NotLeader {
        partition: PartitionId,
        leader: Option<NodeId>,
    },
    /// Too many proposals are waiting for this partition; retry later.
    #[error("partition {0} is overloaded")]
    Overloaded(PartitionId),
    /// The partition is shutting down.
    #[error("partition {0} is shutting down")]
    ShuttingDown(PartitionId),
    /// The raft group failed while the command was in flight; it may or may not be committed.
    #[error("partition {partition} failed while committing: {message}")]
    Storage {
        partition: PartitionId,
        message: String,
    },
}

/// A snapshot of one partition's role and counters, for health checks and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    /// Which partition this is.
    pub partition: PartitionId,
    /// The node currently leading the partition, if one is known.
    pub leader: Option<NodeId>,
    /// The current raft term.
    pub term: Term,
    /// Index of the last applied log entry.
    pub applied_index: LogIndex,
    /// Index of the last entry in the local log.
    pub last_log_index: LogIndex,
    /// Proposals acknowledged since start.
    pub proposals: u64,
    /// Raft entries (group commits) written since start.
    pub batches: u64,
    /// Commands per group commit.
    pub batch_size: Histogram,
    /// Seconds from a proposal's arrival to its acknowledgement.
    pub commit_latency: Histogram,
}
