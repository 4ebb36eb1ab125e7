//! The vocabulary of invocations carried inside log commands: what is invoked, by whom, and how an
//! attempt ended. Stored in the log, so append-only like [`crate::Command`].

use crate::{DeploymentId, EntryIndex, InvocationId, ObjectKey, RetryPolicy};
use holdfast_protocol::message::Headers;
use holdfast_protocol::{Outcome, Payload};
use serde::{Deserialize, Serialize};

/// The handler an invocation runs: a service's handler, and the object or workflow key if any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    /// Service, virtual object or workflow name.
    pub service: String,
    /// Handler name within the service.
    pub handler: String,
    /// Object or workflow key; absent for stateless services.
    pub key: Option<String>,
}

impl Target {
    /// Builds a target.
    pub fn new(
        service: impl Into<String>,
        handler: impl Into<String>,
        key: Option<String>,
    ) -> Self {
        Self {
            service: service.into(),
            handler: handler.into(),
            key,
        }
    }

    /// The object whose state and lock this target addresses, if it is keyed.
    pub fn object(&self) -> Option<ObjectKey> {
        self.key
            .as_ref()
            .map(|key| ObjectKey::new(self.service.clone(), key.clone()))
    }
}

/// How a handler runs with respect to its object: decides locking and state access.
pub use holdfast_protocol::manifest::HandlerKind;

/// Who asked for an invocation, so its result can be routed back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// An external client through the ingress.
    Ingress,
    /// Another invocation's `call` or `send` entry.
    Invocation {
        /// The calling invocation.
        id: InvocationId,
        /// Its journal entry that made the call.
        entry: EntryIndex,
    },
    /// A tick of a schedule (see [`crate::Command::FireSchedule`]).
    Schedule {
        /// The schedule's name.
        name: String,
        /// The tick, in Unix milliseconds.
        tick_ms: u64,
    },
}

/// Everything needed to create an invocation; proposed by the ingress or produced by a caller's
/// outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// The new invocation's id (see [`InvocationId`] for how each proposer derives it).
    pub id: InvocationId,
    /// The handler to run.
    pub target: Target,
    /// Locking and state access of the handler, as resolved from the registered schema.
    pub kind: HandlerKind,
    /// The request body, journaled as the input entry.
    pub argument: Payload,
    /// Headers passed to the handler.
    pub headers: Headers,
    /// Who asked, so the result can be routed back.
    pub source: Source,
    /// Deduplicates requests for the same target; with it the id is [`InvocationId::idempotent`].
    pub idempotency_key: Option<String>,
    /// How long the completed result is kept for duplicates and attach, in milliseconds.
    pub retention_ms: u64,
    /// Whether the source waits for the result (false for one-way sends).
    pub response: bool,
    /// The proposer's clock when the request was accepted, in Unix milliseconds.
    pub at_ms: u64,
    /// The deployment serving the target when the request was accepted: every attempt runs there,
    /// so a new registration never changes code under an invocation in flight. `None` pins the
    /// newest deployment at each attempt (calls from other invocations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentId>,
    /// The retry policy of every attempt, resolved by the proposer from the registered schema
    /// and its node's configuration when the request was accepted (handler > service > node).
    /// `None` (requests written before it existed) uses the state machine's configured policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The invocation's secret, from which the key that signs its awakeable ids is derived (see
    /// [`crate::awakeable`]): random from the ingress, derived from the caller's for calls. Only
    /// the derived key is ever sent to an SDK.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub secret: u128,
    /// When the invocation may start, in Unix milliseconds (a delayed send); until then it is
    /// scheduled. `None` starts it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_at_ms: Option<u64>,
    /// The trace the invocation joins and the span it is a child of (the ingress request or the
    /// caller's entry); stored with the invocation so every partition and node continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::TraceContext>,
}

/// How one attempt of an invocation ended, as reported by the invoker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// The handler is blocked until one of these entries completes.
    Suspended {
        /// Entries whose completion lets the handler continue.
        waiting: Vec<EntryIndex>,
    },
    /// The attempt failed without an output.
    Failed {
        /// 500 for a handler error, 570 journal mismatch, 571 protocol violation, or the code the
        /// invocation must fail with when not retryable.
        code: u16,
        /// What went wrong.
        message: String,
        /// True: retry with a new attempt; false: complete the invocation with this failure.
        retryable: bool,
        /// Delay asked for by the handler's retry options, overriding the kernel's policy.
        retry_after_ms: Option<u64>,
    },
    /// The SDK sent `end` after its output entry.
    Completed,
}

