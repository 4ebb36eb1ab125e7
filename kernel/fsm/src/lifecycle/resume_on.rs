//! `ResumeOn`: an operator resumes a paused, suspended or backing-off invocation. The next
//! attempt starts at once with a fresh retry budget, first pinned to the given deployment if
//! one is named. A running, inboxed, scheduled, completed or unknown invocation is left alone, as
//! [`crate::control::check`] reports to the admin.

use super::{Ctx, start_attempt};
use crate::Store;
use crate::state::Status;
use holdfast_types::{DeploymentId, InvocationId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    deployment: Option<&DeploymentId>,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    let epoch = match rec.status {
        Status::Paused { epoch }
        | Status::Suspended { epoch, .. }
        | Status::BackingOff { epoch, .. } => epoch,
        Status::Inboxed
        | Status::Scheduled { .. }
        | Status::Invoked { .. }
        | Status::Throttled { .. }
        | Status::Completed { .. } => return Ok(()),
    };
    if let Some(deployment) = deployment {
        rec.deployment = Some(*deployment);
    }
    rec.retries = 0;
    start_attempt(cx, id, &mut rec, epoch.next(), 0)?;
    cx.store.put_invocation(id, &rec)
}
