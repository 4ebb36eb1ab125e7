//! The invoker: one [`InvocationActor`] per attempt of an invocation. The partition leader starts
//! it for an `Effect::RunAttempt`; the actor streams `start` and the journal to the service
//! endpoint, reports each new entry and run result as it arrives, forwards the completions and
//! acks the partition sends back, and reports how the attempt ended exactly once.
//!
//! ```text
//!  PartitionActor                 InvocationActor                       endpoint (SDK)
//!    | start(AttemptSpec) ------> | start + replayed journal ------------> |
//!    | <-- AttemptEvent::Entry -- | <-------------------- new entries ---- |
//!    | <-- AttemptEvent::RunResult| <------------ run completions (ACK) -- |
//!    | DeliverCompletion/Ack ---> | completion / entry_ack -------------> |
//!    | <-- AttemptEvent::Ended -- | <--- end | suspension | error | fault -|
//!    | Stop (fenced, killed) ---> | reset, no Ended                        |
//! ```
//!
//! Inactivity: when the SDK says nothing for [`Timeouts::inactivity`], the actor closes the
//! request side, which makes a handler blocked on the kernel suspend; if the attempt has not
//! ended [`Timeouts::abort`] later, it is dropped and reported as a retryable failure.
//!
//! # Layout
//! - [`actor`]: [`InvocationActor`] and the failure codes it reports.
//! - [`replay`](mod@replay): a stored journal item as the message replayed to the SDK.
//! - `span`: the attempt's span, exported when the actor stops if its trace is sampled.
//! - `session`: the I/O-free bookkeeping of one attempt (entry indices, what each frame means),
//!   with [`Violation`] naming each way the SDK can break the protocol.

#![warn(missing_docs)]

pub mod actor;
pub mod replay;

mod session;
mod span;

use std::time::Duration;

use actix::Message;
use holdfast_fsm::state::JournalItem;
use holdfast_protocol::message::Start;
use holdfast_protocol::{Entry, EntryIndex, Outcome};
use holdfast_types::{Ending, Epoch, InvocationId, Target, TraceContext};

pub use actor::InvocationActor;
pub use replay::{replay, replay_entry};
pub use session::Violation;

/// Everything one attempt needs; the partition fills it from `Effect::RunAttempt` and its state.
#[derive(Debug, Clone)]
pub struct AttemptSpec {
    /// The invocation the attempt belongs to; carried in every report.
    pub id: InvocationId,
    /// The attempt's epoch; carried in every report so the state machine can fence it.
    pub epoch: Epoch,
    /// Service and handler to invoke (the key travels in `start`).
    pub target: Target,
    /// Base URI of the deployment serving the target.
    pub endpoint: http::Uri,
    /// The `start` message: attempt number, id text, key, headers, retry info, eager state, and
    /// `known_entries` equal to the journal's length.
    pub start: Start,
    /// The journal so far, input first, replayed to the SDK with its results.
    pub journal: Vec<JournalItem>,
    /// The invocation's trace: the attempt's span is a child of the invocation's span and is
    /// sent to the endpoint as `traceparent`.
    pub trace: Option<TraceContext>,
}

/// How long an attempt may stay silent before it is asked to suspend, and then before it is
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Silence from the SDK after which the request side is closed (the SDK then suspends).
    pub inactivity: Duration,
    /// Time after that close within which the attempt must end, or it is aborted.
    pub abort: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            inactivity: Duration::from_secs(60),
            abort: Duration::from_secs(600),
        }
    }
}

/// What an attempt tells the partition that started it, in the order the SDK wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum AttemptEvent {
    /// A new journal entry to append durably at `index`.
    Entry {
        /// The invocation.
        id: InvocationId,
        /// The attempt that wrote it.
        epoch: Epoch,
        /// Its position: the next index after the replayed journal and earlier new entries.
        index: EntryIndex,
        /// The entry as the SDK wrote it.
        entry: Entry,
        /// The SDK asked for an `entry_ack` once it is durable.
        ack: bool,
    },
    /// The SDK's result for its own `run` entry at `index`.
    RunResult {
        /// The invocation.
        id: InvocationId,
        /// The attempt that produced it.
        epoch: Epoch,
        /// The run entry.
        index: EntryIndex,
        /// The action's result.
        outcome: Outcome,
        /// The SDK waits for an `entry_ack` before releasing the result to the handler.
        ack: bool,
    },
    /// How the attempt ended; sent exactly once, unless the attempt was stopped.
    Ended {
        /// The invocation.
        id: InvocationId,
        /// The attempt that ended.
        epoch: Epoch,
        /// Completed, suspended or failed.
        ending: Ending,
    },
}

/// The result of entry `index` became durable: forward it to the SDK (once per entry).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DeliverCompletion {
    /// The completed entry.
    pub index: EntryIndex,
    /// Its result.
    pub outcome: Outcome,
}

/// Entry `index` (and every entry before it) is durable: tell the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DeliverAck {
    /// The durable entry.
    pub index: EntryIndex,
}

/// One entry or run result this attempt reported was committed (or will never be): one more
/// frame may be read from the SDK. An attempt reads at most [`CREDIT_WINDOW`] frames ahead of
/// the log, so an SDK writing faster than the partition commits is slowed by HTTP/2 flow control
/// instead of filling the partition's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DeliverCredit;

/// Frames an attempt reads from the SDK ahead of their commit.
pub const CREDIT_WINDOW: usize = 256;

/// The attempt was fenced or killed: drop it at once, without reporting how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Stop;
