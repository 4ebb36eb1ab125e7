//! Requests from the ingress: start or join an invocation, read its status, wait for its result.

use crate::actor::PartitionActor;
use crate::{AwaitInvocation, GetInvocation, Invoke, Invoked, Lookup, Peers, ProposeError};
use actix::prelude::*;
use holdfast_fsm::Effect;
use holdfast_fsm::state::Status;
use holdfast_types::{Command, InvocationId};
use tokio::sync::oneshot;

impl PartitionActor {
    fn lost(&self) -> ProposeError {
        ProposeError::Storage {
            partition: self.partition(),
            message: "the partition lost leadership before the invocation completed".into(),
        }
    }

    fn lookup(&self, id: InvocationId) -> Result<Lookup, ProposeError> {
        let Some(group) = &self.group else {
            return Err(ProposeError::ShuttingDown(self.partition()));
        };
        let record = group
            .state
            .invocation(id)
            .map_err(|e| ProposeError::Storage {
                partition: self.partition(),
                message: e.to_string(),
            })?;
        Ok(match record.map(|r| r.status) {
            None => Lookup::Unknown,
            Some(Status::Completed {
                outcome,
                expires_at_ms,
            }) => Lookup::Completed {
                outcome,
                expires_at_ms,
            },
            Some(_) => Lookup::Running,
        })
    }

    fn wait_for(&mut self, id: InvocationId) -> oneshot::Receiver<holdfast_protocol::Outcome> {
        let (waiter, result) = oneshot::channel();
        self.waiters.entry(id).or_default().push(waiter);
        result
    }
}

impl Handler<Invoke> for PartitionActor {
    type Result = ResponseFuture<Result<Invoked, ProposeError>>;

    fn handle(
        &mut self,
        Invoke { request, wait }: Invoke,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let id = request.id;
        // Registered before proposing, so a result produced by this very batch finds it.
        let result = wait.then(|| self.wait_for(id));
        let committed = self.enqueue(vec![Command::Invoke(Box::new(request))], ctx);
        let lost = self.lost();
        Box::pin(async move {
            let committed = committed.await?;
            let mut previously = false;
            let mut outcome = None;
            for effect in committed.effects.iter() {
                match effect {
                    Effect::Attach {
                        id: joined,
                        outcome: known,
                    } if *joined == id => {
                        previously = true;
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
            })
        })
    }
}

impl Handler<GetInvocation> for PartitionActor {
    type Result = Result<Lookup, ProposeError>;

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
        match self.lookup(id) {
            Ok(Lookup::Running) => {
                let result = self.wait_for(id);
                let lost = self.lost();
                Box::pin(async move {
                    let outcome = result.await.map_err(|_| lost)?;
                    // The retention is not known here; the next lookup reports it.
                    Ok(Lookup::Completed {
                        outcome,
                        expires_at_ms: 0,
                    })
                })
            }
            answer => Box::pin(std::future::ready(answer)),
        }
    }
}

impl Handler<Peers> for PartitionActor {
    type Result = ();

    fn handle(&mut self, Peers(peers): Peers, ctx: &mut Context<Self>) {
        self.peers = peers;
        self.start_shuffle(ctx);
    }
}
