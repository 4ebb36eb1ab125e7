//! The raft logs of every group of a node in one redb file, written by one thread that commits
//! whatever the groups queued meanwhile in one transaction: under load, the appends of many
//! groups share one fsync. A write that finds the writer idle and nothing queued is committed
//! by its caller on its own thread instead (it would only wait for the writer): one client's
//! commits cost no hand-off to the writer and back.
//!
//! ```text
//!   <data_dir>/raft-log.redb
//!     log   (group u32, index u64) → EntryRecord            the entries of every group
//!     meta  (group u32, key &str)  → VoteRecord             "vote"
//!                                  → Option<LogIdRecord>    "committed", "last_purged"
//!
//!   LogStore(partition 0) ─┐                          thread "holdfast-log-writer"
//!   LogStore(partition 1) ─┼─► bounded queue ─► wait for one request, take what else is queued
//!   LogStore(metadata)    ─┘   (request +        (up to COMMIT_BYTES), apply it all in one
//!                               callback)        write transaction (fsync'd if any request
//!        ◄──────────── calls back ──────────── must be durable), call back every request
//! ```
//!
//! An append its proposer marked deferrable (nobody waits for it: see [`crate::Batch`]) that
//! finds the writer idle is not committed alone: it is parked until the next durable commit,
//! which carries it with its own requests, or until [`SharedLog::expedite`]. At one client, the
//! ending of one invocation and the acceptance of the next then share one fsync, and the
//! acceptance does not wait behind a commit of its own.
//!
//! Whoever commits holds the writer's state. A caller commits only while nothing it sent earlier
//! is uncommitted, so the writes of a group are committed in the order it made them; reads open
//! their own read transaction. A failed commit fails every request of
//! its batch and the writer refuses everything after it ([`Error::LogFailed`]): after a failed
//! fsync the file is in an unknown state, and Linux may report later fsyncs as successful.

use crate::Error;
use holdfast_types::PartitionId;
use redb::{Database, Durability, TableDefinition};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Every group's entries, keyed by group and log index.
pub(crate) const LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("log");
/// Every group's vote, committed pointer and purge marker, keyed by group and name.
pub(crate) const META: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("meta");
/// The meta key of the last purged log id (written with the purge that removes the entries).
pub(crate) const LAST_PURGED: &str = "last_purged";

/// Requests waiting for the writer; beyond it, the groups wait to enqueue (backpressure).
const QUEUE_REQUESTS: usize = 1024;
/// Most payload (entry and meta bytes) one commit gathers beyond its first request: about as
/// much as one replication message carries.
pub const COMMIT_BYTES: usize = 8 << 20;
/// Page cache of the shared file unless the node configures one: the recent tails of every
/// group's log.
pub const LOG_CACHE_BYTES: usize = 8 << 20;
/// How long opening waits for a handle of the same file that is being dropped to close it.
const REOPEN_PATIENCE: Duration = Duration::from_secs(2);

/// Fault injection for the storage-failure tests: with `HOLDFAST_FAULT_LOG_APPENDS=n` set, the
/// commit carrying a group's (n+1)-th append fails as a failed fsync would (nothing of it is
/// written, and the writer refuses everything after it). Unset, it costs one branch per commit.
const FAULT_ENV: &str = "HOLDFAST_FAULT_LOG_APPENDS";

/// Which group a log belongs to: its key in the shared file. Partition `n` is group `n`
/// (partitions number at most 4,096); the metadata log is [`GroupKey::METADATA`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey(pub u32);

impl GroupKey {
    /// The metadata log's group: `u32::MAX`, a number no partition reaches.
    pub const METADATA: GroupKey = GroupKey(u32::MAX);

    /// The group of partition `partition`: its number.
    pub fn partition(partition: PartitionId) -> Self {
        GroupKey(partition.0)
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == GroupKey::METADATA {
            f.write_str("the metadata log")
        } else {
            write!(f, "partition {}", self.0)
        }
    }
}

/// One change of one group's log, as the writer applies it.
pub(crate) enum Op {
    /// Insert these encoded entries, by index, and set `meta` (a key and its encoded record)
    /// in the same commit: the committed pointer saved since the group's last append.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        meta: Option<(&'static str, Vec<u8>)>,
    },
    /// Set one meta key to an encoded record.
    Meta(&'static str, Vec<u8>),
    /// Remove the entries from this index on.
    Truncate(u64),
    /// Remove the entries up to and including `through`, and record `marker` as last purged.
    Purge { through: u64, marker: Vec<u8> },
    /// Remove every entry and meta key of the group (its replica moved to another node).
    Forget,
}

impl Op {
    /// The payload bytes this change writes, for the commit's size bound.
    fn bytes(&self) -> usize {
        match self {
            Op::Append { entries, meta } => {
                entries.iter().map(|(_, bytes)| bytes.len()).sum::<usize>()
                    + meta.as_ref().map_or(0, |(_, value)| value.len())
            }
            Op::Meta(_, value) => value.len(),
            Op::Truncate(_) | Op::Forget => 0,
            Op::Purge { marker, .. } => marker.len(),
        }
    }
}

