//! One group's raft log: a cheap handle on the node's [`SharedLog`] and the group's key in it.
//!
//! ```text
//!   raft-log.redb  log   (group, index)          → EntryRecord<D>, packed ([`crate::pack`])
//!                  meta  (group, "vote")         → VoteRecord            durable
//!                        (group, "committed")    → Option<LogIdRecord>   lazy, every 32nd append
//!                        (group, "last_purged")  → Option<LogIdRecord>   lazy, with the purge
//! ```
//!
//! Appends, votes and truncations are committed durably by the shared log's writer thread,
//! together with whatever the other groups queued meanwhile (one fsync for all of them), or by
//! the caller itself when nothing is queued;
//! openraft is told entries are flushed only after that commit returns. The committed pointer
//! rides with one append in [`COMMITTED_EVERY`], and purges are committed without fsync, ordered
//! with the group's other writes; both become durable with the next durable commit.
//!
//! An append returns once the writer has its entries (or, the writer idle, once it committed them
//! itself) and reports their fsync through openraft's
//! callback, as openraft's storage API asks (openraft 0.9 still awaits that callback before its
//! next log write). Until written, the entries live in the group's [`Tail`], where reads find
//! them; the tail also keeps the last few written entries, so applying what was just committed,
//! or sending it to followers, does not read it back from the file and decode it. Older entries
//! are read from the file, in a read transaction of their own.

use crate::records::{self, EntryRecord, VoteRecord};
use crate::shared::{GroupKey, LAST_PURGED, LOG, META, Op, Request, SharedLog};
use crate::{Error, TypeConfig, pack};
use holdfast_types::codec;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::ReadableDatabase;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds, RangeInclusive};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
/// How many of a group's appends go by before the committed pointer is written with one: it
/// touches a second table (a page more per commit), and a stale one costs only re-applying a
/// few entries after a restart, once the node's leader commits again.
pub(crate) const COMMITTED_EVERY: u32 = 32;
/// Most encoded entry bytes sent to a follower in one append (at least one entry is sent).
pub const REPLICATION_BYTES: usize = 8 << 20;

type NodeId = u64;

/// Written entries the tail keeps beyond those still being written, by count and by encoded bytes:
/// enough for the batches committed since the last apply.
pub(crate) const TAIL_WRITTEN_ENTRIES: usize = 64;
const TAIL_WRITTEN_BYTES: usize = 1 << 20;

/// Handle to one group's raft log in the node's [`SharedLog`]; clones share it. Generic over
/// the group's type configuration so partitions and the metadata log share one implementation.
pub struct LogStore<C: openraft::RaftTypeConfig = TypeConfig> {
    log: SharedLog,
    group: GroupKey,
    /// The committed pointer saved since this handle's last append (encoded), written with the
    /// next one; a clone starts without.
    committed: Option<Vec<u8>>,
    /// Appends since the committed pointer was last written with one (see [`COMMITTED_EVERY`]).
    appends_since_committed: u32,
    /// The newest entries, shared by every clone of this handle.
    pub(crate) tail: Arc<Tail<C>>,
    config: PhantomData<fn() -> C>,
}

impl<C: openraft::RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            group: self.group,
            committed: None,
            appends_since_committed: 0,
            tail: self.tail.clone(),
            config: PhantomData,
        }
    }
}

/// An entry with its encoded (unpacked) size, which bounds replication reads.
type TailEntry<C> = (Entry<C>, usize);

/// The newest entries of a group's log, in index order and without gaps: every entry appended
/// whose commit has not yet returned, and up to [`TAIL_WRITTEN_ENTRIES`] written ones before
/// them. Reads take what they can from here and the rest from the file. The unwritten part is
/// bounded by openraft, which awaits each append's callback before its next one (one append per
/// group, whose batch is bounded by `log.max_batch_bytes` or, on a follower, by what one
/// replication message carries).
pub(crate) struct Tail<C: openraft::RaftTypeConfig> {
    entries: Mutex<VecDeque<TailEntry<C>>>,
    /// The last index a returned commit wrote (0: none yet); set by whoever committed it.
    written: AtomicU64,
}

