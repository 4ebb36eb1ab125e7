use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Command, Ending, Epoch, HandlerKind, OutboxMessage, Source};

#[test]
fn completed_attempt_completes_responds_and_starts_the_next_inboxed() {
    let mut store = MemoryStore::default();
    let first = running(&mut store, "a", 1);
    let second = request(counter("a"), HandlerKind::Exclusive, 2);
    step(
        &mut store,
        &[invoke(second.clone()), append(first, 1, 1, output("ok"))],
    );
    let effects = step(&mut store, &[ended(first, 1, Ending::Completed)]);
    let ok = Outcome::Value(bytes("ok"));
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: first,
                outcome: ok.clone()
            },
            purge_timer(first, T0 + 10 + 500),
            run_attempt(second.id, &counter("a"), 1),
        ]
    );
    assert_eq!(
        status(&store, first),
        Some(Status::Completed {
            outcome: ok,
            expires_at_ms: T0 + 10 + 500
        })
    );
    assert_eq!(store.locks.get(&object("a")), Some(&second.id));
    assert!(store.inboxes.is_empty());
}

#[test]
fn completed_attempt_releases_the_lock_when_the_inbox_is_empty() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, output("ok")),
            ended(id, 1, Ending::Completed),
        ],
    );
    assert!(store.locks.is_empty());
}

#[test]
fn completed_attempt_sends_the_result_to_a_calling_invocation() {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "c", 7);
    let mut req = request(greeter(), HandlerKind::Shared, 3);
    req.source = Source::Invocation {
        id: caller,
        entry: EntryIndex(4),
    };
    step(
        &mut store,
        &[invoke(req.clone()), append(req.id, 1, 1, output("hi"))],
    );
    let effects = step(&mut store, &[ended(req.id, 1, Ending::Completed)]);
    let message = OutboxMessage::Completion {
        id: caller,
        index: EntryIndex(4),
        outcome: Outcome::Value(bytes("hi")),
    };
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: req.id,
                outcome: Outcome::Value(bytes("hi"))
            },
            Effect::ShuffleOut {
                seq: 1,
                partition_key: caller.partition_key,
                message
            },
            purge_timer(req.id, T0 + 10 + 500),
        ]
    );
}

#[test]
fn completed_attempt_without_output_is_retried() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[ended(id, 1, Ending::Completed)]);
    assert_eq!(effects, vec![retry_timer(id, 1, T0 + 10 + 50)]);
}

#[test]
fn terminal_failure_completes_with_the_failure_and_frees_the_lock() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let ending = Ending::Failed {
        code: 418,
        message: "teapot".to_owned(),
        retryable: false,
        retry_after_ms: None,
    };
    let effects = step(&mut store, &[ended(id, 1, ending)]);
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id,
                outcome: failure(418, "teapot")
            },
            purge_timer(id, T0 + 10 + 500),
        ]
    );
    assert!(store.locks.is_empty());
}

#[test]
fn retryable_failure_backs_off_exponentially() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let mut delays = Vec::new();
    for epoch in 1..=4 {
        let effects = step(&mut store, &[ended(id, epoch, retryable(500))]);
        let Some((e, delay_ms)) = retry_delay(&effects, T0 + 10) else {
            panic!("unexpected effects {effects:?}");
        };
        assert_eq!(effects.len(), 1, "{effects:?}");
        assert_eq!(e, Epoch(epoch));
        delays.push(delay_ms);
        assert_eq!(
            status(&store, id),
            Some(backing_off(epoch, epoch, T0 + 10 + delay_ms))
        );
        step(
            &mut store,
            &[Command::Retry {
                id,
                epoch: Epoch(epoch),
            }],
        );
    }
    assert_eq!(delays, vec![50, 100, 200, 400]);
    assert_eq!(store.locks.get(&object("a")), Some(&id));
}

#[test]
fn retryable_failure_uses_the_delay_the_handler_asked_for() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let ending = Ending::Failed {
        code: 500,
        message: "later".to_owned(),
        retryable: true,
        retry_after_ms: Some(1234),
    };
    let effects = step(&mut store, &[ended(id, 1, ending)]);
    assert_eq!(effects, vec![retry_timer(id, 1, T0 + 10 + 1234)]);
}

#[test]
fn retryable_failure_pauses_when_attempts_are_exhausted_and_resume_restarts() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    for epoch in 1..70 {
        step(
            &mut store,
            &[
                ended(id, epoch, retryable(500)),
                Command::Retry {
                    id,
                    epoch: Epoch(epoch),
                },
            ],
        );
    }
    let effects = step(&mut store, &[ended(id, 70, retryable(500))]);
    assert_eq!(effects, vec![]);
    assert_eq!(
        status(&store, id),
        Some(Status::Paused { epoch: Epoch(70) })
    );
    assert_eq!(
        step(
            &mut store,
            &[Command::Retry {
                id,
                epoch: Epoch(70)
            }]
        ),
        vec![]
    );
    let effects = step(&mut store, &[Command::Resume { id }]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 71)]);
    assert_eq!(record(&store, id).retries, 0);
}

#[test]
fn suspension_waits_then_a_waited_completion_starts_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, call(&greeter(), None))]);
    let effects = step(&mut store, &[ended(id, 1, suspended(&[1]))]);
    assert_eq!(effects, vec![]);
    assert_eq!(
        status(&store, id),
        Some(Status::Suspended {
            epoch: Epoch(1),
            waiting: vec![EntryIndex(1)]
        })
    );
    assert_eq!(store.locks.get(&object("a")), Some(&id));
    let effects = step(
        &mut store,
        &[Command::Completion {
            id,
            index: EntryIndex(1),
            outcome: Outcome::Value(bytes("r")),
        }],
    );
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert_eq!(
        status(&store, id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}

#[test]
fn suspension_on_an_already_completed_entry_resumes_at_once() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            Command::Completion {
                id,
                index: EntryIndex(1),
                outcome: Outcome::Void,
            },
        ],
    );
    let effects = step(&mut store, &[ended(id, 1, suspended(&[1]))]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
}

#[test]
fn suspension_on_nothing_is_a_protocol_violation() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[ended(id, 1, suspended(&[]))]);
    assert_eq!(effects, vec![retry_timer(id, 1, T0 + 10 + 50)]);
}

#[test]
fn attempt_ended_with_a_stale_epoch_is_fenced_and_changes_nothing() {
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
    for ending in [Ending::Completed, retryable(500), suspended(&[0])] {
        let effects = step(&mut store, &[ended(id, 1, ending)]);
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
fn a_failed_attempt_is_remembered_as_the_last_failure() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    assert_eq!(record(&store, id).last_failure, None);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    let failure = record(&store, id).last_failure.expect("a last failure");
    assert_eq!(failure.code, 500);
    assert!(matches!(
        status(&store, id),
        Some(Status::BackingOff { .. })
    ));
}
