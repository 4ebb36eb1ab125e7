//! What the leader does with the effects of applied commands, and how it takes over from (or
//! hands over to) another leader. Followers never get here: effects reach only the proposer.

use crate::actor::PartitionActor;
use crate::shuffle::{Reload, ShuffleActor, ShuffleOut};
use actix::prelude::*;
use holdfast_fsm::Effect;
use holdfast_fsm::state::{Invocation, Status};
use holdfast_invocation::{
    AttemptEvent, AttemptSpec, DeliverAck, DeliverCompletion, InvocationActor, Stop,
};
use holdfast_protocol::Payload;
use holdfast_protocol::message::Start;
use holdfast_types::{Command, Ending, Epoch, HandlerKind, InvocationId, Target};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock in Unix milliseconds, carried into commands (the state machine has no clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PartitionActor {
    /// Executes the effects of one committed batch, in order.
    pub(crate) fn execute(&mut self, effects: &[Effect], ctx: &mut Context<Self>) {
        if !self.observed.is_leader {
            return;
        }
        for effect in effects {
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
                    if let Some(attempt) = self.attempt(*id, *epoch) {
                        attempt.do_send(DeliverCompletion {
                            index: *index,
                            outcome: outcome.clone(),
                        });
                    }
                }
                Effect::Ack { id, epoch, index } => {
                    if let Some(attempt) = self.attempt(*id, *epoch) {
                        attempt.do_send(DeliverAck { index: *index });
                    }
                }
                Effect::Fence { id, epoch } => {
                    if self.attempt(*id, *epoch).is_some()
                        && let Some((_, attempt)) = self.running.remove(id)
                    {
                        attempt.do_send(Stop);
                    }
                }
                Effect::ScheduleRetry {
                    id,
                    epoch,
                    delay_ms,
                } => {
                    let (id, epoch) = (*id, *epoch);
                    ctx.run_later(Duration::from_millis(*delay_ms), move |act, ctx| {
                        if act.observed.is_leader {
                            act.submit(vec![Command::Retry { id, epoch }], ctx);
                        }
                    });
                }
                Effect::ShuffleOut {
                    seq,
                    partition_key,
                    message,
                } => {
                    if let Some(shuffle) = &self.shuffle {
                        shuffle.do_send(ShuffleOut {
                            seq: *seq,
                            partition_key: *partition_key,
                            message: message.clone(),
                        });
                    }
                }
                Effect::Respond { id, outcome } => {
                    for waiter in self.waiters.remove(id).into_iter().flatten() {
                        let _ = waiter.send(outcome.clone());
                    }
                }
                Effect::RegisterTimer { timer } => self.register_timer(*timer, ctx),
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

    /// The running attempt of `id`, if it is attempt `epoch`.
    fn attempt(&self, id: InvocationId, epoch: Epoch) -> Option<&Addr<InvocationActor>> {
        self.running
            .get(&id)
            .filter(|(running, _)| *running == epoch)
            .map(|(_, attempt)| attempt)
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
        if let Some((_, stale)) = self.running.remove(&id) {
            stale.do_send(Stop);
        }
        match self.attempt_spec(id, epoch, target, pinned) {
            Ok(spec) => {
                let attempt = InvocationActor::new(
                    spec,
                    self.settings.endpoints.clone(),
                    ctx.address().recipient(),
                    self.attempt_timeouts(target, pinned),
                )
                .with_spans(self.settings.spans.clone())
                .start();
                self.running.insert(id, (epoch, attempt));
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
                self.submit(
                    vec![Command::AttemptEnded {
                        id,
                        epoch,
                        ending,
                        at_ms: now_ms(),
                    }],
                    ctx,
                );
            }
        }
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

    /// This node just became leader: resume what the applied state says is in progress.
    pub(crate) fn take_over(&mut self, ctx: &mut Context<Self>) {
        self.start_shuffle(ctx);
        self.start_timer_wheel(ctx);
        let Some(group) = &self.group else { return };
        let live = match group.state.live_invocations() {
            Ok(live) => live,
            Err(e) => {
                tracing::error!(partition = %self.partition(), error = %e, "cannot read live invocations");
                return;
            }
        };
        let restarts: Vec<Command> = live
            .into_iter()
            .filter_map(|(id, Invocation { status, .. })| match status {
                // The attempt belonged to the previous leader: fence it and start the next.
                Status::Invoked { epoch } | Status::BackingOff { epoch, .. } => {
                    Some(Command::Retry { id, epoch })
                }
                _ => None,
            })
            .collect();
        for restart in restarts {
            self.submit(vec![restart], ctx);
        }
    }

    /// (Re)creates the shuffle for this leader and hands it the undelivered outbox.
    pub(crate) fn start_shuffle(&mut self, ctx: &mut Context<Self>) {
        if self.peers.is_empty() || !self.observed.is_leader {
            return;
        }
        let Some(group) = &self.group else { return };
        let shuffle = match &self.shuffle {
            Some(shuffle) => shuffle.clone(),
            None => {
                let shuffle =
                    ShuffleActor::new(self.partition(), ctx.address(), self.peers.clone()).start();
                self.shuffle = Some(shuffle.clone());
                shuffle
            }
        };
        match group.state.outbox() {
            Ok(outbox) => shuffle.do_send(Reload(outbox)),
            Err(e) => {
                tracing::error!(partition = %self.partition(), error = %e, "cannot read the outbox");
            }
        }
    }

    /// This node no longer leads: stop its attempts and shuffle, and let go of waiters.
    pub(crate) fn step_down(&mut self) {
        for (_, (_, attempt)) in self.running.drain() {
            attempt.do_send(Stop);
        }
        if let Some(shuffle) = self.shuffle.take() {
            shuffle.do_send(crate::shuffle::Halt);
        }
        self.stop_timer_wheel();
        // Dropping the senders answers each waiting request with "the partition lost track".
        self.waiters.clear();
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
                if self.attempt(id, epoch).is_some() {
                    self.running.remove(&id);
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
                Command::AttemptEnded {
                    id,
                    epoch,
                    ending,
                    at_ms: now_ms(),
                }
            }
        };
        // A refused proposal is not lost work: the next leader restarts the attempt.
        self.submit(vec![command], ctx);
    }
}
