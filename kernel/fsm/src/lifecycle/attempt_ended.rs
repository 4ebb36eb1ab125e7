//! `AttemptEnded`: the running attempt suspended, failed or completed. Endings of any other
//! attempt are fenced off and change nothing.

use super::{AttemptFailure, Ctx, complete, fail_attempt, start_attempt};
use crate::state::Status;
use crate::{Effect, Store};
use holdfast_protocol::message::Entry;
use holdfast_types::{Ending, Epoch, InvocationId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    epoch: Epoch,
    ending: &Ending,
    at_ms: u64,
) -> Result<(), S::Error> {
    let rec = cx.store.get_invocation(id)?;
    let Some(mut rec) = rec.filter(|rec| rec.status == Status::Invoked { epoch }) else {
        cx.effects.push(Effect::Fence { id, epoch });
        return Ok(());
    };
    match ending {
        Ending::Completed => {
            let output = match rec.output {
                Some(index) => cx.store.get_journal(id, index)?,
                None => None,
            };
            match output.map(|item| item.entry) {
                Some(Entry::Output(output)) => complete(cx, id, &mut rec, output.result, at_ms)?,
                _ => {
                    let failure = AttemptFailure::violation("the attempt ended without an output");
                    fail_attempt(cx, id, &mut rec, epoch, failure, at_ms)?;
                }
            }
        }
        Ending::Failed {
            code,
            message,
            retryable,
            retry_after_ms,
        } => {
            let failure = AttemptFailure {
                code: *code,
                message: message.clone(),
                retryable: *retryable,
                retry_after_ms: *retry_after_ms,
            };
            fail_attempt(cx, id, &mut rec, epoch, failure, at_ms)?;
        }
        Ending::Suspended { waiting } => {
            suspend(cx, id, &mut rec, epoch, waiting, at_ms)?;
        }
    }
    cx.store.put_invocation(id, &rec)
}

/// Suspends, unless a waited entry already has its result (it arrived while the attempt was
/// ending): then the next attempt starts at once.
fn suspend<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut crate::state::Invocation,
    epoch: Epoch,
    waiting: &[holdfast_protocol::EntryIndex],
    at_ms: u64,
) -> Result<(), S::Error> {
    if waiting.is_empty() || waiting.iter().any(|index| index.0 >= rec.journal_len) {
        let failure = AttemptFailure::violation(
            "suspension must wait on at least one existing journal entry",
        );
        return fail_attempt(cx, id, rec, epoch, failure, at_ms);
    }
    rec.retries = 0;
    for index in waiting {
        let item = cx.store.get_journal(id, *index)?;
        if item.is_some_and(|item| item.outcome().is_some()) {
            return start_attempt(cx, id, rec, epoch.next(), at_ms);
        }
    }
    let mut waiting = waiting.to_vec();
    waiting.sort_unstable();
    waiting.dedup();
    rec.status = Status::Suspended { epoch, waiting };
    super::limit::release(cx, id, rec, at_ms)
}
