//! Per-invocation retry policies: the policy carried by the request (from the log) drives backoff
//! and what happens once attempts are used up; without one, the configured policy does.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_fsm::{Config, Effect, OnMaxAttempts, RetryPolicy, apply};
use holdfast_protocol::{Failure, Outcome};
use holdfast_types::{Command, Epoch, HandlerKind, InvocationId, OutboxMessage};

fn policy(max_attempts: u32, on_max_attempts: OnMaxAttempts) -> RetryPolicy {
    RetryPolicy {
        initial_interval_ms: 10,
        factor: 3.0,
        max_interval_ms: 100,
        max_attempts,
        on_max_attempts,
    }
}

/// An exclusive invocation of `Counter/{key}/add` accepted with `retry`, running attempt 1.
fn running_with(store: &mut MemoryStore, key: &str, retry: Option<RetryPolicy>) -> InvocationId {
    let mut request = request(counter(key), HandlerKind::Exclusive, 1);
    request.retry = retry;
    let id = request.id;
    step(store, &[invoke(request)]);
    id
}

fn retry(id: InvocationId, epoch: u32) -> Command {
    Command::Retry {
        id,
        epoch: Epoch(epoch),
    }
}

fn scheduled(id: InvocationId, epoch: u32, delay_ms: u64) -> Effect {
    retry_timer(id, epoch, T0 + 10 + delay_ms)
}

#[test]
fn the_request_policy_is_stored_with_the_invocation() {
    let mut store = MemoryStore::default();
    let carried = policy(4, OnMaxAttempts::Kill);
    let id = running_with(&mut store, "a", Some(carried));
    assert_eq!(record(&store, id).retry, Some(carried));
}

#[test]
fn the_request_policy_drives_backoff_and_pauses_after_max_attempts() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", Some(policy(5, OnMaxAttempts::Pause)));
    let mut delays = Vec::new();
    for epoch in 1..5 {
        let effects = step(&mut store, &[ended(id, epoch, retryable(500))]);
        let Some((_, delay_ms)) = retry_delay(&effects, T0 + 10) else {
            panic!("attempt {epoch}: unexpected effects {effects:?}");
        };
        delays.push(delay_ms);
        assert_eq!(
            step(&mut store, &[retry(id, epoch)]),
            vec![run_attempt(id, &counter("a"), epoch + 1)]
        );
    }
    // 10 ms times 3 per failure, capped at 100 ms: not the configured 50 ms doubling.
    assert_eq!(delays, vec![10, 30, 90, 100]);
    // The fifth failed attempt uses the policy up: paused, nothing scheduled.
    assert_eq!(step(&mut store, &[ended(id, 5, retryable(500))]), vec![]);
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(5) }));
    // Resuming gives a fresh budget under the same policy.
    assert_eq!(
        step(&mut store, &[Command::Resume { id }]),
        vec![run_attempt(id, &counter("a"), 6)]
    );
    assert_eq!(
        step(&mut store, &[ended(id, 6, retryable(500))]),
        vec![scheduled(id, 6, 10)]
    );
}

#[test]
fn a_small_max_attempts_pauses_after_that_many_attempts() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", Some(policy(3, OnMaxAttempts::Pause)));
    step(&mut store, &[ended(id, 1, retryable(500)), retry(id, 1)]);
    step(&mut store, &[ended(id, 2, retryable(500)), retry(id, 2)]);
    assert_eq!(step(&mut store, &[ended(id, 3, retryable(500))]), vec![]);
    let rec = record(&store, id);
    assert_eq!(
        (rec.status, rec.attempts, rec.retries),
        (Status::Paused { epoch: Epoch(3) }, 3, 3)
    );
}

#[test]
fn kill_on_max_attempts_fails_the_invocation_with_the_last_error() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", Some(policy(2, OnMaxAttempts::Kill)));
    step(&mut store, &[ended(id, 1, retryable(500)), retry(id, 1)]);
    let effects = step(&mut store, &[ended(id, 2, retryable(503))]);
    let expected = Outcome::Failure(Failure {
        code: 503,
        message: "boom (gave up after 2 attempts)".to_owned(),
    });
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id,
                outcome: expected.clone()
            },
            purge_timer(id, T0 + 10 + 500),
        ]
    );
    assert!(matches!(
        status(&store, id),
        Some(Status::Completed { outcome, .. }) if outcome == expected
    ));
}

#[test]
fn without_a_request_policy_the_configured_policy_applies() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", None);
    let config = Config {
        retry: policy(2, OnMaxAttempts::Pause),
        ..Config::default()
    };
    let effects = step_quietly(&mut store, &config, &[ended(id, 1, retryable(500))]);
    assert_eq!(effects, vec![scheduled(id, 1, 10)]);
    let Ok(_) = apply(&mut store, &config, &retry(id, 1));
    let effects = step_quietly(&mut store, &config, &[ended(id, 2, retryable(500))]);
    assert_eq!(effects, vec![]);
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(2) }));
}

#[test]
fn the_request_policy_wins_over_the_configured_one() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", Some(policy(5, OnMaxAttempts::Pause)));
    let config = Config {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..Config::default()
    };
    let effects = step_quietly(&mut store, &config, &[ended(id, 1, retryable(500))]);
    assert_eq!(effects, vec![scheduled(id, 1, 10)]);
}

#[test]
fn a_delay_asked_by_the_handler_still_wins_over_the_policy() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", Some(policy(5, OnMaxAttempts::Pause)));
    let ending = holdfast_types::Ending::Failed {
        code: 500,
        message: "run".to_owned(),
        retryable: true,
        retry_after_ms: Some(7),
    };
    assert_eq!(
        step(&mut store, &[ended(id, 1, ending)]),
        vec![scheduled(id, 1, 7)]
    );
}

#[test]
fn calls_carry_the_callee_policy_resolved_by_the_proposer() {
    let mut store = MemoryStore::default();
    let id = running_with(&mut store, "a", None);
    let callee_policy = policy(3, OnMaxAttempts::Kill);
    let Command::JournalAppend {
        id,
        epoch,
        index,
        entry,
        ack,
        callee_kind,
        at_ms,
        ..
    } = append(id, 1, 1, call(&greeter(), None))
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
            ack,
            callee_kind,
            at_ms,
            callee_retry: Some(callee_policy),
        }],
    );
    let [
        Effect::ShuffleOut {
            message: OutboxMessage::Invoke(request),
            ..
        },
    ] = effects.as_slice()
    else {
        panic!("unexpected effects {effects:?}");
    };
    assert_eq!(request.retry, Some(callee_policy));
    // The callee's partition stores it with the new invocation.
    let mut callee_store = MemoryStore::default();
    step(&mut callee_store, &[invoke((**request).clone())]);
    assert_eq!(record(&callee_store, request.id).retry, Some(callee_policy));
}
