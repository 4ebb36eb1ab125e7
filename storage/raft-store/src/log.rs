//! The raft log store: entries, vote and committed pointer of one partition in `log.redb`.
//!
//! Every append and vote is one redb transaction committed with immediate durability, which is
//! one fsync; openraft is told the entries are flushed only after that commit returns.

use crate::error::blocking;
use crate::records::{self, EntryRecord, VoteRecord};
use crate::{Error, TypeConfig};
use holdfast_types::codec;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    BasicNode, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Page cache of one log: appends and reads of the recent tail need little.
const LOG_CACHE_BYTES: usize = 2 << 20;
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// Most encoded entry bytes sent to a follower in one append (at least one entry is sent).
pub const REPLICATION_BYTES: usize = 8 << 20;

type NodeId = u64;

/// Fault injection for the storage-failure tests: with `HOLDFAST_FAULT_LOG_APPENDS=n` set, every
/// append after the n-th of a log fails as a failed fsync would. Unset, it costs one branch.
const FAULT_ENV: &str = "HOLDFAST_FAULT_LOG_APPENDS";

/// Handle to a raft log; clones share the same database. Generic over the group's type
/// configuration so partitions and the metadata log share one implementation.
pub struct LogStore<C = TypeConfig> {
    db: Arc<Database>,
    /// Appends allowed before injected failures ([`FAULT_ENV`]), and the appends so far.
    fault: Option<(u64, Arc<AtomicU64>)>,
    config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            fault: self.fault.clone(),
            config: PhantomData,
        }
    }
}

/// The type configurations whose entries this store can keep: openraft's own entry type with
/// `u64` node ids and basic nodes, whose commands [`codec`] can encode (entries are stored as
/// [`EntryRecord`]s).
pub trait LogTypes:
    openraft::RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<Self>>
{
}

impl<C: openraft::RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<C>>> LogTypes for C {}

impl<C: LogTypes> LogStore<C>
where
    C::D: serde::Serialize + serde::de::DeserializeOwned,
{
    /// Opens or creates the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::builder()
            .set_cache_size(LOG_CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        let fault = std::env::var(FAULT_ENV)
            .ok()
            .and_then(|n| n.parse().ok())
            .map(|n| (n, Arc::new(AtomicU64::new(0))));
        Ok(Self {
            db: Arc::new(db),
            fault,
            config: PhantomData,
        })
    }

    /// Whether this append must fail by [`FAULT_ENV`].
    fn injected_fault(&self) -> bool {
        self.fault
            .as_ref()
            .is_some_and(|(allowed, done)| done.fetch_add(1, Ordering::Relaxed) >= *allowed)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        match table.get(key)? {
            Some(bytes) => Ok(Some(codec::decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), Error> {
        let bytes = codec::encode(value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Reads the entries in `range`, stopping before the first one that would take the encoded
    /// total past `max_bytes` (the first entry is always read).
    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
        max_bytes: usize,
    ) -> Result<Vec<Entry<C>>, Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for item in table.range(range)? {
            let (_, bytes) = item?;
            let bytes = bytes.value();
            total = total.saturating_add(bytes.len());
            if total > max_bytes && !out.is_empty() {
                break;
            }
            out.push(codec::decode::<EntryRecord<C::D>>(bytes)?.into());
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<C>, Error> {
        let last_purged_log_id = records::log_id(self.read_meta(LAST_PURGED)?.flatten());
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let last = match table.last()? {
            Some((_, bytes)) => {
                let entry: Entry<C> = codec::decode::<EntryRecord<C::D>>(bytes.value())?.into();
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    /// Removes entries from the back while `doomed(index)` holds, or from the front.
    async fn remove_while(
        &self,
        from_back: bool,
        doomed: impl Fn(u64) -> bool + Send + 'static,
        meta: Option<(&'static str, Vec<u8>)>,
        durability: Durability,
    ) -> Result<(), Error> {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            {
                let mut table = txn.open_table(LOG)?;
                loop {
                    let edge = if from_back {
                        table.last()?
                    } else {
                        table.first()?
                    };
                    let Some(index) = edge.map(|(k, _)| k.value()) else {
                        break;
                    };
                    if !doomed(index) {
                        break;
                    }
                    table.remove(index)?;
                }
                if let Some((key, value)) = meta {
                    txn.open_table(META)?.insert(key, value.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

fn read_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl<C: LogTypes> RaftLogReader<C> for LogStore<C>
where
    C::D: serde::Serialize + serde::de::DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<NodeId>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.entries(bounds, usize::MAX).map_err(read_err)
    }

    /// Bounds what one replication request carries: a follower far behind gets the log in
    /// pieces of [`REPLICATION_BYTES`] instead of hundreds of full batches in one message.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<C>>, StorageError<NodeId>> {
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        self.entries(bounds, REPLICATION_BYTES).map_err(read_err)
    }
}

impl<C: LogTypes> RaftLogStorage<C> for LogStore<C>
where
    C::D: serde::Serialize + serde::de::DeserializeOwned,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<NodeId>> {
        self.log_state().map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE, &VoteRecord::from(vote), Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta::<VoteRecord>(VOTE)
            .map(|vote| vote.map(Vote::from))
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// The committed pointer is saved lazily: it only speeds up re-applying after a restart, and
    /// becomes durable with the next append.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let committed = records::log_id_record(committed.as_ref());
        self.write_meta(COMMITTED, &committed, Durability::None)
            .await
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed = self.read_meta(COMMITTED).map_err(read_err)?.flatten();
        Ok(records::log_id(committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| {
                let bytes = codec::encode(&EntryRecord::from(&entry))?;
                Ok((entry.log_id.index, bytes))
            })
            .collect::<Result<Vec<_>, Error>>()
            .map_err(write_err)?;
        let db = self.db.clone();
        let fault = self.injected_fault();
        let written = blocking(move || {
            if fault {
                return Err(Error::Io {
                    path: "log.redb".into(),
                    source: std::io::Error::other(format!("injected by {FAULT_ENV}")),
                });
            }
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_while(
            true,
            move |i| i >= log_id.index,
            None,
            Durability::Immediate,
        )
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let marker = codec::encode(&records::log_id_record(Some(&log_id)))
            .map_err(|e| write_err(e.into()))?;
        // Purging need not be durable: if it is lost, the entries and the marker reappear together.
        self.remove_while(
            false,
            move |i| i <= log_id.index,
            Some((LAST_PURGED, marker)),
            Durability::None,
        )
        .await
        .map_err(write_err)
    }
}
