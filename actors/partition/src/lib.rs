//! The partition actor: one per log partition, owning that partition's openraft group and its
//! redb stores, and turning concurrent proposals into group commits.
//!
//! ```text
//!   Propose ──► PartitionActor ── pending batch ──► Raft::client_write(Batch) ──► raft-log.redb (fsync)
//!                  ▲    │                                      │
//!                  │    └── acks every proposal of the batch ◄─┘ after commit + apply
//!                  └── RaftObserved (leader, term, applied) from the raft metrics watch
//! ```
//!
//! At most one batch per partition is in flight; proposals that arrive meanwhile form the next
//! batch, so under load each fsync carries many commands. Leadership is observed, never assumed:
//! a follower refuses proposals with [`ProposeError::NotLeader`].
//!
//! The leader also executes what applying a batch asks for (`holdfast_fsm::Effect`): it starts an
//! [`InvocationActor`](holdfast_invocation::InvocationActor) per attempt, forwards completions and
//! acks to it, schedules retries, answers ingress waiters, and hands outbox messages to its
//! [`ShuffleActor`](shuffle::ShuffleActor), which moves them to their target partition exactly once.
//! A node that becomes leader resumes what the previous leader was doing from the applied state.
//!
//! Observations (`Effect::Observe`) feed the leader's per-handler metrics and hand spans derived
//! from the log to the span sink.
//!
//! Operators cancel, kill, purge, pause and resume invocations through [`Control`], which the
//! partition checks against the applied state before proposing the matching command.

mod actor;
mod awakeable;
mod control;
mod effects;
mod invoke;
mod leader;
mod limits;
mod membership;
mod metrics;
#[cfg(test)]
mod model_tests;
mod router;
mod schedules;
mod shuffle;
mod state_edit;
mod telemetry;
mod timers;

pub use actor::{PartitionActor, Settings};
pub use control::{Control, ControlError, ControlRequest, Controlled, DeploymentChoice};
pub use holdfast_fsm::control::Refusal;
pub use membership::GetMembers;
pub use metrics::{HandlerMetrics, Histogram};
pub use router::{Answer, Request, Router};
pub use state_edit::{EditState, EditStateError};

use actix::Message;
use holdfast_fsm::Effect;
use holdfast_protocol::Outcome;
use holdfast_types::{
    Command, InvocationId, InvocationRequest, LogIndex, NodeId, PartitionId, Term,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A committed batch as seen by one of its proposers: where it landed and what applying the whole
/// batch asked the leader to do.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The log index of the batch.
    pub index: LogIndex,
    /// Effects of every command in the batch, in order.
    pub effects: Arc<[Effect]>,
}

/// Asks a partition to make `Command` durable; answered once it is committed and applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<Committed, ProposeError>")]
pub struct Propose(pub Command);

/// Asks a partition to make several commands durable in one batch, in order, all or none (the
/// shuffle delivers a target's messages this way so they can never arrive with gaps).
#[derive(Debug, Message)]
#[rtype(result = "Result<Committed, ProposeError>")]
pub struct ProposeMany(pub Vec<Command>);

/// Makes commands the kernel proposes for itself durable, in one batch (shuffle deliveries from
/// other partitions, fired timers): they wait in their own lane and are never refused as
/// overloaded, only when the partition does not lead or is shutting down.
#[derive(Debug, Message)]
#[rtype(result = "Result<Committed, ProposeError>")]
pub struct ProposeInternal(pub Vec<Command>);

/// Starts (or joins, for a repeated id or idempotency key) an invocation owned by this partition.
#[derive(Debug, Message)]
#[rtype(result = "Result<Invoked, ProposeError>")]
pub struct Invoke {
    /// The request, with its id already derived by the proposer.
    pub request: InvocationRequest,
    /// Whether to wait for the result (a call) or answer once accepted (a send).
    pub wait: bool,
}

/// The answer to [`Invoke`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoked {
    /// The invocation the request started or joined.
    pub id: InvocationId,
    /// True when an invocation with this id or idempotency key already existed.
    pub previously: bool,
    /// The result, when waited for or already known.
    pub outcome: Option<Outcome>,
    /// The request submitted a workflow's run again after it finished: refused, not joined
    /// (`outcome` holds the 409 failure).
    pub workflow_finished: bool,
}

/// Reads an invocation's status: its result if completed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Lookup, ProposeError>")]
pub struct GetInvocation(pub InvocationId);

/// Waits for an invocation's result (attach).
#[derive(Debug, Message)]
#[rtype(result = "Result<Lookup, ProposeError>")]
pub struct AwaitInvocation(pub InvocationId);

/// What a partition knows about an invocation it was asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lookup {
    /// No such invocation (never existed, or purged).
    Unknown,
    /// It exists and has not completed.
    Running,
    /// It completed with this result, kept until `expires_at_ms`.
    Completed {
        /// The result.
        outcome: Outcome,
        /// When the retained result is dropped; `None` when the answer came from the completion
        /// itself (an attach that waited), which does not carry it.
        expires_at_ms: Option<u64>,
    },
}

/// Completes an awakeable of an invocation owned by this partition from outside (the ingress).
/// Answers `false` without proposing anything when no live invocation has an awakeable with
/// this id (unknown, forged, or its invocation completed); `true` once the completion is durable,
/// whether or not it was the first.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, ProposeError>")]
pub struct CompleteAwakeable {
    /// The awakeable, with its token.
    pub id: holdfast_types::AwakeableId,
    /// Value (resolve) or failure (reject).
    pub outcome: Outcome,
}

