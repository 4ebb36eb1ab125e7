//! Sleep timers and the exactly-once firing of every timer.

use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::message::{Entry, Sleep};
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Command, Epoch, HandlerKind, InvocationId, Timer, TimerKey};

/// A running invocation that wrote `sleep(250)` as entry 1 at `T0`.
fn sleeping(store: &mut MemoryStore) -> InvocationId {
    let id = running(store, "a", 1);
    step(store, &[append(id, 1, 1, sleep(250))]);
    id
}

#[test]
fn sleep_entry_registers_a_timer_at_its_deadline() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[append(id, 1, 1, sleep(250))]);
    let timer = sleep_timer(id, 1, T0 + 250);
    assert_eq!(effects, vec![Effect::RegisterTimer { timer }]);
    assert_eq!(
        store.timers.iter().copied().collect::<Vec<_>>(),
        vec![timer]
    );
    assert_eq!(completion_of(&store, id, 1), None);
}

#[test]
fn sleep_deadline_saturates_instead_of_overflowing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[append(id, 1, 1, sleep(u64::MAX))]);
    assert_eq!(
        effects,
        vec![Effect::RegisterTimer {
            timer: sleep_timer(id, 1, u64::MAX)
        }]
    );
}

#[test]
fn sleep_entry_written_with_its_result_registers_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let done = Entry::Sleep(Sleep {
        duration_ms: 5,
        result: Some(Outcome::Void),
    });
    assert_eq!(step(&mut store, &[append(id, 1, 1, done)]), vec![]);
    assert!(store.timers.is_empty());
}

#[test]
fn sleep_timer_completes_the_entry_of_the_running_attempt() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    let effects = step(&mut store, &[fire(sleep_timer(id, 1, T0 + 250), T0 + 260)]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Void
        }]
    );
    assert_eq!(completion_of(&store, id, 1), Some(Outcome::Void));
    assert!(store.timers.is_empty());
}

#[test]
fn a_timer_fired_twice_fires_once() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    let command = fire(sleep_timer(id, 1, T0 + 250), T0 + 260);
    step(&mut store, std::slice::from_ref(&command));
    let before = store.clone();
    assert_eq!(step(&mut store, &[command]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn fire_timer_of_an_unknown_timer_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    let before = store.clone();
    for timer in [
        // The right timer at the wrong time, another entry, and kinds never registered.
        sleep_timer(id, 1, T0 + 251),
        sleep_timer(id, 2, T0 + 250),
        start_timer(id, T0 + 250),
        purge_key(id, T0 + 250),
        sleep_timer(id_of(&greeter(), 9), 1, T0),
    ] {
        assert_eq!(step(&mut store, &[fire(timer, T0 + 300)]), vec![]);
        assert_eq!(store, before, "{timer:?}");
    }
}

#[test]
fn sleep_completing_a_suspended_invocation_resumes_it_with_a_new_attempt() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    step(&mut store, &[ended(id, 1, suspended(&[1]))]);
    let effects = step(&mut store, &[fire(sleep_timer(id, 1, T0 + 250), T0 + 260)]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
    assert_eq!(record(&store, id).attempts, 2);
    assert_eq!(completion_of(&store, id, 1), Some(Outcome::Void));
}

#[test]
fn sleep_firing_while_backing_off_is_recorded_for_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let effects = step(&mut store, &[fire(sleep_timer(id, 1, T0 + 250), T0 + 260)]);
    assert_eq!(effects, vec![]);
    assert_eq!(completion_of(&store, id, 1), Some(Outcome::Void));
    assert!(matches!(
        status(&store, id),
        Some(Status::BackingOff { .. })
    ));
}

#[test]
fn sleep_firing_after_the_invocation_completed_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    finish(&mut store, id, 1, "early");
    let timer = sleep_timer(id, 1, T0 + 250);
    let mut expected = store.clone();
    expected.timers.remove(&timer);
    assert_eq!(step(&mut store, &[fire(timer, T0 + 260)]), vec![]);
    assert_eq!(store, expected);
    assert_eq!(completion_of(&store, id, 1), None);
}

#[test]
fn sleep_firing_after_a_cancellation_changes_nothing_more() {
    let mut store = MemoryStore::default();
    let id = sleeping(&mut store);
    step(&mut store, &[Command::Cancel { id, at_ms: T0 + 1 }]);
    let effects = step(&mut store, &[fire(sleep_timer(id, 1, T0 + 250), T0 + 260)]);
    assert_eq!(effects, vec![]);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(failure(409, "cancelled"))
    );
}

