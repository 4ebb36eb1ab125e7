//! `Kill`: stop at once, without compensation. The running attempt is fenced, callees of pending
//! calls are killed, and the invocation completes with a 409 "killed" failure for its callers.
//! An inboxed or scheduled one never ran: it leaves the inbox (or drops its start timer).

use super::{Ctx, complete, killed, pending_callees, send};
use crate::state::Status;
use crate::{Effect, Store};
use holdfast_types::{InvocationId, OutboxMessage, Timer, TimerKey};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    at_ms: u64,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    match rec.status {
        Status::Completed { .. } => return Ok(()),
        Status::Inboxed => {
            if let Some(object) = rec.target.object() {
                cx.store.inbox_remove(&object, id)?;
            }
        }
        Status::Scheduled { start_at_ms } => {
            let start = TimerKey::new(start_at_ms, Timer::Start { id });
            cx.store.delete_timer(&start)?;
        }
        Status::Invoked { epoch } => cx.effects.push(Effect::Fence { id, epoch }),
        Status::Suspended { .. }
        | Status::BackingOff { .. }
        | Status::Paused { .. }
        | Status::Throttled { .. } => {}
    }
    for callee in pending_callees(cx, id, &rec)? {
        send(cx, OutboxMessage::Kill { id: callee }, at_ms)?;
    }
    complete(cx, id, &mut rec, killed(), at_ms)?;
    cx.store.put_invocation(id, &rec)
}