/// What the writer calls with a request's outcome once its commit is done (or failed); it runs
/// on the writer thread, so it only hands the outcome on.
pub(crate) type Done = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// A change waiting for the writer, and where its outcome goes.
pub(crate) struct Request {
    group: GroupKey,
    op: Op,
    /// Whether the change must be on disk when it is answered (its commit is fsync'd).
    durable: bool,
    /// Whether the change may wait for the node's next durable commit instead of making one.
    deferrable: bool,
    done: Done,
}

impl Request {
    /// A change of `group` that answers `done` once committed (and on disk if `durable`).
    pub(crate) fn new(group: GroupKey, op: Op, durable: bool, done: Done) -> Self {
        Self {
            group,
            op,
            durable,
            deferrable: false,
            done,
        }
    }

    /// The same change, allowed to wait for the next durable commit (see [`SharedLog::expedite`]).
    pub(crate) fn deferrable(self, deferrable: bool) -> Self {
        Self { deferrable, ..self }
    }
}

/// What the writer has done since the log was opened, for benchmarks and metrics. Commits and
/// appends compared say how well the node shares fsyncs: `appends / syncs` appends per fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogWriterStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Commits made durable (one fsync each): those carrying an append, vote or truncation.
    pub syncs: u64,
    /// Requests answered by those commits: appends, votes, truncations, purges, committed pointers.
    pub requests: u64,
    /// Append requests answered (one per openraft `append` call).
    pub appends: u64,
    /// Log entries those appends wrote.
    pub entries: u64,
    /// Summed over commits, the distinct groups each one wrote; `/ commits` is the mean.
    pub group_writes: u64,
    /// The most distinct groups one commit wrote.
    pub max_groups_per_commit: u64,
    /// Deferrable appends parked for a later commit instead of committed at once.
    pub parked: u64,
}

/// The writer's counters, read by [`SharedLog::stats`].
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    syncs: AtomicU64,
    requests: AtomicU64,
    appends: AtomicU64,
    entries: AtomicU64,
    group_writes: AtomicU64,
    max_groups: AtomicU64,
    parked: AtomicU64,
}

/// Handle to the node's raft-log file and its writer thread; clones share both, and the last
/// one dropped stops the thread and closes the file.
#[derive(Clone)]
pub struct SharedLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    /// Taken on drop, which ends the writer's loop.
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    counters: Arc<Counters>,
    /// The writer's state; whoever commits holds it: the writer thread, or a caller that found
    /// nothing queued (see [`SharedLog::submit`]).
    state: Arc<Mutex<Writer>>,
    /// Requests sent to the queue and not yet committed; a caller commits on its own thread only
    /// when this is zero, so a group's writes stay in the order it made them.
    queued: Arc<AtomicUsize>,
    /// Set by [`SharedLog::expedite`] until it finds something parked to commit: meanwhile the
    /// next deferrable request is committed at once (and clears it) instead of parked.
    hurry: Arc<AtomicBool>,
}

/// The logs this process has open, by path: redb allows one handle per file and process, so
/// opening a file again returns the handle already open.
static OPEN: Mutex<Vec<(PathBuf, Weak<Inner>)>> = Mutex::new(Vec::new());

