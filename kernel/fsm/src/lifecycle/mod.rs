//! One module per command or lifecycle step, so "what happens on X" is found by file name. This
//! module holds the steps several commands share: admitting an invocation (lock, inbox or start),
//! starting an attempt, completing an invocation, failing an attempt, settling journal entries and
//! registering timers.

pub(crate) mod attempt_ended;
pub(crate) mod awakeable;
pub(crate) mod cancel;
pub(crate) mod completion;
pub(crate) mod invoke;
pub(crate) mod journal;
pub(crate) mod kill;
pub(crate) mod limit;
pub(crate) mod object_state;
pub(crate) mod observe;
pub(crate) mod outbox;
pub(crate) mod pause;
pub(crate) mod promise;
pub(crate) mod purge;
pub(crate) mod resume;
pub(crate) mod resume_on;
pub(crate) mod retry;
pub(crate) mod run_completed;
pub(crate) mod schedule;
pub(crate) mod shuffle;
pub(crate) mod timer;

use crate::state::{Invocation, JournalItem, Status};
use crate::{Config, Effect, Store};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Failure, Outcome};
use holdfast_types::{
    Epoch, HandlerKind, InvocationId, OnMaxAttempts, OutboxMessage, Source, Target, Timer, TimerKey,
};
use std::collections::VecDeque;

/// The failure every cancelled entry (or cancelled inboxed invocation) completes with.
pub(crate) fn cancelled() -> Outcome {
    Outcome::Failure(Failure {
        code: 409,
        message: "cancelled".to_owned(),
    })
}

/// The failure a killed invocation completes with, for its callers.
pub(crate) fn killed() -> Outcome {
    Outcome::Failure(Failure {
        code: 409,
        message: "killed".to_owned(),
    })
}

/// The protocol's code for a protocol violation (retryable).
pub(crate) const PROTOCOL_VIOLATION: u16 = 571;

/// Everything one `apply` call works with: the store, the settings, the effects so far, and the
/// messages sent to this partition's own invocations, delivered once the command is applied.
pub(crate) struct Ctx<'a, S: Store> {
    pub store: &'a mut S,
    pub config: &'a Config,
    pub effects: Vec<Effect>,
    pub local: VecDeque<(OutboxMessage, u64)>,
}

/// How an attempt failed, before the retry policy decides what follows.
pub(crate) struct AttemptFailure {
    pub code: u16,
    pub message: String,
    pub retryable: bool,
    pub retry_after_ms: Option<u64>,
}

impl AttemptFailure {
    /// A protocol violation by the attempt: retried like any retryable failure.
    pub fn violation(message: impl Into<String>) -> Self {
        Self {
            code: PROTOCOL_VIOLATION,
            message: message.into(),
            retryable: true,
            retry_after_ms: None,
        }
    }
}

/// Lets a new (or just due) invocation run: it is covered by the limits matching it now; an
/// exclusive one takes its object's lock or queues in the object's inbox, others start at once
/// (the caller stores `rec`).
pub(crate) fn admit<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    at_ms: u64,
) -> Result<(), S::Error> {
    if rec.kind.is_exclusive() {
        let Some(object) = rec.target.object() else {
            let outcome = Outcome::Failure(Failure {
                code: 400,
                message: format!(
                    "{}/{} is exclusive and needs a key",
                    rec.target.service, rec.target.handler
                ),
            });
            return complete(cx, id, rec, outcome, at_ms);
        };
        if cx.store.get_lock(&object)?.is_some() {
            rec.limits = limit::covering(cx, &rec.target)?;
            rec.status = Status::Inboxed;
            return cx.store.inbox_push(&object, id);
        }
        cx.store.put_lock(&object, id)?;
    }
    rec.limits = limit::covering(cx, &rec.target)?;
    start_attempt(cx, id, rec, Epoch::FIRST, at_ms)
}

/// Registers a durable timer and asks the leader's timer wheel to fire it when due.
pub(crate) fn register_timer<S: Store>(
    cx: &mut Ctx<'_, S>,
    timer: TimerKey,
) -> Result<(), S::Error> {
    cx.store.put_timer(&timer)?;
    cx.effects.push(Effect::RegisterTimer { timer });
    Ok(())
}

/// Starts attempt `epoch` of `rec`, or, while a limit covering it has not granted the attempt
/// a permit, asks for one (the caller stores `rec`). `at_ms` is the command's time where it has
/// one, else 0.
pub(crate) fn start_attempt<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    epoch: Epoch,
    at_ms: u64,
) -> Result<(), S::Error> {
    if !limit::permitted(cx, id, rec, epoch, at_ms)? {
        return Ok(());
    }
    rec.status = Status::Invoked { epoch };
    rec.attempts = rec.attempts.saturating_add(1);
    cx.effects.push(Effect::RunAttempt {
        id,
        epoch,
        target: rec.target.clone(),
        deployment: rec.deployment,
    });
    Ok(())
}

