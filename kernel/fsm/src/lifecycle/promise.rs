//! Workflow promises: `get_promise`, `peek_promise` and `complete_promise` entries, keyed by the
//! invocation's object (workflow service and key). Every handler of one workflow key runs on the
//! key's partition, so one transaction sees the promise and all its waiters.
//!
//! The first `complete_promise` is final; a `get_promise` before it waits in the promise's
//! waiter list and is settled by it; `peek_promise` never waits.

use super::{Ctx, settle};
use crate::Store;
use crate::state::{Invocation, Promise, Status};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Failure, Outcome};
use holdfast_types::{InvocationId, ObjectKey};

/// `get_promise`: settled now if the promise is completed, else waits for its completion.
pub(crate) fn get<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    index: EntryIndex,
    workflow: &ObjectKey,
    name: &str,
) -> Result<(), S::Error> {
    match cx.store.get_promise(workflow, name)? {
        Some(Promise::Completed(outcome)) => settle(cx, id, rec, vec![(index, outcome)]),
        Some(Promise::Pending { mut waiters }) => {
            if !waiters.contains(&(id, index)) {
                waiters.push((id, index));
            }
            cx.store
                .put_promise(workflow, name, &Promise::Pending { waiters })
        }
        None => {
            let waiters = vec![(id, index)];
            cx.store
                .put_promise(workflow, name, &Promise::Pending { waiters })
        }
    }
}

/// `peek_promise`: settled now, with the promise's outcome or `{}` if it is not completed.
pub(crate) fn peek<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    index: EntryIndex,
    workflow: &ObjectKey,
    name: &str,
) -> Result<(), S::Error> {
    let outcome = match cx.store.get_promise(workflow, name)? {
        Some(Promise::Completed(outcome)) => outcome,
        Some(Promise::Pending { .. }) | None => Outcome::Void,
    };
    settle(cx, id, rec, vec![(index, outcome)])
}

/// `complete_promise`: the first one completes the promise, is settled with `{}` and settles
/// every waiting `get_promise`; later ones are settled with a 409 failure and change nothing.
pub(crate) fn complete<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    index: EntryIndex,
    workflow: &ObjectKey,
    name: &str,
    completion: &Outcome,
) -> Result<(), S::Error> {
    let waiters = match cx.store.get_promise(workflow, name)? {
        Some(Promise::Completed(_)) => {
            let refused = Outcome::Failure(Failure {
                code: 409,
                message: "promise was already completed".to_owned(),
            });
            return settle(cx, id, rec, vec![(index, refused)]);
        }
        Some(Promise::Pending { waiters }) => waiters,
        None => Vec::new(),
    };
    cx.store
        .put_promise(workflow, name, &Promise::Completed(completion.clone()))?;
    settle(cx, id, rec, vec![(index, Outcome::Void)])?;
    for (waiter, entry) in waiters {
        if waiter == id {
            // The record in hand is the one the caller stores: settle it, not a stale copy.
            if is_waiting_get(cx, waiter, entry)? {
                settle(cx, id, rec, vec![(entry, completion.clone())])?;
            }
            continue;
        }
        let Some(mut other) = cx.store.get_invocation(waiter)? else {
            continue;
        };
        if matches!(other.status, Status::Completed { .. }) || !is_waiting_get(cx, waiter, entry)? {
            continue;
        }
        settle(cx, waiter, &mut other, vec![(entry, completion.clone())])?;
        cx.store.put_invocation(waiter, &other)?;
    }
    Ok(())
}

/// Whether entry `index` of `id` is a `get_promise` still waiting for its result (not cancelled
/// meanwhile, not of an earlier invocation with the same id).
fn is_waiting_get<S: Store>(
    cx: &Ctx<'_, S>,
    id: InvocationId,
    index: EntryIndex,
) -> Result<bool, S::Error> {
    Ok(cx
        .store
        .get_journal(id, index)?
        .is_some_and(|item| matches!(item.entry, Entry::GetPromise(_)) && item.is_pending()))
}
