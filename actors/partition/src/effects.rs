//! What the leader does with the effects of applied commands: every entry applied while this
//! node leads (after its [`crate::leader::Leader`] was rebuilt), whoever proposed it.

use crate::actor::{Lane, PartitionActor};
use crate::leader::Leadership;
use crate::shuffle::ShuffleOut;
use actix::prelude::*;
use holdfast_fsm::Effect;
use holdfast_fsm::state::{Invocation, JournalItem, Status};
use holdfast_invocation::Timeouts;
use holdfast_invocation::{
    AttemptEvent, AttemptSpec, DeliverAck, DeliverCompletion, DeliverCredit, InvocationActor, Stop,
};
use holdfast_protocol::Payload;
use holdfast_protocol::message::Start;
use holdfast_protocol::{Entry, Outcome};
use holdfast_raft_store::StateMachine;
use holdfast_types::awakeable::awakeable_key;
use holdfast_types::{Command, Ending, Epoch, HandlerKind, InvocationId};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in Unix milliseconds, carried into commands (the state machine has no clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PartitionActor {
    /// Executes the effects of one applied entry, in order (only while leading).
    pub(crate) fn execute(&mut self, effects: &[Effect], ctx: &mut Context<Self>) {
        for effect in effects {
            let Leadership::Leading(leader) = &mut self.leadership else {
                return;
            };
            match effect {
                Effect::RunAttempt {
                    id, epoch, target, ..
                } => {
                    self.observe_attempt(target);
                    self.schedule_attempt(*id, *epoch, ctx);
                }
                Effect::Observe(observation) => self.observe(observation),
                Effect::WakeLimit { name, at_ms } => self.wake_limit(name, *at_ms, ctx),
                Effect::SendCompletion {
                    id,
                    epoch,
                    index,
                    outcome,
                } => {
                    if let Some(attempt) = leader.attempt(*id, *epoch) {
                        attempt.do_send(DeliverCompletion {
                            index: *index,
                            outcome: outcome.clone(),
                        });
                        self.nudge();
                    }
                }
                Effect::Ack { id, epoch, index } => {
                    if let Some(attempt) = leader.attempt(*id, *epoch) {
                        attempt.do_send(DeliverAck { index: *index });
                    }
                }
                Effect::Fence { id, epoch } => {
                    if leader.attempt(*id, *epoch).is_some()
                        && let Some((_, attempt)) = leader.running.remove(id)
                    {
                        leader.unawaited.remove(id);
                        attempt.do_send(Stop);
                    }
                    leader.waiting.remove(*id, *epoch);
                    if leader.starting.get(id) == Some(epoch) {
                        leader.starting.remove(id);
                    }
                    self.start_waiting(ctx);
                }
                Effect::ShuffleOut { seq, message, .. } => {
                    leader.shuffle.do_send(ShuffleOut {
                        seq: *seq,
                        message: message.clone(),
                    });
                }
                Effect::Respond { id, outcome } => {
                    for waiter in self.waiters.remove(id).into_iter().flatten() {
                        let _ = waiter.send(outcome.clone());
                    }
                }
                Effect::RegisterTimer { timer } => {
                    leader.timers.do_send(crate::timers::Register(*timer));
                }
                Effect::Attach { id, outcome, .. } => {
                    if let Some(outcome) = outcome {
                        for waiter in self.waiters.remove(id).into_iter().flatten() {
                            let _ = waiter.send(outcome.clone());
                        }
                    }
                }
            }
        }
    }

    /// Queues attempt `epoch` of `id` (replacing an older attempt of it) and starts what the
    /// limit of concurrent attempts allows.
    fn schedule_attempt(&mut self, id: InvocationId, epoch: Epoch, ctx: &mut Context<Self>) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if let Some((_, stale)) = leader.running.remove(&id) {
            leader.unawaited.remove(&id);
            stale.do_send(Stop);
        }
        leader.waiting.push(id, epoch);
        self.start_waiting(ctx);
    }

    /// Starts waiting attempts, in order, while fewer than the limit run. Once the queue overflowed
    /// and drained, the reconciler finds the invocations that did not fit in the store.
    pub(crate) fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        loop {
            let limit = self.settings.max_concurrent_attempts;
            let Leadership::Leading(leader) = &mut self.leadership else {
                return;
            };
            if leader.running.len() + leader.starting.len() >= limit {
                return;
            }
            let Some((id, epoch)) = leader.waiting.pop() else {
                if leader.waiting.overflowed() {
                    self.reconcile(ctx);
                }
                return;
            };
            self.run_attempt(id, epoch, ctx);
        }
    }

    /// Starts attempt `epoch` of `id`, if it is still the invocation's current attempt. Its record
    /// is read here; its journal and eager state too when the journal is short, since the hop to a
    /// blocking thread and back costs more than such a read; a longer one is read off the actor's
    /// thread, and the attempt holds its slot meanwhile.
    fn run_attempt(&mut self, id: InvocationId, epoch: Epoch, ctx: &mut Context<Self>) {
        let Some(group) = &self.group else { return };
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        leader.starting.insert(id, epoch);
        let term = leader.term;
        let state = group.state.clone();
        let budget = self.settings.max_message_bytes / 4;
        let record = match state.invocation(id) {
            Ok(Some(record)) => record,
            read => {
                let stored = read.map(|_| None).map_err(|e| e.to_string());
                self.start_attempt(term, id, epoch, stored, ctx);
                return;
            }
        };
        if record.journal_len <= INLINE_JOURNAL_ENTRIES {
            let stored = Stored::of(&state, id, record, epoch, budget);
            self.start_attempt(term, id, epoch, stored, ctx);
            return;
        }
        let read = async move {
            tokio::task::spawn_blocking(move || Stored::of(&state, id, record, epoch, budget))
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read)
        };
        ctx.spawn(read.into_actor(self).map(move |stored, act, ctx| {
            act.start_attempt(term, id, epoch, stored, ctx);
        }));
    }

    /// Starts the attempt whose stored part was read, unless it was fenced or replaced meanwhile.
    fn start_attempt(
        &mut self,
        term: u64,
        id: InvocationId,
        epoch: Epoch,
        stored: Result<Option<Stored>, String>,
        ctx: &mut Context<Self>,
    ) {
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if leader.term != term || leader.starting.get(&id) != Some(&epoch) {
            return;
        }
        leader.starting.remove(&id);
        let unawaited = matches!(&stored, Ok(Some(stored)) if unawaited(&stored.record));
        let spec = stored.and_then(|stored| {
            stored
                .map(|stored| self.attempt_spec(id, epoch, stored))
                .transpose()
        });
        match spec {
            Ok(None) => self.start_waiting(ctx),
            Ok(Some((spec, timeouts))) => {
                let attempt = InvocationActor::new(
                    spec,
                    self.settings.endpoints.clone(),
                    ctx.address().recipient(),
                    timeouts,
                )
                .with_spans(self.settings.spans.clone())
                .start();
                if let Leadership::Leading(leader) = &mut self.leadership {
                    leader.running.insert(id, (epoch, attempt));
                    // Decided afresh for each attempt: a caller may have attached since the last.
                    if unawaited {
                        leader.unawaited.insert(id);
                    } else {
                        leader.unawaited.remove(&id);
                    }
                }
                self.nudge();
            }
            Err(message) => {
                // Nothing can run it now (e.g. its service is not registered yet): fail this
                // attempt retryably, so the backoff policy decides when to look again.
                let ending = Ending::Failed {
                    code: 503,
                    message,
                    retryable: true,
                    retry_after_ms: None,
                };
                self.end_attempt(id, epoch, ending, Lane::Internal, ctx);
                self.start_waiting(ctx);
            }
        }
    }

    /// Ends attempt `epoch` of `id` at once with a terminal failure: it wrote a message larger
    /// than the limit, which no retry could change.
    fn refuse_oversized(
        &mut self,
        id: InvocationId,
        epoch: Epoch,
        what: &str,
        size: usize,
        ctx: &mut Context<Self>,
    ) {
        let limit = self.settings.max_message_bytes;
        if let Leadership::Leading(leader) = &mut self.leadership
            && leader.attempt(id, epoch).is_some()
            && let Some((_, attempt)) = leader.running.remove(&id)
        {
            leader.unawaited.remove(&id);
            attempt.do_send(Stop);
        }
        tracing::warn!(partition = %self.partition(), invocation = %id, attempt = epoch.0, size,
            limit, "{what} exceeds invocation.max_message_bytes; failing the invocation");
        let ending = Ending::Failed {
            code: 413,
            message: format!(
                "{what} of {size} bytes exceeds the limit of {limit} bytes (invocation.max_message_bytes)"
            ),
            retryable: false,
            retry_after_ms: None,
        };
        self.end_attempt(id, epoch, ending, Lane::Internal, ctx);
        self.start_waiting(ctx);
    }

    /// Proposes that attempt `epoch` of `id` ended; until that is committed the reconciler
    /// counts the invocation as driven by this leader.
    fn end_attempt(
        &mut self,
        id: InvocationId,
        epoch: Epoch,
        ending: Ending,
        lane: Lane,
        ctx: &mut Context<Self>,
    ) {
        if let Leadership::Leading(leader) = &mut self.leadership {
            leader.ending.insert(id);
        }
        let ended = Command::AttemptEnded {
            id,
            epoch,
            ending,
            at_ms: now_ms(),
        };
        let committed = self.enqueue(vec![ended], lane, ctx);
        ctx.spawn(committed.into_actor(self).map(move |_, act, _| {
            if let Leadership::Leading(leader) = &mut act.leadership {
                leader.ending.remove(&id);
            }
        }));
    }

    /// What attempt `epoch` of `id` starts with, and its timeouts, from its stored part and the
    /// registry.
    fn attempt_spec(
        &self,
        id: InvocationId,
        epoch: Epoch,
        stored: Stored,
    ) -> Result<(AttemptSpec, Timeouts), String> {
        let Stored {
            record,
            journal,
            state,
            state_complete,
        } = stored;
        let target = &record.target;
        let pinned = record.deployment.as_ref();
        let registry = self.settings.registry.borrow().clone();
        let resolved = match pinned {
            Some(pinned) => registry
                .resolve_pinned(pinned, &target.service, &target.handler)
                .ok_or_else(|| {
                    format!(
                        "pinned deployment {pinned} no longer serves {}/{}",
                        target.service, target.handler
                    )
                })?,
            None => registry
                .resolve(&target.service, &target.handler)
                .ok_or_else(|| {
                    format!(
                        "no registered deployment serves {}/{}",
                        target.service, target.handler
                    )
                })?,
        };
        let endpoint = resolved
            .deployment
            .uri
            .parse()
            .map_err(|e| format!("deployment uri {}: {e}", resolved.deployment.uri))?;
        // The secret stays here: the SDK gets only the key it signs this invocation's awakeable
        // ids with, from which neither the secret nor any callee's secret can be computed.
        let start = Start {
            attempt: epoch.0,
            awakeable_key: Payload::from(&awakeable_key(record.secret)[..]),
            headers: record.headers.clone(),
            // The wire text: what SDKs derive awakeable ids and their random seed from.
            id: id.hex(),
            key: target.key.clone(),
            known_entries: u32::try_from(journal.len()).unwrap_or(u32::MAX),
            retry_count: record.retries,
            retry_elapsed_ms: 0,
            retry_entry: None,
            state,
            state_complete,
        };
        let timeouts = self.attempt_timeouts(target, pinned);
        Ok((
            AttemptSpec {
                id,
                epoch,
                target: target.clone(),
                endpoint,
                start,
                journal,
                trace: record.trace,
            },
            timeouts,
        ))
    }

    /// The handler kind of a call's target, which the state machine needs to lock correctly.
    fn callee_kind(&self, entry: &holdfast_protocol::Entry) -> Option<HandlerKind> {
        let (service, handler) = match entry {
            holdfast_protocol::Entry::Call(call) => (&call.service, &call.handler),
            holdfast_protocol::Entry::Send(send) => (&send.service, &send.handler),
            _ => return None,
        };
        let registry = self.settings.registry.borrow();
        let resolved = registry.resolve(service, handler)?;
        Some(resolved.handler.kind)
    }
}

