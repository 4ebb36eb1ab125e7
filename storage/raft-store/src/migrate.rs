//! Moving the per-group `log.redb` files of the release before into the node's [`SharedLog`].
//!
//! ```text
//!   partitions/<n>/log.redb, metadata/log.redb      log  index u64        → EntryRecord
//!   (one file per group, the release before)        meta key &str         → record
//!        │  one durable transaction per group, bytes copied unchanged
//!        ▼
//!   raft-log.redb                                   log  (group, index)   → EntryRecord
//!                                                   meta (group, key)     → record
//! ```
//!
//! Idempotent when interrupted: a group is copied only if it has nothing in the shared file
//! yet (the copy is one transaction, so a group that has anything was copied whole), and the
//! old file is removed only after the copy is committed.

use crate::Error;
use crate::shared::{GroupKey, LOG, META, SharedLog};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableError, WriteTransaction,
};
use std::path::Path;

/// The entries of a group's log file of the release before.
const LEGACY_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Its vote, committed pointer and purge marker.
const LEGACY_META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// What [`migrate_legacy_log`] did with one group's old file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// There was no old file.
    Absent,
    /// Its entries and meta records were copied into the shared log, then it was removed.
    Copied {
        /// Log entries copied.
        entries: u64,
    },
    /// The shared log already held the group (a copy whose removal of the old file was
    /// interrupted); the old file was removed.
    AlreadyCopied,
}

/// Copies the old per-group log file at `legacy` into `log` as `group`, durably, then removes
/// it. Run before the group's raft starts; safe to run again after an interruption.
pub fn migrate_legacy_log(
    log: &SharedLog,
    group: GroupKey,
    legacy: &Path,
) -> Result<Migration, Error> {
    let io = |source| Error::Io {
        path: legacy.to_path_buf(),
        source,
    };
    if !legacy.try_exists().map_err(io)? {
        return Ok(Migration::Absent);
    }
    let migration = {
        let old = Database::builder().set_cache_size(1 << 20).open(legacy)?;
        let read = old.begin_read()?;
        // A write transaction of its own: redb runs it between the writer's commits, and its
        // default durability is immediate.
        let txn = log.database().begin_write()?;
        let migration = if holds(&txn, group)? {
            Migration::AlreadyCopied
        } else {
            let entries = copy(&read, &txn, group)?;
            Migration::Copied { entries }
        };
        txn.commit()?;
        migration
    };
    std::fs::remove_file(legacy).map_err(io)?;
    if let Some(dir) = legacy.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(migration)
}

/// Whether the shared file has anything of `group`.
fn holds(txn: &WriteTransaction, group: GroupKey) -> Result<bool, Error> {
    let g = group.0;
    let entries = txn.open_table(LOG)?;
    if entries.range((g, 0)..=(g, u64::MAX))?.next().is_some() {
        return Ok(true);
    }
    let meta = txn.open_table(META)?;
    let first = meta.range((g, "")..)?.next().transpose()?;
    Ok(first.is_some_and(|(key, _)| key.value().0 == g))
}

/// Copies every entry and meta record of the old file into `group`; returns the entries copied.
fn copy(read: &ReadTransaction, txn: &WriteTransaction, group: GroupKey) -> Result<u64, Error> {
    let g = group.0;
    let mut copied = 0u64;
    if let Some(old) = legacy_table(read, LEGACY_LOG)? {
        let mut log = txn.open_table(LOG)?;
        for item in old.iter()? {
            let (index, bytes) = item?;
            log.insert((g, index.value()), bytes.value())?;
            copied = copied.saturating_add(1);
        }
    }
    if let Some(old) = legacy_table(read, LEGACY_META)? {
        let mut meta = txn.open_table(META)?;
        for item in old.iter()? {
            let (key, bytes) = item?;
            meta.insert((g, key.value()), bytes.value())?;
        }
    }
    Ok(copied)
}

