//! The vocabulary every other crate speaks: identifiers, the commands written to a partition's
//! log, and the versioned encoding those commands travel in.
//!
//! # Layout
//! - [`ids`]: newtypes for nodes, partitions, log positions, invocations and attempts, so no bare
//!   integer crosses a crate; [`deployment`]: deployment ids (`dp_…`).
//! - [`invocation`]: targets, handler kinds, sources and attempt endings carried by commands.
//! - [`limit`]: flow-control limits (concurrency and rate) and their token bucket.
//! - [`retry`]: the retry policy an invocation is accepted with.
//! - [`command`]: [`Command`], the only things ever written to a partition log.
//! - [`codec`]: the log encoding — one format-version byte, then MessagePack.
//! - [`routing`]: which partition owns a key; stable across processes and releases.
//! - [`timer`]: durable timers and their storage keys, ordered by fire time.
//! - [`awakeable`]: awakeable ids, signed with a key derived from their invocation's secret.
//! - [`trace`]: trace contexts stored with invocations, derived span ids, finished spans.

pub mod awakeable;
mod base62;
pub mod codec;
pub mod command;
pub mod deployment;
pub mod files;
pub mod ids;
pub mod invocation;
pub mod limit;
pub mod retry;
pub mod routing;
pub mod timer;
pub mod trace;

pub use awakeable::AwakeableId;
pub use command::{Command, ObjectKey, StateEntry, state_version};
pub use deployment::{DeploymentId, ParseDeploymentIdError};
pub use ids::{EntryIndex, Epoch, InvocationId, LogIndex, NodeId, ParseIdError, PartitionId, Term};
pub use invocation::{
    Ending, HandlerKind, InvocationRequest, OutboxMessage, Overlap, Source, Target,
};
pub use limit::{Limit, Rate};
pub use retry::{OnMaxAttempts, RetryPolicy};
pub use timer::{Timer, TimerKey};
pub use trace::{SpanId, SpanRecord, TraceContext, TraceId};
