//! The redb `Store` against `MemoryStore`: the same commands give the same effects and the same
//! invocation state, and snapshots carry the invocation tables.

mod common;

use common::{append, counter, request};
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::{Config, Effect, Store};
use holdfast_protocol::message::{Call, Entry, GetState, Output, SetState, StateKeys};
use holdfast_protocol::{EntryIndex, Outcome, Payload};
use holdfast_raft_store::{Batch, StateMachine, TypeConfig};
use holdfast_types::{Command, Ending, Epoch, InvocationId, OutboxMessage, PartitionId};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry as RaftEntry, EntryPayload, LogId};

/// Two exclusive invocations of one object (the second inboxed), state reads and writes, a
/// call, a retry, a suspension and its completion, completion, a shuffled message and purge.
fn scenario() -> (Vec<Command>, InvocationId, InvocationId) {
    let first = request(counter("a"), 1);
    let second = request(counter("a"), 2);
    let (a, b) = (first.id, second.id);
    let greeter = Call {
        handler: "greet".into(),
        headers: Vec::new(),
        idempotency_key: None,
        key: None,
        parameter: Payload::from(&b"p"[..]),
        result: None,
        service: "Greeter".into(),
    };
    let commands = vec![
        Command::Invoke(Box::new(first)),
        Command::Invoke(Box::new(second)),
        append(
            a,
            1,
            1,
            Entry::SetState(SetState {
                key: "n".into(),
                value: Payload::from(&b"7"[..]),
            }),
        ),
        append(
            a,
            1,
            2,
            Entry::GetState(GetState {
                key: "n".into(),
                result: None,
            }),
        ),
        append(a, 1, 3, Entry::StateKeys(StateKeys { result: None })),
        append(a, 1, 3, Entry::StateKeys(StateKeys { result: None })),
        Command::AttemptEnded {
            id: a,
            epoch: Epoch(1),
            ending: Ending::Failed {
                code: 500,
                message: "x".into(),
                retryable: true,
                retry_after_ms: None,
            },
            at_ms: 7,
        },
        Command::Retry {
            id: a,
            epoch: Epoch(1),
        },
        append(a, 2, 4, Entry::Call(greeter)),
        Command::AttemptEnded {
            id: a,
            epoch: Epoch(2),
            ending: Ending::Suspended {
                waiting: vec![EntryIndex(4)],
            },
            at_ms: 8,
        },
        Command::ShuffleIn {
            from: PartitionId(3),
            seq: 1,
            message: OutboxMessage::Completion {
                id: a,
                index: EntryIndex(4),
                outcome: Outcome::Void,
            },
            at_ms: 9,
        },
        Command::ShuffleIn {
            from: PartitionId(3),
            seq: 1,
            message: OutboxMessage::Completion {
                id: a,
                index: EntryIndex(4),
                outcome: Outcome::Void,
            },
            at_ms: 9,
        },
        append(
            a,
            3,
            5,
            Entry::Output(Output {
                result: Outcome::Value(Payload::from(&b"ok"[..])),
            }),
        ),
        Command::AttemptEnded {
            id: a,
            epoch: Epoch(3),
            ending: Ending::Completed,
            at_ms: 10,
        },
        Command::OutboxDelivered { up_to: 1 },
        Command::Cancel { id: b, at_ms: 11 },
        Command::Kill { id: b, at_ms: 12 },
        Command::Purge { id: a },
    ];
    (commands, a, b)
}

fn raft_entry(index: u64, command: Command) -> RaftEntry<TypeConfig> {
    RaftEntry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch::new(vec![command])),
    }
}

async fn applied_to_redb(sm: &mut StateMachine, commands: &[Command]) -> Vec<Vec<Effect>> {
    let entries: Vec<_> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| raft_entry(i as u64 + 1, c.clone()))
        .collect();
    let applied = sm.apply(entries).await.expect("apply");
    applied.into_iter().map(|a| a.effects.to_vec()).collect()
}

fn applied_to_memory(commands: &[Command]) -> (MemoryStore, Vec<Vec<Effect>>) {
    let mut store = MemoryStore::default();
    let effects = commands
        .iter()
        .map(|command| {
            let Ok(effects) = holdfast_fsm::apply(&mut store, &Config::default(), command);
            effects
        })
        .collect();
    (store, effects)
}

fn assert_same_invocation(sm: &StateMachine, memory: &MemoryStore, id: InvocationId) {
    let Ok(expected) = memory.get_invocation(id);
    assert_eq!(sm.invocation(id).expect("read"), expected);
    let journal: Vec<_> = memory
        .journal
        .iter()
        .filter(|((owner, _), _)| *owner == id)
        .map(|((_, index), item)| (*index, item.clone()))
        .collect();
    assert_eq!(sm.journal(id).expect("read"), journal);
}

