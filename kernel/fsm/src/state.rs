//! The records the state machine keeps per invocation, stored through [`crate::Store`].

use holdfast_protocol::message::Headers;
use holdfast_protocol::{Entry, EntryIndex, Outcome};
use holdfast_types::{
    DeploymentId, Epoch, HandlerKind, InvocationId, InvocationRequest, RetryPolicy, Source, Target,
    TraceContext,
};
use serde::{Deserialize, Serialize};

/// Where an invocation is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Waiting in its object's inbox for the exclusive lock.
    Inboxed,
    /// Attempt `epoch` is running; only its entries are accepted.
    Invoked { epoch: Epoch },
    /// Attempt `epoch` suspended; a completion of any `waiting` entry starts the next one.
    Suspended {
        epoch: Epoch,
        waiting: Vec<EntryIndex>,
    },
    /// Attempt `epoch` failed retryably; its `Retry` timer (or a `Retry` for `epoch`) starts
    /// the next one.
    BackingOff {
        epoch: Epoch,
        /// Consecutive failed attempts so far.
        attempts: u32,
        /// When the `Retry` timer fires, in Unix milliseconds; absent in records written before
        /// retries were timers (a new leader retries those at once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at_ms: Option<u64>,
    },
    /// Retries are exhausted after attempt `epoch`, or an operator paused it then; waits for
    /// `Resume` or `ResumeOn`.
    Paused { epoch: Epoch },
    /// Done: the result is kept until `expires_at_ms`, then purged.
    Completed {
        outcome: Outcome,
        expires_at_ms: u64,
    },
    /// A delayed invocation: its `Start` timer fires at `start_at_ms`, then it starts (or queues
    /// for its object's lock) like a new one.
    Scheduled { start_at_ms: u64 },
    /// Attempt `epoch` waits for a permit of a limit covering it (`Invocation::limits`); the
    /// limit's home grants it in arrival order.
    Throttled { epoch: Epoch },
}

/// Everything the partition knows about one invocation, apart from its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Lifecycle position.
    pub status: Status,
    /// The handler it runs.
    pub target: Target,
    /// Locking and state access of the handler.
    pub kind: HandlerKind,
    /// Who asked; receives the result if `response`.
    pub source: Source,
    /// Whether the source waits for the result.
    pub response: bool,
    /// Further callers that attached with the same idempotency key and wait for the result.
    pub callers: Vec<(InvocationId, EntryIndex)>,
    /// Headers of the original request, passed to every attempt.
    pub headers: Headers,
    /// The idempotency key it was created with, to forget it on purge.
    pub idempotency_key: Option<String>,
    /// How long the result is kept after completion.
    pub retention_ms: u64,
    /// When it was accepted (proposer's clock, Unix milliseconds).
    pub created_at_ms: u64,
    /// Number of journal entries; the next entry's index.
    pub journal_len: u32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Consecutive attempts that ended in a retryable failure (reset by progress).
    pub retries: u32,
    /// The deployment its attempts are pinned to; `None` until pinning is recorded (the
    /// invoker then uses the newest deployment of the service).
    pub deployment: Option<DeploymentId>,
    /// Index of the output entry, once the handler wrote it.
    pub output: Option<EntryIndex>,
    /// A cancellation arrived while nothing was pending: deliver it to the next completable entry.
    pub cancel_pending: bool,
    /// The retry policy it was accepted with; `None` uses the state machine's configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Never leaves the kernel: its awakeable key, which signs the ids of its awakeables, is
    /// derived from it and sent to the SDK in `start` (see [`holdfast_types::awakeable`]); the
    /// secrets of its callees are derived from it too.
    #[serde(default)]
    pub secret: u128,
    /// How its latest failed attempt failed, for operators (`sys_invocation.last_failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<holdfast_protocol::Failure>,
    /// The trace it belongs to and its parent span, from the request that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// The limits covering it, by name in ascending order, fixed when it was admitted; each of
    /// its attempts holds a permit of every one while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
    /// How many of `limits` (from the first) grant the current attempt a permit now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub permits: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A workflow's durable promise, addressed by (workflow service, key, name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Promise {
    /// Completed by a `complete_promise` entry: the first completion is final.
    Completed(Outcome),
    /// Not completed yet; these `get_promise` entries wait for it.
    Pending {
        /// (invocation, `get_promise` entry) pairs, in the order they started waiting.
        waiters: Vec<(InvocationId, EntryIndex)>,
    },
}

