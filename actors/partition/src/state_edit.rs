//! An operator's edit of an object's state (`POST /services/{service}/state`): the whole state is
//! replaced, but never under a running handler, and, when the edit carries the version of the
//! state it was based on, never over state that changed since. The lock and the version are
//! checked before proposing (a clear refusal) and again when the command applies (the state
//! machine leaves a locked object, or one whose state has another version, alone); afterwards the
//! applied state is read back, so a lock taken or a write made in between is reported too.

use crate::ProposeError;
use crate::actor::PartitionActor;
use actix::prelude::*;
use futures::future::BoxFuture;
use holdfast_types::{Command, InvocationId, ObjectKey, StateEntry, state_version};
use serde::{Deserialize, Serialize};

/// Replaces an object's whole state with `entries` (none: clears it).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), EditStateError>")]
pub struct EditState {
    /// The object (a virtual object's or workflow's key).
    pub object: ObjectKey,
    /// Its new state.
    pub entries: Vec<StateEntry>,
    /// The [`state_version`] of the state the edit was based on: the edit is refused unless the
    /// object's state still has it. `None`: edit whatever the state.
    pub expected_version: Option<String>,
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
    /// The object's state no longer has the version the edit was based on: it changed since it
    /// was read, and the edit would overwrite that change.
    #[error("the state changed since version {0} was read; read it again")]
    VersionMismatch(String),
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
        EditState {
            object,
            entries,
            expected_version,
        }: EditState,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let key = object.clone();
        let before = self.read_state(move |state| {
            let holder = state.lock_holder(&key)?;
            let (current, _) = state.object_state_within(&key, READ_BACK_BYTES)?;
            Ok((holder, current))
        });
        Box::pin(before.into_actor(self).then(move |before, act, ctx| {
            let done: BoxFuture<'static, Result<(), EditStateError>> = match before {
                Err(e) => Box::pin(std::future::ready(Err(e.into()))),
                Ok((Some(id), _)) => Box::pin(std::future::ready(Err(EditStateError::Locked(id)))),
                Ok((None, current)) if stale(expected_version.as_deref(), &current).is_some() => {
                    let refused = stale(expected_version.as_deref(), &current);
                    Box::pin(std::future::ready(Err(refused.expect("stale"))))
                }
                Ok((None, _)) => {
                    let mut wanted: Vec<(String, Vec<u8>)> = entries
                        .iter()
                        .map(|e| (e.name.clone(), e.value.clone()))
                        .collect();
                    wanted.sort();
                    let command = Command::EditState {
                        object: object.clone(),
                        entries,
                        expected_version: expected_version.clone(),
                    };
                    let expected = expected_version;
                    let committed = act.enqueue(vec![command], crate::actor::Lane::Client, ctx);
                    let read_back = act.read_state(move |state| {
                        state.object_state_within(&object, READ_BACK_BYTES)
                    });
                    Box::pin(async move {
                        committed.await?;
                        let (now, _) = read_back.await?;
                        if now == wanted {
                            Ok(())
                        } else if let Some(stale) = stale(expected.as_deref(), &now) {
                            // The state changed between the check and the edit, which was skipped.
                            Err(stale)
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

/// The refusal of an edit based on version `expected` of state that now is `current`, if they
/// differ.
fn stale(expected: Option<&str>, current: &[(String, Vec<u8>)]) -> Option<EditStateError> {
    let expected = expected?;
    (state_version(current.iter().map(|(n, v)| (n, v))) != expected)
        .then(|| EditStateError::VersionMismatch(expected.to_owned()))
}
