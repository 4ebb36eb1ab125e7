use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::EntryIndex;
use holdfast_types::{Command, Epoch, HandlerKind, InvocationId, OutboxMessage};

fn cancel(id: InvocationId) -> Command {
    Command::Cancel { id, at_ms: T0 + 20 }
}

#[test]
fn cancel_of_an_inboxed_invocation_completes_it_with_409() {
    let mut store = MemoryStore::default();
    let holder = running(&mut store, "a", 1);
    let queued = request(counter("a"), HandlerKind::Exclusive, 2);
    step(&mut store, &[invoke(queued.clone())]);
    let effects = step(&mut store, &[cancel(queued.id)]);
    let cancelled = failure(409, "cancelled");
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: queued.id,
                outcome: cancelled.clone()
            },
            purge_timer(queued.id, T0 + 20 + 500),
        ]
    );
    assert_eq!(
        status(&store, queued.id),
        Some(Status::Completed {
            outcome: cancelled,
            expires_at_ms: T0 + 20 + 500
        })
    );
    assert!(store.inboxes.is_empty());
    assert_eq!(store.locks.get(&object("a")), Some(&holder));
}

#[test]
fn cancel_of_a_running_invocation_fails_pending_entries_and_cancels_callees() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, sleep(10)),
        ],
    );
    let effects = step(&mut store, &[cancel(id)]);
    let callee = InvocationId::derived_near(&greeter(), id, EntryIndex(1));
    let cancelled = failure(409, "cancelled");
    assert_eq!(
        effects,
        vec![
            Effect::ShuffleOut {
                seq: 2,
                partition_key: callee.partition_key,
                message: OutboxMessage::Cancel { id: callee }
            },
            Effect::SendCompletion {
                id,
                epoch: Epoch(1),
                index: EntryIndex(1),
                outcome: cancelled.clone()
            },
            Effect::SendCompletion {
                id,
                epoch: Epoch(1),
                index: EntryIndex(2),
                outcome: cancelled.clone()
            },
        ]
    );
    assert_eq!(completion_of(&store, id, 2), Some(cancelled));
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(1) })
    );
}

#[test]
fn cancel_with_nothing_pending_is_delivered_to_the_next_completable_entry() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    assert_eq!(step(&mut store, &[cancel(id)]), vec![]);
    assert!(record(&store, id).cancel_pending);
    assert_eq!(
        step(&mut store, &[append(id, 1, 1, set_state("n", "1"))]),
        vec![]
    );
    let effects = step(&mut store, &[append(id, 1, 2, run("compensate?"))]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(2),
            outcome: failure(409, "cancelled")
        }]
    );
    assert!(!record(&store, id).cancel_pending);
}

#[test]
fn cancel_of_a_suspended_invocation_resumes_it() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append(id, 1, 1, sleep(10)), ended(id, 1, suspended(&[1]))],
    );
    let effects = step(&mut store, &[cancel(id)]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
}

#[test]
fn cancel_of_a_completed_invocation_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, output("x")),
            ended(id, 1, holdfast_types::Ending::Completed),
        ],
    );
    let before = store.clone();
    assert_eq!(step(&mut store, &[cancel(id)]), vec![]);
    assert_eq!(store, before);
}
