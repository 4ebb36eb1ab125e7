//! Workflows: one run per key, whoever submits it; a second submission attaches while it runs and
//! is refused once it completed; purging the run forgets the workflow's state and promises.

use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Promise;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{
    Command, HandlerKind, InvocationId, InvocationRequest, ObjectKey, OutboxMessage, Source, Target,
};

fn run_target(key: &str) -> Target {
    Target::new("Signup", "run", Some(key.to_owned()))
}

fn workflow(key: &str) -> ObjectKey {
    ObjectKey::new("Signup", key)
}

/// A submission of the run of workflow `key` from the ingress.
fn submission(key: &str) -> InvocationRequest {
    let mut req = request(run_target(key), HandlerKind::Workflow, 0);
    req.id = InvocationId::workflow(&req.target);
    req
}

fn rerun() -> Outcome {
    failure(409, "the workflow method was already invoked")
}

/// The run of workflow `key`, after it wrote state and completed a promise and returned.
fn completed_run(store: &mut MemoryStore, key: &str) -> InvocationId {
    let req = submission(key);
    let id = req.id;
    step(
        store,
        &[
            invoke(req),
            append(id, 1, 1, set_state("n", "1")),
            append(id, 1, 2, complete_promise("done", Outcome::Void)),
        ],
    );
    finish(store, id, 1, "welcome");
    id
}

/// The request a `call` entry of `caller` at entry 1 sent, as found in the outbox.
fn sent_request(store: &MemoryStore) -> InvocationRequest {
    let messages = outbox(store);
    let [OutboxMessage::Invoke(request)] = messages.as_slice() else {
        panic!("unexpected outbox {messages:?}");
    };
    (**request).clone()
}

#[test]
fn call_to_a_workflow_run_gets_the_id_of_the_run_and_records_it() {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append_to(
            caller,
            1,
            1,
            call(&run_target("k"), None),
            HandlerKind::Workflow,
        )],
    );
    let request = sent_request(&store);
    assert_eq!(request.id, InvocationId::workflow(&run_target("k")));
    assert_eq!(request.kind, HandlerKind::Workflow);
    let item = &store.journal[&(caller, EntryIndex(1))];
    assert_eq!(item.callee, Some(request.id));
}

#[test]
fn send_to_a_workflow_run_gets_the_id_of_the_run() {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append_to(
            caller,
            1,
            1,
            send(&run_target("k"), None),
            HandlerKind::Workflow,
        )],
    );
    assert_eq!(
        sent_request(&store).id,
        InvocationId::workflow(&run_target("k"))
    );
}

#[test]
fn call_to_a_workflow_with_an_idempotency_key_still_joins_the_one_run_per_key() {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    step(
        &mut store,
        &[append_to(
            caller,
            1,
            1,
            call(&run_target("k"), Some("once")),
            HandlerKind::Workflow,
        )],
    );
    assert_eq!(
        sent_request(&store).id,
        InvocationId::workflow(&run_target("k"))
    );
}

#[test]
fn second_submission_while_the_run_is_running_attaches() {
    let mut store = MemoryStore::default();
    let req = submission("k");
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
    // A calling invocation attaches too, and gets the result when the run completes.
    let caller = id_of(&counter("c"), 4);
    let mut from_caller = req.clone();
    from_caller.source = Source::Invocation {
        id: caller,
        entry: EntryIndex(3),
    };
    assert_eq!(step(&mut store, &[invoke(from_caller)]), vec![]);
    assert_eq!(
        record(&store, req.id).callers,
        vec![(caller, EntryIndex(3))]
    );
    finish(&mut store, req.id, 1, "welcome");
    assert!(outbox(&store).contains(&OutboxMessage::Completion {
        id: caller,
        index: EntryIndex(3),
        outcome: Outcome::Value(bytes("welcome")),
    }));
}

#[test]
fn second_submission_after_the_run_completed_gets_409() {
    let mut store = MemoryStore::default();
    let id = completed_run(&mut store, "k");
    let effects = step(&mut store, &[invoke(submission("k"))]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id,
            outcome: Some(rerun()),
            workflow_finished: true,
        }]
    );
    assert_eq!(record(&store, id).attempts, 1);
}

#[test]
fn second_submission_from_an_invocation_after_completion_gets_409_as_its_completion() {
    let mut store = MemoryStore::default();
    let id = completed_run(&mut store, "k");
    let caller = id_of(&counter("c"), 4);
    let mut req = submission("k");
    req.source = Source::Invocation {
        id: caller,
        entry: EntryIndex(2),
    };
    let effects = step(&mut store, &[invoke(req)]);
    let message = OutboxMessage::Completion {
        id: caller,
        index: EntryIndex(2),
        outcome: rerun(),
    };
    let [Effect::ShuffleOut { message: sent, .. }] = effects.as_slice() else {
        panic!("unexpected effects {effects:?}");
    };
    assert_eq!(sent, &message);
    assert_eq!(record(&store, id).attempts, 1);
}

