//! `SetState` / `ClearState` / `ClearAllState`: direct writes of object state (tools, benches);
//! `EditState`: an operator's replacement of an object's state, only while no invocation holds
//! the object's lock and, when the edit names the version of the state it was based on, only if
//! the state still has that version.

use super::Ctx;
use crate::Store;
use holdfast_types::{ObjectKey, StateEntry, state_version};

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
/// its state when it started and writes it back, so an edit under it would be lost or torn. With
/// `expected_version`, also unless the current state's [`state_version`] differs: the edit was
/// based on state that has changed since. A refused edit changes nothing.
pub(crate) fn edit<S: Store>(
    cx: &mut Ctx<'_, S>,
    object: &ObjectKey,
    entries: &[StateEntry],
    expected_version: Option<&str>,
) -> Result<(), S::Error> {
    if cx.store.get_lock(object)?.is_some() {
        return Ok(());
    }
    if let Some(expected) = expected_version
        && current_version(cx.store, object)? != expected
    {
        return Ok(());
    }
    cx.store.delete_all_state(object)?;
    for entry in entries {
        cx.store.put_state(object, &entry.name, &entry.value)?;
    }
    Ok(())
}

/// The [`state_version`] of the object's stored state.
fn current_version<S: Store>(store: &S, object: &ObjectKey) -> Result<String, S::Error> {
    let mut entries = Vec::new();
    for name in store.state_names(object)? {
        if let Some(value) = store.get_state(object, &name)? {
            entries.push((name, value));
        }
    }
    Ok(state_version(entries))
}
