//! Delayed sends and scheduled invocations: created at once, started by their `Start` timer.

use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::EntryIndex;
use holdfast_protocol::message::{Entry, Input};
use holdfast_types::{
    Command, Epoch, HandlerKind, InvocationId, InvocationRequest, OutboxMessage, PartitionId,
};

const AT: u64 = T0 + 1_000;

/// An exclusive Counter request for `key` that may start at `AT`.
fn delayed(key: &str, nonce: u128) -> InvocationRequest {
    let mut req = request(counter(key), HandlerKind::Exclusive, nonce);
    req.execute_at_ms = Some(AT);
    req
}

#[test]
fn delayed_send_entry_goes_to_the_outbox_at_once_with_its_start_time() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(
        &mut store,
        &[append(id, 1, 1, send(&counter("b"), Some(1_000)))],
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
    assert_eq!(request.execute_at_ms, Some(AT));
    assert!(!request.response);
    assert_eq!(
        request.id,
        InvocationId::derived(&counter("b"), id, EntryIndex(1))
    );
    assert_eq!(record(&store, id).journal_len, 2);
}

#[test]
fn send_entry_with_a_zero_delay_starts_at_once() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append(id, 1, 1, send(&counter("b"), Some(0)))],
    );
    let messages = outbox(&store);
    let [OutboxMessage::Invoke(request)] = messages.as_slice() else {
        panic!("unexpected outbox {messages:?}");
    };
    assert_eq!(request.execute_at_ms, None);
}

#[test]
fn scheduled_invocation_is_created_and_waits_for_its_start_timer() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::RegisterTimer {
            timer: start_timer(req.id, AT)
        }]
    );
    let rec = record(&store, req.id);
    assert_eq!(rec.status, Status::Scheduled { start_at_ms: AT });
    assert_eq!((rec.attempts, rec.journal_len), (0, 1));
    assert_eq!(
        store
            .journal
            .get(&(req.id, EntryIndex(0)))
            .map(|i| &i.entry),
        Some(&Entry::Input(Input {
            value: bytes("arg")
        }))
    );
    assert!(store.locks.is_empty());
    assert!(store.inboxes.is_empty());
}

#[test]
fn start_timer_starts_a_scheduled_invocation() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(&mut store, &[fire(start_timer(req.id, AT), AT + 3)]);
    assert_eq!(effects, vec![run_attempt(req.id, &counter("b"), 1)]);
    assert_eq!(
        status(&store, req.id),
        Some(Status::Invoked { epoch: Epoch(1) })
    );
    assert_eq!(store.locks.get(&object("b")), Some(&req.id));
    assert!(store.timers.is_empty());
    assert_eq!(
        step(&mut store, &[fire(start_timer(req.id, AT), AT + 3)]),
        vec![]
    );
}

#[test]
fn delayed_send_is_scheduled_on_the_callee_partition_then_started_by_its_timer() {
    let mut caller_store = MemoryStore::default();
    let caller = running(&mut caller_store, "a", 1);
    step(
        &mut caller_store,
        &[append(caller, 1, 1, send(&counter("b"), Some(1_000)))],
    );
    let messages = outbox(&caller_store);
    let [message @ OutboxMessage::Invoke(request)] = messages.as_slice() else {
        panic!("unexpected outbox {messages:?}");
    };
    let callee = request.id;

    let mut store = MemoryStore::default();
    let effects = step(
        &mut store,
        &[Command::ShuffleIn {
            from: PartitionId(0),
            seq: 1,
            message: message.clone(),
            at_ms: T0 + 2,
        }],
    );
    assert_eq!(
        effects,
        vec![Effect::RegisterTimer {
            timer: start_timer(callee, AT)
        }]
    );
    assert_eq!(
        status(&store, callee),
        Some(Status::Scheduled { start_at_ms: AT })
    );
    let effects = step(&mut store, &[fire(start_timer(callee, AT), AT)]);
    assert_eq!(effects, vec![run_attempt(callee, &counter("b"), 1)]);
}

#[test]
fn start_timer_queues_an_exclusive_invocation_when_its_object_is_locked() {
    let mut store = MemoryStore::default();
    let holder = running(&mut store, "b", 1);
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        step(&mut store, &[fire(start_timer(req.id, AT), AT)]),
        vec![]
    );
    assert_eq!(status(&store, req.id), Some(Status::Inboxed));
    let queue: Vec<_> = store.inboxes[&object("b")].iter().copied().collect();
    assert_eq!(queue, vec![req.id]);
    let effects = finish(&mut store, holder, 1, "done");
    assert_eq!(effects.last(), Some(&run_attempt(req.id, &counter("b"), 1)));
    assert_eq!(store.locks.get(&object("b")), Some(&req.id));
}

