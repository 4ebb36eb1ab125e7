use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::control::{Action, Verdict, check};
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Command, DeploymentId, Ending, Epoch, HandlerKind, InvocationId};

fn resume(id: InvocationId) -> Command {
    Command::ResumeOn {
        id,
        deployment: None,
    }
}

#[test]
fn pause_of_a_running_invocation_fences_it_and_resume_starts_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let effects = step(&mut store, &[Command::Pause { id }]);
    assert_eq!(
        effects,
        vec![Effect::Fence {
            id,
            epoch: Epoch(1)
        }]
    );
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(1) }));
    assert_eq!(store.locks.get(&object("a")), Some(&id), "the lock is kept");
    // The fenced attempt's late writes and ending change nothing.
    let before = store.clone();
    step(
        &mut store,
        &[
            append(id, 1, 1, set_state("n", "1")),
            ended(id, 1, Ending::Completed),
        ],
    );
    assert_eq!(store, before);
    let effects = step(&mut store, &[resume(id)]);
    assert_eq!(effects, vec![run_attempt(id, &counter("a"), 2)]);
    assert_eq!(record(&store, id).retries, 0);
}

#[test]
fn pause_of_a_backing_off_invocation_makes_its_pending_retry_stale() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[ended(id, 1, retryable(500))]);
    assert_eq!(step(&mut store, &[Command::Pause { id }]), vec![]);
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(1) }));
    let retry = Command::Retry {
        id,
        epoch: Epoch(1),
    };
    assert_eq!(step(&mut store, &[retry]), vec![]);
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(1) }));
    assert_eq!(
        step(&mut store, &[resume(id)]),
        vec![run_attempt(id, &counter("a"), 2)]
    );
}

#[test]
fn a_completion_for_a_paused_invocation_waits_in_the_journal_for_the_next_attempt() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            ended(id, 1, suspended(&[1])),
        ],
    );
    assert_eq!(step(&mut store, &[Command::Pause { id }]), vec![]);
    let completion = Command::Completion {
        id,
        index: EntryIndex(1),
        outcome: Outcome::Value(bytes("r")),
    };
    assert_eq!(step(&mut store, &[completion]), vec![], "no attempt starts");
    assert_eq!(status(&store, id), Some(Status::Paused { epoch: Epoch(1) }));
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("r")))
    );
    assert_eq!(
        step(&mut store, &[resume(id)]),
        vec![run_attempt(id, &counter("a"), 2)]
    );
}

#[test]
fn resume_of_a_suspended_invocation_starts_the_next_attempt_at_once() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, sleep(60_000)),
            ended(id, 1, suspended(&[1])),
        ],
    );
    assert_eq!(
        step(&mut store, &[resume(id)]),
        vec![run_attempt(id, &counter("a"), 2)]
    );
}

#[test]
fn resume_on_a_named_deployment_pins_the_next_attempts_to_it() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let deployment = DeploymentId::from_seed(2);
    step(&mut store, &[Command::Pause { id }]);
    let effects = step(
        &mut store,
        &[Command::ResumeOn {
            id,
            deployment: Some(deployment),
        }],
    );
    assert_eq!(
        effects,
        vec![Effect::RunAttempt {
            id,
            epoch: Epoch(2),
            target: counter("a"),
            deployment: Some(deployment),
        }]
    );
    assert_eq!(record(&store, id).deployment, Some(deployment));
}

#[test]
fn pause_of_a_paused_invocation_and_resume_of_a_running_one_change_nothing() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    let before = store.clone();
    assert_eq!(step(&mut store, &[resume(id)]), vec![]);
    assert_eq!(store, before);
    step(&mut store, &[Command::Pause { id }]);
    let before = store.clone();
    assert_eq!(step(&mut store, &[Command::Pause { id }]), vec![]);
    assert_eq!(store, before);
}

/// One store per lifecycle position, with the invocation in it.
fn every_status() -> Vec<(MemoryStore, InvocationId)> {
    let mut out = Vec::new();
    // Inboxed: a second exclusive invocation of a locked key.
    let mut store = MemoryStore::default();
    running(&mut store, "a", 1);
    let queued = request(counter("a"), HandlerKind::Exclusive, 2);
    step(&mut store, &[invoke(queued.clone())]);
    out.push((store, queued.id));
    // Invoked.
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    out.push((store.clone(), id));
    // Suspended on a call.
    let mut suspended_store = store.clone();
    step(
        &mut suspended_store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            ended(id, 1, suspended(&[1])),
        ],
    );
    out.push((suspended_store, id));
    // Backing off.
    let mut backing_off = store.clone();
    step(&mut backing_off, &[ended(id, 1, retryable(500))]);
    out.push((backing_off, id));
    // Paused.
    let mut paused = store.clone();
    step(&mut paused, &[Command::Pause { id }]);
    out.push((paused, id));
    // Completed.
    let mut completed = store;
    step(
        &mut completed,
        &[
            append(id, 1, 1, output("x")),
            ended(id, 1, Ending::Completed),
        ],
    );
    out.push((completed, id));
    // Unknown.
    out.push((MemoryStore::default(), id));
    out
}

/// What the admin is told before proposing matches what applying the command does: a command
/// changes the state exactly when `check` says `Apply`.
#[test]
fn check_agrees_with_what_each_command_does_in_every_state() {
    for (store, id) in every_status() {
        let current = status(&store, id);
        let requests = [
            (Action::Cancel, Command::Cancel { id, at_ms: T0 }),
            (Action::Kill, Command::Kill { id, at_ms: T0 }),
            (Action::Purge, Command::Purge { id }),
            (Action::Pause, Command::Pause { id }),
            (Action::Resume { repin: false }, resume(id)),
            (
                Action::Resume { repin: true },
                Command::ResumeOn {
                    id,
                    deployment: Some(DeploymentId::from_seed(3)),
                },
            ),
        ];
        for (action, command) in requests {
            let mut after = store.clone();
            step(&mut after, std::slice::from_ref(&command));
            let changed = after != store;
            let allowed = check(current.as_ref(), action) == Ok(Verdict::Apply);
            assert_eq!(changed, allowed, "{action:?} on {current:?}");
        }
    }
}
