//! Requests from the ingress: start or join an invocation, read its status, wait for its result.

use crate::actor::PartitionActor;
use crate::{AwaitInvocation, GetInvocation, Invoke, Invoked, Lookup, ProposeError, UseRouter};
use actix::prelude::*;
use futures::future::BoxFuture;
use futures::future::ready;
use holdfast_fsm::Effect;
use holdfast_fsm::state::Status;
use holdfast_invocation::Timeouts;
use holdfast_protocol::Entry;
use holdfast_raft_store::StateMachine;
use holdfast_schema::AttemptPolicy;
use holdfast_types::{Command, DeploymentId, InvocationId, LogIndex, RetryPolicy, Target};
use std::time::Duration;
use tokio::sync::oneshot;

impl PartitionActor {
    fn lost(&self) -> ProposeError {
        ProposeError::LostLeadership(self.partition())
    }

    /// Runs `read` against the applied state on a blocking thread, off the actor's.
    pub(crate) fn read_state<T: Send + 'static>(
        &self,
        read: impl FnOnce(&StateMachine) -> Result<T, holdfast_raft_store::Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, ProposeError>> {
        let partition = self.partition();
        let Some(group) = &self.group else {
            return Box::pin(std::future::ready(Err(ProposeError::ShuttingDown(
                partition,
            ))));
        };
        let state = group.state.clone();
        let storage = move |message: String| ProposeError::Storage { partition, message };
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read(&state))
                .await
                .map_err(|e| storage(e.to_string()))?
                .map_err(|e| storage(e.to_string()))
        })
    }

    /// What the applied state says about `id`, read off the actor's thread.
    fn lookup(&self, id: InvocationId) -> BoxFuture<'static, Result<Lookup, ProposeError>> {
        let read = self.read_state(move |state| state.invocation(id));
        Box::pin(async move { Ok(Self::lookup_of(read.await?)) })
    }

    fn lookup_of(record: Option<holdfast_fsm::state::Invocation>) -> Lookup {
        match record.map(|r| r.status) {
            None => Lookup::Unknown,
            Some(Status::Completed {
                outcome,
                expires_at_ms,
            }) => Lookup::Completed {
                outcome,
                expires_at_ms: Some(expires_at_ms),
            },
            Some(_) => Lookup::Running,
        }
    }

    /// What this node's configuration gives attempts of handlers that declare nothing.
    fn node_policy(&self) -> AttemptPolicy {
        let timeouts = self.settings.timeouts;
        AttemptPolicy {
            retry: self.settings.fsm.retry,
            inactivity_timeout: millis(timeouts.inactivity),
            abort_timeout: millis(timeouts.abort),
        }
    }

    /// The policy attempts of `service/handler` run with, as served by the `pinned` deployment
    /// (else the newest one): handler > service > node configuration; the node's alone when no
    /// registered deployment serves it.
    fn attempt_policy(
        &self,
        service: &str,
        handler: &str,
        pinned: Option<&DeploymentId>,
    ) -> AttemptPolicy {
        let node = self.node_policy();
        let registry = self.settings.registry.borrow();
        let resolved = match pinned {
            Some(deployment) => registry.resolve_pinned(deployment, service, handler),
            None => registry.resolve(service, handler),
        };
        resolved.map_or(node, |r| r.service.attempt_policy(r.handler, &node))
    }

    /// Inactivity and abort timeouts of an attempt of `target`.
    pub(crate) fn attempt_timeouts(
        &self,
        target: &Target,
        pinned: Option<&DeploymentId>,
    ) -> Timeouts {
        let policy = self.attempt_policy(&target.service, &target.handler, pinned);
        Timeouts {
            inactivity: Duration::from_millis(policy.inactivity_timeout.0),
            abort: Duration::from_millis(policy.abort_timeout.0),
        }
    }

    /// The retry policy of a `call`/`send` entry's callee, resolved like its handler kind from
    /// the newest deployment serving it; it travels in the log with the entry.
    pub(crate) fn callee_retry(&self, entry: &Entry) -> Option<RetryPolicy> {
        let (service, handler) = match entry {
            Entry::Call(call) => (&call.service, &call.handler),
            Entry::Send(send) => (&send.service, &send.handler),
            _ => return None,
        };
        let registry = self.settings.registry.borrow();
        let resolved = registry.resolve(service, handler)?;
        Some(
            resolved
                .service
                .retry_policy_for(resolved.handler, self.settings.fsm.retry),
        )
    }

    fn wait_for(&mut self, id: InvocationId) -> oneshot::Receiver<holdfast_protocol::Outcome> {
        let (waiter, result) = oneshot::channel();
        self.waiters.entry(id).or_default().push(waiter);
        // Its ending may be the deferred batch: someone waits for it now.
        self.expedite();
        result
    }
}

impl Handler<Invoke> for PartitionActor {
    type Result = ResponseFuture<Result<Invoked, ProposeError>>;

