//! Awakeables completed from outside (the ingress): checked against the applied state, so an
//! unknown or forged id is answered at once, then proposed as a command.

use crate::actor::PartitionActor;
use crate::{CompleteAwakeable, ProposeError};
use actix::prelude::*;
use holdfast_fsm::state::Status;
use holdfast_protocol::Entry;
use holdfast_types::{AwakeableId, Command};

impl PartitionActor {
    /// Whether `id` names an awakeable entry of a live invocation of this partition and was
    /// issued for it. A completed invocation's awakeables are gone with it: nobody waits anymore.
    fn knows_awakeable(&self, id: &AwakeableId) -> Result<bool, ProposeError> {
        let Some(group) = &self.group else {
            return Err(ProposeError::ShuttingDown(self.partition()));
        };
        let storage = |e: holdfast_raft_store::Error| ProposeError::Storage {
            partition: self.partition(),
            message: e.to_string(),
        };
        let Some(record) = group.state.invocation(id.invocation).map_err(storage)? else {
            return Ok(false);
        };
        if matches!(record.status, Status::Completed { .. }) || !id.is_signed_by(record.secret) {
            return Ok(false);
        }
        let entry = group
            .state
            .journal_entry(id.invocation, id.index)
            .map_err(storage)?;
        Ok(entry.is_some_and(|item| matches!(item.entry, Entry::Awakeable(_))))
    }
}

impl Handler<CompleteAwakeable> for PartitionActor {
    type Result = ResponseFuture<Result<bool, ProposeError>>;

    fn handle(
        &mut self,
        CompleteAwakeable { id, outcome }: CompleteAwakeable,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        match self.knows_awakeable(&id) {
            Ok(true) => {}
            other => return Box::pin(std::future::ready(other)),
        }
        let committed = self.enqueue(
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
}