impl SharedLog {
    /// Opens (creating if needed) the log file at `path` with the default page cache
    /// ([`LOG_CACHE_BYTES`]); see [`SharedLog::open_with_cache`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_cache(path, LOG_CACHE_BYTES)
    }

    /// Opens (creating if needed) the log file at `path` with a page cache of `cache_bytes` and
    /// starts its writer thread, or returns the handle this process already has open on it
    /// (whose cache is the one it was opened with).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, Error> {
        let path = canonical(path)?;
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|(_, inner)| inner.strong_count() > 0);
        let existing = open
            .iter()
            .filter(|(p, _)| *p == path)
            .find_map(|(_, inner)| inner.upgrade());
        if let Some(inner) = existing {
            return Ok(Self { inner });
        }
        let fault = std::env::var(FAULT_ENV).ok().and_then(|n| n.parse().ok());
        let inner = Arc::new(Inner::open(path.clone(), cache_bytes, fault)?);
        open.push((path, Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The file this log is kept in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> LogWriterStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LogWriterStats {
            commits: get(&c.commits),
            syncs: get(&c.syncs),
            requests: get(&c.requests),
            appends: get(&c.appends),
            entries: get(&c.entries),
            group_writes: get(&c.group_writes),
            max_groups_per_commit: get(&c.max_groups),
            parked: get(&c.parked),
        }
    }

    /// Deletes everything `group` has in the file, durably: its replica moved to another node, and
    /// a later replica of it here starts from an empty log.
    pub async fn forget(&self, group: GroupKey) -> Result<(), Error> {
        self.write(group, Op::Forget, true).await
    }

    /// The database, for read transactions (and the migration's one write transaction).
    pub(crate) fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Hands `op` to the writer and waits until it is committed (and on disk if `durable`).
    pub(crate) async fn write(&self, group: GroupKey, op: Op, durable: bool) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        let done: Done = Box::new(move |outcome| {
            // A requester that went away needs no answer; its change is committed.
            let _ = done.send(outcome);
        });
        self.submit(Request::new(group, op, durable, done)).await?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    /// Commits the parked deferrable appends now, on this thread; if none is parked yet, the
    /// next deferrable append is committed at once instead. A proposer calls it when something
    /// it proposed after a deferrable entry must not wait, and when the entry waited long enough.
    /// It never waits for the writer: a commit under way carries what was parked when it began,
    /// and one that parks meanwhile sees the request and commits instead (or, in a narrow race,
    /// leaves it to the next commit or the proposer's next call).
    pub fn expedite(&self) {
        self.inner.hurry.store(true, Ordering::Release);
        let mut writer = match self.inner.state.try_lock() {
            Ok(writer) => writer,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if writer.parked.is_empty() {
            return;
        }
        self.inner.hurry.store(false, Ordering::Release);
        let batch = std::mem::take(&mut writer.parked);
        let outcome = writer.serve(&batch);
        drop(writer);
        outcome.answer(batch);
    }

    /// Commits `request` and calls its `done` with the outcome. When nothing is queued and no
    /// commit is under way, the caller commits it on its own thread before returning (or parks
    /// it, if deferrable): it would only wait for the writer, and handing it over costs two
    /// thread wake-ups per commit. Otherwise it is queued (waiting only for room) and the writer
    /// calls `done` once a commit carries it. If the writer is gone, `done` is dropped uncalled
    /// and the error is returned here.
    pub(crate) async fn submit(&self, request: Request) -> Result<(), Error> {
        let request = match self.commit_here(request) {
            None => return Ok(()),
            Some(request) => request,
        };
        let requests = self.inner.requests.as_ref().ok_or(Error::WriterStopped)?;
        self.inner.queued.fetch_add(1, Ordering::AcqRel);
        requests.send(request).await.map_err(|_| {
            self.inner.queued.fetch_sub(1, Ordering::AcqRel);
            Error::WriterStopped
        })
    }

    /// Commits `request` on this thread if the writer is idle with nothing queued (a group's
    /// earlier writes are then all committed); hands it back otherwise.
    fn commit_here(&self, request: Request) -> Option<Request> {
        if self.inner.queued.load(Ordering::Acquire) != 0 {
            return Some(request);
        }
        let mut writer = match self.inner.state.try_lock() {
            Ok(writer) => writer,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Some(request),
        };
        if self.inner.queued.load(Ordering::Acquire) != 0 {
            return Some(request);
        }
        let batch = writer.park(vec![request], &self.inner.hurry)?;
        let outcome = writer.serve(&batch);
        drop(writer);
        outcome.answer(batch);
        None
    }
}

impl fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLog")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    /// Opens the file and starts its writer, failing a group's appends after `fault` of them.
    fn open(path: PathBuf, cache_bytes: usize, fault: Option<u64>) -> Result<Self, Error> {
        let db = open_database(&path, cache_bytes)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            db: db.clone(),
            path: path.clone(),
            counters: counters.clone(),
            fault,
            appended: HashMap::new(),
            failed: None,
            parked: Vec::new(),
        };
        let state = Arc::new(Mutex::new(writer));
        let queued = Arc::new(AtomicUsize::new(0));
        let hurry = Arc::new(AtomicBool::new(false));
        let (requests, queue) = mpsc::channel(QUEUE_REQUESTS);
        let thread = std::thread::Builder::new()
            .name("holdfast-log-writer".into())
            .spawn({
                let (state, queued, hurry) = (state.clone(), queued.clone(), hurry.clone());
                move || run(&state, &queued, &hurry, queue)
            })
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            db,
            requests: Some(requests),
            writer: Some(thread),
            counters,
            state,
            queued,
            hurry,
        })
    }
}

impl Drop for Inner {
    /// Closes the queue and waits for the writer to answer what it holds, so the file is closed
    /// when the last handle is gone (and can be opened again at once).
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the raft log writer panicked");
        }
    }
}

/// Opens the database, waiting a little while a handle of this process that is being dropped
/// still holds the file.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, Error> {
    let started = std::time::Instant::now();
    loop {
        match Database::builder().set_cache_size(cache_bytes).create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if started.elapsed() < REOPEN_PATIENCE =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `path` with its directory resolved, so one file has one key in [`OPEN`].
fn canonical(path: &Path) -> Result<PathBuf, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file name")))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok(dir.canonicalize().map_err(io)?.join(name))
}

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    counters: Arc<Counters>,
    /// Appends allowed per group before an injected failure ([`FAULT_ENV`]).
    fault: Option<u64>,
    /// Appends committed or attempted per group, counted only with [`FAULT_ENV`] set.
    appended: HashMap<GroupKey, u64>,
    /// The failure of a commit; once set, every request is refused with it.
    failed: Option<Arc<Error>>,
    /// Deferrable appends waiting for the next commit, in the order they came: they precede
    /// every request still queued, so each commit puts them first. At most one per group, since
    /// openraft waits for a group's append to be written before it makes the next.
    parked: Vec<Request>,
}

