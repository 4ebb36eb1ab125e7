//! Awakeables completed from outside (the ingress): checked against the applied state (read off
//! the actor's thread), so an unknown or forged id is answered without writing, then proposed as
//! a command. An id of an invocation that has completed since is accepted and ignored, so a
//! webhook retrying its delivery is not told the awakeable never existed.

use crate::actor::PartitionActor;
use crate::{CompleteAwakeable, ProposeError};
use actix::prelude::*;
use futures::future::BoxFuture;
use holdfast_fsm::state::Status;
use holdfast_protocol::Entry;
use holdfast_raft_store::StateMachine;
use holdfast_types::{AwakeableId, Command};

/// What the applied state says about an awakeable id.
enum Known {
    /// An awakeable entry of a live invocation, issued for it: the completion is proposed.
    Live,
    /// Issued by an invocation that has completed: nobody waits anymore, nothing to write.
    Done,
    /// Unknown, purged or forged.
    Unknown,
}

/// Whether `id` was issued by an invocation in `state`, and whether that invocation still runs.
fn knows_awakeable(
    state: &StateMachine,
    id: &AwakeableId,
) -> Result<Known, holdfast_raft_store::Error> {
    let Some(record) = state.invocation(id.invocation)? else {
        return Ok(Known::Unknown);
    };
    if !id.is_signed_by(record.secret) {
        return Ok(Known::Unknown);
    }
    // A valid token was made by the invocation's SDK, which signs only its awakeable entries.
    if matches!(record.status, Status::Completed { .. }) {
        return Ok(Known::Done);
    }
    let entry = state.journal_entry(id.invocation, id.index)?;
    Ok(match entry {
        Some(item) if matches!(item.entry, Entry::Awakeable(_)) => Known::Live,
        _ => Known::Unknown,
    })
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
                Ok(Known::Live) => {
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
                Ok(Known::Done) => Box::pin(std::future::ready(Ok(true))),
                Ok(Known::Unknown) => Box::pin(std::future::ready(Ok(false))),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            };
            done.into_actor(act)
        }))
    }
}
