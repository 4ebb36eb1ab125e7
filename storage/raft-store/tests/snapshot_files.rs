//! Snapshots as files: a multi-MiB state is built to a file, streamed into another store's
//! incoming file as the transport does, and installed there with the same scans.

use holdfast_raft_store::{Batch, StateMachine, TypeConfig};
use holdfast_types::{Command, ObjectKey};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::ops::ControlFlow;
use std::time::Instant;
use tokio::io::AsyncWriteExt;

fn open(dir: &tempfile::TempDir) -> StateMachine {
    StateMachine::open(&dir.path().join("state.redb")).expect("open")
}

/// `objects` objects of `Cart` with one `value_bytes` entry each, 256 commands per entry.
async fn fill(sm: &mut StateMachine, objects: usize, value_bytes: usize) {
    let commands: Vec<Command> = (0..objects)
        .map(|n| Command::SetState {
            object: ObjectKey::new("Cart", format!("key-{n:06}")),
            name: "items".into(),
            value: vec![(n % 251) as u8; value_bytes],
        })
        .collect();
    let entries: Vec<Entry<TypeConfig>> = commands
        .chunks(256)
        .zip(1u64..)
        .map(|(chunk, index)| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Batch::new(chunk.to_vec())),
        })
        .collect();
    sm.apply(entries).await.expect("apply");
}

/// Every state entry as (key, name, value length, first byte), through a read snapshot.
fn scan(sm: &StateMachine) -> Vec<(String, String, usize, u8)> {
    let mut out = Vec::new();
    sm.read_snapshot()
        .expect("read snapshot")
        .scan_state(
            holdfast_raft_store::ObjectScope::All,
            |object, name, value| {
                out.push((
                    object.key.clone(),
                    name.to_owned(),
                    value.len(),
                    value.first().copied().unwrap_or(0),
                ));
                ControlFlow::Continue(())
            },
        )
        .expect("scan");
    out
}

#[tokio::test]
async fn a_multi_mib_snapshot_goes_through_files_and_installs_whole() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let mut source = open(&source_dir);
    fill(&mut source, 6_000, 4 << 10).await;

    let started = Instant::now();
    let built = source.write_snapshot().await.expect("build");
    let built_in = started.elapsed();
    let size = std::fs::metadata(built.snapshot.path())
        .expect("snapshot file")
        .len();
    assert!(size > 20 << 20, "snapshot of {size} bytes");
    assert!(built.snapshot.path().starts_with(source.snapshot_dir()));

    // The receiving side: an incoming file filled chunk by chunk, then installed.
    let target_dir = tempfile::tempdir().expect("tempdir");
    let mut target = open(&target_dir);
    fill(&mut target, 10, 16).await;
    let mut incoming = target.begin_receiving_snapshot().await.expect("incoming");
    let incoming_path = incoming.path().to_path_buf();
    let bytes = tokio::fs::read(built.snapshot.path()).await.expect("read");
    for chunk in bytes.chunks(1 << 20) {
        incoming.write_all(chunk).await.expect("write");
    }
    incoming.shutdown().await.expect("shutdown");
    let started = Instant::now();
    target
        .install_snapshot(&built.meta, incoming)
        .await
        .expect("install");
    let installed_in = started.elapsed();
    println!(
        "snapshot of {} MiB: built in {} ms, installed in {} ms",
        size >> 20,
        built_in.as_millis(),
        installed_in.as_millis()
    );

    assert_eq!(scan(&target), scan(&source));
    assert_eq!(
        target.summary().expect("summary"),
        source.summary().expect("summary")
    );
    // The received file became the target's current snapshot, under the snapshot's name.
    assert!(!incoming_path.exists());
    let current = target
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, built.meta);
    assert_eq!(
        tokio::fs::read(current.snapshot.path())
            .await
            .expect("read"),
        bytes
    );
    let files: Vec<_> = std::fs::read_dir(target.snapshot_dir())
        .expect("list")
        .collect();
    assert_eq!(files.len(), 1);

    // A third store installs straight from the source's file (copied in, the source untouched).
    let third_dir = tempfile::tempdir().expect("tempdir");
    let mut third = open(&third_dir);
    let current = source
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    third
        .install_snapshot(&current.meta, current.snapshot)
        .await
        .expect("install");
    assert_eq!(scan(&third), scan(&source));
    assert!(built.snapshot.path().exists());
}