/// A message one partition sends another through its outbox and the shuffle, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxMessage {
    /// Start an invocation (a call or send from an invocation of the sending partition).
    Invoke(Box<InvocationRequest>),
    /// Complete a caller's journal entry with its callee's result.
    Completion {
        /// The caller.
        id: InvocationId,
        /// The caller's `call` entry.
        index: EntryIndex,
        /// The callee's output.
        outcome: Outcome,
    },
    /// Cancel a callee, because its caller was cancelled.
    Cancel {
        /// The callee.
        id: InvocationId,
    },
    /// Kill a callee, because its caller was killed.
    Kill {
        /// The callee.
        id: InvocationId,
    },
    /// Complete an awakeable of another invocation (a `complete_awakeable` entry); applied like
    /// [`crate::Command::CompleteAwakeable`].
    CompleteAwakeable {
        /// The invocation that created the awakeable.
        id: InvocationId,
        /// Its `awakeable` entry.
        index: EntryIndex,
        /// Proof that the id was issued for that entry.
        #[serde(with = "serde_bytes")]
        token: [u8; crate::awakeable::TOKEN_BYTES],
        /// Resolution (value) or rejection (failure).
        outcome: Outcome,
    },
    /// The invocation of tick `tick_ms` of schedule `name` ended; to the partition that fires the
    /// schedule, which may start a tick queued behind it.
    ScheduleRunEnded {
        /// The schedule.
        name: String,
        /// The tick whose invocation ended.
        tick_ms: u64,
    },
    /// Invocation `id` asks limit `limit`'s home for a permit to start its next attempt.
    LimitAcquire {
        /// The limit.
        limit: String,
        /// The invocation waiting.
        id: InvocationId,
        /// The attempt waiting: a permit for an earlier one is given back.
        epoch: crate::Epoch,
    },
    /// Limit `limit`'s home grants invocation `id` a permit: its attempt may start.
    LimitGrant {
        /// The limit.
        limit: String,
        /// The invocation granted.
        id: InvocationId,
        /// The attempt it asked for.
        epoch: crate::Epoch,
    },
    /// Invocation `id` no longer runs an attempt (it suspended, backs off, or ended): its permit
    /// of limit `limit` returns to the limit's home.
    LimitRelease {
        /// The limit.
        limit: String,
        /// The invocation releasing.
        id: InvocationId,
    },
}

/// What a tick of a schedule does while the invocation of an earlier tick still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick is skipped.
    #[default]
    Skip,
    /// The tick waits, in order, until the runs before it ended (at most
    /// [`Overlap::MAX_QUEUED`] ticks; more are skipped).
    Queue,
    /// The tick starts its invocation at once.
    Allow,
}

impl Overlap {
    /// The most ticks that wait behind a running one under [`Overlap::Queue`].
    pub const MAX_QUEUED: usize = 100;

    /// The policy's name as the admin API and SQL show it: `skip`, `queue` or `allow`.
    pub fn name(&self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }
}

impl OutboxMessage {
    /// The partition key of the invocation this message is for; the shuffle routes by it.
    pub fn partition_key(&self) -> u64 {
        match self {
            OutboxMessage::Invoke(request) => request.id.partition_key,
            OutboxMessage::Completion { id, .. }
            | OutboxMessage::Cancel { id }
            | OutboxMessage::Kill { id }
            | OutboxMessage::CompleteAwakeable { id, .. }
            | OutboxMessage::LimitGrant { id, .. } => id.partition_key,
            OutboxMessage::LimitAcquire { limit, .. }
            | OutboxMessage::LimitRelease { limit, .. } => {
                crate::routing::limit_partition_key(limit)
            }
            OutboxMessage::ScheduleRunEnded { name, .. } => {
                crate::routing::schedule_partition_key(name)
            }
        }
    }
}

fn is_zero(value: &u128) -> bool {
    *value == 0
}