/// How a batch's requests are answered.
enum Outcome {
    Committed,
    /// Its commit failed: nothing of it was written.
    Failed(Arc<Error>),
    /// An earlier commit failed, so this one was not tried.
    Refused(Arc<Error>),
}

impl Outcome {
    /// Calls every request's `done` with this outcome.
    fn answer(&self, batch: Vec<Request>) {
        for request in batch {
            (request.done)(match self {
                Outcome::Committed => Ok(()),
                Outcome::Failed(cause) => Err(Error::CommitFailed(cause.clone())),
                Outcome::Refused(cause) => Err(Error::LogFailed(cause.clone())),
            });
        }
    }
}

/// The writer thread: serves batches of what is queued until every handle is gone, then
/// commits what is parked.
fn run(
    state: &Mutex<Writer>,
    queued: &AtomicUsize,
    hurry: &AtomicBool,
    mut queue: mpsc::Receiver<Request>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut bytes = first.op.bytes();
        let mut batch = vec![first];
        while bytes < COMMIT_BYTES {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            bytes = bytes.saturating_add(next.op.bytes());
            batch.push(next);
        }
        let received = batch.len();
        let mut writer = lock(state);
        let batch = writer.park(batch, hurry);
        let outcome = batch.as_ref().map(|batch| writer.serve(batch));
        // Under the lock: a caller that takes it next sees these committed (or parked).
        queued.fetch_sub(received, Ordering::AcqRel);
        drop(writer);
        if let (Some(outcome), Some(batch)) = (outcome, batch) {
            outcome.answer(batch);
        }
    }
    let mut writer = lock(state);
    let parked = std::mem::take(&mut writer.parked);
    if !parked.is_empty() {
        let outcome = writer.serve(&parked);
        drop(writer);
        outcome.answer(parked);
    }
}

