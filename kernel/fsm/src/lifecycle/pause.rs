//! `Pause`: an operator stops a started invocation without ending it. A running attempt is
//! fenced; a backoff or a suspension is abandoned (a later `Retry` of it is stale, a completion
//! is only journaled). The invocation keeps its journal and lock and waits for `ResumeOn` (or
//! `Resume`). Inboxed, scheduled, paused, completed and unknown invocations are left alone, as
//! [`crate::control::check`] reports to the admin.

use super::Ctx;
use crate::state::Status;
use crate::{Effect, Store};
use holdfast_types::InvocationId;

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, id: InvocationId) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    let epoch = match rec.status {
        Status::Invoked { epoch } => {
            cx.effects.push(Effect::Fence { id, epoch });
            epoch
        }
        Status::Suspended { epoch, .. }
        | Status::BackingOff { epoch, .. }
        | Status::Throttled { epoch } => epoch,
        Status::Inboxed
        | Status::Scheduled { .. }
        | Status::Paused { .. }
        | Status::Completed { .. } => return Ok(()),
    };
    rec.status = Status::Paused { epoch };
    super::limit::release(cx, id, &mut rec, 0)?;
    cx.store.put_invocation(id, &rec)
}