#[test]
fn scheduled_shared_invocation_starts_even_when_its_object_is_locked() {
    let mut store = MemoryStore::default();
    running(&mut store, "b", 1);
    let mut target = counter("b");
    target.handler = "get".to_owned();
    let mut req = request(target.clone(), HandlerKind::Shared, 5);
    req.execute_at_ms = Some(AT);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(&mut store, &[fire(start_timer(req.id, AT), AT)]);
    assert_eq!(effects, vec![run_attempt(req.id, &target, 1)]);
}

#[test]
fn cancel_of_a_scheduled_invocation_completes_it_and_its_start_timer_fires_into_nothing() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(
        &mut store,
        &[Command::Cancel {
            id: req.id,
            at_ms: T0 + 7,
        }],
    );
    let cancelled = failure(409, "cancelled");
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: req.id,
                outcome: cancelled.clone()
            },
            purge_timer(req.id, T0 + 7 + 500),
        ]
    );
    assert_eq!(
        status(&store, req.id),
        Some(Status::Completed {
            outcome: cancelled,
            expires_at_ms: T0 + 7 + 500
        })
    );
    assert!(!store.timers.contains(&start_timer(req.id, AT)));
    let before = store.clone();
    assert_eq!(
        step(&mut store, &[fire(start_timer(req.id, AT), AT)]),
        vec![]
    );
    assert_eq!(store, before);
}

#[test]
fn kill_of_a_scheduled_invocation_completes_it_and_it_never_starts() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(
        &mut store,
        &[Command::Kill {
            id: req.id,
            at_ms: T0,
        }],
    );
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: req.id,
                outcome: failure(409, "killed")
            },
            purge_timer(req.id, T0 + 500),
        ]
    );
    assert_eq!(
        step(&mut store, &[fire(start_timer(req.id, AT), AT)]),
        vec![]
    );
    assert!(store.locks.is_empty());
}

#[test]
fn start_timer_of_a_cancelled_invocation_left_in_the_store_is_ignored() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(
        &mut store,
        &[
            invoke(req.clone()),
            Command::Cancel {
                id: req.id,
                at_ms: T0,
            },
        ],
    );
    // As if an older store kept the timer: firing it must not start a completed invocation.
    store.timers.insert(start_timer(req.id, AT));
    let mut expected = store.clone();
    expected.timers.remove(&start_timer(req.id, AT));
    assert_eq!(
        step(&mut store, &[fire(start_timer(req.id, AT), AT)]),
        vec![]
    );
    assert_eq!(store, expected);
}

#[test]
fn pause_resume_and_completions_leave_a_scheduled_invocation_alone() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    let before = store.clone();
    for command in [
        Command::Pause { id: req.id },
        Command::Resume { id: req.id },
        Command::ResumeOn {
            id: req.id,
            deployment: None,
        },
        Command::Retry {
            id: req.id,
            epoch: Epoch(1),
        },
        Command::Completion {
            id: req.id,
            index: EntryIndex(0),
            outcome: holdfast_protocol::Outcome::Void,
        },
        Command::Purge { id: req.id },
    ] {
        assert_eq!(
            step(&mut store, std::slice::from_ref(&command)),
            vec![],
            "{command:?}"
        );
        assert_eq!(store, before, "{command:?}");
    }
}

#[test]
fn repeated_request_attaches_to_a_scheduled_invocation() {
    let mut store = MemoryStore::default();
    let req = delayed("b", 5);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id: req.id,
            outcome: None,
            workflow_finished: false,
        }]
    );
    assert_eq!(store.timers.len(), 1);
}

#[test]
fn scheduled_exclusive_invocation_without_a_key_fails_when_due() {
    let mut store = MemoryStore::default();
    let mut req = request(greeter(), HandlerKind::Exclusive, 5);
    req.execute_at_ms = Some(AT);
    step(&mut store, &[invoke(req.clone())]);
    let effects = step(&mut store, &[fire(start_timer(req.id, AT), AT)]);
    let outcome = failure(400, "Greeter/greet is exclusive and needs a key");
    assert_eq!(
        effects,
        vec![
            Effect::Respond {
                id: req.id,
                outcome
            },
            purge_timer(req.id, AT + 500),
        ]
    );
}