impl Handler<AttemptEvent> for PartitionActor {
    type Result = ();

    fn handle(&mut self, event: AttemptEvent, ctx: &mut Context<Self>) {
        self.answered();
        // Entries and results of an attempt this leader stopped (fenced, replaced, refused) go
        // nowhere: the state machine would fence them anyway.
        if let AttemptEvent::Entry { id, epoch, .. } | AttemptEvent::RunResult { id, epoch, .. } =
            &event
            && !matches!(&self.leadership, Leadership::Leading(leader) if leader.attempt(*id, *epoch).is_some())
        {
            return;
        }
        let limit = self.settings.max_message_bytes;
        let command = match event {
            AttemptEvent::Entry {
                id, epoch, entry, ..
            } if encoded_len(&entry) > limit => {
                let size = encoded_len(&entry);
                return self.refuse_oversized(id, epoch, "a journal entry", size, ctx);
            }
            AttemptEvent::RunResult {
                id, epoch, outcome, ..
            } if outcome_len(&outcome) > limit => {
                let size = outcome_len(&outcome);
                return self.refuse_oversized(id, epoch, "a run result", size, ctx);
            }
            AttemptEvent::Entry {
                id,
                epoch,
                index,
                entry,
                ack,
            } => Command::JournalAppend {
                id,
                epoch,
                index,
                callee_kind: self.callee_kind(&entry),
                callee_retry: self.callee_retry(&entry),
                entry,
                ack,
                at_ms: now_ms(),
            },
            AttemptEvent::RunResult {
                id,
                epoch,
                index,
                outcome,
                ack,
            } => Command::RunCompleted {
                id,
                epoch,
                index,
                outcome,
                ack,
            },
            AttemptEvent::Ended { id, epoch, ending } => {
                let mut lane = Lane::Internal;
                if let Leadership::Leading(leader) = &mut self.leadership
                    && leader.attempt(id, epoch).is_some()
                {
                    leader.running.remove(&id);
                    let final_ending = matches!(
                        ending,
                        Ending::Completed
                            | Ending::Failed {
                                retryable: false,
                                ..
                            }
                    );
                    if leader.unawaited.remove(&id)
                        && final_ending
                        && !self.waiters.contains_key(&id)
                    {
                        lane = Lane::Unawaited;
                    }
                }
                self.start_waiting(ctx);
                if let Ending::Failed {
                    code,
                    message,
                    retryable,
                    ..
                } = &ending
                {
                    tracing::warn!(partition = %self.partition(), invocation = %id, attempt = epoch.0,
                        code, retryable, %message, "attempt failed");
                }
                self.end_attempt(id, epoch, ending, lane, ctx);
                return;
            }
        };
        // A refused proposal is not lost work: a new leader restarts the attempt, and an
        // unknown outcome leaves the attempt fenced, which the reconciler restarts. Either way the
        // attempt may read one more frame.
        let (id, epoch) = match &command {
            Command::JournalAppend { id, epoch, .. } | Command::RunCompleted { id, epoch, .. } => {
                (*id, *epoch)
            }
            _ => return self.submit(vec![command], ctx),
        };
        // An output nobody awaits goes with the ending that follows it.
        let output = matches!(
            &command,
            Command::JournalAppend {
                entry: Entry::Output(_),
                ..
            }
        );
        let lane = match &self.leadership {
            Leadership::Leading(leader)
                if output && leader.unawaited.contains(&id) && !self.waiters.contains_key(&id) =>
            {
                Lane::Unawaited
            }
            _ => Lane::Internal,
        };
        let committed = self.enqueue(vec![command], lane, ctx);
        ctx.spawn(committed.into_actor(self).map(move |_, act, _| {
            if let Leadership::Leading(leader) = &act.leadership
                && let Some(attempt) = leader.attempt(id, epoch)
            {
                attempt.do_send(DeliverCredit);
            }
        }));
    }
}

