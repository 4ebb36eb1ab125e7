//! Awakeables completed from outside (the ingress): checked against the applied state (read off
//! the actor's thread), so an unknown or forged id is answered without writing, then proposed as
//! a command.

use crate::actor::PartitionActor;
use crate::{CompleteAwakeable, ProposeError};
use actix::prelude::*;
use futures::future::BoxFuture;
use holdfast_fsm::state::Status;
use holdfast_protocol::Entry;
use holdfast_raft_store::StateMachine;
use holdfast_types::{AwakeableId, Command};

/// Whether `id` names an awakeable entry of a live invocation in `state` and was issued for it.
/// A completed invocation's awakeables are gone with it: nobody waits anymore.
fn knows_awakeable(
    state: &StateMachine,
    id: &AwakeableId,
) -> Result<bool, holdfast_raft_store::Error> {
    let Some(record) = state.invocation(id.invocation)? else {
        return Ok(false);
    };
    if matches!(record.status, Status::Completed { .. }) || !id.is_signed_by(record.secret) {
        return Ok(false);
    }
    let entry = state.journal_entry(id.invocation, id.index)?;
    Ok(entry.is_some_and(|item| matches!(item.entry, Entry::Awakeable(_))))
}

impl Handler<CompleteAwakeable> for PartitionActor {
    type Result = ResponseActFuture<Self, Result<bool, ProposeError>>;

    fn handle(
        &mut self,
        CompleteAwakeable { id, outcome }: CompleteAwakeable,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        // Checked off the actor's thread; proposed back on it.
        let read = self.read_state(move |state| knows_awakeable(state, &id));
        Box::pin(read.into_actor(self).then(move |known, act, ctx| {
            let done: BoxFuture<'static, Result<bool, ProposeError>> = match known {
                Ok(true) => {
                    let committed = act.enqueue(
                        vec![Command::CompleteAwakeable {
                            id: id.invocation,
                            index: id.index,
                            token: id.token,
                            outcome,
                        }],
                        crate::actor::Lane::Client,
                        ctx,
                    );
                    Box::pin(async move { committed.await.map(|_| true) })
                }
                other => Box::pin(std::future::ready(other)),
            };
            done.into_actor(act)
        }))
    }
}