/// Sends a message to an invocation, at `at_ms`: to one of this partition's own, it is delivered
/// once the current command is applied; to another partition's, it goes into the outbox and the
/// leader ships it.
pub(crate) fn send<S: Store>(
    cx: &mut Ctx<'_, S>,
    message: OutboxMessage,
    at_ms: u64,
) -> Result<(), S::Error> {
    if cx
        .config
        .home
        .is_some_and(|home| home.owns(message.partition_key()))
    {
        cx.local.push_back((message, at_ms));
        return Ok(());
    }
    let seq = cx.store.outbox_push(&message)?;
    cx.effects.push(Effect::ShuffleOut {
        seq,
        partition_key: message.partition_key(),
        message,
    });
    Ok(())
}

/// Completes `rec` with `outcome`: answers the ingress and every waiting caller (a schedule's
/// tick is told its run ended), registers the timer that purges it when its retention ends, then
/// frees the object's lock for the next inboxed invocation (the caller stores `rec`).
pub(crate) fn complete<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    outcome: Outcome,
    at_ms: u64,
) -> Result<(), S::Error> {
    let expires_at_ms = at_ms.saturating_add(rec.retention_ms);
    rec.status = Status::Completed {
        outcome: outcome.clone(),
        expires_at_ms,
    };
    rec.cancel_pending = false;
    limit::release(cx, id, rec, at_ms)?;
    observe::completed(cx, id, rec, &outcome, at_ms);
    cx.effects.push(Effect::Respond {
        id,
        outcome: outcome.clone(),
    });
    let mut callers = Vec::new();
    if let (Source::Invocation { id, entry }, true) = (&rec.source, rec.response) {
        callers.push((*id, *entry));
    }
    callers.extend(rec.callers.iter().copied());
    for (caller, index) in callers {
        send(
            cx,
            OutboxMessage::Completion {
                id: caller,
                index,
                outcome: outcome.clone(),
            },
            at_ms,
        )?;
    }
    if let Source::Schedule { name, tick_ms } = &rec.source {
        let ended = OutboxMessage::ScheduleRunEnded {
            name: name.clone(),
            tick_ms: *tick_ms,
        };
        send(cx, ended, at_ms)?;
    }
    register_timer(cx, TimerKey::new(expires_at_ms, Timer::Purge { id }))?;
    release_lock(cx, id, rec, at_ms)
}

/// Frees the object's lock held by `id` and gives it to the first inboxed invocation, if any.
fn release_lock<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
    at_ms: u64,
) -> Result<(), S::Error> {
    if !rec.kind.is_exclusive() {
        return Ok(());
    }
    let Some(object) = rec.target.object() else {
        return Ok(());
    };
    if cx.store.get_lock(&object)? != Some(id) {
        return Ok(());
    }
    cx.store.delete_lock(&object)?;
    while let Some(next) = cx.store.inbox_pop(&object)? {
        let Some(mut waiting) = cx.store.get_invocation(next)? else {
            continue;
        };
        if waiting.status != Status::Inboxed {
            continue;
        }
        cx.store.put_lock(&object, next)?;
        start_attempt(cx, next, &mut waiting, Epoch::FIRST, at_ms)?;
        cx.store.put_invocation(next, &waiting)?;
        break;
    }
    Ok(())
}

/// Attempt `epoch` failed: completes the invocation for a terminal failure, else backs off or,
/// with retries exhausted, pauses or fails it as its policy says (the caller stores `rec`).
pub(crate) fn fail_attempt<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    epoch: Epoch,
    failure: AttemptFailure,
    at_ms: u64,
) -> Result<(), S::Error> {
    rec.last_failure = Some(Failure {
        code: failure.code,
        message: failure.message.clone(),
    });
    if !failure.retryable {
        let outcome = Outcome::Failure(Failure {
            code: failure.code,
            message: failure.message,
        });
        return complete(cx, id, rec, outcome, at_ms);
    }
    rec.retries = rec.retries.saturating_add(1);
    // The invocation's own policy (from the log), else the configured one: the same on every
    // replica either way.
    let policy = rec.retry.unwrap_or(cx.config.retry);
    if policy.exhausted(rec.retries) {
        return match policy.on_max_attempts {
            OnMaxAttempts::Pause => {
                rec.status = Status::Paused { epoch };
                limit::release(cx, id, rec, at_ms)
            }
            OnMaxAttempts::Kill => {
                let outcome = Outcome::Failure(Failure {
                    code: failure.code,
                    message: format!(
                        "{} (gave up after {} attempts)",
                        failure.message, rec.retries
                    ),
                });
                complete(cx, id, rec, outcome, at_ms)
            }
        };
    }
    let delay_ms = failure
        .retry_after_ms
        .unwrap_or_else(|| policy.delay_ms(rec.retries));
    let retry_at_ms = at_ms.saturating_add(delay_ms);
    rec.status = Status::BackingOff {
        epoch,
        attempts: rec.retries,
        retry_at_ms: Some(retry_at_ms),
    };
    limit::release(cx, id, rec, at_ms)?;
    observe::observe(
        cx,
        crate::Observation::Retrying {
            target: rec.target.clone(),
        },
    );
    register_timer(cx, TimerKey::new(retry_at_ms, Timer::Retry { id, epoch }))
}

