//! openraft's storage conformance suite against the metadata log and registry store.

use holdfast_metadata_store::{MetadataConfig, MetadataStore};
use holdfast_raft_store::LogStore;
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<MetadataConfig, LogStore<MetadataConfig>, MetadataStore, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<MetadataConfig>, MetadataStore), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (published, _) = tokio::sync::watch::channel(Default::default());
        let (log, state) = holdfast_metadata_store::open(dir.path(), published)
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, state))
    }
}

#[test]
fn metadata_stores_pass_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
