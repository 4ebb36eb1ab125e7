use crate::support::*;
use holdfast_fsm::Effect;
use holdfast_fsm::memory::MemoryStore;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::{Command, Epoch, HandlerKind, OutboxMessage, PartitionId, Source};

fn shuffle_in(from: u32, seq: u64, message: OutboxMessage) -> Command {
    Command::ShuffleIn {
        from: PartitionId(from),
        seq,
        message,
        at_ms: T0 + 5,
    }
}

#[test]
fn shuffled_invoke_is_applied_once_per_sequence_number() {
    let mut store = MemoryStore::default();
    let caller = id_of(&counter("c"), 1);
    let mut req = request(greeter(), HandlerKind::Shared, 3);
    req.source = Source::Invocation {
        id: caller,
        entry: EntryIndex(1),
    };
    let effects = step(
        &mut store,
        &[shuffle_in(
            2,
            7,
            OutboxMessage::Invoke(Box::new(req.clone())),
        )],
    );
    assert_eq!(effects, vec![run_attempt(req.id, &greeter(), 1)]);
    assert_eq!(record(&store, req.id).created_at_ms, T0 + 5);
    assert_eq!(store.dedup.get(&PartitionId(2)), Some(&7));
    let before = store.clone();
    for seq in [7, 3] {
        let effects = step(
            &mut store,
            &[shuffle_in(
                2,
                seq,
                OutboxMessage::Invoke(Box::new(req.clone())),
            )],
        );
        assert_eq!(effects, vec![]);
        assert_eq!(store, before);
    }
}

#[test]
fn shuffled_messages_from_different_partitions_are_deduplicated_apart() {
    let mut store = MemoryStore::default();
    let a = request(greeter(), HandlerKind::Shared, 3);
    let b = request(greeter(), HandlerKind::Shared, 4);
    step(
        &mut store,
        &[shuffle_in(1, 5, OutboxMessage::Invoke(Box::new(a.clone())))],
    );
    let effects = step(
        &mut store,
        &[shuffle_in(2, 5, OutboxMessage::Invoke(Box::new(b.clone())))],
    );
    assert_eq!(effects, vec![run_attempt(b.id, &greeter(), 1)]);
}

#[test]
fn shuffled_completion_completes_the_callers_entry() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(&mut store, &[append(id, 1, 1, call(&greeter(), None))]);
    let message = OutboxMessage::Completion {
        id,
        index: EntryIndex(1),
        outcome: Outcome::Void,
    };
    let effects = step(&mut store, &[shuffle_in(3, 1, message)]);
    assert_eq!(
        effects,
        vec![Effect::SendCompletion {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Void
        }]
    );
}

#[test]
fn idempotent_call_attaches_a_second_caller_and_answers_both() {
    let mut store = MemoryStore::default();
    let target = greeter();
    let callee = holdfast_types::InvocationId::idempotent(&target, "k");
    let from = |caller: u128| {
        let mut req = request(target.clone(), HandlerKind::Shared, 0);
        req.id = callee;
        req.idempotency_key = Some("k".to_owned());
        req.source = Source::Invocation {
            id: id_of(&counter("c"), caller),
            entry: EntryIndex(1),
        };
        OutboxMessage::Invoke(Box::new(req))
    };
    step(&mut store, &[shuffle_in(1, 1, from(1))]);
    assert_eq!(step(&mut store, &[shuffle_in(1, 2, from(2))]), vec![]);
    let effects = step(
        &mut store,
        &[
            append(callee, 1, 1, output("x")),
            ended(callee, 1, holdfast_types::Ending::Completed),
        ],
    );
    let targets: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::ShuffleOut {
                message: OutboxMessage::Completion { id, .. },
                ..
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(
        targets,
        vec![id_of(&counter("c"), 1), id_of(&counter("c"), 2)]
    );
}

#[test]
fn outbox_delivered_truncates_up_to_the_sequence_number() {
    let mut store = MemoryStore::default();
    let id = running(&mut store, "a", 1);
    step(
        &mut store,
        &[
            append(id, 1, 1, call(&greeter(), None)),
            append(id, 1, 2, call(&greeter(), None)),
            append(id, 1, 3, call(&greeter(), None)),
        ],
    );
    assert_eq!(
        step(&mut store, &[Command::OutboxDelivered { up_to: 2 }]),
        vec![]
    );
    assert_eq!(store.outbox.keys().copied().collect::<Vec<_>>(), vec![3]);
    let effects = step(&mut store, &[append(id, 1, 4, call(&greeter(), None))]);
    assert!(matches!(
        effects.as_slice(),
        [Effect::ShuffleOut { seq: 4, .. }]
    ));
}
