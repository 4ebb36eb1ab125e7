//! The byte layout of state keys: `len(service) service len(key) key name`, lengths as u32
//! big-endian. The object prefix sorts all of one object's entries together for `ClearAllState`
//! and for scans.

use crate::Error;
use holdfast_types::{EntryIndex, InvocationId, ObjectKey, Target};

fn push_part(out: &mut Vec<u8>, part: &str) {
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part.as_bytes());
}

/// The prefix shared by every state key of `object`.
pub(crate) fn object_prefix(object: &ObjectKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + object.service.len() + object.key.len());
    push_part(&mut out, &object.service);
    push_part(&mut out, &object.key);
    out
}

/// The key of one named state entry of `object`.
pub(crate) fn state_key(object: &ObjectKey, name: &str) -> Vec<u8> {
    let mut out = object_prefix(object);
    out.extend_from_slice(name.as_bytes());
    out
}

/// The key of one durable promise of a workflow: the workflow's object prefix then the promise
/// name, so `delete_promises` clears a workflow's promises with one prefix scan.
pub(crate) fn promise_key(workflow: &ObjectKey, name: &str) -> Vec<u8> {
    state_key(workflow, name)
}

/// The key of one journal entry: invocation id (24 bytes) then index (u32 big-endian), so one
/// invocation's journal is contiguous and in index order.
pub(crate) fn journal_key(id: InvocationId, index: EntryIndex) -> Vec<u8> {
    let mut out = id.to_bytes().to_vec();
    out.extend_from_slice(&index.0.to_be_bytes());
    out
}

/// The key of one inbox slot: the object prefix then a u64 big-endian arrival number.
pub(crate) fn inbox_key(object: &ObjectKey, seq: u64) -> Vec<u8> {
    let mut out = object_prefix(object);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The prefix of one limit's rows: its name, length-prefixed.
pub(crate) fn name_prefix(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + name.len() + InvocationId::BYTES);
    push_part(&mut out, name);
    out
}

/// The key of one row of a limit's queue: the name (length-prefixed) then its number (u64
/// big-endian), so one limit's rows are contiguous and in order.
pub(crate) fn limit_queue_key(name: &str, seq: u64) -> Vec<u8> {
    let mut out = name_prefix(name);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The key of the permits one invocation holds of a limit: the name (length-prefixed), then the
/// invocation id.
pub(crate) fn limit_held_key(name: &str, id: InvocationId) -> Vec<u8> {
    let mut out = name_prefix(name);
    out.extend_from_slice(&id.to_bytes());
    out
}

/// The key of an idempotency index entry: service, handler, optional object key (marker byte,
/// then the part), idempotency key; every part length-prefixed so no two targets collide.
pub(crate) fn idempotency_key(target: &Target, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + target.service.len() + target.handler.len() + key.len());
    push_part(&mut out, &target.service);
    push_part(&mut out, &target.handler);
    match &target.key {
        Some(object_key) => {
            out.push(1);
            push_part(&mut out, object_key);
        }
        None => out.push(0),
    }
    push_part(&mut out, key);
    out
}

/// Splits one length-prefixed part off the front of a key.
pub(crate) fn take_part(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    let (part, rest) = rest.split_at(len);
    Some((String::from_utf8(part.to_vec()).ok()?, rest))
}

/// Splits a state key back into its object and entry name.
pub(crate) fn parse_state_key(bytes: &[u8]) -> Result<(ObjectKey, String), Error> {
    let corrupt = || Error::CorruptKey(bytes.len());
    let (service, rest) = take_part(bytes).ok_or_else(corrupt)?;
    let (key, rest) = take_part(rest).ok_or_else(corrupt)?;
    let name = String::from_utf8(rest.to_vec()).map_err(|_| corrupt())?;
    Ok((ObjectKey { service, key }, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_round_trip_and_share_the_object_prefix() {
        let object = ObjectKey::new("Cart", "user-1");
        let key = state_key(&object, "items");
        assert!(key.starts_with(&object_prefix(&object)));
        let (parsed, name) = parse_state_key(&key).expect("parse");
        assert_eq!((parsed, name.as_str()), (object, "items"));
    }

    #[test]
    fn prefixes_of_different_objects_never_nest() {
        let a = object_prefix(&ObjectKey::new("ab", "c"));
        let b = state_key(&ObjectKey::new("a", "bc"), "");
        assert!(!b.starts_with(&a) && !a.starts_with(&b));
    }

    #[test]
    fn journal_keys_sort_by_invocation_then_index() {
        let target = Target::new("S", "h", None);
        let a = InvocationId::new(&target, 1);
        let b = InvocationId::new(&target, 2);
        let mut keys = vec![
            journal_key(b, EntryIndex(0)),
            journal_key(a, EntryIndex(256)),
            journal_key(a, EntryIndex(2)),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                journal_key(a, EntryIndex(2)),
                journal_key(a, EntryIndex(256)),
                journal_key(b, EntryIndex(0)),
            ]
        );
    }

    #[test]
    fn idempotency_keys_separate_keyed_from_unkeyed_targets() {
        let keyed = idempotency_key(&Target::new("S", "h", Some(String::new())), "k");
        let unkeyed = idempotency_key(&Target::new("S", "h", None), "k");
        assert_ne!(keyed, unkeyed);
    }

    #[test]
    fn truncated_keys_are_reported_not_panicked_on() {
        let key = state_key(&ObjectKey::new("Cart", "user-1"), "items");
        for cut in 0..9 {
            assert!(parse_state_key(&key[..cut]).is_err());
        }
    }
}
