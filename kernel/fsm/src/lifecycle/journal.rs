//! `JournalAppend`: a new entry from an attempt.
//!
//! Fenced: only the running attempt's entries, at exactly the next index, change anything; any
//! other is answered with `Fence` and leaves the state untouched, even though it is in the log.
//! Accepted entries take effect here: state writes, kernel-completed reads, calls and sends
//! (delayed ones too, scheduled by the callee's partition) into the outbox, sleep timers,
//! awakeable completions into the outbox, and workflow promises. An `awakeable` entry is only
//! journaled: it waits for a `CompleteAwakeable` addressed to it.

use super::{
    AttemptFailure, Ctx, callee_id, fail_attempt, observe, promise, register_timer, send, settle,
};
use crate::state::{Appended, Invocation, JournalItem, Status, is_completable};
use crate::{Effect, Store};
use holdfast_protocol::message::{Call, Entry, Send};
use holdfast_protocol::{EntryIndex, Outcome, Payload};
use holdfast_types::awakeable::derive_secret;
use holdfast_types::trace::entry_span;
use holdfast_types::{
    AwakeableId, Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, RetryPolicy,
    Source, Target, Timer, TimerKey, TraceContext,
};

/// The command's fields, as one value.
pub(crate) struct Append<'a> {
    pub id: InvocationId,
    pub epoch: Epoch,
    pub index: EntryIndex,
    pub entry: &'a Entry,
    pub ack: bool,
    pub callee_kind: Option<HandlerKind>,
    pub callee_retry: Option<RetryPolicy>,
    pub at_ms: u64,
}

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, append: Append<'_>) -> Result<(), S::Error> {
    let Append {
        id, epoch, index, ..
    } = append;
    let rec = cx.store.get_invocation(id)?;
    let Some(mut rec) =
        rec.filter(|rec| rec.status == Status::Invoked { epoch } && rec.journal_len == index.0)
    else {
        cx.effects.push(Effect::Fence { id, epoch });
        return Ok(());
    };
    if let Some(refusal) = refusal(&rec, append.entry) {
        // The attempt broke the protocol: abort it and retry with a new one.
        cx.effects.push(Effect::Fence { id, epoch });
        fail_attempt(cx, id, &mut rec, epoch, refusal, append.at_ms)?;
        return cx.store.put_invocation(id, &rec);
    }

    let mut item = JournalItem::new(append.entry.clone());
    item.appended = Some(Appended {
        epoch,
        at_ms: append.at_ms,
    });
    let mut callee = None;
    match append.entry {
        Entry::Call(call) if call.result.is_none() => {
            callee = Some(call_request(
                &append,
                &rec,
                call,
                cx.config.call_retention_ms,
            ));
        }
        Entry::Send(one_way) => {
            callee = Some(send_request(
                &append,
                &rec,
                one_way,
                cx.config.call_retention_ms,
            ));
        }
        Entry::Sleep(sleep) if sleep.result.is_none() => {
            item.fire_at_ms = Some(append.at_ms.saturating_add(sleep.duration_ms));
        }
        _ => {}
    }
    item.callee = callee.as_ref().map(|request| request.id);
    cx.store.put_journal(id, index, &item)?;
    rec.journal_len = rec.journal_len.saturating_add(1);
    observe::appended(cx, id, &rec, epoch, index, append.entry, append.at_ms);
    if let Some(request) = callee {
        send(cx, OutboxMessage::Invoke(Box::new(request)), append.at_ms)?;
    }
    if let Some(fire_at_ms) = item.fire_at_ms {
        register_timer(cx, TimerKey::new(fire_at_ms, Timer::Sleep { id, index }))?;
    }
    let object = rec.target.object();
    match (append.entry, &object) {
        (Entry::SetState(e), Some(object)) => cx.store.put_state(object, &e.key, &e.value.0)?,
        (Entry::ClearState(e), Some(object)) => cx.store.delete_state(object, &e.key)?,
        (Entry::ClearAllState(_), Some(object)) => cx.store.delete_all_state(object)?,
        (Entry::GetState(e), Some(object)) if e.result.is_none() => {
            let outcome = match cx.store.get_state(object, &e.key)? {
                Some(value) => Outcome::Value(Payload::from(value.as_slice())),
                None => Outcome::Void,
            };
            settle(cx, id, &mut rec, vec![(index, outcome)])?;
        }
        (Entry::StateKeys(e), Some(object)) if e.result.is_none() => {
            let keys = cx.store.state_names(object)?;
            settle(cx, id, &mut rec, vec![(index, Outcome::Keys(keys))])?;
        }
        // Sent like any message, even to this very invocation: a message within the partition is
        // delivered only after this entry is stored. A malformed id is only journaled.
        (Entry::CompleteAwakeable(e), _) => {
            if let Ok(awakeable) = e.id.parse::<AwakeableId>() {
                let message = OutboxMessage::CompleteAwakeable {
                    id: awakeable.invocation,
                    index: awakeable.index,
                    token: awakeable.token,
                    outcome: e.result.clone(),
                };
                send(cx, message, append.at_ms)?;
            }
        }
        (Entry::GetPromise(e), Some(object)) if e.result.is_none() => {
            promise::get(cx, id, &mut rec, index, object, &e.name)?;
        }
        (Entry::PeekPromise(e), Some(object)) if e.result.is_none() => {
            promise::peek(cx, id, &mut rec, index, object, &e.name)?;
        }
        (Entry::CompletePromise(e), Some(object)) if e.result.is_none() => {
            promise::complete(cx, id, &mut rec, index, object, &e.name, &e.completion)?;
        }
        (Entry::Output(_), _) => rec.output = Some(index),
        _ => {}
    }
    if append.ack {
        cx.effects.push(Effect::Ack { id, epoch, index });
    }
    if rec.cancel_pending && is_completable(append.entry) {
        let pending = cx.store.get_journal(id, index)?;
        if pending.is_some_and(|item| item.is_pending()) {
            rec.cancel_pending = false;
            settle(cx, id, &mut rec, vec![(index, super::cancelled())])?;
        }
    }
    cx.store.put_invocation(id, &rec)
}

