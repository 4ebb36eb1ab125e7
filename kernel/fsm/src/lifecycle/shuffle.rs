//! `ShuffleIn`: a message from another partition's outbox. Applied once: a sequence number at or
//! below the last one seen from that partition is a redelivery and is dropped. Messages between
//! invocations of one partition skip the outbox and are delivered here too ([`deliver`]).

use super::{Ctx, awakeable, cancel, completion, invoke, kill};
use crate::Store;
use holdfast_types::{OutboxMessage, PartitionId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    from: PartitionId,
    seq: u64,
    message: &OutboxMessage,
    at_ms: u64,
) -> Result<(), S::Error> {
    if cx.store.get_dedup(from)?.is_some_and(|last| seq <= last) {
        return Ok(());
    }
    cx.store.put_dedup(from, seq)?;
    deliver(cx, message, at_ms)
}

/// Applies a message for one of this partition's invocations, from another partition's outbox or
/// sent within this partition (never deduplicated: it was never in an outbox).
pub(crate) fn deliver<S: Store>(
    cx: &mut Ctx<'_, S>,
    message: &OutboxMessage,
    at_ms: u64,
) -> Result<(), S::Error> {
    match message {
        OutboxMessage::Invoke(request) => invoke::apply(cx, request, at_ms),
        OutboxMessage::Completion { id, index, outcome } => {
            completion::apply(cx, *id, *index, outcome)
        }
        OutboxMessage::Cancel { id } => cancel::apply(cx, *id, at_ms),
        OutboxMessage::Kill { id } => kill::apply(cx, *id, at_ms),
        OutboxMessage::CompleteAwakeable {
            id,
            index,
            token,
            outcome,
        } => awakeable::apply(cx, *id, *index, token, outcome),
        OutboxMessage::ScheduleRunEnded { name, tick_ms } => {
            super::schedule::run_ended(cx, name, *tick_ms)
        }
        OutboxMessage::LimitAcquire { limit, id, epoch } => {
            super::limit::acquire(cx, limit, *id, *epoch, at_ms)
        }
        OutboxMessage::LimitGrant { limit, id, epoch } => {
            super::limit::granted(cx, limit, *id, *epoch, at_ms)
        }
        OutboxMessage::LimitRelease { limit, id } => super::limit::released(cx, limit, *id, at_ms),
    }
}