/// Whether nobody awaits the result of the invocation `record` describes: nobody asked for a
/// response or attached, and it holds no object's lock that others queue for.
fn unawaited(record: &Invocation) -> bool {
    !record.response && record.callers.is_empty() && record.target.object().is_none()
}

/// The size of an entry as journaled (its canonical body); unencodable counts as too large.
fn encoded_len(entry: &Entry) -> usize {
    entry.encode_body().map_or(usize::MAX, |body| body.len())
}

/// The size of a run result's payload.
fn outcome_len(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Value(value) => value.0.len(),
        Outcome::Failure(failure) => failure.message.len(),
        Outcome::Keys(keys) => keys.iter().map(String::len).sum(),
        Outcome::Void => 0,
    }
}

/// Journals up to this many entries are read on the actor's thread when their attempt starts
/// (a new invocation has one: its input).
const INLINE_JOURNAL_ENTRIES: u32 = 8;

/// What an attempt replays, read from the store: its record, journal and eager state.
struct Stored {
    record: Invocation,
    journal: Vec<JournalItem>,
    state: Vec<(String, Payload)>,
    state_complete: bool,
}

impl Stored {
    /// What attempt `epoch` of `id` replays, given its `record`; `None` if it is no longer the
    /// current attempt. At most `budget` bytes of state are read eagerly.
    fn of(
        store: &StateMachine,
        id: InvocationId,
        record: Invocation,
        epoch: Epoch,
        budget: usize,
    ) -> Result<Option<Stored>, String> {
        if record.status != (Status::Invoked { epoch }) {
            return Ok(None);
        }
        let journal = store
            .journal(id)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, item)| item)
            .collect();
        // State beyond the budget is left out: the SDK reads it entry by entry, so an object
        // with more state than one frame holds keeps serving.
        let (state, state_complete) = match record.target.object() {
            Some(object) => {
                let (state, complete) = store
                    .object_state_within(&object, budget)
                    .map_err(|e| e.to_string())?;
                let state = state
                    .into_iter()
                    .map(|(name, value)| (name, Payload(value.into())))
                    .collect();
                (state, complete)
            }
            None => (Vec::new(), true),
        };
        Ok(Some(Stored {
            record,
            journal,
            state,
            state_complete,
        }))
    }
}