    fn handle(
        &mut self,
        Invoke { mut request, wait }: Invoke,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let id = request.id;
        // The retry policy is fixed when the request is accepted and travels in the log, so every
        // replica backs off alike however the registry or a node's configuration changes later.
        if request.retry.is_none() {
            let target = &request.target;
            let policy = self.attempt_policy(
                &target.service,
                &target.handler,
                request.deployment.as_ref(),
            );
            request.retry = Some(policy.retry);
        }
        // Registered before proposing, so a result produced by this very batch finds it.
        let result = wait.then(|| self.wait_for(id));
        let committed = self.enqueue(
            vec![Command::Invoke(Box::new(request))],
            crate::actor::Lane::Client,
            ctx,
        );
        let lost = self.lost();
        Box::pin(async move {
            let committed = committed.await?;
            let mut previously = false;
            let mut workflow_finished = false;
            let mut outcome = None;
            for effect in committed.effects.iter() {
                match effect {
                    Effect::Attach {
                        id: joined,
                        outcome: known,
                        workflow_finished: finished,
                    } if *joined == id => {
                        previously = true;
                        workflow_finished |= *finished;
                        outcome = outcome.or_else(|| known.clone());
                    }
                    Effect::Respond {
                        id: done,
                        outcome: known,
                    } if *done == id => {
                        outcome = Some(known.clone());
                    }
                    _ => {}
                }
            }
            if outcome.is_none()
                && let Some(result) = result
            {
                outcome = Some(result.await.map_err(|_| lost)?);
            }
            Ok(Invoked {
                id,
                previously,
                outcome,
                workflow_finished,
            })
        })
    }
}

impl Handler<GetInvocation> for PartitionActor {
    type Result = ResponseFuture<Result<Lookup, ProposeError>>;

    fn handle(
        &mut self,
        GetInvocation(id): GetInvocation,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.lookup(id)
    }
}

impl Handler<AwaitInvocation> for PartitionActor {
    type Result = ResponseFuture<Result<Lookup, ProposeError>>;

    fn handle(
        &mut self,
        AwaitInvocation(id): AwaitInvocation,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        // Registered before reading, so a completion applied meanwhile still reaches it (an
        // unused waiter is dropped with its closed receiver).
        let result = self.wait_for(id);
        let lookup = self.lookup(id);
        let lost = self.lost();
        Box::pin(async move {
            match lookup.await? {
                Lookup::Running => {
                    let outcome = result.await.map_err(|_| lost)?;
                    // The retention is not known here; the next lookup reports it.
                    Ok(Lookup::Completed {
                        outcome,
                        expires_at_ms: None,
                    })
                }
                answer => Ok(answer),
            }
        })
    }
}

impl Handler<crate::ReadIndex> for PartitionActor {
    type Result = Result<LogIndex, ProposeError>;

    /// Answered from the leader's lease: while a quorum acknowledged it within the lease no
    /// other leader can exist, and everything it acknowledged is applied, so its applied index
    /// covers every write acknowledged before the read began.
    fn handle(&mut self, _: crate::ReadIndex, _ctx: &mut Context<Self>) -> Self::Result {
        let leading = matches!(self.leadership, crate::leader::Leadership::Leading(_));
        if leading && !self.lease_lost {
            return Ok(LogIndex(self.observed.applied));
        }
        Err(ProposeError::NotLeader {
            partition: self.partition(),
            leader: self.observed.other_leader(),
        })
    }
}

impl Handler<crate::AwaitApplied> for PartitionActor {
    type Result = ResponseFuture<Result<(), ProposeError>>;

    fn handle(
        &mut self,
        crate::AwaitApplied(index): crate::AwaitApplied,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let partition = self.partition();
        let Some(raft) = self.group.as_ref().map(|g| g.raft.clone()) else {
            return Box::pin(ready(Err(ProposeError::ShuttingDown(partition))));
        };
        let deadline = self.settings.proposal_deadline;
        Box::pin(async move {
            raft.wait(Some(deadline))
                .applied_index_at_least(Some(index.0), "a read index")
                .await
                .map(|_| ())
                .map_err(|_| ProposeError::Unknown {
                    partition,
                    waited: deadline,
                })
        })
    }
}

impl Handler<crate::StandForElection> for PartitionActor {
    type Result = ();

    fn handle(&mut self, _: crate::StandForElection, ctx: &mut Context<Self>) {
        if self.observed.is_leader {
            return;
        }
        let Some(group) = &self.group else { return };
        let raft = group.raft.clone();
        let partition = self.partition();
        tracing::info!(%partition, "standing for election at the leader's request");
        ctx.spawn(
            async move {
                if let Err(e) = raft.trigger().elect().await {
                    tracing::debug!(%partition, error = %e, "cannot stand for election");
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<UseRouter> for PartitionActor {
    type Result = ();

    fn handle(&mut self, UseRouter(router): UseRouter, _ctx: &mut Context<Self>) {
        if let crate::leader::Leadership::Leading(leader) = &self.leadership {
            leader
                .shuffle
                .do_send(crate::shuffle::Targets(router.clone()));
        }
        self.router = Some(router);
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(duration: Duration) -> holdfast_schema::Millis {
    holdfast_schema::Millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
