//! The metric counts read from the applied state without a scan: suspended invocations (an index
//! kept by the store) and inbox depth move with every command, and a snapshot carries both.

mod common;

use common::{append, counter, request};
use holdfast_protocol::message::{Call, Entry, Output};
use holdfast_protocol::{EntryIndex, Outcome, Payload};
use holdfast_raft_store::{Batch, StateMachine};
use holdfast_types::{Command, Ending, Epoch, InvocationId, OutboxMessage, PartitionId};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry as RaftEntry, EntryPayload, LogId};

fn call_entry() -> Entry {
    Entry::Call(Call {
        handler: "greet".into(),
        headers: Vec::new(),
        idempotency_key: None,
        key: None,
        parameter: Payload::from(&b"p"[..]),
        result: None,
        service: "Greeter".into(),
    })
}

fn suspend(id: InvocationId, epoch: u32, waiting: u32) -> Command {
    Command::AttemptEnded {
        id,
        epoch: Epoch(epoch),
        ending: Ending::Suspended {
            waiting: vec![EntryIndex(waiting)],
        },
        at_ms: 8,
    }
}

fn complete_entry(id: InvocationId, index: u32, seq: u64) -> Command {
    Command::ShuffleIn {
        from: PartitionId(3),
        seq,
        message: OutboxMessage::Completion {
            id,
            index: EntryIndex(index),
            outcome: Outcome::Void,
        },
        at_ms: 9,
    }
}

/// Applies commands one raft entry each, continuing the log index where the last call stopped.
struct Log {
    next: u64,
}

impl Log {
    async fn apply(&mut self, sm: &mut StateMachine, commands: Vec<Command>) {
        let entries: Vec<_> = commands
            .into_iter()
            .map(|command| {
                self.next += 1;
                RaftEntry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), self.next),
                    payload: EntryPayload::Normal(Batch::new(vec![command])),
                }
            })
            .collect();
        sm.apply(entries).await.expect("apply");
    }
}

/// (suspended invocations, inbox depth) of `sm`.
fn counts(sm: &StateMachine) -> (u64, u64) {
    (
        sm.suspended_invocations().expect("suspended"),
        sm.inbox_depth().expect("inbox"),
    )
}

fn open(dir: &tempfile::TempDir) -> StateMachine {
    StateMachine::open(&dir.path().join("state.redb")).expect("open")
}

#[tokio::test]
async fn counts_follow_suspension_resumption_completion_and_the_inbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(&dir);
    let mut log = Log { next: 0 };
    assert_eq!(counts(&sm), (0, 0));

    // One holder of object `a`, two queued behind it; `b` runs on its own object.
    let (first, second, third, other) = (
        request(counter("a"), 1),
        request(counter("a"), 2),
        request(counter("a"), 3),
        request(counter("b"), 4),
    );
    let (a1, a2, a3, b) = (first.id, second.id, third.id, other.id);
    log.apply(
        &mut sm,
        vec![
            Command::Invoke(Box::new(first)),
            Command::Invoke(Box::new(second)),
            Command::Invoke(Box::new(third)),
            Command::Invoke(Box::new(other)),
        ],
    )
    .await;
    assert_eq!(counts(&sm), (0, 2));

    // Both running invocations call out and suspend on the call.
    log.apply(
        &mut sm,
        vec![
            append(a1, 1, 1, call_entry()),
            suspend(a1, 1, 1),
            append(b, 1, 1, call_entry()),
            suspend(b, 1, 1),
        ],
    )
    .await;
    assert_eq!(counts(&sm), (2, 2));

    // The awaited completion resumes `a1`: no longer suspended.
    log.apply(&mut sm, vec![complete_entry(a1, 1, 1)]).await;
    assert_eq!(counts(&sm), (1, 2));

    // `a1` completes; its lock passes to `a2`, popped from the inbox.
    log.apply(
        &mut sm,
        vec![
            append(
                a1,
                2,
                2,
                Entry::Output(Output {
                    result: Outcome::Value(Payload::from(&b"ok"[..])),
                }),
            ),
            Command::AttemptEnded {
                id: a1,
                epoch: Epoch(2),
                ending: Ending::Completed,
                at_ms: 10,
            },
        ],
    )
    .await;
    assert_eq!(counts(&sm), (1, 1));
    assert!(sm.invocation(a2).expect("read").is_some());

    // Cancelling the queued `a3` takes it out of the inbox; killing the suspended `b` ends it.
    log.apply(
        &mut sm,
        vec![
            Command::Cancel { id: a3, at_ms: 11 },
            Command::Kill { id: b, at_ms: 12 },
        ],
    )
    .await;
    assert_eq!(counts(&sm), (0, 0));
}

#[tokio::test]
async fn purging_a_suspended_invocation_drops_it_from_the_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(&dir);
    let mut log = Log { next: 0 };
    let first = request(counter("a"), 1);
    let id = first.id;
    log.apply(
        &mut sm,
        vec![
            Command::Invoke(Box::new(first)),
            append(id, 1, 1, call_entry()),
            suspend(id, 1, 1),
        ],
    )
    .await;
    assert_eq!(counts(&sm), (1, 0));
    // Purge refuses live invocations; kill it first, then purge the completed record.
    log.apply(
        &mut sm,
        vec![Command::Kill { id, at_ms: 12 }, Command::Purge { id }],
    )
    .await;
    assert_eq!(sm.invocation(id).expect("read"), None);
    assert_eq!(counts(&sm), (0, 0));
}

#[tokio::test]
async fn counts_survive_a_snapshot_install_and_keep_moving_afterwards() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open(&source_dir);
    let mut log = Log { next: 0 };
    let (first, second) = (request(counter("a"), 1), request(counter("a"), 2));
    let a1 = first.id;
    log.apply(
        &mut source,
        vec![
            Command::Invoke(Box::new(first)),
            Command::Invoke(Box::new(second)),
            append(a1, 1, 1, call_entry()),
            suspend(a1, 1, 1),
        ],
    )
    .await;
    assert_eq!(counts(&source), (1, 1));
    let snapshot = source.write_snapshot().await.expect("snapshot");

    // The target had different state: the install replaces its counts, not adds to them.
    let target_dir = tempfile::tempdir().expect("tempdir");
    let mut target = open(&target_dir);
    let stale = request(counter("z"), 9);
    let stale_id = stale.id;
    Log { next: 0 }
        .apply(
            &mut target,
            vec![
                Command::Invoke(Box::new(stale)),
                Command::Invoke(Box::new(request(counter("z"), 10))),
                Command::Invoke(Box::new(request(counter("z"), 11))),
                append(stale_id, 1, 1, call_entry()),
                suspend(stale_id, 1, 1),
            ],
        )
        .await;
    assert_eq!(counts(&target), (1, 2));
    target
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(counts(&target), (1, 1));

    // Applying on from the snapshot moves the installed counts.
    log.apply(&mut target, vec![complete_entry(a1, 1, 1)]).await;
    assert_eq!(counts(&target), (0, 1));

    // And they are on disk: a reopened store reads the same.
    target.flush().await.expect("flush");
    drop(target);
    assert_eq!(counts(&open(&target_dir)), (0, 1));
}
