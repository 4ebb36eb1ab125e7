//! Builders shared by the store's integration tests.

use holdfast_protocol::Payload;
use holdfast_protocol::message::Entry;
use holdfast_types::{
    Command, EntryIndex, Epoch, HandlerKind, InvocationId, InvocationRequest, Source, Target,
};

/// The exclusive `Counter/add` handler of object `key`.
pub fn counter(key: &str) -> Target {
    Target::new("Counter", "add", Some(key.to_owned()))
}

/// An ingress request for `target`, exclusive, accepted at 5 ms.
pub fn request(target: Target, nonce: u128) -> InvocationRequest {
    InvocationRequest {
        id: InvocationId::new(&target, nonce),
        target,
        kind: HandlerKind::Exclusive,
        argument: Payload::from(&b"1"[..]),
        headers: Vec::new(),
        source: Source::Ingress,
        idempotency_key: None,
        retention_ms: 100,
        response: true,
        at_ms: 5,
        deployment: None,
        retry: None,
        secret: 0,
        execute_at_ms: None,
        trace: None,
    }
}

/// Entry `index` of attempt `epoch`, arriving at 6 ms.
pub fn append(id: InvocationId, epoch: u32, index: u32, entry: Entry) -> Command {
    Command::JournalAppend {
        id,
        epoch: Epoch(epoch),
        index: EntryIndex(index),
        entry,
        ack: false,
        callee_kind: None,
        at_ms: 6,
        callee_retry: None,
    }
}
