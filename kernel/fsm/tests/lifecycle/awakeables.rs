//! Awakeables and invocation secrets: only an id signed with the invocation's secret completes an
//! `awakeable` entry, and only the first completion counts.

use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::awakeable::{awakeable_key, derive_secret, token};
use holdfast_types::{
    AwakeableId, Command, Epoch, HandlerKind, InvocationId, OutboxMessage, PartitionId,
};

const SECRET: u128 = 0x5eed_0fa1;

/// A running exclusive Counter invocation for `key` with secret [`SECRET`].
fn started(store: &mut MemoryStore, key: &str, nonce: u128) -> InvocationId {
    let mut req = request(counter(key), HandlerKind::Exclusive, nonce);
    req.secret = SECRET;
    let id = req.id;
    step(store, &[invoke(req)]);
    id
}

/// A running invocation whose entry 1 is an awakeable; returns it and the awakeable's id.
fn waiting(store: &mut MemoryStore) -> (InvocationId, AwakeableId) {
    let id = started(store, "a", 1);
    assert_eq!(step(store, &[append(id, 1, 1, awakeable())]), vec![]);
    (id, AwakeableId::new(id, EntryIndex(1), SECRET))
}

fn resolve(awakeable: AwakeableId, value: &str) -> Command {
    Command::CompleteAwakeable {
        id: awakeable.invocation,
        index: awakeable.index,
        token: awakeable.token,
        outcome: Outcome::Value(bytes(value)),
    }
}

#[test]
fn invocation_keeps_the_secret_of_its_request() {
    let mut store = MemoryStore::default();
    let id = started(&mut store, "a", 1);
    assert_eq!(record(&store, id).secret, SECRET);
}

#[test]
fn calls_and_sends_carry_a_secret_derived_from_the_caller_and_the_entry() {
    let mut store = MemoryStore::default();
    let id = started(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, send(&counter("b"), None)),
            append(id, 1, 3, send(&counter("b"), Some(10))),
        ],
    );
    let secrets: Vec<u128> = outbox(&store)
        .iter()
        .map(|message| match message {
            OutboxMessage::Invoke(request) => request.secret,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<u128> = (1..=3)
        .map(|i| derive_secret(SECRET, EntryIndex(i)))
        .collect();
    assert_eq!(secrets, expected);
    assert!(!secrets.contains(&SECRET));
}

#[test]
fn complete_awakeable_completes_the_pending_awakeable() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    let effects = step(&mut store, &[resolve(awakeable, "yes")]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Value(bytes("yes"))
        }]
    );
}

#[test]
fn awakeable_is_completed_once_and_later_completions_are_ignored() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    step(&mut store, &[resolve(awakeable, "first")]);
    let before = store.clone();
    assert_eq!(step(&mut store, &[resolve(awakeable, "second")]), vec![]);
    assert_eq!(store, before);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("first")))
    );
}

#[test]
fn awakeable_completion_with_a_wrong_token_is_ignored() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    let before = store.clone();
    let forged = [
        // Signed with another secret, the secret of the invocation id alone, another entry's
        // token, the secret's bytes used as the key, and no token at all.
        AwakeableId::new(id, EntryIndex(1), SECRET + 1),
        AwakeableId::new(id, EntryIndex(1), 0),
        AwakeableId {
            token: token(&awakeable_key(SECRET), EntryIndex(2)),
            ..awakeable
        },
        AwakeableId::with_key(id, EntryIndex(1), &{
            let mut raw = [0u8; 32];
            raw[..16].copy_from_slice(&SECRET.to_be_bytes());
            raw
        }),
        AwakeableId {
            token: [0; 16],
            ..awakeable
        },
    ];
    for awakeable in forged {
        assert_eq!(step(&mut store, &[resolve(awakeable, "x")]), vec![]);
        assert_eq!(store, before);
    }
}

