//! `FireTimer`: a durable timer came due. Applied only if the timer is still pending, and it is
//! deleted as it fires, so it fires exactly once however often the timer wheel proposes it (a
//! new leader proposes again what the old one may already have proposed).
//!
//! - `Sleep`: completes the pending `sleep` entry with `{}` (sent to the running attempt, or
//!   resuming a suspended one).
//! - `Start`: admits a scheduled invocation (lock, inbox or start), unless it was cancelled or
//!   killed meanwhile.
//! - `Purge`: forgets a completed invocation whose retention ended.
//! - `Retry`: starts the next attempt of an invocation still backing off from that attempt.
//!
//! A timer whose fire time no longer matches its invocation (left over from an earlier
//! invocation with the same id, purged and created again) is dropped without effect.

use super::{Ctx, admit, purge, retry, settle};
use crate::Store;
use crate::state::Status;
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{InvocationId, Timer, TimerKey};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    timer: &TimerKey,
    at_ms: u64,
) -> Result<(), S::Error> {
    if !cx.store.has_timer(timer)? {
        return Ok(());
    }
    cx.store.delete_timer(timer)?;
    match timer.timer {
        Timer::Sleep { id, index } => wake(cx, id, index, timer.fire_at_ms),
        Timer::Start { id } => start(cx, id, timer.fire_at_ms, at_ms),
        Timer::Retry { id, epoch } => {
            let Some(rec) = cx.store.get_invocation(id)? else {
                return Ok(());
            };
            match rec.status {
                Status::BackingOff {
                    epoch: current,
                    retry_at_ms: Some(due),
                    ..
                } if current == epoch && due == timer.fire_at_ms => retry::apply(cx, id, epoch),
                _ => Ok(()),
            }
        }
        Timer::Purge { id } => {
            let Some(rec) = cx.store.get_invocation(id)? else {
                return Ok(());
            };
            match rec.status {
                Status::Completed { expires_at_ms, .. } if expires_at_ms == timer.fire_at_ms => {
                    purge::forget(cx, id, &rec)
                }
                _ => Ok(()),
            }
        }
    }
}

/// Completes sleep entry `index` of `id` if it still waits for this timer.
fn wake<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    index: EntryIndex,
    fire_at_ms: u64,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    if matches!(rec.status, Status::Completed { .. }) {
        return Ok(());
    }
    let Some(item) = cx.store.get_journal(id, index)? else {
        return Ok(());
    };
    let ours = item.fire_at_ms.is_none_or(|at| at == fire_at_ms);
    if !matches!(item.entry, Entry::Sleep(_)) || !item.is_pending() || !ours {
        return Ok(());
    }
    settle(cx, id, &mut rec, vec![(index, Outcome::Void)])?;
    cx.store.put_invocation(id, &rec)
}

/// Admits scheduled invocation `id` if this is its start timer.
fn start<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    fire_at_ms: u64,
    at_ms: u64,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    if rec.status
        != (Status::Scheduled {
            start_at_ms: fire_at_ms,
        })
    {
        return Ok(());
    }
    admit(cx, id, &mut rec, at_ms)?;
    cx.store.put_invocation(id, &rec)
}
