//! `OutboxDelivered`: the target partitions committed every message up to `up_to`; forget them.

use super::Ctx;
use crate::Store;

pub(crate) fn apply<S: Store>(cx: &mut Ctx<'_, S>, up_to: u64) -> Result<(), S::Error> {
    cx.store.outbox_truncate(up_to)
}
