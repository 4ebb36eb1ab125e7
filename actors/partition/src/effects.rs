//! What the leader does with the effects of applied commands: every entry applied while this
//! node leads (after its [`crate::leader::Leader`] was rebuilt), whoever proposed it.

use crate::actor::{Lane, PartitionActor};
use crate::leader::Leadership;
use crate::shuffle::ShuffleOut;
use actix::prelude::*;
use holdfast_fsm::Effect;
use holdfast_invocation::{
    AttemptEvent, AttemptSpec, DeliverAck, DeliverCompletion, InvocationActor, Stop,
};
use holdfast_protocol::Payload;
use holdfast_protocol::message::Start;
use holdfast_types::{Command, Ending, Epoch, HandlerKind, InvocationId, Target};
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
                    id,
                    epoch,
                    target,
                    deployment,
                } => {
                    self.observe_attempt(target);
                    self.run_attempt(*id, *epoch, target, deployment.as_ref(), ctx);
                }
                Effect::Observe(observation) => self.observe(observation),
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
                        attempt.do_send(Stop);
                    }
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
                Effect::Attach { id, outcome } => {
                    if let Some(outcome) = outcome {
                        for waiter in self.waiters.remove(id).into_iter().flatten() {
                            let _ = waiter.send(outcome.clone());
                        }
                    }
                }
            }
        }
    }

    /// Starts attempt `epoch` of `id` against its pinned deployment (or the newest one serving
    /// its target when it is not pinned).
    fn run_attempt(
        &mut self,
        id: InvocationId,
        epoch: Epoch,
        target: &Target,
        pinned: Option<&holdfast_types::DeploymentId>,
        ctx: &mut Context<Self>,
    ) {
        let spec = self.attempt_spec(id, epoch, target, pinned);
        let timeouts = self.attempt_timeouts(target, pinned);
        let Leadership::Leading(leader) = &mut self.leadership else {
            return;
        };
        if let Some((_, stale)) = leader.running.remove(&id) {
            stale.do_send(Stop);
        }
        match spec {
            Ok(spec) => {
                let attempt = InvocationActor::new(
                    spec,
                    self.settings.endpoints.clone(),
                    ctx.address().recipient(),
                    timeouts,
                )
                .with_spans(self.settings.spans.clone())
                .start();
                leader.running.insert(id, (epoch, attempt));
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
                self.end_attempt(id, epoch, ending, ctx);
            }
        }
    }

    /// Proposes that attempt `epoch` of `id` ended; until that is committed the reconciler
    /// counts the invocation as driven by this leader.
    fn end_attempt(
        &mut self,
        id: InvocationId,
        epoch: Epoch,
        ending: Ending,
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
        let committed = self.enqueue(vec![ended], Lane::Internal, ctx);
        ctx.spawn(committed.into_actor(self).map(move |_, act, _| {
            if let Leadership::Leading(leader) = &mut act.leadership {
                leader.ending.remove(&id);
            }
        }));
    }

    fn attempt_spec(
        &self,
        id: InvocationId,
        epoch: Epoch,
        target: &Target,
        pinned: Option<&holdfast_types::DeploymentId>,
    ) -> Result<AttemptSpec, String> {
        let group = self.group.as_ref().ok_or("the partition is not started")?;
        let registry = self.settings.registry.borrow().clone();
        let resolved = match pinned {
            Some(pinned) => {
                let deployment: holdfast_schema::DeploymentId = pinned
                    .0
                    .parse()
                    .map_err(|e| format!("pinned deployment {}: {e}", pinned.0))?;
                registry
                    .resolve_pinned(&deployment, &target.service, &target.handler)
                    .ok_or_else(|| {
                        format!(
                            "pinned deployment {} no longer serves {}/{}",
                            pinned.0, target.service, target.handler
                        )
                    })?
            }
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
        let record = group
            .state
            .invocation(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("invocation {id} is not stored"))?;
        let journal: Vec<_> = group
            .state
            .journal(id)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, item)| item)
            .collect();
        let state = match target.object() {
            Some(object) => group
                .state
                .object_state(&object)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(name, value)| (name, Payload(value.into())))
                .collect(),
            None => Vec::new(),
        };
        let start = Start {
            attempt: epoch.0,
            headers: record.headers.clone(),
            id: id.to_string(),
            key: target.key.clone(),
            known_entries: u32::try_from(journal.len()).unwrap_or(u32::MAX),
            retry_count: record.retries,
            retry_elapsed_ms: 0,
            retry_entry: None,
            secret: Payload::from(&record.secret.to_be_bytes()[..]),
            state,
            state_complete: true,
        };
        Ok(AttemptSpec {
            id,
            epoch,
            target: target.clone(),
            endpoint,
            start,
            journal,
            trace: record.trace,
        })
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
        Some(match resolved.handler.kind {
            holdfast_protocol::manifest::HandlerKind::Exclusive => HandlerKind::Exclusive,
            holdfast_protocol::manifest::HandlerKind::Shared => HandlerKind::Shared,
            holdfast_protocol::manifest::HandlerKind::Workflow => HandlerKind::Workflow,
        })
    }
}

impl Handler<AttemptEvent> for PartitionActor {
    type Result = ();

    fn handle(&mut self, event: AttemptEvent, ctx: &mut Context<Self>) {
        let command = match event {
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
                if let Leadership::Leading(leader) = &mut self.leadership
                    && leader.attempt(id, epoch).is_some()
                {
                    leader.running.remove(&id);
                }
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
                self.end_attempt(id, epoch, ending, ctx);
                return;
            }
        };
        // A refused proposal is not lost work: a new leader restarts the attempt, and an
        // unknown outcome leaves the attempt fenced, which the reconciler restarts.
        self.submit(vec![command], ctx);
    }
}
