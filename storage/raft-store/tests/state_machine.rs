//! The redb state machine beyond openraft's suite: commands reach the pure state machine, the
//! command counter moves with the applied log id, and snapshots carry the whole state.

use holdfast_raft_store::{Batch, StateMachine, TypeConfig};
use holdfast_types::{Command, LogIndex, ObjectKey};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn entry(index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch::new(commands)),
    }
}

fn set(key: &str, name: &str, value: &str) -> Command {
    Command::SetState {
        object: ObjectKey::new("Cart", key),
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn open(dir: &tempfile::TempDir) -> StateMachine {
    StateMachine::open(&dir.path().join("state.redb")).expect("open")
}

#[tokio::test]
async fn batches_apply_atomically_and_count_each_command_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(&dir);
    let applied = sm
        .apply(vec![
            entry(1, vec![set("a", "x", "1"), set("a", "y", "2")]),
            entry(
                2,
                vec![
                    set("b", "x", "3"),
                    Command::ClearAllState {
                        object: ObjectKey::new("Cart", "a"),
                    },
                ],
            ),
        ])
        .await
        .expect("apply");
    assert_eq!(
        applied.iter().map(|a| a.index).collect::<Vec<_>>(),
        [LogIndex(1), LogIndex(2)]
    );
    let summary = sm.summary().expect("summary");
    assert_eq!(summary.applied, Some(LogIndex(2)));
    assert_eq!(summary.commands_applied, 4);
    let entries = sm.entries().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].object.key.as_str(), entries[0].value.as_slice()),
        ("b", &b"3"[..])
    );
}

#[tokio::test]
async fn flushed_state_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut sm = open(&dir);
        sm.apply(vec![entry(1, vec![set("a", "x", "1")])])
            .await
            .expect("apply");
        sm.flush().await.expect("flush");
    }
    let reopened = open(&dir);
    assert_eq!(
        reopened.summary().expect("summary").applied,
        Some(LogIndex(1))
    );
    assert_eq!(reopened.entries().expect("entries").len(), 1);
}

#[tokio::test]
async fn a_snapshot_installed_elsewhere_reproduces_the_state() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open(&source_dir);
    source
        .apply(vec![
            entry(1, vec![set("a", "x", "1"), set("b", "y", "2")]),
            entry(2, vec![set("c", "z", "3")]),
        ])
        .await
        .expect("apply");
    let snapshot = source.write_snapshot().await.expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id.map(|id| id.index), Some(2));

    let target_dir = tempfile::tempdir().expect("tempdir");
    let mut target = open(&target_dir);
    target
        .apply(vec![entry(1, vec![set("stale", "x", "0")])])
        .await
        .expect("apply");
    target
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    assert_eq!(
        target.entries().expect("entries"),
        source.entries().expect("entries")
    );
    assert_eq!(
        target.summary().expect("summary"),
        source.summary().expect("summary")
    );
    let current = target
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, snapshot.meta);
}