/// A table of the old file, or `None` if it was never created.
fn legacy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, Error> {
    match read.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{EntryRecord, VoteRecord, log_id_record};
    use crate::{Batch, LogStore, TypeConfig};
    use holdfast_types::{Command, codec};
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(2, index),
            payload: EntryPayload::Normal(Batch::new(vec![Command::SetState {
                object: holdfast_types::ObjectKey::new("Counter", format!("k{index}")),
                name: "n".into(),
                value: index.to_le_bytes().to_vec(),
            }])),
        }
    }

    /// Writes a log file as the release before did (`LogStore::open` and its writes): entries
    /// 4..=9 (1..=3 purged), a committed vote and the committed pointer at 8.
    fn write_legacy(path: &Path) -> TestResult {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            let mut log = txn.open_table(LEGACY_LOG)?;
            for index in 4..=9 {
                let bytes = codec::encode(&EntryRecord::from(&entry(index)))?;
                log.insert(index, bytes.as_slice())?;
            }
            let mut meta = txn.open_table(LEGACY_META)?;
            let vote = codec::encode(&VoteRecord::from(&Vote::new_committed(2, 1)))?;
            meta.insert("vote", vote.as_slice())?;
            let committed = codec::encode(&log_id_record(Some(&log_id(2, 8))))?;
            meta.insert("committed", committed.as_slice())?;
            let purged = codec::encode(&log_id_record(Some(&log_id(1, 3))))?;
            meta.insert("last_purged", purged.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    async fn assert_migrated(store: &mut LogStore) -> TestResult {
        let state = store.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 9)));
        assert_eq!(store.read_vote().await?, Some(Vote::new_committed(2, 1)));
        assert_eq!(store.read_committed().await?, Some(log_id(2, 8)));
        let entries = store.try_get_log_entries(0..100).await?;
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (4..=9).collect::<Vec<_>>());
        for (got, index) in entries.iter().zip(4..) {
            assert_eq!(codec::encode(got)?, codec::encode(&entry(index))?);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_legacy_log_is_copied_whole_then_removed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let legacy = dir.path().join("log.redb");
        write_legacy(&legacy)?;
        let shared = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        // Another group already in the file is left alone.
        let mut other: LogStore = LogStore::new(&shared, GroupKey(2));
        other.append_entries([entry(1)]).await?;

        let group = GroupKey(3);
        let migrated = migrate_legacy_log(&shared, group, &legacy)?;
        assert_eq!(migrated, Migration::Copied { entries: 6 });
        assert!(!legacy.exists(), "the old file is removed");
        assert_migrated(&mut LogStore::new(&shared, group)).await?;
        assert_eq!(other.try_get_log_entries(..).await?.len(), 1);
        assert_eq!(other.read_vote().await?, None);

        // Nothing left to do on the next start.
        assert_eq!(
            migrate_legacy_log(&shared, group, &legacy)?,
            Migration::Absent
        );
        Ok(())
    }

    #[tokio::test]
    async fn an_interrupted_migration_resumes_without_copying_twice() -> TestResult {
        let dir = tempfile::tempdir()?;
        let legacy = dir.path().join("log.redb");
        write_legacy(&legacy)?;
        let kept = dir.path().join("kept.redb");
        std::fs::copy(&legacy, &kept)?;
        let shared = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let group = GroupKey::METADATA;
        migrate_legacy_log(&shared, group, &legacy)?;
        // The group moves on after the copy (a purge and new entries)...
        let mut store: LogStore = LogStore::new(&shared, group);
        store.purge(log_id(2, 5)).await?;
        // ...and the old file is found again, as if its removal had been lost in a crash.
        std::fs::rename(&kept, &legacy)?;
        assert_eq!(
            migrate_legacy_log(&shared, group, &legacy)?,
            Migration::AlreadyCopied
        );
        assert!(!legacy.exists());
        let state = store.get_log_state().await?;
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id(2, 5)),
            "not copied again"
        );
        let entries = store.try_get_log_entries(..).await?;
        assert_eq!(entries.first().map(|e| e.log_id.index), Some(6));
        Ok(())
    }

    #[tokio::test]
    async fn a_migrated_log_survives_reopening() -> TestResult {
        let dir = tempfile::tempdir()?;
        let legacy = dir.path().join("log.redb");
        write_legacy(&legacy)?;
        let path = dir.path().join("raft-log.redb");
        {
            let shared = SharedLog::open(&path)?;
            migrate_legacy_log(&shared, GroupKey(0), &legacy)?;
        }
        let shared = SharedLog::open(&path)?;
        assert_migrated(&mut LogStore::new(&shared, GroupKey(0))).await
    }
}