/// One journal entry as stored: exactly what the SDK (or the kernel, for the input) wrote, and
/// the result it received later if it is completable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalItem {
    /// The entry as written.
    pub entry: Entry,
    /// Its completion, when it came after the entry.
    pub completion: Option<Outcome>,
    /// The invocation a `call` or `send` entry started: cancel and kill reach it by this id,
    /// which the entry alone cannot tell (a workflow callee's id depends on its handler kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee: Option<InvocationId>,
    /// When the timer of a `sleep` entry fires: a timer left over from an earlier invocation
    /// with the same id (purged, then created again) must not complete this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_at_ms: Option<u64>,
    /// The attempt that wrote it and when (`sys_journal.appended_at`; a wait's span starts
    /// there); absent for the input entry and in entries written before every entry had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended: Option<Appended>,
}

/// Who appended a journal entry, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The attempt that wrote it.
    pub epoch: Epoch,
    /// The proposer's clock when it arrived, in Unix milliseconds.
    pub at_ms: u64,
}

impl JournalItem {
    /// An entry without a later completion.
    pub fn new(entry: Entry) -> Self {
        Self {
            entry,
            completion: None,
            callee: None,
            fire_at_ms: None,
            appended: None,
        }
    }

    /// The entry's result: the later completion, or the result written with the entry.
    pub fn outcome(&self) -> Option<&Outcome> {
        if let Some(outcome) = &self.completion {
            return Some(outcome);
        }
        match &self.entry {
            Entry::GetState(e) => e.result.as_ref(),
            Entry::StateKeys(e) => e.result.as_ref(),
            Entry::Call(e) => e.result.as_ref(),
            Entry::Sleep(e) => e.result.as_ref(),
            Entry::Run(e) => e.result.as_ref(),
            Entry::Awakeable(e) => e.result.as_ref(),
            Entry::GetPromise(e) => e.result.as_ref(),
            Entry::PeekPromise(e) => e.result.as_ref(),
            Entry::CompletePromise(e) => e.result.as_ref(),
            _ => None,
        }
    }

    /// Whether the entry is completable and still waits for its result.
    pub fn is_pending(&self) -> bool {
        is_completable(&self.entry) && self.outcome().is_none()
    }
}

/// Whether entries of this type receive a result after they are written.
pub fn is_completable(entry: &Entry) -> bool {
    matches!(
        entry,
        Entry::GetState(_)
            | Entry::StateKeys(_)
            | Entry::Call(_)
            | Entry::Sleep(_)
            | Entry::Run(_)
            | Entry::Awakeable(_)
            | Entry::GetPromise(_)
            | Entry::PeekPromise(_)
            | Entry::CompletePromise(_)
    )
}

/// What a partition remembers of a schedule it fires: the schedule's definition lives in the
/// registry, the record of its ticks here, written by the commands that fire them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// The newest tick fired, in Unix milliseconds; a tick at or before it never fires again.
    pub last_tick_ms: u64,
    /// Ticks fired so far.
    pub fired: u64,
    /// Ticks that were due but not fired (missed while nobody led the partition, past what the
    /// catch-up policy fires).
    pub skipped: u64,
    /// The invocation the newest tick started.
    pub last_invocation: Option<InvocationId>,
    /// The ticks whose invocation runs, with the invocation, as far as the overlap policy waits
    /// for them (`skip` and `queue`; at most one).
    pub running: Vec<(u64, InvocationId)>,
    /// Ticks waiting for the running ones to end (overlap `queue`), oldest first.
    pub queued: Vec<InvocationRequest>,
}

/// What a limit's home partition keeps of it: the permits out, the token bucket and the queue of
/// invocations waiting (rows [`Queued`] numbered `head..tail`). Who holds the permits out is kept
/// in rows of its own ([`crate::Store::limit_held`]), so the record stays small however many run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    /// Permits out now (counted for limits with a `max_concurrency`): the sum of the held rows.
    pub running: u64,
    /// The bucket's level, in thousandths of a token ([`holdfast_types::limit::MILLI`]).
    pub level: u64,
    /// When `level` was last refilled, Unix milliseconds.
    pub refilled_at_ms: u64,
    /// The number of the oldest waiting row.
    pub head: u64,
    /// The number the next waiting row gets.
    pub tail: u64,
    /// Permits granted so far.
    pub granted: u64,
    /// Requests were still waiting after the last refill (see [`holdfast_types::Rate::refill`]).
    #[serde(default)]
    pub backlogged: bool,
}

impl LimitState {
    /// How many invocations wait.
    pub fn queued(&self) -> u64 {
        self.tail - self.head
    }
}

/// One invocation waiting in a limit's queue, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The invocation waiting.
    pub id: InvocationId,
    /// The attempt waiting.
    pub epoch: Epoch,
    /// When it asked, Unix milliseconds (the proposer's clock).
    pub at_ms: u64,
}