impl<C: openraft::RaftTypeConfig> Tail<C> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            written: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TailEntry<C>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds entries that follow the tail (any it holds from their first index on are replaced,
    /// and a tail they do not follow is dropped), then drops written entries beyond the budget.
    fn push(&self, appended: Vec<TailEntry<C>>) {
        let Some(first) = appended.first().map(|(entry, _)| entry.log_id.index) else {
            return;
        };
        let mut entries = self.lock();
        entries.retain(|(entry, _)| entry.log_id.index < first);
        if entries
            .back()
            .is_some_and(|(entry, _)| entry.log_id.index + 1 != first)
        {
            entries.clear();
        }
        entries.extend(appended);
        let written = self.written.load(Ordering::Acquire);
        let mut bytes: usize = entries.iter().map(|(_, size)| size).sum();
        while let Some((entry, size)) = entries.front() {
            let over = entries.len() > TAIL_WRITTEN_ENTRIES || bytes > TAIL_WRITTEN_BYTES;
            if !over || entry.log_id.index > written {
                break;
            }
            bytes -= size;
            entries.pop_front();
        }
    }

    /// Drops the entries from `index` on (a truncation) or up to and including it (a purge).
    fn remove(&self, range: impl RangeBounds<u64>) {
        self.lock()
            .retain(|(entry, _)| !range.contains(&entry.log_id.index));
    }

    /// The first index the tail holds, and its entries within `range` (clones).
    fn read(&self, range: RangeInclusive<u64>) -> Option<(u64, Vec<TailEntry<C>>)>
    where
        Entry<C>: Clone,
    {
        let entries = self.lock();
        let first = entries.front()?.0.log_id.index;
        let found = entries
            .iter()
            .filter(|(entry, _)| range.contains(&entry.log_id.index))
            .cloned()
            .collect();
        Some((first, found))
    }

    fn last(&self) -> Option<LogId<NodeId>>
    where
        C: openraft::RaftTypeConfig<NodeId = NodeId>,
    {
        self.lock().back().map(|(entry, _)| entry.log_id)
    }
}

/// The type configurations whose entries this store can keep: openraft's own entry type with
/// `u64` node ids and basic nodes, whose commands [`codec`] can encode (entries are stored as
/// [`EntryRecord`]s) and clone (the tail hands out copies).
pub trait LogTypes:
    openraft::RaftTypeConfig<NodeId = u64, Node = BasicNode, Entry = Entry<Self>, D: Clone>
{
    /// Whether `entry` may wait in the leader's log for the node's next fsync rather than make
    /// one of its own ([`SharedLog::expedite`]); no entry someone waits for may.
    fn deferrable(_entry: &Entry<Self>) -> bool {
        false
    }
}

impl LogTypes for TypeConfig {
    fn deferrable(entry: &Entry<Self>) -> bool {
        matches!(&entry.payload, EntryPayload::Normal(batch) if batch.deferrable)
    }
}

