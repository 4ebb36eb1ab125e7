//! Messages between invocations of one partition: with its [`Home`] known, the state machine
//! delivers them within the command that sends them, after that command's own changes, instead
//! of through the outbox and a second round through the log. Messages to other partitions still
//! go through the outbox.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::state::Status;
use holdfast_fsm::{Config, Effect};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::awakeable::derive_secret;
use holdfast_types::{AwakeableId, Command, Ending, Epoch, HandlerKind, InvocationId};

/// A Counter key whose invocations live on another partition than `id`.
fn elsewhere(id: InvocationId) -> String {
    (0..)
        .map(|n| format!("k{n}"))
        .find(|key| id_of(&counter(key), 0).partition(PARTITIONS) != id.partition(PARTITIONS))
        .unwrap_or_default()
}

/// A running Counter invocation whose entry 1 is `entry`, applied on the caller's partition;
/// returns the store, that partition's settings, the caller and the entry's effects.
fn journaled(entry: Entry) -> (MemoryStore, Config, InvocationId, Vec<Effect>) {
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    let config = home_of(caller);
    let effects = step_quietly(&mut store, &config, &[append(caller, 1, 1, entry)]);
    (store, config, caller, effects)
}

/// [`journaled`] with a call to `Greeter`; returns the callee instead of the effects.
fn calling() -> (MemoryStore, Config, InvocationId, InvocationId) {
    let (store, config, caller, _) = journaled(call(&greeter(), None));
    let callee = InvocationId::derived_near(&greeter(), caller, EntryIndex(1));
    (store, config, caller, callee)
}

/// How many messages `effects` hand to the shuffle.
fn shuffled(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|effect| matches!(effect, Effect::ShuffleOut { .. }))
        .count()
}

#[test]
fn a_call_to_a_service_starts_its_callee_on_the_callers_partition_within_the_entry() {
    let (store, _, caller, effects) = journaled(call(&greeter(), None));
    let callee = InvocationId::derived_near(&greeter(), caller, EntryIndex(1));
    assert_eq!(callee.partition_key, caller.partition_key);
    assert_eq!(effects, vec![run_attempt(callee, &greeter(), 1)]);
    assert!(outbox(&store).is_empty());
    assert_eq!(
        status(&store, callee),
        Some(Status::Invoked { epoch: Epoch(1) })
    );
    let rec = record(&store, callee);
    assert_eq!(rec.created_at_ms, T0);
    assert_eq!(
        rec.secret,
        derive_secret(record(&store, caller).secret, EntryIndex(1))
    );
}

#[test]
fn a_local_callees_output_completes_its_caller_within_the_same_command() {
    let (mut store, config, caller, callee) = calling();
    let effects = step_quietly(
        &mut store,
        &config,
        &[
            append(callee, 1, 1, output("hi")),
            ended(callee, 1, Ending::Completed),
        ],
    );
    assert!(effects.contains(&Effect::SendCompletion {
        id: caller,
        epoch: Epoch(1),
        index: EntryIndex(1),
        outcome: Outcome::Value(bytes("hi")),
    }));
    assert_eq!(shuffled(&effects), 0);
    assert_eq!(
        completion_of(&store, caller, 1),
        Some(Outcome::Value(bytes("hi")))
    );
    assert!(outbox(&store).is_empty());
    assert!(store.dedup.is_empty());
}

#[test]
fn a_call_to_an_object_on_another_partition_goes_through_the_outbox() {
    let target = counter(&elsewhere(id_of(&counter("a"), 1)));
    let (store, _, caller, effects) = journaled(call(&target, None));
    assert_eq!(shuffled(&effects), 1);
    assert_eq!(outbox(&store).len(), 1);
    let callee = InvocationId::derived_near(&target, caller, EntryIndex(1));
    assert_eq!(status(&store, callee), None);
}

#[test]
fn a_send_to_a_service_keeps_spreading_over_partitions() {
    let (store, _, caller, _) = journaled(send(&greeter(), None));
    let callee = InvocationId::derived(&greeter(), caller, EntryIndex(1));
    // Wherever its derived id put it: started here, or waiting in the outbox.
    let local = callee.partition(PARTITIONS) == caller.partition(PARTITIONS);
    assert_eq!(status(&store, callee).is_some(), local);
    assert_eq!(outbox(&store).len(), usize::from(!local));
}

#[test]
fn an_invocation_completing_its_own_awakeable_finds_its_entry_stored() {
    let mut store = MemoryStore::default();
    let mut req = request(counter("a"), HandlerKind::Exclusive, 1);
    req.secret = 0x5eed;
    let id = req.id;
    step(&mut store, &[invoke(req)]);
    let config = home_of(id);
    step_quietly(&mut store, &config, &[append(id, 1, 1, awakeable())]);
    let awakeable = AwakeableId::new(id, EntryIndex(1), 0x5eed).to_string();
    let effects = step_quietly(
        &mut store,
        &config,
        &[append(
            id,
            1,
            2,
            complete_awakeable(&awakeable, Outcome::Value(bytes("v"))),
        )],
    );
    assert_eq!(shuffled(&effects), 0);
    assert_eq!(
        completion_of(&store, id, 1),
        Some(Outcome::Value(bytes("v")))
    );
    // The completing entry itself is kept: the delivery came after it was stored.
    assert_eq!(record(&store, id).journal_len, 3);
}

#[test]
fn killing_a_caller_kills_its_local_callee_in_the_same_command() {
    let (mut store, config, caller, callee) = calling();
    let effects = step_quietly(
        &mut store,
        &config,
        &[Command::Kill {
            id: caller,
            at_ms: T0,
        }],
    );
    assert_eq!(shuffled(&effects), 0);
    for id in [caller, callee] {
        assert!(
            matches!(status(&store, id), Some(Status::Completed { outcome, .. }) if outcome == failure(409, "killed")),
            "{id:?}: {:?}",
            status(&store, id)
        );
    }
    assert!(outbox(&store).is_empty());
}

#[test]
fn local_delivery_reaches_the_state_the_outbox_reaches_once_shuffled() {
    // The same call and output, once delivered within the partition and once through the
    // outbox and a `ShuffleIn` from this partition: same invocations, same journals.
    let run = |config: &Config| {
        let mut store = MemoryStore::default();
        let caller = running(&mut store, "a", 1);
        let callee = InvocationId::derived_near(&greeter(), caller, EntryIndex(1));
        let from = caller.partition(PARTITIONS);
        let mut seq = 0;
        let mut drive = |store: &mut MemoryStore, command: Command| {
            step_quietly(store, config, &[command]);
            while let Some((_, message)) = store.outbox.pop_first() {
                seq += 1;
                step_quietly(
                    store,
                    config,
                    &[Command::ShuffleIn {
                        from,
                        seq,
                        message,
                        at_ms: T0,
                    }],
                );
            }
        };
        drive(&mut store, append(caller, 1, 1, call(&greeter(), None)));
        drive(&mut store, append(callee, 1, 1, output("hi")));
        drive(&mut store, ended(callee, 1, Ending::Completed));
        drive(&mut store, append(caller, 1, 2, output("done")));
        drive(&mut store, ended(caller, 1, Ending::Completed));
        store.dedup.clear();
        store.outbox_seq = 0;
        store
    };
    let mut store = MemoryStore::default();
    let caller = running(&mut store, "a", 1);
    let local = run(&home_of(caller));
    let shuffled = run(&Config::default());
    assert_eq!(local, shuffled);
    assert_eq!(
        completion_of(&local, caller, 1),
        Some(Outcome::Value(bytes("hi")))
    );
}