#[test]
fn repeating_the_same_idempotent_submission_after_completion_gets_the_result() {
    let mut store = MemoryStore::default();
    let mut req = submission("k");
    req.idempotency_key = Some("once".to_owned());
    req.id = InvocationId::idempotent(&req.target, "once");
    step(&mut store, &[invoke(req.clone())]);
    finish(&mut store, req.id, 1, "welcome");
    let effects = step(&mut store, &[invoke(req.clone())]);
    assert_eq!(
        effects,
        vec![Effect::Attach {
            id: req.id,
            outcome: Some(Outcome::Value(bytes("welcome"))),
            workflow_finished: false,
        }]
    );
}

#[test]
fn cancel_and_kill_of_a_caller_reach_its_workflow_callee() {
    for kill in [false, true] {
        let mut store = MemoryStore::default();
        let caller = running(&mut store, "a", 1);
        step(
            &mut store,
            &[append_to(
                caller,
                1,
                1,
                call(&run_target("k"), None),
                HandlerKind::Workflow,
            )],
        );
        let command = if kill {
            Command::Kill {
                id: caller,
                at_ms: T0,
            }
        } else {
            Command::Cancel {
                id: caller,
                at_ms: T0,
            }
        };
        step(&mut store, &[command]);
        let callee = InvocationId::workflow(&run_target("k"));
        let expected = if kill {
            OutboxMessage::Kill { id: callee }
        } else {
            OutboxMessage::Cancel { id: callee }
        };
        assert_eq!(outbox(&store).get(1), Some(&expected));
    }
}

#[test]
fn a_call_entry_without_a_recorded_callee_is_cancelled_by_its_derived_id() {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    step(&mut store, &[append(caller, 1, 1, call(&greeter(), None))]);
    // As journaled before callees were recorded.
    if let Some(item) = store.journal.get_mut(&(caller, EntryIndex(1))) {
        item.callee = None;
    }
    step(
        &mut store,
        &[Command::Cancel {
            id: caller,
            at_ms: T0,
        }],
    );
    let callee = InvocationId::derived(&greeter(), caller, EntryIndex(1));
    assert_eq!(
        outbox(&store).get(1),
        Some(&OutboxMessage::Cancel { id: callee })
    );
}

#[test]
fn purge_timer_of_a_workflow_run_forgets_its_state_and_promises() {
    let mut store = MemoryStore::default();
    let id = completed_run(&mut store, "k");
    let other = completed_run(&mut store, "other");
    assert_eq!(
        store.promises.get(&(workflow("k"), "done".to_owned())),
        Some(&Promise::Completed(Outcome::Void))
    );
    let expires = T0 + 10 + 500;
    assert_eq!(
        step(&mut store, &[fire(purge_key(id, expires), expires)]),
        vec![]
    );
    assert!(!store.invocations.contains_key(&id));
    assert_eq!(
        store
            .entries()
            .filter(|(o, ..)| **o == workflow("k"))
            .count(),
        0
    );
    assert!(store.promises.keys().all(|(o, _)| *o != workflow("k")));
    // Another workflow key keeps everything.
    assert!(store.invocations.contains_key(&other));
    assert_eq!(
        store
            .entries()
            .filter(|(o, ..)| **o == workflow("other"))
            .count(),
        1
    );
    assert_eq!(store.promises.len(), 1);
    // The key may run again.
    let effects = step(&mut store, &[invoke(submission("k"))]);
    assert_eq!(effects, vec![run_attempt(id, &run_target("k"), 1)]);
}

#[test]
fn explicit_purge_of_a_workflow_run_forgets_its_state_and_promises() {
    let mut store = MemoryStore::default();
    let id = completed_run(&mut store, "k");
    assert_eq!(step(&mut store, &[Command::Purge { id }]), vec![]);
    assert!(store.invocations.is_empty());
    assert_eq!(store.entries().count(), 0);
    assert!(store.promises.is_empty());
    assert!(store.timers.is_empty());
}

#[test]
fn purging_a_shared_handler_of_a_workflow_keeps_the_workflow_state() {
    let mut store = MemoryStore::default();
    let run_id = completed_run(&mut store, "k");
    let shared = request(
        Target::new("Signup", "status", Some("k".to_owned())),
        HandlerKind::Shared,
        3,
    );
    step(&mut store, &[invoke(shared.clone())]);
    finish(&mut store, shared.id, 1, "fine");
    step(&mut store, &[Command::Purge { id: shared.id }]);
    assert_eq!(store.entries().count(), 1);
    assert_eq!(store.promises.len(), 1);
    assert!(store.invocations.contains_key(&run_id));
}
