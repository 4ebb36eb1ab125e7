//! `Resume`: a paused invocation (retries exhausted) gets a fresh attempt and a fresh retry budget.

use super::{Ctx, start_attempt};
use crate::Store;
use crate::state::Status;
use holdfast_types::InvocationId;

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, id: InvocationId) -> Result<(), S::Error> {
    let Some(mut rec) = cx.store.get_invocation(id)? else {
        return Ok(());
    };
    let Status::Paused { epoch } = rec.status else {
        return Ok(());
    };
    rec.retries = 0;
    start_attempt(cx, id, &mut rec, epoch.next(), 0)?;
    cx.store.put_invocation(id, &rec)
}
