//! `RunCompleted`: the result of a `run` entry, proposed by the attempt that executed it. Fenced
//! like journal entries; the first result wins (a cancelled run keeps its cancellation). The SDK
//! already holds the result, so it only gets the `Ack` it asked for.

use super::Ctx;
use crate::state::Status;
use crate::{Effect, Store};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Epoch, InvocationId};

pub(crate) fn apply<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    epoch: Epoch,
    index: EntryIndex,
    outcome: &Outcome,
    ack: bool,
) -> Result<(), S::Error> {
    let rec = cx.store.get_invocation(id)?;
    let Some(rec) = rec.filter(|rec| rec.status == Status::Invoked { epoch }) else {
        cx.effects.push(Effect::Fence { id, epoch });
        return Ok(());
    };
    let Some(mut item) = cx.store.get_journal(id, index)? else {
        return Ok(());
    };
    if !matches!(item.entry, Entry::Run(_)) || !item.is_pending() {
        return Ok(());
    }
    item.completion = Some(outcome.clone());
    cx.store.put_journal(id, index, &item)?;
    super::observe::settled(cx, id, &rec, index, &item, outcome);
    if ack {
        cx.effects.push(Effect::Ack { id, epoch, index });
    }
    Ok(())
}
