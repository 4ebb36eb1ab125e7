//! Flow-control limits. An invocation is covered by the limits that match its target when it is
//! admitted; before each attempt starts it asks each limit's home partition for a permit, one
//! after another in name order (so two invocations never wait for each other's permits), and
//! waits `Throttled`. The home queues requests in arrival order and grants them while fewer than
//! `max_concurrency` permits are out and the token bucket holds a token. An attempt gives its
//! permits back when it suspends, backs off, is paused or ends.
//!
//! A limit's budget is granted by one partition, so it holds across the cluster exactly; the
//! price is one message to the home and one back per attempt of a covered invocation.

use super::{Ctx, send};
use crate::state::{Invocation, LimitState, Queued, Status};
use crate::{Effect, Observation, Store};
use holdfast_types::limit::MILLI;
use holdfast_types::{Epoch, InvocationId, Limit, OutboxMessage, Target};

/// The names of the applied limits covering `target`, in ascending order.
pub(crate) fn covering<S: Store>(
    cx: &Ctx<'_, S>,
    target: &Target,
) -> Result<Vec<String>, S::Error> {
    Ok(cx
        .store
        .get_limits()?
        .into_iter()
        .filter(|limit| limit.covers(target))
        .map(|limit| limit.name)
        .collect())
}

/// Whether attempt `epoch` of `rec` holds every permit it needs; if not, it asks for the next
/// one and waits `Throttled` (the caller stores `rec`).
pub(crate) fn permitted<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    epoch: Epoch,
    at_ms: u64,
) -> Result<bool, S::Error> {
    let held = usize::try_from(rec.permits).unwrap_or(usize::MAX);
    let Some(limit) = rec.limits.get(held) else {
        return Ok(true);
    };
    rec.status = Status::Throttled { epoch };
    let acquire = OutboxMessage::LimitAcquire {
        limit: limit.clone(),
        id,
        epoch,
    };
    send(cx, acquire, at_ms)?;
    Ok(false)
}

/// Gives back every permit `rec` holds (its attempt no longer runs; the caller stores `rec`).
pub(crate) fn release<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    at_ms: u64,
) -> Result<(), S::Error> {
    let held = usize::try_from(std::mem::take(&mut rec.permits)).unwrap_or(usize::MAX);
    for limit in rec.limits.iter().take(held) {
        let release = OutboxMessage::LimitRelease {
            limit: limit.clone(),
            id,
        };
        send(cx, release, at_ms)?;
    }
    Ok(())
}

/// A permit of `limit` arrived for attempt `epoch` of `id`: the attempt, if it still waits for
/// it, asks for the next one or starts. A permit nobody waits for (the invocation ended, was
/// paused, or is gone) goes back.
pub(crate) fn granted<S: Store>(
    cx: &mut Ctx<'_, S>,
    limit: &str,
    id: InvocationId,
    epoch: Epoch,
    at_ms: u64,
) -> Result<(), S::Error> {
    let rec = cx.store.get_invocation(id)?;
    let waiting = rec.filter(|rec| {
        let held = usize::try_from(rec.permits).unwrap_or(usize::MAX);
        rec.status == Status::Throttled { epoch }
            && rec.limits.get(held).is_some_and(|name| name == limit)
    });
    let Some(mut rec) = waiting else {
        let release = OutboxMessage::LimitRelease {
            limit: limit.to_owned(),
            id,
        };
        return send(cx, release, at_ms);
    };
    rec.permits = rec.permits.saturating_add(1);
    super::start_attempt(cx, id, &mut rec, epoch, at_ms)?;
    cx.store.put_invocation(id, &rec)
}

/// `SetLimits`: the partition applies `limits` from now on; the limits it is home of grant what
/// their new budget allows (a removed one grants everything queued and is forgotten).
pub(crate) fn set<S: Store>(
    cx: &mut Ctx<'_, S>,
    limits: &[Limit],
    at_ms: u64,
) -> Result<(), S::Error> {
    let before = cx.store.get_limits()?;
    let mut sorted = limits.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.dedup_by(|a, b| a.name == b.name);
    if before == sorted {
        return Ok(());
    }
    cx.store.put_limits(&sorted)?;
    let mut names: Vec<&String> = before.iter().chain(&sorted).map(|l| &l.name).collect();
    names.sort();
    names.dedup();
    for name in names {
        if is_home(cx, name) {
            drain(cx, name, at_ms)?;
        }
    }
    Ok(())
}

/// Whether this partition is limit `name`'s home.
fn is_home<S: Store>(cx: &Ctx<'_, S>, name: &str) -> bool {
    let key = holdfast_types::routing::limit_partition_key(name);
    cx.config.home.is_none_or(|home| home.owns(key))
}

