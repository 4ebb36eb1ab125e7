//! Runs openraft's own storage conformance suite against the redb log and state-machine stores.
//! The log under test shares its file with two neighbouring groups that hold entries, a vote,
//! a committed pointer and a purge marker: the suite sees none of them.

use holdfast_raft_store::{Batch, GroupKey, LogStore, SharedLog, StateMachine, TypeConfig};
use holdfast_types::PartitionId;
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{Entry, EntryPayload, StorageError, StorageIOError, Vote};
use tempfile::TempDir;

struct RedbBuilder;

/// The partition whose stores the suite tests; groups 2 and 4 are its neighbours in the file.
const PARTITION: u32 = 3;

/// Fills `group` with entries 1..=20 (1..=5 purged), a vote and a committed pointer.
async fn fill(log: &SharedLog, group: GroupKey) -> Result<(), StorageError<u64>> {
    let mut store: LogStore = LogStore::new(log, group);
    let entries = (1..=20).map(|index| Entry {
        log_id: log_id(9, 9, index),
        payload: EntryPayload::Normal(Batch::default()),
    });
    store
        .append_entries(entries)
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
    store.save_vote(&Vote::new_committed(9, 9)).await?;
    store.save_committed(Some(log_id(9, 9, 10))).await?;
    store.purge(log_id(9, 9, 5)).await
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))
            .map_err(|e| StorageIOError::write(&e))?;
        for neighbour in [PARTITION - 1, PARTITION + 1] {
            fill(&log, GroupKey(neighbour)).await?;
        }
        let partition_dir = dir.path().join("partitions").join(PARTITION.to_string());
        let (store, state) = holdfast_raft_store::open(
            &partition_dir,
            &log,
            PartitionId(PARTITION),
            holdfast_raft_store::STATE_CACHE_BYTES,
        )
        .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, store, state))
    }
}

#[test]
fn redb_stores_pass_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
