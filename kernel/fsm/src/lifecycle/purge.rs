//! `Purge`: forget a completed invocation — status, journal and idempotency key. Anything not
//! completed is left alone.

use super::Ctx;
use crate::Store;
use crate::state::Status;
use holdfast_types::InvocationId;

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, id: InvocationId) -> Result<(), S::Error> {
    let Some(rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    if !matches!(rec.status, Status::Completed { .. }) {
        return Ok(());
    }
    if let Some(key) = &rec.idempotency_key
        && cx.store.get_idempotency(&rec.target, key)? == Some(id)
    {
        cx.store.delete_idempotency(&rec.target, key)?;
    }
    cx.store.delete_journal(id)?;
    cx.store.delete_invocation(id)
}
