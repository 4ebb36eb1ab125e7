//! `Completion`: the result of a completable entry from outside the attempt (a callee's output).
//! The first result of an entry wins; results for unknown, inboxed, scheduled or completed
//! invocations, or for entries that are not pending, are ignored.

use super::{Ctx, settle};
use crate::Store;
use crate::state::Status;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::InvocationId;

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    index: EntryIndex,
    outcome: &Outcome,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    if matches!(
        rec.status,
        Status::Inboxed | Status::Scheduled { .. } | Status::Completed { .. }
    ) {
        return Ok(());
    }
    let pending = cx.store.get_journal(id, index)?;
    if !pending.is_some_and(|item| item.is_pending()) {
        return Ok(());
    }
    settle(cx, id, &mut rec, vec![(index, outcome.clone())])?;
    cx.store.put_invocation(id, &rec)
}
