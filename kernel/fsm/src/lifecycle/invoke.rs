//! `Invoke`: create an invocation, or attach a repeated request to the existing one.
//!
//! A new invocation journals its input as entry 0. Exclusive and workflow handlers take their
//! object's lock or queue in its inbox (strict arrival order); shared handlers and stateless
//! services start at once.

use super::{Ctx, complete, send, start_attempt};
use crate::state::{Invocation, JournalItem, Status};
use crate::{Effect, Store};
use holdfast_protocol::message::{Entry, Input};
use holdfast_protocol::{EntryIndex, Failure, Outcome};
use holdfast_types::{Epoch, InvocationRequest, OutboxMessage, Source};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    request: &InvocationRequest,
    at_ms: u64,
) -> Result<(), S::Error> {
    let by_key = match &request.idempotency_key {
        Some(key) => cx.store.get_idempotency(&request.target, key)?,
        None => None,
    };
    for existing in by_key.into_iter().chain([request.id]) {
        if let Some(rec) = cx.store.get_invocation(existing)? {
            return attach(cx, existing, rec, request);
        }
    }

    let mut rec = Invocation {
        status: Status::Inboxed,
        target: request.target.clone(),
        kind: request.kind,
        source: request.source.clone(),
        response: request.response,
        callers: Vec::new(),
        headers: request.headers.clone(),
        idempotency_key: request.idempotency_key.clone(),
        retention_ms: request.retention_ms,
        created_at_ms: at_ms,
        journal_len: 1,
        attempts: 0,
        retries: 0,
        deployment: request.deployment.clone(),
        output: None,
        cancel_pending: false,
        retry: request.retry,
    };
    let input = Entry::Input(Input {
        value: request.argument.clone(),
    });
    cx.store
        .put_journal(request.id, EntryIndex(0), &JournalItem::new(input))?;
    if let Some(key) = &request.idempotency_key {
        cx.store.put_idempotency(&request.target, key, request.id)?;
    }

    if request.kind.is_exclusive() {
        let Some(object) = request.target.object() else {
            let outcome = Outcome::Failure(Failure {
                code: 400,
                message: format!(
                    "{}/{} is exclusive and needs a key",
                    request.target.service, request.target.handler
                ),
            });
            complete(cx, request.id, &mut rec, outcome, at_ms)?;
            return cx.store.put_invocation(request.id, &rec);
        };
        if cx.store.get_lock(&object)?.is_some() {
            cx.store.inbox_push(&object, request.id)?;
            return cx.store.put_invocation(request.id, &rec);
        }
        cx.store.put_lock(&object, request.id)?;
    }
    start_attempt(cx, request.id, &mut rec, Epoch::FIRST);
    cx.store.put_invocation(request.id, &rec)
}

/// A request for an invocation that already exists: nothing new starts. The ingress is told to
/// attach; a calling invocation gets the result now if known, else when it completes.
fn attach<S: Store>(
    cx: &mut Ctx<'_, S>,
    existing: holdfast_types::InvocationId,
    mut rec: Invocation,
    request: &InvocationRequest,
) -> Result<(), S::Error> {
    let result = match &rec.status {
        Status::Completed { outcome, .. } => Some(outcome.clone()),
        _ => None,
    };
    match &request.source {
        Source::Ingress => cx.effects.push(Effect::Attach {
            id: existing,
            outcome: result,
        }),
        Source::Invocation { id, entry } if request.response => {
            let caller = (*id, *entry);
            match result {
                Some(outcome) => send(
                    cx,
                    OutboxMessage::Completion {
                        id: caller.0,
                        index: caller.1,
                        outcome,
                    },
                )?,
                None => {
                    let original = match &rec.source {
                        Source::Invocation { id, entry } if rec.response => Some((*id, *entry)),
                        _ => None,
                    };
                    if original != Some(caller) && !rec.callers.contains(&caller) {
                        rec.callers.push(caller);
                        cx.store.put_invocation(existing, &rec)?;
                    }
                }
            }
        }
        // A repeated one-way send: nobody waits, nothing to do.
        Source::Invocation { .. } => {}
    }
    Ok(())
}