#[tokio::test]
async fn redb_store_gives_the_same_effects_and_state_as_memory_store() {
    let (commands, a, b) = scenario();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = StateMachine::open(&dir.path().join("state.redb")).expect("open");
    let redb_effects = applied_to_redb(&mut sm, &commands).await;
    let (memory, memory_effects) = applied_to_memory(&commands);
    assert_eq!(redb_effects, memory_effects);
    // The scenario exercised what it claims to.
    assert!(
        memory_effects
            .iter()
            .flatten()
            .any(|e| matches!(e, Effect::SendCompletion { .. }))
    );
    assert!(memory_effects.iter().flatten().any(|e| matches!(
        e,
        Effect::RunAttempt {
            epoch: Epoch(3),
            ..
        }
    )));
    assert_same_invocation(&sm, &memory, a);
    assert_same_invocation(&sm, &memory, b);
    assert_eq!(
        sm.outbox().expect("outbox"),
        memory
            .outbox
            .iter()
            .map(|(s, m)| (*s, m.clone()))
            .collect::<Vec<_>>()
    );
    let state: Vec<_> = sm
        .entries()
        .expect("entries")
        .into_iter()
        .map(|e| (e.object, e.name, e.value))
        .collect();
    let expected: Vec<_> = memory
        .entries()
        .map(|(o, n, v)| (o.clone(), n.to_owned(), v.to_vec()))
        .collect();
    assert_eq!(state, expected);
}

#[tokio::test]
async fn redb_inbox_keeps_arrival_order_across_pops_and_removals() {
    let commands: Vec<Command> = (1..=4)
        .map(|n| Command::Invoke(Box::new(request(counter("q"), n))))
        .chain([Command::Cancel {
            id: request(counter("q"), 3).id,
            at_ms: 1,
        }])
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = StateMachine::open(&dir.path().join("state.redb")).expect("open");
    let mut all = commands.clone();
    // End whichever invocation holds the lock, three times over.
    for _ in 0..3 {
        let (memory, _) = applied_to_memory(&all);
        let running = memory.locks.values().next().copied().expect("a holder");
        let Some(holdfast_fsm::state::Status::Invoked { epoch }) =
            memory.invocations.get(&running).map(|r| r.status.clone())
        else {
            panic!("holder is not running");
        };
        all.push(Command::AttemptEnded {
            id: running,
            epoch,
            ending: Ending::Failed {
                code: 400,
                message: "done".into(),
                retryable: false,
                retry_after_ms: None,
            },
            at_ms: 2,
        });
    }
    let redb_effects = applied_to_redb(&mut sm, &all).await;
    let (_, memory_effects) = applied_to_memory(&all);
    assert_eq!(redb_effects, memory_effects);
    let started: Vec<_> = memory_effects
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Effect::RunAttempt { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let ids: Vec<_> = [1, 2, 4]
        .iter()
        .map(|n| request(counter("q"), *n).id)
        .collect();
    assert_eq!(started, ids);
}

#[tokio::test]
async fn snapshots_carry_invocations_journals_and_outbox() {
    let (commands, a, b) = scenario();
    // Stop before the purge so `a` is still there.
    let commands = &commands[..commands.len() - 1];
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = StateMachine::open(&source_dir.path().join("state.redb")).expect("open");
    applied_to_redb(&mut source, commands).await;
    let snapshot = source.write_snapshot().await.expect("snapshot");
    let target_dir = tempfile::tempdir().expect("tempdir");
    let mut target = StateMachine::open(&target_dir.path().join("state.redb")).expect("open");
    target
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    for id in [a, b] {
        assert_eq!(
            target.invocation(id).expect("read"),
            source.invocation(id).expect("read")
        );
        assert_eq!(
            target.journal(id).expect("read"),
            source.journal(id).expect("read")
        );
    }
    assert!(target.invocation(a).expect("read").is_some());
    assert_eq!(
        target.outbox().expect("read"),
        source.outbox().expect("read")
    );
    // The installed state keeps applying exactly like the in-memory replay of the same log.
    let (mem_before, _) = applied_to_memory(commands);
    let more = Command::Invoke(Box::new(request(counter("z"), 9)));
    let mut memory = mem_before;
    let Ok(expected) = holdfast_fsm::apply(&mut memory, &Config::default(), &more);
    let entry = raft_entry(commands.len() as u64 + 1, more);
    let applied = target.apply(vec![entry]).await.expect("apply");
    assert_eq!(applied[0].effects.to_vec(), expected);
}

/// Applied state not yet written to `state.redb` lives in memory: a crash loses it, and
/// applying the log again from the position on disk rebuilds exactly the same state.
#[tokio::test]
async fn state_lost_with_the_process_is_rebuilt_by_applying_the_log_again() {
    let (commands, a, b) = scenario();
    let (memory, _) = applied_to_memory(&commands);
    let entries: Vec<_> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| raft_entry(i as u64 + 1, c.clone()))
        .collect();
    let split = entries.len() / 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    {
        let mut sm = StateMachine::open(&path).expect("open");
        sm.apply(entries[..split].to_vec()).await.expect("apply");
        sm.flush().await.expect("flush");
        sm.apply(entries[split..].to_vec()).await.expect("apply");
        // Readers see every applied entry, flushed or not.
        assert_same_invocation(&sm, &memory, a);
        assert_same_invocation(&sm, &memory, b);
    }
    let mut sm = StateMachine::open(&path).expect("reopen");
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|id| id.index), Some(split as u64));
    sm.apply(entries[split..].to_vec())
        .await
        .expect("apply again");
    assert_same_invocation(&sm, &memory, a);
    assert_same_invocation(&sm, &memory, b);
    let (applied, _) = sm.applied_state().await.expect("applied");
    assert_eq!(applied.map(|id| id.index), Some(entries.len() as u64));
}