#[test]
fn sleep_timer_of_an_earlier_invocation_with_the_same_id_leaves_a_new_sleep_alone() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 0);
    req.idempotency_key = Some("k".to_owned());
    req.id = InvocationId::idempotent(&req.target, "k");
    let id = req.id;
    step(
        &mut store,
        &[
            invoke(req.clone()),
            append(id, 1, 1, sleep(100)),
            Command::Kill { id, at_ms: T0 },
            Command::Purge { id },
        ],
    );
    // Purge deletes the timer of the sleep that never fired; as if an older store kept it:
    let old = sleep_timer(id, 1, T0 + 100);
    assert!(!store.timers.contains(&old));
    store.timers.insert(old);
    step(&mut store, &[invoke(req), append(id, 1, 1, sleep(5_000))]);
    assert_eq!(step(&mut store, &[fire(old, T0 + 100)]), vec![]);
    assert_eq!(completion_of(&store, id, 1), None);
    let effects = step(
        &mut store,
        &[fire(sleep_timer(id, 1, T0 + 5_000), T0 + 5_000)],
    );
    assert_eq!(effects.len(), 1);
    assert_eq!(completion_of(&store, id, 1), Some(Outcome::Void));
}

#[test]
fn a_sleep_timer_of_an_entry_that_is_no_sleep_completes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, run("r"))]);
    // Registered by hand: the state machine never registers one for a run entry.
    let timer = TimerKey::new(
        T0,
        Timer::Sleep {
            id,
            index: EntryIndex(1),
        },
    );
    store.timers.insert(timer);
    assert_eq!(step(&mut store, &[fire(timer, T0)]), vec![]);
    assert_eq!(completion_of(&store, id, 1), None);
    assert!(store.timers.is_empty());
}

#[test]
fn every_sleep_of_a_suspended_invocation_fires_on_its_own() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, sleep(10)),
            append(id, 1, 2, sleep(20)),
            ended(id, 1, suspended(&[2])),
        ],
    );
    // Entry 1 is not waited on: recorded, no new attempt.
    assert_eq!(
        step(&mut store, &[fire(sleep_timer(id, 1, T0 + 10), T0 + 10)]),
        vec![]
    );
    assert!(matches!(status(&store, id), Some(Status::Suspended { .. })));
    let effects = step(&mut store, &[fire(sleep_timer(id, 2, T0 + 20), T0 + 20)]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert_eq!(completion_of(&store, id, 1), Some(Outcome::Void));
}

/// The retry timer of attempt `epoch` of `id`, due at `fire_at_ms`.
fn retry_key(id: InvocationId, epoch: u32, fire_at_ms: u64) -> TimerKey {
    TimerKey::new(
        fire_at_ms,
        Timer::Retry {
            id,
            epoch: Epoch(epoch),
        },
    )
}

#[test]
fn a_failed_attempt_stores_its_retry_timer_and_firing_it_starts_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let due = T0 + 10 + 50;
    assert_eq!(
        store.timers.iter().copied().collect::<Vec<_>>(),
        vec![retry_key(id, 1, due)]
    );
    assert_eq!(status(&store, id), Some(backing_off(1, 1, due)));

    let effects = step(&mut store, &[fire(retry_key(id, 1, due), due)]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert!(store.timers.is_empty());
    // Fired once: proposing it again (a new leader's wheel) changes nothing.
    assert_eq!(
        step(&mut store, &[fire(retry_key(id, 1, due), due)]),
        vec![]
    );
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}

#[test]
fn a_retry_timer_left_behind_by_a_resume_is_ignored() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let due = T0 + 10 + 50;
    step(
        &mut store,
        &[Command::ResumeOn {
            id,
            deployment: None,
        }],
    );
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
    assert_eq!(
        step(&mut store, &[fire(retry_key(id, 1, due), due)]),
        vec![]
    );
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}

#[test]
fn a_retry_timer_of_an_earlier_failure_does_not_cut_a_later_backoff_short() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let first = T0 + 10 + 50;
    step(&mut store, &[fire(retry_key(id, 1, first), first)]);
    step(&mut store, &[ended(id, 2, retryable(500))]);
    let second = T0 + 10 + 100;
    assert_eq!(status(&store, id), Some(backing_off(2, 2, second)));
    // A forged or stale key with the right epoch but another due time does nothing.
    store.timers.insert(retry_key(id, 2, first));
    assert_eq!(
        step(&mut store, &[fire(retry_key(id, 2, first), first)]),
        vec![]
    );
    assert_eq!(status(&store, id), Some(backing_off(2, 2, second)));
    assert_eq!(
        step(&mut store, &[fire(retry_key(id, 2, second), second)]),
        vec![run_attempt(id, &counter("a"), 3)]
    );
}
