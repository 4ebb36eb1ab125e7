//! An operator's edit of an object's state (`POST /services/{service}/state`): the whole state is
//! replaced, but never under a running handler. The lock is checked before proposing (a clear
//! refusal) and again when the command applies (the state machine leaves a locked object alone);
//! afterwards the applied state is read back, so a lock taken in between is reported too.

use crate::ProposeError;
use crate::actor::PartitionActor;
use actix::prelude::*;
use futures::future::BoxFuture;
use holdfast_types::{Command, InvocationId, ObjectKey, StateEntry};
use serde::{Deserialize, Serialize};

/// Replaces an object's whole state with `entries` (none: clears it).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), EditStateError>")]
pub struct EditState {
    /// The object (a virtual object's or workflow's key).
    pub object: ObjectKey,
    /// Its new state.
    pub entries: Vec<StateEntry>,
}

/// Why an edit was not made. Nothing was written, except after [`EditStateError::Propose`] with
/// a storage error, whose outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum EditStateError {
    /// An invocation holds the object's lock: its handler would overwrite the edit.
    #[error(
        "the object is locked by invocation {0}, whose handler may write its state: try again \
         once it has finished"
    )]
    Locked(InvocationId),
    /// An invocation took the object's lock between the check and the edit, which was skipped.
    #[error("an invocation took the object's lock meanwhile; the edit was not applied, try again")]
    Raced,
    /// The partition could not read the state or refused the proposal.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

/// The largest state read back to confirm an edit; the edit itself is bounded by the message
/// limit of the request that carried it.
const READ_BACK_BYTES: usize = usize::MAX;

impl Handler<EditState> for PartitionActor {
    type Result = ResponseActFuture<Self, Result<(), EditStateError>>;

    fn handle(
        &mut self,
        EditState { object, entries }: EditState,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let key = object.clone();
        let holder = self.read_state(move |state| state.lock_holder(&key));
        Box::pin(holder.into_actor(self).then(move |holder, act, ctx| {
            let done: BoxFuture<'static, Result<(), EditStateError>> = match holder {
                Err(e) => Box::pin(std::future::ready(Err(e.into()))),
                Ok(Some(id)) => Box::pin(std::future::ready(Err(EditStateError::Locked(id)))),
                Ok(None) => {
                    let mut wanted: Vec<(String, Vec<u8>)> = entries
                        .iter()
                        .map(|e| (e.name.clone(), e.value.clone()))
                        .collect();
                    wanted.sort();
                    let command = Command::EditState {
                        object: object.clone(),
                        entries,
                    };
                    let committed = act.enqueue(vec![command], crate::actor::Lane::Client, ctx);
                    let read_back = act.read_state(move |state| {
                        state.object_state_within(&object, READ_BACK_BYTES)
                    });
                    Box::pin(async move {
                        committed.await?;
                        let (now, _) = read_back.await?;
                        if now == wanted {
                            Ok(())
                        } else {
                            Err(EditStateError::Raced)
                        }
                    })
                }
            };
            done.into_actor(act)
        }))
    }
}
