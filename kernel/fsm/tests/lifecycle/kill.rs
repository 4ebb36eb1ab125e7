use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::EntryIndex;
use holdfast_types::{Command, Epoch, HandlerKind, InvocationId, OutboxMessage};

#[test]
fn kill_of_a_running_invocation_fences_completes_and_starts_the_next() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let next = request(counter("a"), HandlerKind::Exclusive, 2);
    step(
        &mut store,
        &[
            invoke(next.clone()),
            append(id, 1, 1, call(&greeter(), None)),
        ],
    );
    let effects = step(&mut store, &[Command::Kill { id, at_ms: T0 }]);
    let callee = InvocationId::derived_near(&greeter(), id, EntryIndex(1));
    let killed = failure(409, "killed");
    assert_eq!(
        effects,
        vec![
            Effect::Fence {
                id,
                epoch: Epoch(1)
            },
            Effect::ShuffleOut {
                seq: 2,
                partition_key: callee.partition_key,
                message: OutboxMessage::Kill { id: callee }
            },
            Effect::Respond {
                id,
                outcome: killed.clone()
            },
            purge_timer(id, T0 + 500),
            run_attempt(next.id, &counter("a"), 1),
        ]
    );
    assert_eq!(
        status(&store, id),
        Some(Status::Completed {
            outcome: killed,
            expires_at_ms: T0 + 500
        })
    );
    assert_eq!(store.locks.get(&object("a")), Some(&next.id));
}

#[test]
fn kill_of_an_inboxed_invocation_removes_it_from_the_inbox() {
    let mut store = MemoryStore::default();
    running(&mut store, "a", 1);
    let queued = request(counter("a"), HandlerKind::Exclusive, 2);
    step(&mut store, &[invoke(queued.clone())]);
    let effects = step(
        &mut store,
        &[Command::Kill {
            id: queued.id,
            at_ms: T0,
        }],
    );
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: queued.id,
                outcome: failure(409, "killed")
            },
            purge_timer(queued.id, T0 + 500),
        ]
    );
    assert!(store.inboxes.is_empty());
}

#[test]
fn kill_of_an_unknown_invocation_changes_nothing() {
    let mut store = MemoryStore::default();
    let effects = step(
        &mut store,
        &[Command::Kill {
            id: id_of(&greeter(), 1),
            at_ms: T0,
        }],
    );
    assert_eq!(effects, vec![]);
    assert_eq!(store, MemoryStore::default());
}