/// The writer's state, also after a panic while committing (the commit's transaction was
/// dropped, so nothing of it was written).
fn lock(state: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// Parks `batch` if every request of it is deferrable (and neither [`SharedLog::expedite`]
    /// asked for the next one nor the log failed); otherwise returns what the commit must carry:
    /// the parked requests first, then `batch`.
    fn park(&mut self, batch: Vec<Request>, hurry: &AtomicBool) -> Option<Vec<Request>> {
        let deferrable = batch.iter().all(|request| request.deferrable);
        if deferrable && self.failed.is_none() && !hurry.swap(false, Ordering::AcqRel) {
            self.counters.parked.fetch_add(
                u64::try_from(batch.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.parked.extend(batch);
            return None;
        }
        if self.parked.is_empty() {
            return Some(batch);
        }
        let mut carried = std::mem::take(&mut self.parked);
        carried.extend(batch);
        Some(carried)
    }

    /// Commits `batch` in one transaction (or refuses it after an earlier failure) and says how
    /// its requests are to be answered; the caller answers them once it released the state.
    fn serve(&mut self, batch: &[Request]) -> Outcome {
        if let Some(cause) = &self.failed {
            return Outcome::Refused(cause.clone());
        }
        let durable = batch.iter().any(|request| request.durable);
        match self.commit(batch, durable) {
            Ok(()) => {
                self.count(batch, durable);
                Outcome::Committed
            }
            Err(e) => {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    requests = batch.len(),
                    "raft log commit failed; every later write is refused"
                );
                let cause = Arc::new(e);
                self.failed = Some(cause.clone());
                Outcome::Failed(cause)
            }
        }
    }

    fn commit(&mut self, batch: &[Request], durable: bool) -> Result<(), Error> {
        self.inject_fault(batch)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        {
            let mut log = txn.open_table(LOG)?;
            let mut meta = txn.open_table(META)?;
            for request in batch {
                let group = request.group.0;
                match &request.op {
                    Op::Append { entries, meta: set } => {
                        for (index, bytes) in entries {
                            log.insert((group, *index), bytes.as_slice())?;
                        }
                        if let Some((key, value)) = set {
                            meta.insert((group, *key), value.as_slice())?;
                        }
                    }
                    Op::Meta(key, value) => {
                        meta.insert((group, *key), value.as_slice())?;
                    }
                    Op::Truncate(from) => {
                        log.retain_in((group, *from)..=(group, u64::MAX), |_, _| false)?;
                    }
                    Op::Purge { through, marker } => {
                        log.retain_in((group, 0)..=(group, *through), |_, _| false)?;
                        meta.insert((group, LAST_PURGED), marker.as_slice())?;
                    }
                    Op::Forget => {
                        log.retain_in((group, 0)..=(group, u64::MAX), |_, _| false)?;
                        meta.retain_in((group, "")..=(group, "\u{10ffff}"), |_, _| false)?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Fails the commit as a failed fsync would once a group of `batch` appends past what
    /// [`FAULT_ENV`] allows.
    fn inject_fault(&mut self, batch: &[Request]) -> Result<(), Error> {
        let Some(allowed) = self.fault else {
            return Ok(());
        };
        let mut tripped = false;
        for request in batch {
            if let Op::Append { .. } = request.op {
                let done = self.appended.entry(request.group).or_insert(0);
                tripped |= *done >= allowed;
                *done = done.saturating_add(1);
            }
        }
        if !tripped {
            return Ok(());
        }
        Err(Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!("fsync failure injected by {FAULT_ENV}")),
        })
    }

    fn count(&self, batch: &[Request], durable: bool) {
        let c = &self.counters;
        let add = |counter: &AtomicU64, n: usize| {
            counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        add(&c.commits, 1);
        add(&c.syncs, usize::from(durable));
        add(&c.requests, batch.len());
        for request in batch {
            if let Op::Append { entries, .. } = &request.op {
                add(&c.appends, 1);
                add(&c.entries, entries.len());
            }
        }
        let mut groups: Vec<u32> = batch.iter().map(|request| request.group.0).collect();
        groups.sort_unstable();
        groups.dedup();
        add(&c.group_writes, groups.len());
        c.max_groups.fetch_max(
            u64::try_from(groups.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, LogStore, TypeConfig, records};
    use holdfast_types::{Command, ObjectKey, codec};
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
    use redb::{ReadableDatabase, ReadableTable};
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};
    use std::time::Instant;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    type Pending<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + 'a>>;

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Entry `index` carrying `value_bytes` bytes of state.
    fn entry(index: u64, value_bytes: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Batch::new(vec![Command::SetState {
                object: ObjectKey::new("Counter", "k"),
                name: format!("n{index}"),
                value: vec![7; value_bytes],
            }])),
        }
    }

    /// Entry `index` carrying `value_bytes` pseudo-random bytes of state: packing cannot
    /// shrink it, so it takes as many bytes of a commit's budget as it carries.
    fn incompressible_entry(index: u64, value_bytes: usize) -> Entry<TypeConfig> {
        let value = crate::pack::noise(0x9e37_79b9_7f4a_7c15 ^ index, value_bytes);
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Batch::new(vec![Command::SetState {
                object: ObjectKey::new("Counter", "k"),
                name: format!("n{index}"),
                value,
            }])),
        }
    }

    fn store(log: &SharedLog, group: u32) -> LogStore {
        LogStore::new(log, GroupKey(group))
    }

    async fn indexes(store: &mut LogStore) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
        let entries = store.try_get_log_entries(..).await?;
        Ok(entries.iter().map(|e| e.log_id.index).collect())
    }

    /// Polls `write` once, far enough to hand its request to the writer: the queue has room,
    /// so sending completes at once and the future then waits for the answer.
    fn enqueue<'a>(write: impl Future<Output = Result<(), Error>> + 'a) -> Pending<'a> {
        let mut write: Pending<'a> = Box::pin(write);
        let polled = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(polled.is_pending(), "answered while the writer was held");
        write
    }

    /// The writer's state, held by a thread of the test until it is released: meanwhile no
    /// commit begins (neither the writer's nor a caller's own), so requests sent queue up.
    struct Held {
        release: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Held {
        fn release(self) -> TestResult {
            let _ = self.release.send(());
            self.thread
                .join()
                .map_err(|_| "the holding thread panicked")?;
            Ok(())
        }
    }

    fn hold_writer(log: &SharedLog) -> Result<Held, Box<dyn std::error::Error>> {
        let state = log.inner.state.clone();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let _writer = lock(&state);
            let _ = locked.send(());
            let _ = released.recv();
        });
        is_locked.recv_timeout(Duration::from_secs(10))?;
        Ok(Held { release, thread })
    }

    #[tokio::test]
    async fn the_committed_pointer_is_written_with_every_32nd_append() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        a.append_entries([entry(1, 8)]).await?;
        let commits = log.stats().commits;
        a.save_committed(Some(log_id(1))).await?;
        assert_eq!(log.stats().commits, commits, "saving alone commits nothing");
        assert_eq!(a.read_committed().await?, Some(log_id(1)));
        let every = u64::from(crate::log::COMMITTED_EVERY);
        for index in 2..every {
            a.append_entries([entry(index, 8)]).await?;
        }
        assert_eq!(
            store(&log, 0).read_committed().await?,
            None,
            "not written with the appends before"
        );
        a.append_entries([entry(every, 8)]).await?;
        assert_eq!(store(&log, 0).read_committed().await?, Some(log_id(1)));
        assert_eq!(a.read_committed().await?, Some(log_id(1)));
        Ok(())
    }

    /// The file's own view of a group's log, without the handle's tail.
    fn stored_indexes(log: &SharedLog, group: u32) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
        let txn = log.database().begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for item in table.range((group, 0)..=(group, u64::MAX))? {
            out.push(item?.0.value().1);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn an_append_is_readable_once_queued_and_reported_once_written() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        a.append_entries((1..=3).map(|index| entry(index, 8)))
            .await?;
        let held = hold_writer(&log)?;
        let (flushed, reported) = std::sync::mpsc::channel();
        a.queue_append((4..=5).map(|index| entry(index, 8)), move |outcome| {
            let _ = flushed.send(outcome.is_ok());
        })
        .await?;
        // Queued, not written: openraft reads it from the tail (to replicate and apply it).
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2, 3]);
        assert!(reported.try_recv().is_err(), "reported before its commit");
        assert_eq!(indexes(&mut a).await?, vec![1, 2, 3, 4, 5]);
        let across: Vec<u64> = a
            .try_get_log_entries(2..5)
            .await?
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(
            across,
            vec![2, 3, 4],
            "a read spanning the file and the tail"
        );
        assert_eq!(
            a.clone().get_log_state().await?.last_log_id,
            Some(log_id(5))
        );
        held.release()?;
        assert!(reported.recv_timeout(Duration::from_secs(10))?);
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2, 3, 4, 5]);
        Ok(())
    }

    #[tokio::test]
    async fn a_write_is_committed_by_its_caller_only_while_nothing_is_queued() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        let (flushed, reported) = std::sync::mpsc::channel();
        let report = |flushed: std::sync::mpsc::Sender<_>| {
            move |outcome: Result<(), Error>| {
                let _ = flushed.send((outcome.is_ok(), std::thread::current().id()));
            }
        };
        // The writer is idle: the append is on disk when queue_append returns, written here.
        a.queue_append([entry(1, 8)], report(flushed.clone()))
            .await?;
        assert_eq!(reported.try_recv()?, (true, std::thread::current().id()));
        assert_eq!(stored_indexes(&log, 0)?, vec![1]);
        // Something is queued (another group's write, say): this one queues behind it and the
        // writer thread commits it.
        log.inner.queued.fetch_add(1, Ordering::AcqRel);
        a.queue_append([entry(2, 8)], report(flushed)).await?;
        let (ok, thread) = reported.recv_timeout(Duration::from_secs(10))?;
        log.inner.queued.fetch_sub(1, Ordering::AcqRel);
        assert!(ok);
        assert_ne!(thread, std::thread::current().id());
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2]);
        assert_eq!(log.inner.queued.load(Ordering::Acquire), 0);
        Ok(())
    }

    /// Entry `index` that nobody waits for, as the partition marks an unawaited ending.
    fn deferrable_entry(index: u64) -> Entry<TypeConfig> {
        let mut deferrable = entry(index, 8);
        if let EntryPayload::Normal(batch) = &mut deferrable.payload {
            batch.deferrable = true;
        }
        deferrable
    }

    /// Queues a deferrable entry `index` on `store`; the receiver reports its outcome.
    async fn park(
        store: &mut LogStore,
        index: u64,
    ) -> Result<std::sync::mpsc::Receiver<bool>, Error> {
        let (flushed, reported) = std::sync::mpsc::channel();
        store
            .queue_append([deferrable_entry(index)], move |outcome| {
                let _ = flushed.send(outcome.is_ok());
            })
            .await?;
        Ok(reported)
    }

    #[tokio::test]
    async fn a_deferrable_append_waits_for_the_next_durable_commit_and_shares_its_fsync()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let (mut a, mut b) = (store(&log, 0), store(&log, 1));
        a.append_entries([entry(1, 8)]).await?;
        let before = log.stats();
        let reported = park(&mut a, 2).await?;
        assert!(reported.try_recv().is_err(), "committed alone");
        assert_eq!(stored_indexes(&log, 0)?, vec![1]);
        assert_eq!(indexes(&mut a).await?, vec![1, 2], "readable while parked");
        assert_eq!(log.stats().parked, before.parked + 1);
        // Another group's append, which its proposer waits for, carries it.
        b.append_entries([entry(1, 8)]).await?;
        assert!(reported.try_recv()?);
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2]);
        let after = log.stats();
        assert_eq!(after.syncs, before.syncs + 1, "one fsync for both");
        assert_eq!(after.appends, before.appends + 2);
        Ok(())
    }

    #[tokio::test]
    async fn expediting_commits_what_is_parked_or_else_the_next_deferrable_append() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        let reported = park(&mut a, 1).await?;
        log.expedite();
        assert!(reported.try_recv()?);
        assert_eq!(stored_indexes(&log, 0)?, vec![1]);
        // Expedited before its append arrives: the append is committed at once.
        log.expedite();
        let reported = park(&mut a, 2).await?;
        assert!(reported.try_recv()?);
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2]);
        // That used the request up: the next one parks again.
        let reported = park(&mut a, 3).await?;
        assert!(reported.try_recv().is_err());
        drop(a);
        drop(log);
        assert!(
            reported.recv_timeout(Duration::from_secs(10))?,
            "committed on close"
        );
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        assert_eq!(stored_indexes(&log, 0)?, vec![1, 2, 3]);
        Ok(())
    }

    #[tokio::test]
    async fn a_deferrable_append_queued_behind_a_commit_is_parked_by_the_writer() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let (mut a, mut b) = (store(&log, 0), store(&log, 1));
        let held = hold_writer(&log)?;
        let reported = park(&mut a, 1).await?;
        held.release()?;
        // The writer took it from its queue and parked it: nothing else was there to carry it.
        let parked = Instant::now();
        while log.stats().parked == 0 {
            assert!(parked.elapsed() < Duration::from_secs(10), "never parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(reported.try_recv().is_err());
        assert_eq!(log.inner.queued.load(Ordering::Acquire), 0);
        // A write of another group, queued behind nothing, commits it first.
        b.save_vote(&Vote::new(1, 1)).await?;
        assert!(reported.try_recv()?);
        assert_eq!(stored_indexes(&log, 0)?, vec![1]);
        Ok(())
    }

    #[tokio::test]
    async fn the_tail_keeps_a_bounded_number_of_written_entries_and_follows_truncation()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        for index in 1..=200 {
            a.append_entries([entry(index, 8)]).await?;
        }
        let kept = a.tail.lock().len();
        assert!(
            kept <= crate::log::TAIL_WRITTEN_ENTRIES + 1,
            "{kept} entries kept"
        );
        assert_eq!(indexes(&mut a).await?, (1..=200).collect::<Vec<_>>());
        // A bounded read starting in the file continues into the tail.
        let bounded = a.limited_get_log_entries(100, 201).await?;
        assert_eq!(bounded.len(), 101);
        a.truncate(log_id(150)).await?;
        assert_eq!(indexes(&mut a).await?, (1..=149).collect::<Vec<_>>());
        assert_eq!(a.get_log_state().await?.last_log_id, Some(log_id(149)));
        // Appended again after the truncation: held until written, then read back.
        a.append_entries((150..=152).map(|index| entry(index, 16)))
            .await?;
        assert_eq!(indexes(&mut a).await?, (1..=152).collect::<Vec<_>>());
        a.purge(log_id(151)).await?;
        assert_eq!(indexes(&mut a).await?, vec![152]);
        Ok(())
    }

    #[tokio::test]
    async fn interleaved_appends_of_two_groups_keep_separate_logs() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let (mut a, mut b) = (store(&log, 0), store(&log, GroupKey::METADATA.0));
        for index in 1..=5 {
            a.append_entries([entry(index, 8)]).await?;
            b.append_entries([entry(index * 10, 8), entry(index * 10 + 1, 8)])
                .await?;
        }
        a.save_vote(&Vote::new_committed(3, 2)).await?;
        assert_eq!(indexes(&mut a).await?, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            indexes(&mut b).await?,
            vec![10, 11, 20, 21, 30, 31, 40, 41, 50, 51]
        );
        assert_eq!(a.get_log_state().await?.last_log_id, Some(log_id(5)));
        assert_eq!(b.get_log_state().await?.last_log_id, Some(log_id(51)));
        assert_eq!(a.read_vote().await?, Some(Vote::new_committed(3, 2)));
        assert_eq!(b.read_vote().await?, None);
        // A group with nothing written sees an empty log between the two.
        let mut empty = store(&log, 1);
        assert_eq!(indexes(&mut empty).await?, Vec::<u64>::new());
        assert_eq!(empty.get_log_state().await?.last_log_id, None);
        Ok(())
    }

    #[tokio::test]
    async fn truncating_and_purging_one_group_leaves_the_others_untouched() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut groups = [store(&log, 4), store(&log, 5), store(&log, 6)];
        for group in &mut groups {
            group
                .append_entries((1..=10).map(|index| entry(index, 8)))
                .await?;
        }
        let [before, middle, after] = &mut groups;
        middle.truncate(log_id(7)).await?;
        middle.purge(log_id(3)).await?;
        middle.save_committed(Some(log_id(5))).await?;
        assert_eq!(indexes(middle).await?, vec![4, 5, 6]);
        let state = middle.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(3)));
        assert_eq!(state.last_log_id, Some(log_id(6)));
        for neighbour in [before, after] {
            assert_eq!(indexes(neighbour).await?, (1..=10).collect::<Vec<_>>());
            let state = neighbour.get_log_state().await?;
            assert_eq!(state.last_purged_log_id, None);
            assert_eq!(state.last_log_id, Some(log_id(10)));
            assert_eq!(neighbour.read_committed().await?, None);
        }
        // Purging everything leaves the marker as the last log id.
        middle.purge(log_id(6)).await?;
        let state = middle.get_log_state().await?;
        assert_eq!(state.last_log_id, Some(log_id(6)));
        assert_eq!(indexes(middle).await?, Vec::<u64>::new());
        Ok(())
    }

    #[tokio::test]
    async fn a_forgotten_group_starts_empty_and_its_neighbours_keep_everything() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let (mut gone, mut kept) = (store(&log, 2), store(&log, 3));
        for group in [&mut gone, &mut kept] {
            group
                .append_entries((1..=4).map(|index| entry(index, 8)))
                .await?;
            group.save_vote(&Vote::new_committed(2, 1)).await?;
            group.purge(log_id(1)).await?;
        }
        // The group's raft stops (dropping its handles) before its log is forgotten; a later
        // replica opens a new handle.
        drop(gone);
        log.forget(GroupKey(2)).await?;
        let mut gone = store(&log, 2);
        assert_eq!(indexes(&mut gone).await?, Vec::<u64>::new());
        let state = gone.get_log_state().await?;
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        assert_eq!(gone.read_vote().await?, None);
        assert_eq!(indexes(&mut kept).await?, vec![2, 3, 4]);
        assert_eq!(kept.read_vote().await?, Some(Vote::new_committed(2, 1)));
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_appends_of_many_groups_share_commits() -> TestResult {
        const GROUPS: u32 = 32;
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut stores: Vec<LogStore> = (0..GROUPS).map(|g| store(&log, g)).collect();
        let held = hold_writer(&log)?;
        let pending: Vec<Pending<'_>> = stores
            .iter_mut()
            .map(|s| enqueue(s.append_entries([entry(1, 64)])))
            .collect();
        held.release()?;
        for write in pending {
            write.await?;
        }
        let stats = log.stats();
        assert_eq!(stats.appends, u64::from(GROUPS));
        assert_eq!(stats.entries, u64::from(GROUPS));
        // The writer had taken the first request(s) when it found the file held; everything
        // sent meanwhile shares the next commit.
        assert!(stats.commits <= 2, "{stats:?}");
        assert_eq!(stats.syncs, stats.commits);
        assert_eq!(stats.group_writes, u64::from(GROUPS));
        assert!(
            stats.max_groups_per_commit >= u64::from(GROUPS / 2),
            "{stats:?}"
        );
        for mut store in stores {
            assert_eq!(indexes(&mut store).await?, vec![1]);
        }
        Ok(())
    }

    /// Entries are stored packed, but a replication read is bounded by what they decode from:
    /// what the follower receives, not what the file holds.
    #[tokio::test]
    async fn replication_reads_are_bounded_by_unpacked_bytes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        // 3 MiB of one byte each: a few hundred bytes once packed.
        a.append_entries((1..=4).map(|index| entry(index, 3 << 20)))
            .await?;
        let stored: usize = {
            let txn = log.database().begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut total = 0;
            for item in table.iter()? {
                total += item?.1.value().len();
            }
            total
        };
        assert!(stored < 1 << 20, "{stored} bytes stored");
        let sent = a.limited_get_log_entries(1, 5).await?;
        let indexes: Vec<u64> = sent.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [1, 2]);
        Ok(())
    }

    #[tokio::test]
    async fn lazy_writes_alone_commit_without_fsync() -> TestResult {
        let dir = tempfile::tempdir()?;
        let log = SharedLog::open(&dir.path().join("raft-log.redb"))?;
        let mut a = store(&log, 0);
        a.append_entries([entry(1, 8), entry(2, 8)]).await?;
        a.save_committed(Some(log_id(2))).await?;
        a.purge(log_id(1)).await?;
        let stats = log.stats();
        // The append is fsync'd, the purge is not, and the committed pointer waits for a later
        // append.
        assert_eq!((stats.commits, stats.syncs, stats.requests), (2, 1, 2));
        assert_eq!(a.read_committed().await?, Some(log_id(2)));
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_batch_and_every_later_request() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("raft-log.redb");
        // Each group may append once; its second append fails as a failed fsync would.
        let log = SharedLog {
            inner: Arc::new(Inner::open(canonical(&path)?, LOG_CACHE_BYTES, Some(1))?),
        };
        let (mut a, mut b, mut c) = (store(&log, 0), store(&log, 1), store(&log, 2));
        a.append_entries([entry(1, 8)]).await?;

        let committed = codec::encode(&records::log_id_record(Some(&log_id(1))))?;
        let held = hold_writer(&log)?;
        // Alone in its commit: it fills the commit's byte budget by itself.
        let big = enqueue(c.append_entries([incompressible_entry(1, COMMIT_BYTES)]));
        let doomed = [
            enqueue(a.append_entries([entry(2, 8)])),
            enqueue(b.append_entries([entry(1, 8)])),
            enqueue(log.write(GroupKey(2), Op::Meta("committed", committed), false)),
        ];
        held.release()?;
        big.await?;
        for write in doomed {
            let result = write.await;
            assert!(matches!(result, Err(Error::CommitFailed(_))), "{result:?}");
        }
        // Nothing of the failed batch was written.
        assert_eq!(indexes(&mut a).await?, vec![1]);
        assert_eq!(indexes(&mut b).await?, Vec::<u64>::new());
        let txn = log.database().begin_read()?;
        let meta = txn.open_table(META)?;
        assert!(
            meta.get((2, "committed"))?.is_none(),
            "the committed pointer was not written"
        );
        assert_eq!(c.read_committed().await?, None);
        // Every later request is refused, whatever its group or kind.
        let later = c.save_vote(&Vote::new(4, 1)).await;
        assert!(later.is_err(), "{later:?}");
        let later = store(&log, 9).append_entries([entry(1, 8)]).await;
        assert!(matches!(later, Err(Error::LogFailed(_))), "{later:?}");
        assert_eq!(log.stats().commits, 2, "{:?}", log.stats());
        Ok(())
    }
}