#[test]
fn awakeable_completion_of_an_entry_that_is_no_awakeable_is_ignored() {
    let mut store = MemoryStore::default();
    let id = started(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, sleep(100)),
        ],
    );
    let before = store.clone();
    for index in [0, 1, 2, 3] {
        let signed = AwakeableId::new(id, EntryIndex(index), SECRET);
        assert_eq!(step(&mut store, &[resolve(signed, "x")]), vec![]);
        assert_eq!(store, before, "entry {index}");
    }
}

#[test]
fn awakeable_completion_resumes_a_suspended_invocation() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    step(&mut store, &[ended(id, 1, suspended(&[1]))]);
    let effects = step(&mut store, &[resolve(awakeable, "late")]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("late")))
    );
}

#[test]
fn awakeable_completion_of_a_completed_or_unknown_invocation_is_ignored() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    finish(&mut store, id, 1, "gave up");
    let before = store.clone();
    assert_eq!(step(&mut store, &[resolve(awakeable, "x")]), vec![]);
    assert_eq!(store, before);
    let unknown = AwakeableId::new(id_of(&greeter(), 9), EntryIndex(1), SECRET);
    assert_eq!(step(&mut store, &[resolve(unknown, "x")]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn complete_awakeable_entry_sends_the_completion_through_the_outbox() {
    let mut store = MemoryStore::default();
    let (target, awakeable) = waiting(&mut store);
    let other = started(&mut store, "b", 2);
    let rejection = failure(500, "no");
    let effects = step(
        &mut store,
        &[append(
            other,
            1,
            1,
            complete_awakeable(&awakeable.to_string(), rejection.clone()),
        )],
    );
    let message = OutboxMessage::CompleteAwakeable {
        id: target,
        index: EntryIndex(1),
        token: awakeable.token,
        outcome: rejection.clone(),
    };
    assert_eq!(
        effects,
        vec![Effect::ShuffleOut {
            seq: 1,
            partition_key: target.partition_key,
            message: message.clone()
        }]
    );
    // The shuffle delivers it, here to this very partition.
    let delivery = Command::ShuffleIn {
        from: PartitionId(0),
        seq: 1,
        message,
        at_ms: T0,
    };
    let effects = step(&mut store, std::slice::from_ref(&delivery));
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id: target,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: rejection.clone()
        }]
    );
    // A redelivery is dropped by the shuffle's deduplication.
    let before = store.clone();
    assert_eq!(step(&mut store, &[delivery]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn complete_awakeable_entry_may_complete_its_own_invocations_awakeable() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    let effects = step(
        &mut store,
        &[append(
            id,
            1,
            2,
            complete_awakeable(&awakeable.to_string(), Outcome::Void),
        )],
    );
    let [Effect::ShuffleOut { message, .. }] = effects.as_slice() else {
        panic!("unexpected effects {effects:?}");
    };
    let effects = step(
        &mut store,
        &[Command::ShuffleIn {
            from: PartitionId(0),
            seq: 1,
            message: message.clone(),
            at_ms: T0,
        }],
    );
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Void
        }]
    );
}

#[test]
fn complete_awakeable_entry_with_a_malformed_id_is_only_journaled() {
    let mut store = MemoryStore::default();
    let (id, awakeable) = waiting(&mut store);
    let text = awakeable.to_string();
    for (index, bad) in [
        "",
        "awk_nope",
        &text[..text.len() - 2],
        &text.to_uppercase(),
    ]
    .into_iter()
    .enumerate()
    {
        let index = index as u32 + 2;
        let effects = step(
            &mut store,
            &[append(id, 1, index, complete_awakeable(bad, Outcome::Void))],
        );
        assert_eq!(effects, vec![], "{bad}");
    }
    assert!(store.outbox.is_empty());
    assert_eq!(record(&store, id).journal_len, 6);
    assert_eq!(completion_of(&store, id, 1), None);
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(1) })
    );
}
