use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_types::{Command, Epoch};

#[test]
fn retry_with_the_current_epoch_starts_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let effects = step(
        &mut store,
        &[Command::Retry {
            id,
            epoch: Epoch(1),
        }],
    );
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    let rec = record(&store, id);
    assert_eq!(
        (rec.status, rec.attempts),
        (Status::Invoked { epoch: Epoch(2) }, 2)
    );
}

#[test]
fn retry_of_a_running_attempt_fences_it_and_starts_the_next() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(
        &mut store,
        &[Command::Retry {
            id,
            epoch: Epoch(1),
        }],
    );
    assert_eq!(
        effects,
        vec![
            Effect::Fence {
                id,
                epoch: Epoch(1)
            },
            run_attempt(id, &counter("a"), 2)
        ]
    );
}

#[test]
fn retry_with_a_stale_epoch_changes_nothing() {
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
    assert_eq!(
        step(
            &mut store,
            &[Command::Retry {
                id,
                epoch: Epoch(1)
            }]
        ),
        vec![]
    );
    assert_eq!(store, before);
}

#[test]
fn resume_of_a_running_invocation_changes_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let before = store.clone();
    assert_eq!(step(&mut store, &[Command::Resume { id }]), vec![]);
    assert_eq!(store, before);
}

#[test]
fn restart_of_the_running_attempt_fences_it_and_starts_the_next() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(
        &mut store,
        &[Command::Restart {
            id,
            epoch: Epoch(1),
        }],
    );
    assert_eq!(
        effects,
        vec![
            Effect::Fence {
                id,
                epoch: Epoch(1)
            },
            run_attempt(id, &counter("a"), 2)
        ]
    );
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}

#[test]
fn restart_never_cuts_a_backoff_short_nor_touches_another_epoch() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let restart = |epoch| Command::Restart {
        id,
        epoch: Epoch(epoch),
    };
    assert_eq!(step(&mut store, &[restart(2)]), vec![]);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let before = status(&store, id);
    assert_eq!(step(&mut store, &[restart(1)]), vec![]);
    assert_eq!(status(&store, id), before);
}
