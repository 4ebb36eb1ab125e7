use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::EntryIndex;
use holdfast_protocol::message::{Entry, Input};
use holdfast_types::{Epoch, HandlerKind, InvocationId};

#[test]
fn invoke_starts_attempt_one_when_the_object_is_free() {
    let mut store = MemoryStore::default();
    let req = request(counter("a"), HandlerKind::Exclusive, 1);
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(effects, vec![run_attempt(req.id, &counter("a"), 1)]);
    let rec = record(&store, req.id);
    assert_eq!(rec.status, Status::Invoked { epoch: Epoch(1) });
    assert_eq!(
        (rec.journal_len, rec.attempts, rec.created_at_ms),
        (1, 1, T0)
    );
    assert_eq!(store.locks.get(&object("a")), Some(&req.id));
    let input = store
        .journal
        .get(&(req.id, EntryIndex(0)))
        .map(|i| i.entry.clone());
    assert_eq!(
        input,
        Some(Entry::Input(Input {
            value: bytes("arg")
        }))
    );
}

#[test]
fn invoke_queues_in_the_inbox_when_the_object_is_locked() {
    let mut store = MemoryStore::default();
    let first = running(&mut store, "a", 1);
    let second = request(counter("a"), HandlerKind::Exclusive, 2);
    let third = request(counter("a"), HandlerKind::Workflow, 3);
    assert_eq!(step(&mut store, &[invoke(second.clone())]), vec![]);
    assert_eq!(step(&mut store, &[invoke(third.clone())]), vec![]);
    assert_eq!(status(&store, second.id), Some(Status::Inboxed));
    assert_eq!(store.locks.get(&object("a")), Some(&first));
    let queue: Vec<_> = store.inboxes[&object("a")].iter().copied().collect();
    assert_eq!(queue, vec![second.id, third.id]);
}

#[test]
fn invoke_runs_shared_handlers_at_once_even_when_locked() {
    let mut store = MemoryStore::default();
    let holder = running(&mut store, "a", 1);
    let mut target = counter("a");
    target.handler = "get".to_owned();
    let shared = request(target.clone(), HandlerKind::Shared, 2);
    let effects = step(&mut store, &[invoke(shared.clone())]);
    assert_eq!(effects, vec![run_attempt(shared.id, &target, 1)]);
    assert_eq!(store.locks.get(&object("a")), Some(&holder));
}

#[test]
fn invoke_runs_unkeyed_services_without_a_lock() {
    let mut store = MemoryStore::default();
    let req = request(greeter(), HandlerKind::Shared, 9);
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(effects, vec![run_attempt(req.id, &greeter(), 1)]);
    assert!(store.locks.is_empty());
}

#[test]
fn invoke_fails_an_exclusive_handler_without_a_key() {
    let mut store = MemoryStore::default();
    let req = request(greeter(), HandlerKind::Exclusive, 9);
    let effects = step(&mut store, &[invoke(req.clone())]);
    let outcome = failure(400, "Greeter/greet is exclusive and needs a key");
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: req.id,
                outcome: outcome.clone()
            },
            purge_timer(req.id, T0 + 500),
        ]
    );
    assert_eq!(
        status(&store, req.id),
        Some(Status::Completed {
            outcome,
            expires_at_ms: T0 + 500
        })
    );
}

#[test]
fn invoke_attaches_to_a_live_invocation_with_the_same_idempotency_key() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 0);
    req.idempotency_key = Some("k".to_owned());
    req.id = InvocationId::idempotent(&req.target, "k");
    step(&mut store, &[invoke(req.clone())]);
    let before = store.clone();
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id: req.id,
            outcome: None,
            workflow_finished: false,
        }]
    );
    assert_eq!(store, before);
    assert_eq!(store.idempotency.len(), 1);
}

#[test]
fn invoke_returns_the_result_of_a_completed_invocation_with_the_same_idempotency_key() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 0);
    req.idempotency_key = Some("k".to_owned());
    req.id = InvocationId::idempotent(&req.target, "k");
    step(
        &mut store,
        &[
            invoke(req.clone()),
            append(req.id, 1, 1, output("done")),
            ended(req.id, 1, holdfast_types::Ending::Completed),
        ],
    );
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id: req.id,
            outcome: Some(holdfast_protocol::Outcome::Value(bytes("done"))),
            workflow_finished: false,
        }]
    );
    assert_eq!(record(&store, req.id).attempts, 1);
}

#[test]
fn invoke_of_an_existing_id_starts_nothing_new() {
    let mut store = MemoryStore::default();
    let req = request(greeter(), HandlerKind::Shared, 5);
    step(&mut store, &[invoke(req.clone())]);
    let before = store.clone();
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id: req.id,
            outcome: None,
            workflow_finished: false,
        }]
    );
    assert_eq!(store, before);
}
