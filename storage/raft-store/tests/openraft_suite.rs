//! Runs openraft's own storage conformance suite against the redb log and state-machine stores.

use holdfast_raft_store::{LogStore, StateMachine, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, state) = holdfast_raft_store::open(dir.path())
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, state))
    }
}

#[test]
fn redb_stores_pass_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
