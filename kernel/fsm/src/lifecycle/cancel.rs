//! `Cancel`: an inboxed or scheduled invocation, or one whose first attempt still waits for a
//! limit's permit, completes with 409 at once (a scheduled one's start timer is dropped; a permit
//! granted later goes back). A started one gets every pending completable entry completed with a
//! 409 failure (or, with none pending, the next one it writes), so the handler sees the
//! cancellation at its next await and may compensate; callees of pending calls are cancelled too.

use super::{Ctx, cancelled, complete, pending_callees, pending_entries, send, settle};
use crate::Store;
use crate::state::Status;
use holdfast_types::{Epoch, InvocationId, OutboxMessage, Timer, TimerKey};

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
            complete(cx, id, &mut rec, cancelled(), at_ms)?;
        }
        Status::Scheduled { start_at_ms } => {
            let start = TimerKey::new(start_at_ms, Timer::Start { id });
            cx.store.delete_timer(&start)?;
            complete(cx, id, &mut rec, cancelled(), at_ms)?;
        }
        Status::Throttled { epoch } if epoch == Epoch::FIRST => {
            complete(cx, id, &mut rec, cancelled(), at_ms)?;
        }
        _ => {
            for callee in pending_callees(cx, id, &rec)? {
                send(cx, OutboxMessage::Cancel { id: callee }, at_ms)?;
            }
            let pending = pending_entries(cx, id, &rec)?;
            if pending.is_empty() {
                rec.cancel_pending = true;
            } else {
                let results = pending.into_iter().map(|i| (i, cancelled())).collect();
                settle(cx, id, &mut rec, results)?;
            }
        }
    }
    cx.store.put_invocation(id, &rec)
}
