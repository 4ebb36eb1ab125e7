//! `JournalAppend`: a new entry from an attempt.
//!
//! Fenced: only the running attempt's entries, at exactly the next index, change anything; any
//! other is answered with `Fence` and leaves the state untouched, even though it is in the log.
//! Accepted entries take effect here (state writes, kernel-completed reads, calls and sends into
//! the outbox). Sleep, awakeable and promise entries are journaled only: their timers, awakeable
//! and promise tables belong to the timer and workflow state, which complete them through
//! `Completion`.

use super::{AttemptFailure, Ctx, callee_id, fail_attempt, send, settle};
use crate::state::{Invocation, JournalItem, Status, is_completable};
use crate::{Effect, Store};
use holdfast_protocol::message::{Call, Entry, Send};
use holdfast_protocol::{EntryIndex, Outcome, Payload};
use holdfast_types::{
    Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, RetryPolicy, Source, Target,
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

    cx.store
        .put_journal(id, index, &JournalItem::new(append.entry.clone()))?;
    rec.journal_len = rec.journal_len.saturating_add(1);
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
        (Entry::Call(call), _) if call.result.is_none() => {
            let mut request = call_request(&append, call);
            request.retention_ms = cx.config.call_retention_ms;
            send(cx, OutboxMessage::Invoke(Box::new(request)))?;
        }
        // A delayed send waits for the timer table (durations count from this entry's `at_ms`).
        (Entry::Send(one_way), _) if one_way.delay_ms.unwrap_or(0) == 0 => {
            let mut request = send_request(&append, one_way);
            request.retention_ms = cx.config.call_retention_ms;
            send(cx, OutboxMessage::Invoke(Box::new(request)))?;
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

fn call_request(append: &Append<'_>, call: &Call) -> InvocationRequest {
    let target = Target::new(&call.service, &call.handler, call.key.clone());
    InvocationRequest {
        id: callee_id(
            &target,
            call.idempotency_key.as_deref(),
            append.id,
            append.index,
        ),
        kind: callee_kind(append.callee_kind, &call.key),
        target,
        argument: call.parameter.clone(),
        headers: call.headers.clone(),
        source: Source::Invocation {
            id: append.id,
            entry: append.index,
        },
        idempotency_key: call.idempotency_key.clone(),
        retention_ms: 0,
        response: true,
        at_ms: append.at_ms,
        deployment: None,
        retry: append.callee_retry,
    }
}

fn send_request(append: &Append<'_>, one_way: &Send) -> InvocationRequest {
    let target = Target::new(&one_way.service, &one_way.handler, one_way.key.clone());
    InvocationRequest {
        id: callee_id(
            &target,
            one_way.idempotency_key.as_deref(),
            append.id,
            append.index,
        ),
        kind: callee_kind(append.callee_kind, &one_way.key),
        target,
        argument: one_way.parameter.clone(),
        headers: one_way.headers.clone(),
        source: Source::Invocation {
            id: append.id,
            entry: append.index,
        },
        idempotency_key: one_way.idempotency_key.clone(),
        retention_ms: 0,
        response: false,
        at_ms: append.at_ms,
        deployment: None,
        retry: append.callee_retry,
    }
}
