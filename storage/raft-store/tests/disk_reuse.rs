//! Disk space under a steady workload: redb files never shrink on their own, so what keeps them
//! from growing is that pages freed by deletes (purged invocations, purged log entries) are
//! reused by later writes. Both stores are driven as the node drives them — state committed
//! without fsync and flushed periodically, log appends durable and purges lazy — and must stop
//! growing once the amount they hold stops growing.

// Not every builder is used here.
#[allow(dead_code)]
mod common;

use common::request;
use holdfast_protocol::message::{Entry as JournalEntry, Output};
use holdfast_protocol::{Outcome, Payload};
use holdfast_raft_store::{Batch, GroupKey, LogStore, SharedLog, StateMachine, TypeConfig};
use holdfast_types::{Command, Ending, Epoch, HandlerKind, InvocationId, ObjectKey, Target};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::path::Path;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Invocations completed per round.
const PER_ROUND: u128 = 300;
/// Rounds before the file is expected to have reached its size.
const WARM_UP: usize = 6;
/// Rounds after that.
const ROUNDS: usize = 20;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Batch::new(commands)),
    }
}

fn file_len(path: &Path) -> Result<u64, std::io::Error> {
    Ok(std::fs::metadata(path)?.len())
}

/// The commands of one short invocation of a shared handler, from acceptance to completion:
/// what a no-op `Greeter/greet` leaves in the log.
fn greet(nonce: u128) -> (InvocationId, Vec<Command>) {
    let mut invoke = request(Target::new("Greeter", "greet", None), nonce);
    invoke.kind = HandlerKind::Shared;
    invoke.argument = Payload::from(&b"\"bench\""[..]);
    let id = invoke.id;
    let output = JournalEntry::Output(Output {
        result: Outcome::Value(Payload::from(&b"\"Hello bench\""[..])),
    });
    let commands = vec![
        Command::Invoke(Box::new(invoke)),
        common::append(id, 1, 1, output),
        Command::AttemptEnded {
            id,
            epoch: Epoch(1),
            ending: Ending::Completed,
            at_ms: 7,
        },
    ];
    (id, commands)
}

/// Applies `rounds` rounds of [`PER_ROUND`] invocations, each round flushed as the partition
/// does every second; with `purge`, each round also purges the previous round's invocations
/// (as their retention timers would). Returns the file's length after each round.
async fn run_state(
    dir: &Path,
    rounds: usize,
    purge: bool,
) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let path = dir.join("state.redb");
    let mut sm = StateMachine::open(&path)?;
    let mut index = 0;
    let mut previous: Vec<InvocationId> = Vec::new();
    let mut lengths = Vec::new();
    for round in 0..rounds {
        let mut ids = Vec::new();
        // Ten invocations per entry, as group commit batches them under load.
        let first = round as u128 * PER_ROUND;
        for chunk in (first..first + PER_ROUND).collect::<Vec<_>>().chunks(10) {
            let mut commands = Vec::new();
            for nonce in chunk {
                let (id, invocation) = greet(*nonce + 1);
                ids.push(id);
                commands.extend(invocation);
            }
            index += 1;
            sm.apply(vec![entry(index, commands)]).await?;
        }
        if purge {
            let purges = previous
                .iter()
                .map(|id| Command::Purge { id: *id })
                .collect();
            index += 1;
            sm.apply(vec![entry(index, purges)]).await?;
        }
        sm.flush().await?;
        lengths.push(file_len(&path)?);
        previous = ids;
    }
    Ok(lengths)
}

#[tokio::test]
async fn state_file_stops_growing_once_purges_keep_up_with_completions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let lengths = run_state(dir.path(), WARM_UP + ROUNDS, true).await?;
    let settled = lengths[WARM_UP - 1];
    assert_eq!(
        lengths.last().copied(),
        Some(settled),
        "the state file kept growing: {lengths:?}"
    );

    // The same completions without purges need ever more pages: what the first run reused.
    let kept = tempfile::tempdir()?;
    let growing = run_state(kept.path(), WARM_UP + ROUNDS, false).await?;
    assert!(
        growing.last().copied().unwrap_or(0) > settled * 2,
        "without purges {growing:?}, with {lengths:?}"
    );
    Ok(())
}

/// Entry `index` carrying one state write of 200 bytes that packing cannot shrink much.
fn log_entry(index: u64) -> Entry<TypeConfig> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ index;
    let value = (0..200)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    entry(
        index,
        vec![Command::SetState {
            object: ObjectKey::new("Counter", "k"),
            name: format!("n{index}"),
            value,
        }],
    )
}

#[tokio::test]
async fn raft_log_file_stops_growing_once_purges_keep_up_with_appends() -> TestResult {
    const APPENDS: u64 = 500;
    const KEPT: u64 = 250;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raft-log.redb");
    let log = SharedLog::open(&path)?;
    let mut store = LogStore::new(&log, GroupKey(0));
    let mut lengths = Vec::new();
    let mut last = 0;
    for _ in 0..WARM_UP + ROUNDS {
        // Appends are durable (their fsync also makes the previous purge durable); purges
        // are lazy, as openraft's purges after a snapshot are.
        store
            .append_entries((last + 1..=last + APPENDS).map(log_entry))
            .await?;
        last += APPENDS;
        store.purge(log_id(last - KEPT)).await?;
        lengths.push(file_len(&path)?);
    }
    assert_eq!(
        lengths.last().copied(),
        Some(lengths[WARM_UP - 1]),
        "the raft log file kept growing: {lengths:?}"
    );
    Ok(())
}