/// Why an entry the running attempt sent breaks the protocol, if it does.
fn refusal(rec: &Invocation, entry: &Entry) -> Option<AttemptFailure> {
    let keyed = rec.target.key.is_some();
    let writes = matches!(touches_state(entry), Kind::Write);
    match entry {
        Entry::Input(_) => Some(AttemptFailure::violation(
            "the input entry is written by the kernel only",
        )),
        _ if writes && (!keyed || rec.kind == HandlerKind::Shared) => {
            Some(AttemptFailure::violation(format!(
                "{}/{} may not write state: it is not an exclusive handler",
                rec.target.service, rec.target.handler
            )))
        }
        _ if matches!(touches_state(entry), Kind::Read) && !keyed => {
            Some(AttemptFailure::violation(format!(
                "{} is stateless and has no state to read",
                rec.target.service
            )))
        }
        Entry::GetPromise(_) | Entry::PeekPromise(_) | Entry::CompletePromise(_) if !keyed => {
            Some(AttemptFailure::violation(format!(
                "{} has no key, so it has no workflow promises",
                rec.target.service
            )))
        }
        _ => None,
    }
}

enum Kind {
    Read,
    Write,
    Other,
}

/// Classifies an entry by how it touches object state.
fn touches_state(entry: &Entry) -> Kind {
    match entry {
        Entry::SetState(_) | Entry::ClearState(_) | Entry::ClearAllState(_) => Kind::Write,
        Entry::GetState(_) | Entry::StateKeys(_) => Kind::Read,
        _ => Kind::Other,
    }
}

fn callee_kind(kind: Option<HandlerKind>, key: &Option<String>) -> HandlerKind {
    kind.unwrap_or(match key {
        Some(_) => HandlerKind::Exclusive,
        None => HandlerKind::Shared,
    })
}

/// The trace a callee of entry `index` continues: the caller's, as a child of the entry's span.
fn callee_trace(caller: &Invocation, id: InvocationId, index: EntryIndex) -> Option<TraceContext> {
    caller
        .trace
        .map(|trace| trace.child_of(entry_span(id, index)))
}

/// The callee of a `call` entry; its secret derives from the caller's and the entry.
fn call_request(
    append: &Append<'_>,
    caller: &Invocation,
    call: &Call,
    retention_ms: u64,
) -> InvocationRequest {
    let target = Target::new(&call.service, &call.handler, call.key.clone());
    let kind = callee_kind(append.callee_kind, &call.key);
    let key = call.idempotency_key.as_deref();
    InvocationRequest {
        id: callee_id(&target, key, kind, append.id, append.index, true),
        kind,
        target,
        argument: call.parameter.clone(),
        headers: call.headers.clone(),
        source: Source::Invocation {
            id: append.id,
            entry: append.index,
        },
        idempotency_key: call.idempotency_key.clone(),
        retention_ms,
        response: true,
        at_ms: append.at_ms,
        deployment: None,
        retry: append.callee_retry,
        secret: derive_secret(caller.secret, append.index),
        execute_at_ms: None,
        trace: callee_trace(caller, append.id, append.index),
    }
}

/// The callee of a `send` entry; a delay (counted from this entry's `at_ms`) makes it scheduled
/// on the callee's partition.
fn send_request(
    append: &Append<'_>,
    caller: &Invocation,
    one_way: &Send,
    retention_ms: u64,
) -> InvocationRequest {
    let target = Target::new(&one_way.service, &one_way.handler, one_way.key.clone());
    let kind = callee_kind(append.callee_kind, &one_way.key);
    let key = one_way.idempotency_key.as_deref();
    let execute_at_ms = match one_way.delay_ms {
        Some(delay_ms) if delay_ms > 0 => Some(append.at_ms.saturating_add(delay_ms)),
        _ => None,
    };
    InvocationRequest {
        id: callee_id(&target, key, kind, append.id, append.index, false),
        kind,
        target,
        argument: one_way.parameter.clone(),
        headers: one_way.headers.clone(),
        source: Source::Invocation {
            id: append.id,
            entry: append.index,
        },
        idempotency_key: one_way.idempotency_key.clone(),
        retention_ms,
        response: false,
        at_ms: append.at_ms,
        deployment: None,
        retry: append.callee_retry,
        secret: derive_secret(caller.secret, append.index),
        execute_at_ms,
        trace: callee_trace(caller, append.id, append.index),
    }
}