/// Gives a partition the router to every partition's leader, so its shuffle can deliver outbox
/// messages; sent by the kernel once all of this node's partitions are started.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct UseRouter(pub Router);

/// Asks this node's replica of a partition to stand for election: sent by the current leader to
/// the partition's preferred replica once it is up and caught up, so leadership returns to where
/// the placement put it (openraft 0.9 has no leader transfer; the old leader grants the vote).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StandForElection;

/// Asks the partition's leader for its read index: the committed index, confirmed by a quorum
/// (refused with `NotLeader` elsewhere).
#[derive(Debug, Message)]
#[rtype(result = "Result<LogIndex, ProposeError>")]
pub struct ReadIndex;

/// Answered once this replica has applied up to the index (or refused after the proposal
/// deadline).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ProposeError>")]
pub struct AwaitApplied(pub LogIndex);

/// Asks a partition for its status and metrics.
#[derive(Debug, Message)]
#[rtype(result = "PartitionStatus")]
pub struct GetStatus;

/// Asks a partition to finish its in-flight commits, make its state durable and stop its raft
/// group. Later proposals are refused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Why a proposal was not acknowledged. [`ProposeError::Storage`] and [`ProposeError::Unknown`]
/// mean the outcome is unknown; every other refusal means the command was not written.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The batch did not commit within the proposal deadline; it may still commit. Retrying with
    /// the same idempotency key (or invocation id) is safe.
    #[error("partition {partition} did not commit within {waited:?}; the outcome is unknown")]
    Unknown {
        partition: PartitionId,
        waited: std::time::Duration,
    },
    /// The request was accepted, but this node stopped leading before its invocation completed.
    /// The invocation is durable: asking the new leader again (same invocation id) joins it.
    #[error("partition {0} changed leader before the invocation completed; the outcome is unknown")]
    LostLeadership(PartitionId),
    /// No node answered for the partition (unreachable, or no leader yet); nothing was written
    /// by this request, or a retry with the same invocation id is safe.
    #[error("partition {partition} is unavailable: {reason}")]
    Unavailable {
        partition: PartitionId,
        reason: String,
    },
    /// The raft group failed while the command was in flight; it may or may not be committed.
    #[error("partition {partition} failed while committing: {message}")]
    Storage {
        partition: PartitionId,
        message: String,
    },
}

/// How far one replica of a partition is, as the node reporting it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplicaProgress {
    /// The replica's node.
    pub node: NodeId,
    /// The reporting node's own applied index, or what its leadership knows a follower holds.
    pub applied_index: Option<u64>,
    /// Entries the replica is behind the leader's log (known only on the leader).
    pub lag: Option<u64>,
}

impl PartitionStatus {
    /// Each voter's progress as node `me` sees it: its own applied index, and while it leads,
    /// what each follower holds and how far it is behind.
    pub fn replica_progress(&self, me: NodeId) -> Vec<ReplicaProgress> {
        let leading = self.leader == Some(me);
        self.replicas
            .iter()
            .map(|(node, matched)| ReplicaProgress {
                node: *node,
                applied_index: if *node == me {
                    Some(self.applied_index.0)
                } else {
                    matched.map(|index| index.0)
                },
                lag: leading.then(|| {
                    self.last_log_index
                        .0
                        .saturating_sub(matched.map_or(0, |index| index.0))
                }),
            })
            .collect()
    }
}

/// A snapshot of one partition's role and counters, for health checks and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    /// Which partition this is.
    pub partition: PartitionId,
    /// Whether this node runs a replica of the partition (the other fields are empty if not).
    pub hosted: bool,
    /// The node currently leading the partition, if one is known.
    pub leader: Option<NodeId>,
    /// The current raft term.
    pub term: Term,
    /// Index of the last applied log entry.
    pub applied_index: LogIndex,
    /// Index of the last entry in the local log.
    pub last_log_index: LogIndex,
    /// Index of the last entry purged from the local log (covered by a snapshot), if any.
    pub purged_index: Option<LogIndex>,
    /// Proposals acknowledged since start.
    pub proposals: u64,
    /// Raft entries (group commits) written since start.
    pub batches: u64,
    /// Commands per group commit.
    pub batch_size: Histogram,
    /// Seconds from a proposal's arrival to its acknowledgement.
    pub commit_latency: Histogram,
    /// Timers registered and not fired yet (from the applied state; 0 before the group opens).
    pub pending_timers: u64,
    /// Invocations suspended, waiting for a completion (from the applied state).
    pub suspended: u64,
    /// Invocations queued in object inboxes behind a lock holder (from the applied state).
    pub inbox_depth: u64,
    /// Journal entries appended while this node led the partition.
    pub journal_entries: u64,
    /// Per schedule this partition fires: (name, ticks fired, ticks skipped) while this node led
    /// it.
    pub schedule_ticks: Vec<(String, u64, u64)>,
    /// Per limit this partition is home of: (name, permits out, requests waiting, permits
    /// granted), as last applied while this node led the partition.
    pub limits: Vec<(String, u64, u64, u64)>,
    /// Invocations the reconciler found running with no attempt and restarted, since start.
    pub reconciled: u64,
    /// Attempts running now (0 unless this node leads).
    pub running_attempts: u64,
    /// Attempts waiting for a free slot in memory now (0 unless this node leads).
    pub waiting_attempts: u64,
    /// Per-handler invocation counters while this node led the partition.
    pub handlers: Vec<HandlerMetrics>,
    /// The group's voters; while this node leads, with the last log index each holds.
    pub replicas: Vec<(NodeId, Option<LogIndex>)>,
}
