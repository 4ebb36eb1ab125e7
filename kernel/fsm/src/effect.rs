//! What applying a command asks the world to do. Effects are data: only the partition's leader
//! executes them; followers and replays drop them.

use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{DeploymentId, Epoch, InvocationId, OutboxMessage, Target, TimerKey};
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
    /// Propose `Retry { id, epoch }` after `delay_ms`.
    ScheduleRetry {
        id: InvocationId,
        epoch: Epoch,
        delay_ms: u64,
    },
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
    },
    /// A timer was registered: the leader's timer wheel must propose `FireTimer` for it when it
    /// comes due (the wheel also finds it in the store after a restart or a leader change).
    RegisterTimer { timer: TimerKey },
}