/// Records results of pending entries, then tells the running attempt, or resumes a suspended
/// one waiting for any of them (the caller stores `rec`). Entries already settled are skipped.
pub(crate) fn settle<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &mut Invocation,
    results: Vec<(EntryIndex, Outcome)>,
) -> Result<(), S::Error> {
    let mut settled = Vec::with_capacity(results.len());
    for (index, outcome) in results {
        let Some(mut item) = cx.store.get_journal(id, index)? else {
            continue;
        };
        if !item.is_pending() {
            continue;
        }
        item.completion = Some(outcome.clone());
        cx.store.put_journal(id, index, &item)?;
        observe::settled(cx, id, rec, index, &item, &outcome);
        settled.push((index, outcome));
    }
    match &rec.status {
        Status::Invoked { epoch } => {
            let epoch = *epoch;
            for (index, outcome) in settled {
                cx.effects.push(Effect::SendCompletion {
                    id,
                    epoch,
                    index,
                    outcome,
                });
            }
        }
        Status::Suspended { epoch, waiting } => {
            let epoch = *epoch;
            if settled.iter().any(|(index, _)| waiting.contains(index)) {
                rec.retries = 0;
                start_attempt(cx, id, rec, epoch.next(), 0)?;
            }
        }
        // The next attempt replays the journal with these results in it.
        Status::BackingOff { .. } | Status::Paused { .. } => {}
        Status::Inboxed
        | Status::Scheduled { .. }
        | Status::Completed { .. }
        | Status::Throttled { .. } => {}
    }
    Ok(())
}

/// The pending `call` entries of an invocation, as the callees they started.
pub(crate) fn pending_callees<S: Store>(
    cx: &Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
) -> Result<Vec<InvocationId>, S::Error> {
    let mut callees = Vec::new();
    for index in 1..rec.journal_len {
        let index = EntryIndex(index);
        let Some(item) = cx.store.get_journal(id, index)? else {
            continue;
        };
        if let (Entry::Call(call), true) = (&item.entry, item.is_pending()) {
            // Entries journaled before the callee was recorded cannot start workflow runs.
            let callee = item.callee.unwrap_or_else(|| {
                let target = Target::new(&call.service, &call.handler, call.key.clone());
                let key = call.idempotency_key.as_deref();
                callee_id(&target, key, HandlerKind::Exclusive, id, index, false)
            });
            callees.push(callee);
        }
    }
    Ok(callees)
}

/// The id of the invocation a `call`/`send` entry starts: by idempotency key if it has one, else
/// the one run of a workflow's key, else derived from the caller and the entry, so every replay
/// finds the same one. `near_caller` (calls) keeps an unkeyed callee on the caller's partition:
/// the caller waits for it, and neither the call nor its result then crosses partitions.
pub(crate) fn callee_id(
    target: &Target,
    idempotency_key: Option<&str>,
    kind: HandlerKind,
    caller: InvocationId,
    index: EntryIndex,
    near_caller: bool,
) -> InvocationId {
    // A workflow runs once per key, whatever idempotency key a submission carries.
    match (idempotency_key, kind) {
        (_, HandlerKind::Workflow) => InvocationId::workflow(target),
        (Some(key), _) => InvocationId::idempotent(target, key),
        (None, _) if near_caller => InvocationId::derived_near(target, caller, index),
        (None, _) => InvocationId::derived(target, caller, index),
    }
}

/// The pending completable entries of an invocation, in index order.
pub(crate) fn pending_entries<S: Store>(
    cx: &Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
) -> Result<Vec<EntryIndex>, S::Error> {
    let mut pending = Vec::new();
    for index in 1..rec.journal_len {
        let index = EntryIndex(index);
        if cx
            .store
            .get_journal(id, index)?
            .is_some_and(|item: JournalItem| item.is_pending())
        {
            pending.push(index);
        }
    }
    Ok(pending)
}
