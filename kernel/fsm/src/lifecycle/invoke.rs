//! `Invoke`: create an invocation, or attach a repeated request to the existing one.
//!
//! A new invocation journals its input as entry 0. A delayed one (`execute_at_ms`) is scheduled
//! and waits for its `Start` timer; otherwise it is admitted at once: exclusive and workflow
//! handlers take their object's lock or queue in its inbox (strict arrival order), shared
//! handlers and stateless services start at once.

use super::{Ctx, admit, register_timer, send};
use crate::state::{Invocation, JournalItem, Status};
use crate::{Effect, Store};
use holdfast_protocol::message::{Entry, Input};
use holdfast_protocol::{EntryIndex, Failure, Outcome};
use holdfast_types::{
    HandlerKind, InvocationId, InvocationRequest, OutboxMessage, Source, Timer, TimerKey,
};

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

    let id = request.id;
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
        deployment: request.deployment,
        output: None,
        cancel_pending: false,
        retry: request.retry,
        secret: request.secret,
        last_failure: None,
        trace: request.trace,
        limits: Vec::new(),
        permits: 0,
    };
    super::observe::observe(
        cx,
        crate::Observation::Accepted {
            target: request.target.clone(),
        },
    );
    let input = Entry::Input(Input {
        value: request.argument.clone(),
    });
    cx.store
        .put_journal(id, EntryIndex(0), &JournalItem::new(input))?;
    if let Some(key) = &request.idempotency_key {
        cx.store.put_idempotency(&request.target, key, id)?;
    }

    match request.execute_at_ms {
        Some(start_at_ms) => {
            rec.status = Status::Scheduled { start_at_ms };
            register_timer(cx, TimerKey::new(start_at_ms, Timer::Start { id }))?;
        }
        None => admit(cx, id, &mut rec, at_ms)?,
    }
    cx.store.put_invocation(id, &rec)
}

/// The failure a second submission of a finished workflow run gets (Restate's wording).
pub const WORKFLOW_ALREADY_INVOKED: &str = "the workflow method was already invoked";

/// A request for an invocation that already exists: nothing new starts. The ingress is told to
/// attach; a calling invocation gets the result now if known, else when it completes.
///
/// A workflow runs once per key: a new submission of a completed run gets a 409 failure instead
/// of its result (a repeat of the very request, by its idempotency key, still gets the result).
fn attach<S: Store>(
    cx: &mut Ctx<'_, S>,
    existing: InvocationId,
    mut rec: Invocation,
    request: &InvocationRequest,
) -> Result<(), S::Error> {
    let rerun = matches!(rec.status, Status::Completed { .. }) && is_rerun(&rec, request);
    let result = match &rec.status {
        Status::Completed { .. } if rerun => Some(Outcome::Failure(Failure {
            code: 409,
            message: WORKFLOW_ALREADY_INVOKED.to_owned(),
        })),
        Status::Completed { outcome, .. } => Some(outcome.clone()),
        _ => None,
    };
    match &request.source {
        Source::Ingress => cx.effects.push(Effect::Attach {
            id: existing,
            outcome: result,
            workflow_finished: rerun,
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
                    request.at_ms,
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
        // A repeated one-way send, or a schedule's tick started again: nobody waits.
        Source::Invocation { .. } | Source::Schedule { .. } => {}
    }
    Ok(())
}

/// Whether `request` submits workflow run `rec` again, rather than repeating the request that
/// created it (same idempotency key).
fn is_rerun(rec: &Invocation, request: &InvocationRequest) -> bool {
    let repeat =
        request.idempotency_key.is_some() && request.idempotency_key == rec.idempotency_key;
    rec.kind == HandlerKind::Workflow && request.kind == HandlerKind::Workflow && !repeat
}
