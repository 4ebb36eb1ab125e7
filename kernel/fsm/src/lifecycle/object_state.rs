//! `SetState` / `ClearState` / `ClearAllState`: direct writes of object state (tools, benches).

use super::Ctx;
use crate::Store;
use holdfast_types::ObjectKey;

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
