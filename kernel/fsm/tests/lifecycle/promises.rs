//! Workflow promises: `get_promise` waits for the first `complete_promise` of the same workflow
//! key, `peek_promise` never waits, a second completion is refused.

use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::{Promise, Status};
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Epoch, HandlerKind, InvocationId, ObjectKey, Target};

fn run_target(key: &str) -> Target {
    Target::new("Signup", "run", Some(key.to_owned()))
}

fn approve_target(key: &str) -> Target {
    Target::new("Signup", "approve", Some(key.to_owned()))
}

fn workflow(key: &str) -> ObjectKey {
    ObjectKey::new("Signup", key)
}

/// The workflow run of `key`, running attempt 1.
fn run(store: &mut MemoryStore, key: &str) -> InvocationId {
    let mut req = request(run_target(key), HandlerKind::Workflow, 0);
    req.id = InvocationId::workflow(&req.target);
    let id = req.id;
    step(store, &[invoke(req)]);
    id
}

/// A shared handler of workflow `key`, running attempt 1.
fn approve(store: &mut MemoryStore, key: &str, nonce: u128) -> InvocationId {
    let req = request(approve_target(key), HandlerKind::Shared, nonce);
    let id = req.id;
    step(store, &[invoke(req)]);
    id
}

fn promise(store: &MemoryStore, key: &str, name: &str) -> Option<Promise> {
    store
        .promises
        .get(&(workflow(key), name.to_owned()))
        .cloned()
}

fn completion(id: InvocationId, index: u32, outcome: Outcome) -> Effect {
    Effect::SendCompletion {
        id,
        epoch: Epoch(1),
        index: EntryIndex(index),
        outcome,
    }
}

fn yes() -> Outcome {
    Outcome::Value(bytes("yes"))
}

#[test]
fn get_promise_before_its_completion_waits_then_is_completed_with_it() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    assert_eq!(
        step(&mut store, &[append(run_id, 1, 1, get_promise("ok"))]),
        vec![]
    );
    assert_eq!(
        promise(&store, "k", "ok"),
        Some(Promise::Pending {
            waiters: vec![(run_id, EntryIndex(1))]
        })
    );
    let approver = approve(&mut store, "k", 1);
    let effects = step(
        &mut store,
        &[append(approver, 1, 1, complete_promise("ok", yes()))],
    );
    assert_eq!(
        effects,
        vec![
            completion(approver, 1, Outcome::Void),
            completion(run_id, 1, yes()),
        ]
    );
    assert_eq!(promise(&store, "k", "ok"), Some(Promise::Completed(yes())));
    assert_eq!(completion_of(&store, run_id, 1), Some(yes()));
}

#[test]
fn promise_completion_resumes_a_suspended_waiter() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    step(
        &mut store,
        &[
            append(run_id, 1, 1, get_promise("ok")),
            ended(run_id, 1, suspended(&[1])),
        ],
    );
    let approver = approve(&mut store, "k", 1);
    let effects = step(
        &mut store,
        &[append(approver, 1, 1, complete_promise("ok", yes()))],
    );
    assert_eq!(
        effects,
        vec![
            completion(approver, 1, Outcome::Void),
            run_attempt(run_id, &run_target("k"), 2),
        ]
    );
    assert_eq!(
        status(&store, run_id),
        Some(Status::Invoked { epoch: Epoch(2) })
    );
}

#[test]
fn complete_before_get_settles_the_get_at_once() {
    let mut store = MemoryStore::default();
    let approver = approve(&mut store, "k", 1);
    step(
        &mut store,
        &[append(
            approver,
            1,
            1,
            complete_promise("ok", failure(403, "denied")),
        )],
    );
    let run_id = run(&mut store, "k");
    let effects = step(&mut store, &[append(run_id, 1, 1, get_promise("ok"))]);
    assert_eq!(effects, vec![completion(run_id, 1, failure(403, "denied"))]);
}

#[test]
fn peek_promise_gives_void_until_completed_then_the_outcome() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    let effects = step(&mut store, &[append(run_id, 1, 1, peek_promise("ok"))]);
    assert_eq!(effects, vec![completion(run_id, 1, Outcome::Void)]);
    assert_eq!(promise(&store, "k", "ok"), None);
    let approver = approve(&mut store, "k", 1);
    step(
        &mut store,
        &[append(approver, 1, 1, complete_promise("ok", yes()))],
    );
    let effects = step(&mut store, &[append(run_id, 1, 2, peek_promise("ok"))]);
    assert_eq!(effects, vec![completion(run_id, 2, yes())]);
}

