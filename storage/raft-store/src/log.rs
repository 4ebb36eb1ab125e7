//! One group's raft log: a cheap handle on the node's [`SharedLog`] and the group's key in it.
//!
//! ```text
//!   raft-log.redb  log   (group, index)          → EntryRecord<D>, packed ([`crate::pack`])
//!                  meta  (group, "vote")         → VoteRecord            durable
//!                        (group, "committed")    → Option<LogIdRecord>   lazy
//!                        (group, "last_purged")  → Option<LogIdRecord>   lazy, with the purge
//! ```
//!
//! Appends, votes and truncations are committed durably by the shared log's writer thread,
//! together with whatever the other groups queued meanwhile (one fsync for all of them);
//! openraft is told entries are flushed only after that commit returns. The committed pointer
//! and purges are committed without fsync, ordered with the group's other writes, and become
//! durable with the next durable commit. Reads open their own read transaction.

use crate::records::{self, EntryRecord, VoteRecord};
use crate::shared::{GroupKey, LAST_PURGED, LOG, META, Op, SharedLog};
use crate::{Error, TypeConfig, pack};
use holdfast_types::codec;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    BasicNode, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use redb::ReadableDatabase;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
/// Most encoded entry bytes sent to a follower in one append (at least one entry is sent).
pub const REPLICATION_BYTES: usize = 8 << 20;

type NodeId = u64;

/// Handle to one group's raft log in the node's [`SharedLog`]; clones share it. Generic over
/// the group's type configuration so partitions and the metadata log share one implementation.
pub struct LogStore<C = TypeConfig> {
    log: SharedLog,
    group: GroupKey,
    /// The committed pointer saved since this handle's last append (encoded), written with the
    /// next one; a clone starts without.
    committed: Option<Vec<u8>>,
    config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            group: self.group,
            committed: None,
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

impl<C> LogStore<C> {
    /// The log of `group` in `log`. Every handle of one group sees the same log; a group must
    /// be driven by one raft instance at a time.
    pub fn new(log: &SharedLog, group: GroupKey) -> Self {
        Self {
            log: log.clone(),
            group,
            committed: None,
            config: PhantomData,
        }
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupKey {
        self.group
    }
}

/// A key of the shared `log` table: group and index.
type Key = (u32, u64);

/// `bounds` on a group's indexes as bounds on the shared table's keys.
fn group_bounds(
    group: GroupKey,
    (start, end): (Bound<u64>, Bound<u64>),
) -> (Bound<Key>, Bound<Key>) {
    let g = group.0;
    let start = match start {
        Bound::Included(i) => Bound::Included((g, i)),
        Bound::Excluded(i) => Bound::Excluded((g, i)),
        Bound::Unbounded => Bound::Included((g, 0)),
    };
    let end = match end {
        Bound::Included(i) => Bound::Included((g, i)),
        Bound::Excluded(i) => Bound::Excluded((g, i)),
        Bound::Unbounded => Bound::Included((g, u64::MAX)),
    };
    (start, end)
}

impl<C: LogTypes> LogStore<C>
where
    C::D: serde::Serialize + serde::de::DeserializeOwned,
{
    /// Appends `entries` and returns once they are on disk: what [`RaftLogStorage::append`]
    /// does before it tells openraft, usable without its callback (tests, tools).
    /// A committed pointer saved since the last append is queued just before it, so the writer
    /// usually commits both together.
    pub async fn append_entries<I>(&mut self, entries: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        if let Some(committed) = self.committed.take() {
            self.log
                .enqueue(self.group, Op::Meta(COMMITTED, committed))
                .await?;
        }
        let encoded = entries
            .into_iter()
            .map(|entry| {
                let bytes = pack::encode(&EntryRecord::from(&entry))?;
                Ok((entry.log_id.index, bytes))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.log.write(self.group, Op::Append(encoded), true).await
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let txn = self.log.database().begin_read()?;
        let table = txn.open_table(META)?;
        match table.get((self.group.0, key))? {
            Some(bytes) => Ok(Some(codec::decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let bytes = codec::encode(value)?;
        self.log.write(self.group, Op::Meta(key, bytes), true).await
    }

    /// Reads the entries in `range`, stopping before the first one that would take the encoded
    /// (unpacked) total past `max_bytes` (the first entry is always read).
    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
        max_bytes: usize,
    ) -> Result<Vec<Entry<C>>, Error> {
        let txn = self.log.database().begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for item in table.range(group_bounds(self.group, range))? {
            let (_, stored) = item?;
            let bytes = pack::unpack(stored.value())?;
            total = total.saturating_add(bytes.len());
            if total > max_bytes && !out.is_empty() {
                break;
            }
            out.push(codec::decode::<EntryRecord<C::D>>(&bytes)?.into());
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<C>, Error> {
        let txn = self.log.database().begin_read()?;
        let meta = txn.open_table(META)?;
        let last_purged_log_id = match meta.get((self.group.0, LAST_PURGED))? {
            Some(bytes) => records::log_id(codec::decode(bytes.value())?),
            None => None,
        };
        let table = txn.open_table(LOG)?;
        let all = group_bounds(self.group, (Bound::Unbounded, Bound::Unbounded));
        let last = match table.range(all)?.next_back().transpose()? {
            Some((_, bytes)) => {
                let entry: Entry<C> = pack::decode::<EntryRecord<C::D>>(bytes.value())?.into();
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
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
        self.write_meta(VOTE, &VoteRecord::from(vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta::<VoteRecord>(VOTE)
            .map(|vote| vote.map(Vote::from))
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// The committed pointer is saved lazily: it only speeds up re-applying after a restart, so it
    /// is kept here and written with this group's next append (in the same fsync'd commit), and
    /// saving it costs openraft, which applies only after this returns, no trip to the writer.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let committed = records::log_id_record(committed.as_ref());
        self.committed = Some(codec::encode(&committed).map_err(|e| write_err(e.into()))?);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed = match &self.committed {
            Some(bytes) => codec::decode(bytes).map_err(|e| read_err(e.into()))?,
            None => self.read_meta(COMMITTED).map_err(read_err)?.flatten(),
        };
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
        let written = self.append_entries(entries).await;
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
        self.log
            .write(self.group, Op::Truncate(log_id.index), true)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let marker = codec::encode(&records::log_id_record(Some(&log_id)))
            .map_err(|e| write_err(e.into()))?;
        // Purging need not be durable: if it is lost, the entries and the marker reappear together.
        let through = log_id.index;
        self.log
            .write(self.group, Op::Purge { through, marker }, false)
            .await
            .map_err(write_err)
    }
}
