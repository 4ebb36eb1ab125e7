//! What applying a command asks the world to do. Effects are data: only the partition's leader
//! executes them; followers and replays drop them.

use holdfast_protocol::{EntryIndex, Failure, Outcome};
use holdfast_types::{
    DeploymentId, Epoch, InvocationId, OutboxMessage, SpanRecord, Target, TimerKey,
};
use serde::{Deserialize, Serialize};

/// One thing the leader must do after a command is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Start attempt `epoch`: send `start` and the stored journal to the handler's endpoint.
    RunAttempt {
        id: InvocationId,
        epoch: Epoch,
        target: Target,
        /// The pinned deployment; `None`: the newest one serving the target.
        deployment: Option<DeploymentId>,
    },
    /// Forward the result of entry `index` to the running attempt `epoch`.
    SendCompletion {
        id: InvocationId,
        epoch: Epoch,
        index: EntryIndex,
        outcome: Outcome,
    },
    /// Send `entry_ack` for `index` to attempt `epoch`: the entry or run result is durable.
    Ack {
        id: InvocationId,
        epoch: Epoch,
        index: EntryIndex,
    },
    /// Attempt `epoch` must not continue (a zombie, a killed or an aborted attempt): drop it.
    Fence { id: InvocationId, epoch: Epoch },
    /// Deliver outbox message `seq` to the partition owning `partition_key` (via the shuffle).
    ShuffleOut {
        seq: u64,
        partition_key: u64,
        message: OutboxMessage,
    },
    /// The invocation completed: answer every ingress request waiting for it (none: drop).
    Respond { id: InvocationId, outcome: Outcome },
    /// A repeated request (same id or idempotency key) joined existing invocation `id`: answer
    /// "previously accepted", with the result now if known, else on its `Respond`.
    Attach {
        id: InvocationId,
        outcome: Option<Outcome>,
        /// The request submitted a workflow's run again after it finished: it is refused (409),
        /// not joined; `outcome` holds that failure.
        workflow_finished: bool,
    },
    /// A timer was registered: the leader's timer wheel must propose `FireTimer` for it when it
    /// comes due (the wheel also finds it in the store after a restart or a leader change).
    RegisterTimer { timer: TimerKey },
    /// Limit `name`'s queue waits for its token bucket: propose `DrainLimit` at `at_ms`.
    WakeLimit { name: String, at_ms: u64 },
    /// A fact for metrics and traces; changes nothing in the world.
    Observe(Observation),
}

/// What happened to invocations, for the leader's metrics and span export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Observation {
    /// A new invocation was accepted (created, possibly scheduled or inboxed).
    Accepted { target: Target },
    /// A failed attempt will be retried after a backoff.
    Retrying { target: Target },
    /// An entry was appended to a journal.
    Appended,
    /// An invocation completed.
    Completed(Box<Completion>),
    /// A span derived from the log ended: an invocation's, or a journal action's. Only with
    /// [`crate::Config::tracing`] and for sampled traces.
    Span(Box<SpanRecord>),
    /// Ticks of schedule `name` applied: how many started an invocation, how many were skipped
    /// (missed past the catch-up policy, or overlapping a run under `skip`, or past a full
    /// queue).
    ScheduleTicks {
        /// The schedule.
        name: String,
        /// Ticks that started their invocation.
        fired: u64,
        /// Ticks that will not run.
        skipped: u64,
    },
    /// Limit `name`'s home changed its queue: permits out, requests waiting, granted so far.
    Limit {
        /// The limit.
        name: String,
        /// Permits out now (limits with a `max_concurrency`).
        running: u64,
        /// Requests waiting.
        queued: u64,
        /// Permits granted since the limit was created.
        granted: u64,
        /// The limit was removed: its series end.
        removed: bool,
    },
}

/// How an invocation completed, for its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The handler it ran.
    pub target: Target,
    /// When it was accepted (Unix milliseconds).
    pub created_at_ms: u64,
    /// When it completed (Unix milliseconds).
    pub completed_at_ms: u64,
    /// Its failure, if it failed.
    pub failure: Option<Failure>,
}
