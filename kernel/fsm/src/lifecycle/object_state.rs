//! `SetState` / `ClearState` / `ClearAllState`: direct writes of object state (tools, benches);
//! `EditState`: an operator's replacement of an object's state, only while no invocation holds
//! the object's lock.

use super::Ctx;
use crate::Store;
use holdfast_types::{ObjectKey, StateEntry};

pub(crate) fn set<S: Store>(
    cx: &mut Ctx<'_, S>,
    object: &ObjectKey,
    name: &str,
    value: &[u8],
) -> Result<(), S::Error> {
    cx.store.put_state(object, name, value)
}

pub(crate) fn clear<S: Store>(
    cx: &mut Ctx<'_, S>,
    object: &ObjectKey,
    name: &str,
) -> Result<(), S::Error> {
    cx.store.delete_state(object, name)
}

pub(crate) fn clear_all<S: Store>(cx: &mut Ctx<'_, S>, object: &ObjectKey) -> Result<(), S::Error> {
    cx.store.delete_all_state(object)
}

/// Replaces the object's state with `entries`, unless its lock is held: a running handler read
/// its state when it started and writes it back, so an edit under it would be lost or torn.
pub(crate) fn edit<S: Store>(
    cx: &mut Ctx<'_, S>,
    object: &ObjectKey,
    entries: &[StateEntry],
) -> Result<(), S::Error> {
    if cx.store.get_lock(object)?.is_some() {
        return Ok(());
    }
    cx.store.delete_all_state(object)?;
    for entry in entries {
        cx.store.put_state(object, &entry.name, &entry.value)?;
    }
    Ok(())
}