/// At the home: `id` asks for a permit of `limit`; it queues behind earlier requests. A limit
/// that no longer exists grants at once.
pub(crate) fn acquire<S: Store>(
    cx: &mut Ctx<'_, S>,
    limit: &str,
    id: InvocationId,
    epoch: Epoch,
    at_ms: u64,
) -> Result<(), S::Error> {
    if !cx.store.get_limits()?.iter().any(|l| l.name == limit) {
        let grant = OutboxMessage::LimitGrant {
            limit: limit.to_owned(),
            id,
            epoch,
        };
        return send(cx, grant, at_ms);
    }
    let mut state = match cx.store.get_limit_state(limit)? {
        Some(state) => state,
        None => fresh(cx, limit, at_ms)?,
    };
    cx.store
        .put_limit_queued(limit, state.tail, &Queued { id, epoch, at_ms })?;
    state.tail += 1;
    cx.store.put_limit_state(limit, &state)?;
    drain(cx, limit, at_ms)
}

/// A limit's state before its first request: a full bucket.
fn fresh<S: Store>(cx: &Ctx<'_, S>, limit: &str, at_ms: u64) -> Result<LimitState, S::Error> {
    let rate = cx
        .store
        .get_limits()?
        .into_iter()
        .find(|l| l.name == limit)
        .and_then(|l| l.rate);
    Ok(LimitState {
        level: rate.map_or(0, |rate| u64::from(rate.burst.max(1)) * MILLI),
        refilled_at_ms: at_ms,
        ..LimitState::default()
    })
}

/// At the home: `id` gave a permit of `limit` back (one of them, should it hold two: a permit
/// for an attempt given up while its next one was granted too). A permit the home does not count
/// (granted while the limit had no `max_concurrency`, or before it was removed) changes nothing.
pub(crate) fn released<S: Store>(
    cx: &mut Ctx<'_, S>,
    limit: &str,
    id: InvocationId,
    at_ms: u64,
) -> Result<(), S::Error> {
    let held = cx.store.limit_held(limit, id)?;
    if held == 0 {
        return Ok(());
    }
    cx.store.set_limit_held(limit, id, held - 1)?;
    let Some(mut state) = cx.store.get_limit_state(limit)? else {
        return Ok(());
    };
    state.running = state.running.saturating_sub(1);
    cx.store.put_limit_state(limit, &state)?;
    drain(cx, limit, at_ms)
}

/// At the home: grants queued requests, oldest first, while the budget allows; when only the
/// bucket stops it, asks the leader to come back when the next token is in (`WakeLimit`).
pub(crate) fn drain<S: Store>(cx: &mut Ctx<'_, S>, name: &str, at_ms: u64) -> Result<(), S::Error> {
    let Some(mut state) = cx.store.get_limit_state(name)? else {
        return Ok(());
    };
    let limit = cx.store.get_limits()?.into_iter().find(|l| l.name == name);
    if let Some(rate) = limit.as_ref().and_then(|l| l.rate)
        && at_ms > state.refilled_at_ms
    {
        let elapsed = at_ms - state.refilled_at_ms;
        state.level = rate.refill(state.level, elapsed, state.backlogged);
        state.refilled_at_ms = at_ms;
    }
    while state.head < state.tail {
        if let Some(limit) = &limit {
            if limit
                .max_concurrency
                .is_some_and(|max| state.running >= u64::from(max))
            {
                break;
            }
            if let Some(rate) = limit.rate
                && state.level < MILLI
            {
                cx.effects.push(Effect::WakeLimit {
                    name: name.to_owned(),
                    at_ms: at_ms.saturating_add(rate.wait_ms(state.level)),
                });
                break;
            }
        }
        let seq = state.head;
        state.head += 1;
        let Some(row) = cx.store.get_limit_queued(name, seq)? else {
            continue;
        };
        cx.store.delete_limit_queued(name, seq)?;
        if let Some(limit) = &limit {
            if limit.max_concurrency.is_some() {
                let held = cx.store.limit_held(name, row.id)?;
                cx.store
                    .set_limit_held(name, row.id, held.saturating_add(1))?;
                state.running += 1;
            }
            if limit.rate.is_some() {
                state.level -= MILLI;
            }
        }
        state.granted += 1;
        let grant = OutboxMessage::LimitGrant {
            limit: name.to_owned(),
            id: row.id,
            epoch: row.epoch,
        };
        send(cx, grant, at_ms)?;
    }
    state.backlogged = state.head < state.tail;
    super::observe::observe(
        cx,
        Observation::Limit {
            name: name.to_owned(),
            running: state.running,
            queued: state.queued(),
            granted: state.granted,
            removed: limit.is_none(),
        },
    );
    if limit.is_none() {
        cx.store.clear_limit_held(name)?;
        return cx.store.delete_limit_state(name);
    }
    cx.store.put_limit_state(name, &state)
}
