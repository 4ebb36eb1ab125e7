use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_types::{Command, Ending, HandlerKind, InvocationId};

#[test]
fn purge_of_a_completed_invocation_forgets_status_journal_and_idempotency_key() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 0);
    req.idempotency_key = Some("k".to_owned());
    req.id = InvocationId::idempotent(&req.target, "k");
    step(
        &mut store,
        &[
            invoke(req.clone()),
            append(req.id, 1, 1, set_state("n", "1")),
            append(req.id, 1, 2, output("x")),
            ended(req.id, 1, Ending::Completed),
        ],
    );
    assert_eq!(step(&mut store, &[Command::Purge { id: req.id }]), vec![]);
    assert!(store.invocations.is_empty());
    assert!(store.journal.is_empty());
    assert!(store.idempotency.is_empty());
    assert_eq!(state_of(&store, "a", "n"), Some(b"1".to_vec()));
    // The key is free again: the same request starts a new invocation.
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(effects, vec![run_attempt(req.id, &counter("a"), 1)]);
}

#[test]
fn purge_of_a_live_invocation_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let before = store.clone();
    assert_eq!(step(&mut store, &[Command::Purge { id }]), vec![]);
    assert_eq!(store, before);
}
