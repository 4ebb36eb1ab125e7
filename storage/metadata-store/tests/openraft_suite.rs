//! openraft's storage conformance suite against the metadata log and registry store. The
//! metadata log shares its file with a partition's log that holds entries, a vote, a committed
//! pointer and a purge marker (another type configuration in the same tables): the suite sees
//! none of them.

use holdfast_metadata_store::{MetadataConfig, MetadataStore};
use holdfast_raft_store::{Batch, GroupKey, LogStore, SharedLog};
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{Entry, EntryPayload, StorageError, StorageIOError, Vote};
use tempfile::TempDir;

struct Builder;

/// Fills partition 0's log with entries 1..=20 (1..=5 purged), a vote and a committed pointer.
async fn fill_partition(log: &SharedLog) -> Result<(), StorageError<u64>> {
    let mut store: LogStore = LogStore::new(log, GroupKey(0));
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

impl StoreBuilder<MetadataConfig, LogStore<MetadataConfig>, MetadataStore, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<MetadataConfig>, MetadataStore), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))
            .map_err(|e| StorageIOError::write(&e))?;
        fill_partition(&log).await?;
        let (published, _) = tokio::sync::watch::channel(Default::default());
        let (store, state) =
            holdfast_metadata_store::open(&dir.path().join("metadata"), &log, published)
                .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, store, state))
    }
}

#[test]
fn metadata_stores_pass_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