impl<C: openraft::RaftTypeConfig> LogStore<C> {
    /// The log of `group` in `log`. Every handle of one group sees the same log; a group must
    /// be driven by one raft instance at a time, through this handle or its clones (a separate
    /// handle does not see entries still being written).
    pub fn new(log: &SharedLog, group: GroupKey) -> Self {
        Self {
            log: log.clone(),
            group,
            committed: None,
            appends_since_committed: 0,
            tail: Arc::new(Tail::new()),
            config: PhantomData,
        }
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupKey {
        self.group
    }
}

/// `range` as first and last index, or `None` if it holds none.
fn inclusive(range: &(Bound<u64>, Bound<u64>)) -> Option<(u64, u64)> {
    let first = match range.0 {
        Bound::Included(i) => i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let last = match range.1 {
        Bound::Included(i) => i,
        Bound::Excluded(i) => i.checked_sub(1)?,
        Bound::Unbounded => u64::MAX,
    };
    (first <= last).then_some((first, last))
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
    pub async fn append_entries<I>(&mut self, entries: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.queue_append(entries, move |outcome| {
            let _ = done.send(outcome);
        })
        .await?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    /// Puts `entries` in the tail, where reads find them at once, and hands them to the writer;
    /// returns once it has them (or once they are committed, when the writer was idle).
    /// `flushed` is called with the outcome once they are on disk.
    /// The committed pointer saved last is written in the same commit once [`COMMITTED_EVERY`]
    /// appends went by without it.
    pub(crate) async fn queue_append<I>(
        &mut self,
        entries: I,
        flushed: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) -> Result<(), Error>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        let mut encoded = Vec::new();
        let mut kept = Vec::new();
        let mut deferrable = true;
        for entry in entries {
            deferrable &= C::deferrable(&entry);
            let plain = codec::encode(&EntryRecord::from(&entry))?;
            let size = plain.len();
            encoded.push((entry.log_id.index, pack::pack(plain)?));
            kept.push((entry, size));
        }
        let (Some(first), Some(last)) = (
            encoded.first().map(|(index, _)| *index),
            encoded.last().map(|(index, _)| *index),
        ) else {
            flushed(Ok(()));
            return Ok(());
        };
        self.appends_since_committed = self.appends_since_committed.saturating_add(1);
        let meta = if self.appends_since_committed >= COMMITTED_EVERY {
            self.committed.take().map(|committed| {
                self.appends_since_committed = 0;
                (COMMITTED, committed)
            })
        } else {
            None
        };
        self.tail.push(kept);
        let tail = self.tail.clone();
        let done = Box::new(move |outcome: Result<(), Error>| {
            match &outcome {
                Ok(()) => {
                    tail.written.fetch_max(last, Ordering::AcqRel);
                }
                // Not on disk, so not in the log: no read may return them.
                Err(_) => tail.remove(first..),
            }
            flushed(outcome);
        });
        let op = Op::Append {
            entries: encoded,
            meta,
        };
        let request = Request::new(self.group, op, true, done).deferrable(deferrable);
        self.log.submit(request).await
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
        // The tail first: what it drops meanwhile has been written, so the file has it.
        let Some((first, last)) = inclusive(&range) else {
            return Ok(Vec::new());
        };
        // The part of `range` before the tail, if any, is read from the file.
        let (file_last, from_tail) = match self.tail.read(first..=last) {
            Some((tail_first, found)) => (
                tail_first
                    .checked_sub(1)
                    .map(|end| end.min(last))
                    .filter(|end| first <= *end),
                found,
            ),
            None => (Some(last), Vec::new()),
        };
        let mut out = Vec::new();
        let mut total = 0usize;
        if let Some(file_last) = file_last {
            let txn = self.log.database().begin_read()?;
            let table = txn.open_table(LOG)?;
            let file_range = (Bound::Included(first), Bound::Included(file_last));
            for item in table.range(group_bounds(self.group, file_range))? {
                let (_, stored) = item?;
                let bytes = pack::unpack(stored.value())?;
                total = total.saturating_add(bytes.len());
                if total > max_bytes && !out.is_empty() {
                    return Ok(out);
                }
                out.push(codec::decode::<EntryRecord<C::D>>(&bytes)?.into());
            }
        }
        for (entry, size) in from_tail {
            total = total.saturating_add(size);
            if total > max_bytes && !out.is_empty() {
                break;
            }
            out.push(entry);
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
        let last = match self.tail.last() {
            Some(last) => Some(last),
            None => match table.range(all)?.next_back().transpose()? {
                Some((_, bytes)) => {
                    let entry: Entry<C> = pack::decode::<EntryRecord<C::D>>(bytes.value())?.into();
                    Some(entry.log_id)
                }
                None => last_purged_log_id,
            },
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
    /// is kept here and written with one of this group's appends (in the same fsync'd commit, see
    /// [`COMMITTED_EVERY`]), and saving it costs openraft, which applies only after this returns,
    /// no trip to the writer.
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
        // Returns once the writer has the entries (or committed them here, the writer idle);
        // openraft learns they are on disk from the callback, called after the fsync'd commit
        // that carries them.
        self.queue_append(entries, move |outcome| {
            callback.log_io_completed(outcome.map_err(|e| std::io::Error::other(e.to_string())));
        })
        .await
        .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let from = log_id.index;
        self.tail.remove(from..);
        self.log
            .write(self.group, Op::Truncate(from), true)
            .await
            .map_err(write_err)?;
        // Every earlier append has been answered by now (the writer commits in order): entries
        // appended from here on are not written until their own commit says so.
        self.tail
            .written
            .fetch_min(from.saturating_sub(1), Ordering::AcqRel);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let marker = codec::encode(&records::log_id_record(Some(&log_id)))
            .map_err(|e| write_err(e.into()))?;
        // Purging need not be durable: if it is lost, the entries and the marker reappear together.
        let through = log_id.index;
        self.tail.remove(..=through);
        self.log
            .write(self.group, Op::Purge { through, marker }, false)
            .await
            .map_err(write_err)
    }
}
