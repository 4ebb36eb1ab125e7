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
    assert!(store.timers.is_empty());
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

#[test]
fn completion_registers_a_purge_timer_at_the_end_of_retention() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = finish(&mut store, id, 1, "x");
    assert!(effects.contains(&purge_timer(id, T0 + 10 + 500)));
    assert_eq!(
        store.timers.iter().copied().collect::<Vec<_>>(),
        vec![purge_key(id, T0 + 10 + 500)]
    );
}

#[test]
fn purge_timer_forgets_status_journal_and_idempotency_key() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 0);
    req.idempotency_key = Some("k".to_owned());
    req.id = InvocationId::idempotent(&req.target, "k");
    step(
        &mut store,
        &[
            invoke(req.clone()),
            append(req.id, 1, 1, set_state("n", "1")),
        ],
    );
    finish(&mut store, req.id, 1, "x");
    let timer = purge_key(req.id, T0 + 10 + 500);
    assert_eq!(step(&mut store, &[fire(timer, T0 + 600)]), vec![]);
    assert!(store.invocations.is_empty());
    assert!(store.journal.is_empty());
    assert!(store.idempotency.is_empty());
    assert!(store.timers.is_empty());
    // Object state outlives the invocations that wrote it.
    assert_eq!(state_of(&store, "a", "n"), Some(b"1".to_vec()));
    let before = store.clone();
    assert_eq!(step(&mut store, &[fire(timer, T0 + 600)]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn explicit_purge_removes_the_pending_purge_timer() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    finish(&mut store, id, 1, "x");
    assert_eq!(store.timers.len(), 1);
    step(&mut store, &[Command::Purge { id }]);
    assert!(store.timers.is_empty());
    assert_eq!(store, MemoryStore::default());
}

#[test]
fn purge_timer_of_an_earlier_invocation_with_the_same_id_leaves_the_new_one_alone() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    finish(&mut store, id, 1, "x");
    let old = purge_key(id, T0 + 10 + 500);
    step(&mut store, &[Command::Purge { id }]);
    // As if an older store kept the timer while the id was created again.
    store.timers.insert(old);
    let again = request(counter("a"), HandlerKind::Exclusive, 1);
    step(&mut store, &[invoke(again)]);
    let before = status(&store, id);
    assert_eq!(step(&mut store, &[fire(old, T0 + 600)]), vec![]);
    assert_eq!(status(&store, id), before);
}

#[test]
fn purge_deletes_the_timers_of_sleeps_that_never_fired() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    // A year-long sleep, then the invocation is killed: its timer would linger for a year.
    step(&mut store, &[append(id, 1, 1, sleep(31_536_000_000))]);
    let sleeping = sleep_timer(id, 1, T0 + 31_536_000_000);
    assert!(store.timers.contains(&sleeping));
    step(&mut store, &[Command::Kill { id, at_ms: T0 }]);
    assert!(store.timers.contains(&sleeping));
    step(&mut store, &[Command::Purge { id }]);
    assert!(store.timers.is_empty(), "{:?}", store.timers);
    assert!(store.invocations.is_empty());
}