#[test]
fn a_second_complete_promise_is_refused_with_409_and_the_first_stays() {
    let mut store = MemoryStore::default();
    let first = approve(&mut store, "k", 1);
    let second = approve(&mut store, "k", 2);
    step(
        &mut store,
        &[append(first, 1, 1, complete_promise("ok", yes()))],
    );
    let effects = step(
        &mut store,
        &[append(
            second,
            1,
            1,
            complete_promise("ok", Outcome::Value(bytes("no"))),
        )],
    );
    assert_eq!(
        effects,
        vec![completion(
            second,
            1,
            failure(409, "promise was already completed")
        )]
    );
    assert_eq!(promise(&store, "k", "ok"), Some(Promise::Completed(yes())));
}

#[test]
fn complete_promise_settles_a_get_of_the_same_invocation() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    let effects = step(
        &mut store,
        &[
            append(run_id, 1, 1, get_promise("ok")),
            append(run_id, 1, 2, complete_promise("ok", yes())),
        ],
    );
    assert_eq!(
        effects,
        vec![
            completion(run_id, 2, Outcome::Void),
            completion(run_id, 1, yes()),
        ]
    );
    assert_eq!(completion_of(&store, run_id, 1), Some(yes()));
    assert_eq!(record(&store, run_id).journal_len, 3);
}

#[test]
fn every_waiter_is_settled_in_the_order_it_started_waiting() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    let reader = approve(&mut store, "k", 1);
    step(
        &mut store,
        &[
            append(reader, 1, 1, get_promise("ok")),
            append(run_id, 1, 1, get_promise("ok")),
            append(run_id, 1, 2, get_promise("other")),
        ],
    );
    let approver = approve(&mut store, "k", 2);
    let effects = step(
        &mut store,
        &[append(approver, 1, 1, complete_promise("ok", yes()))],
    );
    assert_eq!(
        effects,
        vec![
            completion(approver, 1, Outcome::Void),
            completion(reader, 1, yes()),
            completion(run_id, 1, yes()),
        ]
    );
    assert_eq!(completion_of(&store, run_id, 2), None);
}

#[test]
fn a_cancelled_or_completed_waiter_is_skipped() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    let reader = approve(&mut store, "k", 1);
    step(
        &mut store,
        &[
            append(run_id, 1, 1, get_promise("ok")),
            append(reader, 1, 1, get_promise("ok")),
            holdfast_types::Command::Cancel {
                id: run_id,
                at_ms: T0,
            },
        ],
    );
    finish(&mut store, reader, 1, "bored");
    let approver = approve(&mut store, "k", 2);
    let effects = step(
        &mut store,
        &[append(approver, 1, 1, complete_promise("ok", yes()))],
    );
    assert_eq!(effects, vec![completion(approver, 1, Outcome::Void)]);
    assert_eq!(
        completion_of(&store, run_id, 1),
        Some(failure(409, "cancelled"))
    );
    assert_eq!(completion_of(&store, reader, 1), None);
}

#[test]
fn promises_of_different_workflow_keys_are_apart() {
    let mut store = MemoryStore::default();
    let run_id = run(&mut store, "k");
    step(&mut store, &[append(run_id, 1, 1, get_promise("ok"))]);
    let elsewhere = approve(&mut store, "other", 1);
    let effects = step(
        &mut store,
        &[append(elsewhere, 1, 1, complete_promise("ok", yes()))],
    );
    assert_eq!(effects, vec![completion(elsewhere, 1, Outcome::Void)]);
    assert_eq!(completion_of(&store, run_id, 1), None);
    assert_eq!(
        promise(&store, "other", "ok"),
        Some(Promise::Completed(yes()))
    );
}

#[test]
fn promise_entries_on_an_unkeyed_target_are_a_protocol_violation() {
    for entry in [
        get_promise("ok"),
        peek_promise("ok"),
        complete_promise("ok", yes()),
    ] {
        let mut store = MemoryStore::default();
        let req = request(greeter(), HandlerKind::Shared, 1);
        step(&mut store, &[invoke(req.clone())]);
        let effects = step(&mut store, &[append(req.id, 1, 1, entry.clone())]);
        assert_eq!(
            effects,
            vec![
                Effect::Fence {
                    id: req.id,
                    epoch: Epoch(1)
                },
                retry_timer(req.id, 1, T0 + 50),
            ],
            "{entry:?}"
        );
        assert_eq!(record(&store, req.id).journal_len, 1);
        assert!(store.promises.is_empty());
    }
}
