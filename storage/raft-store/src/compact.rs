//! Compaction of a closed redb file at a clean stop. redb reuses freed pages but never gives
//! them back, and between durable commits it cannot reuse what applying freed, so a file keeps
//! the size of its busiest second. Compacting moves live pages to the front and truncates.

use crate::Error;
use redb::Database;
use std::path::Path;
use std::time::{Duration, Instant};

/// What compacting a file did: its length before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// File length before, in bytes.
    pub before: u64,
    /// File length after, in bytes.
    pub after: u64,
}

/// Compacts the redb file at `path`; `Ok(None)` when it had no free pages to give back. A file
/// still open (a handle of this process being dropped, or another process) is waited for until
/// `patience` has passed, then refused. Blocking, and crash-safe: redb compacts in transactions.
pub fn compact(path: &Path, patience: Duration) -> Result<Option<Compacted>, Error> {
    let length = || {
        std::fs::metadata(path)
            .map(|meta| meta.len())
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })
    };
    let before = length()?;
    let started = Instant::now();
    let mut db = loop {
        match Database::open(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < patience => {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => break opened?,
        }
    };
    let mut compacted = false;
    while db.compact()? {
        compacted = true;
    }
    if !compacted {
        return Ok(None);
    }
    drop(db);
    Ok(Some(Compacted {
        before,
        after: length()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");

    #[test]
    fn a_file_with_many_free_pages_shrinks_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.redb");
        let value = vec![7u8; 4096];
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(ROWS).expect("table");
                for key in 0..4_000u64 {
                    table.insert(key, value.as_slice()).expect("insert");
                }
            }
            txn.commit().expect("commit");
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(ROWS).expect("table");
                for key in 100..4_000u64 {
                    table.remove(key).expect("remove");
                }
            }
            txn.commit().expect("commit");
        }
        let compacted = compact(&path, Duration::ZERO)
            .expect("compact")
            .expect("worth it");
        assert!(
            compacted.after * 4 < compacted.before,
            "{compacted:?} did not shrink"
        );
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            compacted.after
        );
        let db = Database::open(&path).expect("reopen");
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(ROWS).expect("table");
        assert_eq!(redb::ReadableTableMetadata::len(&table).expect("len"), 100);
        assert_eq!(
            table.get(99).expect("get").expect("row").value(),
            value.as_slice()
        );
        drop((table, txn, db));

        // Already compact: nothing to do; an open file is refused, not touched.
        assert_eq!(compact(&path, Duration::ZERO).expect("compact"), None);
        let open = Database::open(&path).expect("open");
        assert!(compact(&path, Duration::from_millis(50)).is_err());
        drop(open);
    }
}
