use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::message::{Entry, Input, StateKeys};
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{
    Command, Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, Source,
};

#[test]
fn set_state_entry_writes_the_object_state() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[append(id, 1, 1, set_state("n", "7"))]);
    assert_eq!(effects, vec![]);
    assert_eq!(state_of(&store, "a", "n"), Some(b"7".to_vec()));
    assert_eq!(record(&store, id).journal_len, 2);
}

#[test]
fn journal_append_with_a_stale_epoch_is_fenced_and_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            ended(id, 1, retryable(500)),
            Command::Retry {
                id,
                epoch: Epoch(1),
            },
        ],
    );
    let before = store.clone();
    let effects = step(&mut store, &[append(id, 1, 1, set_state("n", "zombie"))]);
    assert_eq!(
        effects,
        vec![Effect::Fence {
            id,
            epoch: Epoch(1)
        }]
    );
    assert_eq!(store, before);
}

#[test]
fn journal_append_with_an_index_gap_is_fenced_and_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let before = store.clone();
    for index in [0, 2, 5] {
        let effects = step(&mut store, &[append(id, 1, index, set_state("n", "x"))]);
        assert_eq!(
            effects,
            vec![Effect::Fence {
                id,
                epoch: Epoch(1)
            }]
        );
        assert_eq!(store, before);
    }
}

#[test]
fn journal_append_for_a_suspended_invocation_is_fenced() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append(id, 1, 1, sleep(10)), ended(id, 1, suspended(&[1]))],
    );
    let before = store.clone();
    let effects = step(&mut store, &[append(id, 1, 2, set_state("n", "x"))]);
    assert_eq!(
        effects,
        vec![Effect::Fence {
            id,
            epoch: Epoch(1)
        }]
    );
    assert_eq!(store, before);
}

#[test]
fn second_input_entry_aborts_and_retries_the_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let input = Entry::Input(Input { value: bytes("x") });
    let effects = step(&mut store, &[append(id, 1, 1, input)]);
    assert_eq!(
        effects,
        vec![
            Effect::Fence {
                id,
                epoch: Epoch(1)
            },
            retry_timer(id, 1, T0 + 50)
        ]
    );
    assert_eq!(status(&store, id), Some(backing_off(1, 1, T0 + 50)));
    assert_eq!(record(&store, id).journal_len, 1);
}

#[test]
fn set_state_entry_from_a_shared_handler_aborts_the_attempt_without_writing() {
    let mut store = MemoryStore::default();
    let mut target = counter("a");
    target.handler = "get".to_owned();
    let req = request(target, HandlerKind::Shared, 1);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(&mut store, &[append(req.id, 1, 1, set_state("n", "x"))]);
    assert_eq!(
        effects[0],
        Effect::Fence {
            id: req.id,
            epoch: Epoch(1)
        }
    );
    assert_eq!(state_of(&store, "a", "n"), None);
    assert!(matches!(
        status(&store, req.id),
        Some(Status::BackingOff { .. })
    ));
}

#[test]
fn get_state_entry_is_completed_from_state_and_forwarded() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, set_state("n", "7"))]);
    let effects = step(&mut store, &[append(id, 1, 2, get_state("n"))]);
    let value = Outcome::Value(bytes("7"));
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(2),
            outcome: value.clone()
        }]
    );
    assert_eq!(completion_of(&store, id, 2), Some(value));
    let effects = step(&mut store, &[append(id, 1, 3, get_state("absent"))]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(3),
            outcome: Outcome::Void
        }]
    );
}

#[test]
fn state_keys_entry_is_completed_with_sorted_names() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, set_state("b", "1")),
            append(id, 1, 2, set_state("a", "1")),
        ],
    );
    let effects = step(
        &mut store,
        &[append(
            id,
            1,
            3,
            Entry::StateKeys(StateKeys { result: None }),
        )],
    );
    let keys = Outcome::Keys(vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(3),
            outcome: keys
        }]
    );
}

#[test]
fn call_entry_goes_to_the_outbox_with_this_invocation_as_source() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[append(id, 1, 1, call(&greeter(), None))]);
    let callee = InvocationId::derived_near(&greeter(), id, EntryIndex(1));
    let expected = OutboxMessage::Invoke(Box::new(InvocationRequest {
        id: callee,
        target: greeter(),
        kind: HandlerKind::Shared,
        argument: bytes("p"),
        headers: Vec::new(),
        source: Source::Invocation {
            id,
            entry: EntryIndex(1),
        },
        idempotency_key: None,
        retention_ms: 24 * 60 * 60 * 1000,
        response: true,
        at_ms: T0,
        deployment: None,
        retry: None,
        secret: holdfast_types::awakeable::derive_secret(0, EntryIndex(1)),
        execute_at_ms: None,
        trace: None,
    }));
    assert_eq!(
        effects,
        vec![Effect::ShuffleOut {
            seq: 1,
            partition_key: callee.partition_key,
            message: expected.clone()
        }]
    );
    assert_eq!(store.outbox.get(&1), Some(&expected));
}

#[test]
fn send_entry_goes_to_the_outbox_without_response() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[append(id, 1, 1, send(&counter("b"), None))]);
    let [
        Effect::ShuffleOut {
            message: OutboxMessage::Invoke(request),
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("unexpected effects {effects:?}");
    };
    assert!(!request.response);
    assert_eq!(request.kind, HandlerKind::Exclusive);
}

#[test]
fn acked_entry_gets_an_ack_effect() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let Command::JournalAppend {
        id,
        epoch,
        index,
        entry,
        callee_kind,
        at_ms,
        ..
    } = append(id, 1, 1, run("r"))
    else {
        unreachable!()
    };
    let effects = step(
        &mut store,
        &[Command::JournalAppend {
            id,
            epoch,
            index,
            entry,
            ack: true,
            callee_kind,
            at_ms,
            callee_retry: None,
        }],
    );
    assert_eq!(effects, vec![Effect::Ack { id, epoch, index }]);
}

#[test]
fn run_result_is_stored_and_acked_once() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, run("r"))]);
    let result = |value: &str| Command::RunCompleted {
        id,
        epoch: Epoch(1),
        index: EntryIndex(1),
        outcome: Outcome::Value(bytes(value)),
        ack: true,
    };
    let effects = step(&mut store, &[result("first")]);
    assert_eq!(
        effects,
        vec![Effect::Ack {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1)
        }]
    );
    assert_eq!(step(&mut store, &[result("second")]), vec![]);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("first")))
    );
}

#[test]
fn run_result_from_a_stale_epoch_is_fenced_and_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, run("r")),
            Command::Retry {
                id,
                epoch: Epoch(1),
            },
        ],
    );
    let before = store.clone();
    let effects = step(
        &mut store,
        &[Command::RunCompleted {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Void,
            ack: true,
        }],
    );
    assert_eq!(
        effects,
        vec![Effect::Fence {
            id,
            epoch: Epoch(1)
        }]
    );
    assert_eq!(store, before);
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}
