//! `Retry`: start the next attempt after attempt `epoch`, if it is still the current one. From
//! backing-off this is the expired backoff; from invoked it is a new leader replacing an attempt
//! it cannot see (the old one is fenced). Anything else is stale and ignored.
//!
//! `Restart`: only the second half: replace running attempt `epoch` (a leader's restart of an
//! attempt it does not run), never a backoff.

use super::{Ctx, start_attempt};
use crate::state::Status;
use crate::{Effect, Store};
use holdfast_types::{Epoch, InvocationId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    epoch: Epoch,
) -> Result<(), S::Error> {
    next_attempt(cx, id, epoch, true)
}

pub(crate) fn restart<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    epoch: Epoch,
) -> Result<(), S::Error> {
    next_attempt(cx, id, epoch, false)
}

/// Starts the attempt after `epoch` if `epoch` is running (fencing it) or, with `after_backoff`,
/// backing off; anything else is stale and ignored.
fn next_attempt<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    epoch: Epoch,
    after_backoff: bool,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    match rec.status {
        Status::BackingOff { epoch: current, .. } if after_backoff && current == epoch => {}
        Status::Invoked { epoch: current } if current == epoch => {
            cx.effects.push(Effect::Fence { id, epoch });
        }
        _ => return Ok(()),
    }
    start_attempt(cx, id, &mut rec, epoch.next(), 0)?;
    cx.store.put_invocation(id, &rec)
}
