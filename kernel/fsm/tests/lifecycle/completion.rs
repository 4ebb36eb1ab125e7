use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Command, Ending, Epoch};

fn complete(id: holdfast_types::InvocationId, index: u32, value: &str) -> Command {
    Command::Completion {
        id,
        index: EntryIndex(index),
        outcome: Outcome::Value(bytes(value)),
    }
}

#[test]
fn completion_of_a_running_invocation_is_journaled_and_forwarded() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, call(&greeter(), None))]);
    let effects = step(&mut store, &[complete(id, 1, "r")]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Value(bytes("r"))
        }]
    );
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("r")))
    );
}

#[test]
fn completion_of_an_unwaited_entry_is_journaled_without_resuming() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, call(&greeter(), None)),
            ended(id, 1, suspended(&[2])),
        ],
    );
    assert_eq!(step(&mut store, &[complete(id, 1, "r")]), vec![]);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("r")))
    );
    assert_eq!(
        step(&mut store, &[complete(id, 2, "s")]),
        vec![run_attempt(id, &counter("a"), 2)]
    );
}

#[test]
fn completion_for_an_already_completed_entry_is_ignored() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            complete(id, 1, "first"),
        ],
    );
    let before = store.clone();
    assert_eq!(step(&mut store, &[complete(id, 1, "second")]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn completion_for_an_unknown_or_completed_invocation_is_ignored() {
    let mut store = MemoryStore::default();
    let unknown = id_of(&greeter(), 99);
    assert_eq!(step(&mut store, &[complete(unknown, 1, "r")]), vec![]);
    assert_eq!(store, MemoryStore::default());
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, output("done")),
            ended(id, 1, Ending::Completed),
        ],
    );
    let before = store.clone();
    assert_eq!(step(&mut store, &[complete(id, 1, "late")]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn completion_for_a_non_completable_or_missing_entry_is_ignored() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, set_state("n", "1"))]);
    let before = store.clone();
    for index in [0, 1, 7] {
        assert_eq!(step(&mut store, &[complete(id, index, "r")]), vec![]);
    }
    assert_eq!(store, before);
}

#[test]
fn completion_while_backing_off_is_journaled_for_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            ended(id, 1, retryable(500)),
        ],
    );
    assert_eq!(step(&mut store, &[complete(id, 1, "r")]), vec![]);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("r")))
    );
}
