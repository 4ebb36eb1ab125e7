//! `FireSchedule`: a schedule's tick starts one invocation, once. The partition that fires a
//! schedule records its newest tick; a tick at or before it is a repeat (a new leader proposing
//! again what its predecessor proposed) and changes nothing. The invocation goes to its target's
//! partition like a one-way send, with the tick in its idempotency key, so even a schedule
//! re-created under the same name cannot start one tick's invocation twice.

use super::{Ctx, send};
use crate::Store;
use holdfast_types::{InvocationRequest, OutboxMessage};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    name: &str,
    tick_ms: u64,
    skipped: u64,
    request: &InvocationRequest,
) -> Result<(), S::Error> {
    let mut run = cx.store.get_schedule_run(name)?.unwrap_or_default();
    if run.fired > 0 && tick_ms <= run.last_tick_ms {
        return Ok(());
    }
    run.last_tick_ms = tick_ms;
    run.fired = run.fired.saturating_add(1);
    run.skipped = run.skipped.saturating_add(skipped);
    run.last_invocation = Some(request.id);
    cx.store.put_schedule_run(name, &run)?;
    send(
        cx,
        OutboxMessage::Invoke(Box::new(request.clone())),
        request.at_ms,
    )
}
