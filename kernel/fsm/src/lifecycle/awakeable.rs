//! `CompleteAwakeable` (from the ingress) and the shuffled `CompleteAwakeable` message (from a
//! `complete_awakeable` entry): resolve or reject an invocation's `awakeable` entry.
//!
//! Applied only when the token proves the id was issued for that entry of that invocation (so an
//! invocation id alone cannot complete its awakeables) and the entry is still pending: the first
//! completion wins, later ones and forged ones change nothing.

use super::{Ctx, settle};
use crate::Store;
use crate::state::Status;
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::awakeable::TOKEN_BYTES;
use holdfast_types::{AwakeableId, InvocationId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    index: EntryIndex,
    token: &[u8; TOKEN_BYTES],
    outcome: &Outcome,
) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    if matches!(rec.status, Status::Completed { .. }) {
        return Ok(());
    }
    let awakeable = AwakeableId {
        invocation: id,
        index,
        token: *token,
    };
    if !awakeable.is_signed_by(rec.secret) {
        return Ok(());
    }
    let pending = cx.store.get_journal(id, index)?;
    if !pending.is_some_and(|item| matches!(item.entry, Entry::Awakeable(_)) && item.is_pending()) {
        return Ok(());
    }
    settle(cx, id, &mut rec, vec![(index, outcome.clone())])?;
    cx.store.put_invocation(id, &rec)
}
