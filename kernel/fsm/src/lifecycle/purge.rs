//! `Purge` (an operator's) and the `Purge` timer (retention ended): forget a completed
//! invocation — status, journal, idempotency key and pending purge timer; for a workflow run also
//! the workflow's state and promises, and the timers of sleeps it never finished (a killed
//! invocation's long sleep must not linger in the timer table). Anything not completed is left
//! alone.

use super::Ctx;
use crate::Store;
use crate::state::{Invocation, Status};
use holdfast_protocol::EntryIndex;
use holdfast_protocol::message::Entry;
use holdfast_types::{HandlerKind, InvocationId, Timer, TimerKey};

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, id: InvocationId) -> Result<(), S::Error> {
    let Some(rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    let Status::Completed { expires_at_ms, .. } = rec.status else {
        return Ok(());
    };
    cx.store
        .delete_timer(&TimerKey::new(expires_at_ms, Timer::Purge { id }))?;
    forget(cx, id, &rec)
}

/// Deletes everything kept about completed invocation `id` (its purge timer aside).
pub(crate) fn forget<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
) -> Result<(), S::Error> {
    if let Some(key) = &rec.idempotency_key
        && cx.store.get_idempotency(&rec.target, key)? == Some(id)
    {
        cx.store.delete_idempotency(&rec.target, key)?;
    }
    if rec.kind == HandlerKind::Workflow
        && let Some(workflow) = rec.target.object()
    {
        cx.store.delete_all_state(&workflow)?;
        cx.store.delete_promises(&workflow)?;
    }
    for index in 1..rec.journal_len {
        let index = EntryIndex(index);
        let Some(item) = cx.store.get_journal(id, index)? else {
            continue;
        };
        if let (Entry::Sleep(_), Some(fire_at_ms), true) =
            (&item.entry, item.fire_at_ms, item.is_pending())
        {
            cx.store
                .delete_timer(&TimerKey::new(fire_at_ms, Timer::Sleep { id, index }))?;
        }
    }
    cx.store.delete_journal(id)?;
    cx.store.delete_invocation(id)
}
