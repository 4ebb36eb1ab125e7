//! The state-machine store: the applied state of one partition in `state.redb`.
//!
//! Each `apply` call writes into the partition's memtable (see [`crate::memtable`]), which is
//! written to `state.redb` in one transaction without fsync once it is large, and before every
//! flush, snapshot, SQL scan and table count. The applied log id is written with the rows it
//! describes, so the two always move together; [`StateMachine::flush`] makes them durable. A crash loses at most the unflushed
//! tail, which openraft re-applies from the log.
//!
//! Snapshots are files in the partition's `snapshots/` directory (see [`snapshot`] for the
//! format); `state.redb`'s `snapshot` table records the current one's metadata and file name.

mod snapshot;

pub use snapshot::SnapshotFile;

use crate::error::blocking;
use crate::keys::{object_prefix, parse_state_key, take_part};
use crate::memtable::{self, Memtable, View};
use crate::records;
use crate::state::snapshot::{SnapshotDir, SnapshotFile as File};
use crate::tables::{self, STATE, Tables, slot};
use crate::{Applied, Batch, Error, TypeConfig, pack};
use holdfast_fsm::state::{Invocation, JournalItem, Promise};
use holdfast_types::{
    EntryIndex, InvocationId, LogIndex, ObjectKey, OutboxMessage, Target, TimerKey, codec,
};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Seek, SeekFrom};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const COMMANDS_APPLIED: &str = "commands_applied";
const SNAPSHOT_META: &str = "meta";
/// The previous release kept the snapshot itself here; converted to a file on open.
const SNAPSHOT_DATA: &str = "data";
/// The current snapshot's file name in the snapshot directory; absent for a checkpoint.
const SNAPSHOT_FILE: &str = "file";

type NodeId = u64;
/// Page cache of one partition's state unless the node configures one: hot objects, live
/// invocations and their journals.
pub const STATE_CACHE_BYTES: usize = 2 << 20;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// One named state entry of an object, as read back for tools and queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The object owning the entry.
    pub object: ObjectKey,
    /// The entry's name within the object.
    pub name: String,
    /// The stored bytes.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Where a partition's applied state stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// Index of the last applied log entry, if any.
    pub applied: Option<LogIndex>,
    /// How many commands have been applied in total; each committed command counts once.
    pub commands_applied: u64,
}

/// Named state entries of one object, in name order.
type NamedValues = Vec<(String, Vec<u8>)>;

/// What a new leader resumes from ([`StateMachine::resumable`]).
#[derive(Debug, Clone, Default)]
pub struct Resumable {
    /// The applied position it was read at: effects of entries up to here are reflected in it.
    pub applied: LogIndex,
    /// Invocations with an attempt running (`Invoked`) or due after a backoff (`BackingOff`).
    pub active: Vec<(InvocationId, Invocation)>,
    /// The undelivered outbox, by sequence number.
    pub outbox: Vec<(u64, OutboxMessage)>,
}

/// Handle to a partition's applied state; clones share the same database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    /// Applied changes not yet written to `db`; shared by every handle on it.
    memtable: memtable::Shared,
    snapshots: Arc<SnapshotDir>,
    snapshots_built: Arc<AtomicU64>,
    /// True until the first `get_current_snapshot`: openraft makes it when the group starts
    /// and keeps only the metadata, so a checkpoint is not written to a file for it.
    startup_snapshot_read: bool,
    config: holdfast_fsm::Config,
    /// Where the effects of every applied entry go, whoever proposed it (see [`AppliedBatch`]).
    effects: Option<mpsc::Sender<AppliedBatch>>,
}

/// The effects of one `apply` call, in log order: every entry up to `through` is applied, and
/// `entries` holds those among them that asked for something. Sent for every entry, replayed or
/// proposed by anyone, so a leader executes effects whoever proposed the entry.
#[derive(Debug, Clone)]
pub struct AppliedBatch {
    /// The last log index this batch covers (applied state is at least this far).
    pub through: LogIndex,
    /// The entries with effects, in order.
    pub entries: Vec<Applied>,
}

/// A handle to a partition's applied state that does not keep `state.redb` open: helpers that
/// outlive a raft group (the timer wheel) must not stop the partition from reopening its files.
#[derive(Clone)]
pub struct WeakStateMachine {
    db: Weak<Database>,
    memtable: memtable::Shared,
    snapshots: Arc<SnapshotDir>,
    snapshots_built: Arc<AtomicU64>,
    config: holdfast_fsm::Config,
}

impl std::fmt::Debug for WeakStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakStateMachine")
            .field("open", &(self.db.strong_count() > 0))
            .finish()
    }
}

impl WeakStateMachine {
    /// The state machine, if the database is still open somewhere else.
    pub fn upgrade(&self) -> Option<StateMachine> {
        Some(StateMachine {
            db: self.db.upgrade()?,
            memtable: self.memtable.clone(),
            snapshots: self.snapshots.clone(),
            snapshots_built: self.snapshots_built.clone(),
            startup_snapshot_read: true,
            config: self.config,
            effects: None,
        })
    }
}

fn get_meta<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, Error> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn put_meta<T: Serialize>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), Error> {
    table.insert(key, codec::encode(value)?.as_slice())?;
    Ok(())
}

/// The last applied log id, stored as a [`records::LogIdRecord`].
fn get_applied(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<LogId<NodeId>>, Error> {
    Ok(records::log_id(get_meta(table, APPLIED)?.flatten()))
}

fn put_applied(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    applied: Option<&LogId<NodeId>>,
) -> Result<(), Error> {
    put_meta(table, APPLIED, &records::log_id_record(applied))
}

/// The last applied membership, stored as a [`records::StoredMembershipRecord`].
fn get_membership(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Membership, Error> {
    Ok(
        get_meta::<records::StoredMembershipRecord>(table, MEMBERSHIP)?
            .map(Membership::from)
            .unwrap_or_default(),
    )
}

fn put_membership(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    membership: &Membership,
) -> Result<(), Error> {
    put_meta(
        table,
        MEMBERSHIP,
        &records::StoredMembershipRecord::from(membership),
    )
}

/// Writes the memtable `mem` into `db` in one transaction without fsync, with the applied
/// position it carries, then empties it.
fn settle(db: &Database, mem: &mut Memtable) -> Result<(), Error> {
    if mem.is_empty() {
        return Ok(());
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    mem.write_rows(&txn)?;
    {
        let mut meta = txn.open_table(META)?;
        if let Some(applied) = &mem.applied {
            put_applied(&mut meta, Some(applied))?;
        }
        if let Some(membership) = &mem.membership {
            put_membership(&mut meta, membership)?;
        }
        if let Some(count) = mem.commands_applied {
            put_meta(&mut meta, COMMANDS_APPLIED, &count)?;
        }
    }
    txn.commit()?;
    mem.clear();
    Ok(())
}

fn sm_read_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    /// Opens or creates the state database at `path` with the default page cache
    /// ([`STATE_CACHE_BYTES`]); see [`StateMachine::open_with_cache`].
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_cache(path, STATE_CACHE_BYTES)
    }

    /// Opens or creates the state database at `path` with a page cache of `cache_bytes`, its
    /// snapshot directory next to it (leftovers of a crash removed, a snapshot of the previous
    /// release converted to a file).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, Error> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let txn = db.begin_write()?;
        // A database written before an index existed gets the indexes built once, here.
        let present: Vec<String> = txn
            .list_tables()?
            .map(|table| table.name().to_owned())
            .collect();
        let index_missing = tables::INDEXES
            .iter()
            .any(|index| !present.iter().any(|name| name == index.name()));
        for table in tables::ALL {
            txn.open_table(table)?;
        }
        if index_missing {
            tables::rebuild_indexes(&txn)?;
        }
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        // Only now, with the database locked by this process, is the directory ours to clean.
        let snapshots = SnapshotDir::for_database(path);
        let current = {
            let txn = db.begin_read()?;
            get_meta::<String>(&txn.open_table(SNAPSHOT)?, SNAPSHOT_FILE)?
        };
        snapshots.prepare(current.as_deref())?;
        Self::convert_legacy_snapshot(&db, &snapshots)?;
        Ok(Self {
            db: Arc::new(db),
            memtable: memtable::Shared::default(),
            snapshots: Arc::new(snapshots),
            snapshots_built: Arc::new(AtomicU64::new(0)),
            startup_snapshot_read: true,
            config: holdfast_fsm::Config::default(),
            effects: None,
        })
    }

    /// Sends the effects of every entry applied through this handle to `effects`. Applying waits
    /// while the channel is full, so a slow leader slows down applying instead of growing a queue.
    pub fn with_effects(mut self, effects: mpsc::Sender<AppliedBatch>) -> Self {
        self.effects = Some(effects);
        self
    }

    /// Uses `config` for every command applied from now on; every replica of the partition must
    /// use the same one, or their states diverge.
    pub fn with_config(mut self, config: holdfast_fsm::Config) -> Self {
        self.config = config;
        self
    }

    /// A handle that reads this state only while something else keeps the database open.
    pub fn downgrade(&self) -> WeakStateMachine {
        WeakStateMachine {
            db: Arc::downgrade(&self.db),
            memtable: self.memtable.clone(),
            snapshots: self.snapshots.clone(),
            snapshots_built: self.snapshots_built.clone(),
            config: self.config,
        }
    }

    /// The applied state as of now: the memtable over a fresh read transaction.
    fn view(&self) -> Result<View<std::sync::MutexGuard<'_, Memtable>>, Error> {
        let mem = memtable::lock(&self.memtable)?;
        let txn = self.db.begin_read()?;
        Ok(View::new(mem, txn))
    }

    /// Writes the memtable into `state.redb` (without fsync), for readers of whole tables and
    /// of the applied position.
    fn settle(&self) -> Result<(), Error> {
        settle(&self.db, &mut *memtable::lock(&self.memtable)?)
    }

    /// An invocation's status record, for the leader and tools.
    pub fn invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Error> {
        self.view()?
            .get(slot::INVOCATIONS, &id.to_bytes(), pack::decode_found)
    }

    /// What this partition recorded of schedule `name`'s ticks, if it fired any.
    pub fn schedule_run(
        &self,
        name: &str,
    ) -> Result<Option<holdfast_fsm::state::ScheduleRun>, Error> {
        self.view()?
            .get(slot::SCHEDULES, name.as_bytes(), pack::decode_found)
    }

    /// The limits this partition applies (its last `SetLimits`).
    pub fn applied_limits(&self) -> Result<Vec<holdfast_types::Limit>, Error> {
        let limits = self.view()?.get(
            slot::LIMITS,
            tables::APPLIED_LIMITS,
            pack::decode_found::<Vec<holdfast_types::Limit>>,
        )?;
        Ok(limits.unwrap_or_default())
    }

    /// The invocation holding `object`'s exclusive lock, if any.
    pub fn lock_holder(&self, object: &ObjectKey) -> Result<Option<InvocationId>, Error> {
        self.view()?
            .get(slot::LOCKS, &object_prefix(object), |value| {
                value
                    .map(|bytes| tables::read_id("locks", bytes))
                    .transpose()
            })
    }

    /// An invocation's journal in index order, for starting an attempt.
    pub fn journal(&self, id: InvocationId) -> Result<Vec<(EntryIndex, JournalItem)>, Error> {
        let prefix = id.to_bytes();
        let mut out = Vec::new();
        self.view()?
            .scan_prefix(slot::JOURNAL, &prefix, |key, value| {
                let index: [u8; 4] = key[prefix.len()..]
                    .try_into()
                    .map_err(|_| Error::CorruptKey(key.len()))?;
                out.push((EntryIndex(u32::from_be_bytes(index)), pack::decode(value)?));
                Ok(ControlFlow::Continue(()))
            })?;
        Ok(out)
    }

    /// One journal entry of an invocation, read on its own (the ingress checks an awakeable's
    /// entry without reading the whole journal).
    pub fn journal_entry(
        &self,
        id: InvocationId,
        index: EntryIndex,
    ) -> Result<Option<JournalItem>, Error> {
        self.view()?.get(
            slot::JOURNAL,
            &crate::keys::journal_key(id, index),
            pack::decode_found,
        )
    }

    /// What a leader resumes from, read at one applied position: the invocations with an
    /// attempt running or due, and (with `outbox`) the undelivered outbox.
    pub fn resumable(&self, outbox: bool) -> Result<Resumable, Error> {
        let view = self.view()?;
        let applied = match view.memtable().applied {
            Some(applied) => Some(applied),
            None => get_applied(&view.transaction().open_table(META)?)?,
        };
        let mut ids = Vec::new();
        view.scan(slot::ACTIVE, Bound::Unbounded, |key, _| {
            ids.push(read_invocation_id(tables::ACTIVE.name(), key)?);
            Ok(ControlFlow::Continue(()))
        })?;
        let mut active = Vec::with_capacity(ids.len());
        for id in ids {
            let record = view.get(slot::INVOCATIONS, &id.to_bytes(), pack::decode_found)?;
            if let Some(record) = record {
                active.push((id, record));
            }
        }
        let outbox = if outbox {
            read_outbox(&view)?
        } else {
            Vec::new()
        };
        Ok(Resumable {
            applied: LogIndex(applied.map_or(0, |id| id.index)),
            active,
            outbox,
        })
    }

    /// The state of one object by name, in name order, up to `budget` bytes of names and values;
    /// true when that is all of it. An attempt starts with this eager part.
    pub fn object_state_within(
        &self,
        object: &ObjectKey,
        budget: usize,
    ) -> Result<(NamedValues, bool), Error> {
        let prefix = object_prefix(object);
        let mut out = Vec::new();
        let mut used = 0usize;
        let mut complete = true;
        self.view()?
            .scan_prefix(slot::STATE, &prefix, |key, value| {
                let name = &key[prefix.len()..];
                let size = name.len() + value.len();
                if used + size > budget {
                    complete = false;
                    return Ok(ControlFlow::Break(()));
                }
                used += size;
                let name =
                    String::from_utf8(name.to_vec()).map_err(|_| Error::CorruptKey(key.len()))?;
                out.push((name, value.to_vec()));
                Ok(ControlFlow::Continue(()))
            })?;
        Ok((out, complete))
    }

    /// The undelivered outbox, by sequence number: what the shuffle must (re)send.
    pub fn outbox(&self) -> Result<Vec<(u64, OutboxMessage)>, Error> {
        read_outbox(&self.view()?)
    }

    /// The first `limit` pending timers strictly after `after` (from the earliest when `None`), in
    /// fire order: the leader's timer wheel pages through them so only a window sits in memory.
    pub fn timers_after(
        &self,
        after: Option<&TimerKey>,
        limit: usize,
    ) -> Result<Vec<TimerKey>, Error> {
        let start = after.map(TimerKey::to_bytes);
        let lower = match &start {
            Some(bytes) => Bound::Excluded(bytes.as_slice()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        if limit == 0 {
            return Ok(out);
        }
        self.view()?.scan(slot::TIMERS, lower, |key, _| {
            out.push(TimerKey::from_bytes(key).ok_or(Error::CorruptKey(key.len()))?);
            Ok(if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    /// How many timers are pending, for metrics (the table's length: no scan).
    pub fn pending_timers(&self) -> Result<u64, Error> {
        self.table_len(tables::TIMERS)
    }

    /// How many invocations are suspended waiting for a completion, for metrics (the length of
    /// the suspended index: no scan).
    pub fn suspended_invocations(&self) -> Result<u64, Error> {
        self.table_len(tables::SUSPENDED)
    }

    /// How many invocations wait in object inboxes behind a lock holder, for metrics (every
    /// inbox row is one queued invocation, so this is the table's length: no scan).
    pub fn inbox_depth(&self) -> Result<u64, Error> {
        self.table_len(tables::INBOX)
    }

    /// The number of rows of `table`, once the memtable is settled.
    fn table_len(
        &self,
        table: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<u64, Error> {
        self.settle()?;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(table)?.len()?)
    }

    /// Makes every applied change durable (one fsync). Called periodically, before a snapshot and
    /// at shutdown; never on the acknowledgement path.
    pub async fn flush(&self) -> Result<(), Error> {
        let (db, memtable) = (self.db.clone(), self.memtable.clone());
        blocking(move || {
            settle(&db, &mut *memtable::lock(&memtable)?)?;
            let txn = db.begin_write()?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// The applied index and command count of this partition.
    pub fn summary(&self) -> Result<PartitionSummary, Error> {
        self.settle()?;
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let applied = get_applied(&meta)?;
        Ok(PartitionSummary {
            applied: applied.map(|id| LogIndex(id.index)),
            commands_applied: get_meta(&meta, COMMANDS_APPLIED)?.unwrap_or(0),
        })
    }

    /// Every state entry of this partition, ordered by object and name.
    pub fn entries(&self) -> Result<Vec<StateEntry>, Error> {
        self.settle()?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STATE)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (key, value) = item?;
            let (object, name) = parse_state_key(key.value())?;
            out.push(StateEntry {
                object,
                name,
                value: value.value().to_vec(),
            });
        }
        Ok(out)
    }

    fn applied_and_membership(&self) -> Result<(Option<LogId<NodeId>>, Membership), Error> {
        self.settle()?;
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok((get_applied(&meta)?, get_membership(&meta)?))
    }

    /// Applies `entries` into the memtable, and settles it once it is large. A failure drops
    /// the memtable: openraft stops the group, which restarts from `state.redb` and re-applies
    /// the log above it.
    fn apply_entries(
        db: &Database,
        memtable: &std::sync::Mutex<Memtable>,
        config: &holdfast_fsm::Config,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<Applied>, Error> {
        let mut mem = memtable::lock(memtable)?;
        let applied = Self::apply_into(db, &mut mem, config, entries).and_then(|applied| {
            if mem.bytes() >= memtable::SETTLE_BYTES {
                settle(db, &mut mem)?;
            }
            Ok(applied)
        });
        if applied.is_err() {
            mem.clear();
        }
        applied
    }

    fn apply_into(
        db: &Database,
        mem: &mut Memtable,
        config: &holdfast_fsm::Config,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<Applied>, Error> {
        let txn = db.begin_read()?;
        let mut commands_applied = match mem.commands_applied {
            Some(count) => count,
            None => get_meta(&txn.open_table(META)?, COMMANDS_APPLIED)?.unwrap_or(0),
        };
        let mut store = Tables::new(mem, txn);
        let mut responses = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut effects = Vec::new();
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Batch { commands, .. }) => {
                    for command in commands {
                        effects.extend(holdfast_fsm::apply(&mut store, config, command)?);
                    }
                    commands_applied += commands.len() as u64;
                }
                EntryPayload::Membership(membership) => {
                    store.view().memtable_mut().membership =
                        Some(Membership::new(Some(entry.log_id), membership.clone()));
                }
            }
            responses.push(Applied {
                index: LogIndex(entry.log_id.index),
                effects: effects.into(),
            });
        }
        if let Some(last) = entries.last() {
            let mem = store.view().memtable_mut();
            mem.applied = Some(last.log_id);
            mem.commands_applied = Some(commands_applied);
        }
        Ok(responses)
    }

    /// The directory of this partition's snapshot files.
    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.path()
    }

    /// Records `meta` and its file `name` (none for a checkpoint) as the current snapshot
    /// (within `txn`).
    fn record_snapshot(
        txn: &redb::WriteTransaction,
        meta: &Meta,
        name: Option<&str>,
    ) -> Result<(), Error> {
        let mut table = txn.open_table(SNAPSHOT)?;
        put_meta(
            &mut table,
            SNAPSHOT_META,
            &records::SnapshotMetaRecord::from(meta),
        )?;
        match name {
            Some(name) => put_meta(&mut table, SNAPSHOT_FILE, &name)?,
            None => {
                table.remove(SNAPSHOT_FILE)?;
            }
        }
        table.remove(SNAPSHOT_DATA)?;
        Ok(())
    }

    /// The current snapshot's metadata and file name (none for a checkpoint), if there is one.
    fn current_snapshot(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<Option<(Meta, Option<String>)>, Error> {
        let Some(meta) =
            get_meta::<records::SnapshotMetaRecord>(table, SNAPSHOT_META)?.map(Meta::from)
        else {
            return Ok(None);
        };
        Ok(Some((meta, get_meta::<String>(table, SNAPSHOT_FILE)?)))
    }

    /// A data dir of the previous release keeps its snapshot as one blob in the `snapshot`
    /// table: it is rewritten as a file once, so it is still served after the upgrade.
    fn convert_legacy_snapshot(db: &Database, dir: &SnapshotDir) -> Result<(), Error> {
        let (meta, blob) = {
            let txn = db.begin_read()?;
            let table = txn.open_table(SNAPSHOT)?;
            let meta =
                get_meta::<records::SnapshotMetaRecord>(&table, SNAPSHOT_META)?.map(Meta::from);
            let blob = table.get(SNAPSHOT_DATA)?.map(|data| data.value().to_vec());
            match (meta, blob) {
                (Some(meta), Some(blob)) => (meta, blob),
                (None, Some(_)) => {
                    // Data without metadata describes nothing openraft could use.
                    let txn = db.begin_write()?;
                    txn.open_table(SNAPSHOT)?.remove(SNAPSHOT_DATA)?;
                    txn.commit()?;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        };
        let body: snapshot::SnapshotBody = codec::decode(&blob)?;
        drop(blob);
        let name = SnapshotDir::file_name(&meta.snapshot_id);
        let temp = dir.temp_path(&name);
        let mut guard = snapshot::RemoveOnDrop::new(temp.clone());
        let file = std::fs::File::create(&temp).map_err(|source| Error::Io {
            path: temp.clone(),
            source,
        })?;
        let mut out = BufWriter::with_capacity(snapshot::IO_BUFFER, file);
        snapshot::write_legacy(
            body,
            records::SnapshotMetaRecord::from(&meta),
            &mut out,
            &temp,
        )?;
        let file = out.into_inner().map_err(|e| Error::Io {
            path: temp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| Error::Io {
            path: temp.clone(),
            source,
        })?;
        dir.rename_into_place(&temp, &name)?;
        guard.disarm();
        let txn = db.begin_write()?;
        Self::record_snapshot(&txn, &meta, Some(&name))?;
        txn.commit()?;
        dir.remove_others(Some(&name));
        tracing::info!(snapshot = %meta.snapshot_id, file = %name, "converted the previous release's snapshot to a file");
        Ok(())
    }

    /// What a snapshot taken in `table`'s transaction describes (the applied position and
    /// membership, under a new id), and the commands applied up to it.
    fn snapshot_meta(
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        seq: u64,
    ) -> Result<(Meta, u64), Error> {
        let last_log_id = get_applied(table)?;
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = Meta {
            last_log_id,
            last_membership: get_membership(table)?,
            snapshot_id,
        };
        Ok((meta, get_meta(table, COMMANDS_APPLIED)?.unwrap_or(0)))
    }

    /// Makes the applied state durable and records its position as the current snapshot, with
    /// no file: openraft may purge the log below it, and a file is written only when a peer
    /// needs one. Answers the current snapshot's metadata. Blocking.
    fn checkpoint(
        db: &Database,
        memtable: &std::sync::Mutex<Memtable>,
        dir: &SnapshotDir,
        seq: u64,
    ) -> Result<Meta, Error> {
        settle(db, &mut *memtable::lock(memtable)?)?;
        // A durable write transaction: applying waits for it, so the position read here is
        // exactly what its commit puts on disk, with every applied change before it.
        let txn = db.begin_write()?;
        let (meta, _) = Self::snapshot_meta(&txn.open_table(META)?, seq)?;
        let _publishing = dir.lock();
        let current = Self::current_snapshot(&txn.open_table(SNAPSHOT)?)?;
        if let Some((current, _)) = current
            && current.last_log_id >= meta.last_log_id
        {
            // Nothing applied since the current snapshot (already durable): it stays.
            txn.abort()?;
            return Ok(current);
        }
        Self::record_snapshot(&txn, &meta, None)?;
        txn.commit()?;
        dir.remove_others(None);
        Ok(meta)
    }

    /// The read transaction a snapshot file of the applied state as of now is written from,
    /// with the metadata it describes and the commands applied up to it.
    fn begin_file(db: &Database, seq: u64) -> Result<(redb::ReadTransaction, Meta, u64), Error> {
        let txn = db.begin_read()?;
        let (meta, commands_applied) = Self::snapshot_meta(&txn.open_table(META)?, seq)?;
        Ok((txn, meta, commands_applied))
    }

    /// Writes the state `txn` sees to the snapshot file of `meta` and makes it the current
    /// snapshot, unless a newer one was recorded meanwhile; answers the file, open for reading,
    /// and its path. Blocking.
    fn write_file(
        db: &Database,
        dir: &SnapshotDir,
        txn: redb::ReadTransaction,
        meta: &Meta,
        commands_applied: u64,
    ) -> Result<(std::fs::File, std::path::PathBuf), Error> {
        let started = Instant::now();
        let name = SnapshotDir::file_name(&meta.snapshot_id);
        let temp = dir.unique_temp_path(&name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut guard = snapshot::RemoveOnDrop::new(temp.clone());
        let file = std::fs::File::create(&temp).map_err(io(&temp))?;
        let mut out = BufWriter::with_capacity(snapshot::IO_BUFFER, file);
        let record = records::SnapshotMetaRecord::from(meta);
        let counts = snapshot::write_state(&txn, record, commands_applied, &mut out, &temp)?;
        drop(txn);
        let file = out.into_inner().map_err(|e| io(&temp)(e.into_error()))?;
        file.sync_all().map_err(io(&temp))?;
        let bytes = file.metadata().map_err(io(&temp))?.len();
        drop(file);
        // Opened before it is published, so that no later snapshot can remove it under us.
        let reader = std::fs::File::open(&temp).map_err(io(&temp))?;
        // A durable commit: the state the file was read from is on disk before openraft purges
        // the log below it. The write transaction comes before the lock, as everywhere; the file
        // gets its name only under the lock, so a checkpoint recorded meanwhile (which removes
        // every named file) cannot remove it between its rename and its record.
        let txn = db.begin_write()?;
        let _publishing = dir.lock();
        let current = Self::current_snapshot(&txn.open_table(SNAPSHOT)?)?;
        let path = match current {
            Some((current, _)) if current.last_log_id > meta.last_log_id => {
                // A newer snapshot was recorded while this one was written: the temporary file
                // goes with its guard, and the reader keeps what it opened.
                txn.abort()?;
                temp.clone()
            }
            _ => {
                let path = dir.rename_into_place(&temp, &name)?;
                guard.disarm();
                Self::record_snapshot(&txn, meta, Some(&name))?;
                txn.commit()?;
                dir.remove_others(Some(&name));
                path
            }
        };
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes,
            tables = counts.tables,
            rows = counts.rows,
            ms = started.elapsed().as_millis() as u64,
            "wrote a snapshot file"
        );
        Ok((reader, path))
    }

    /// Writes the applied state to a snapshot file now and makes it the current snapshot (what
    /// a peer behind the purged log is sent); returns it open for reading.
    pub async fn write_snapshot(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (db, memtable, dir) = (
            self.db.clone(),
            self.memtable.clone(),
            self.snapshots.clone(),
        );
        let seq = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let (meta, file) = blocking(move || {
            settle(&db, &mut *memtable::lock(&memtable)?)?;
            let (txn, meta, commands_applied) = Self::begin_file(&db, seq)?;
            let (file, path) = Self::write_file(&db, &dir, txn, &meta, commands_applied)?;
            Ok((meta, File::current(file, path)))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }

    /// Replaces the applied state with the snapshot in `file` and makes that file the current
    /// snapshot. A file received into the snapshot directory is moved into place; any other
    /// file is copied in first. Blocking.
    fn install_file(
        db: &Database,
        dir: &SnapshotDir,
        meta: &Meta,
        (file, path, guard): (std::fs::File, std::path::PathBuf, snapshot::RemoveOnDrop),
    ) -> Result<(u64, snapshot::Counts), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let ours = guard.is_armed() && path.parent() == Some(dir.path());
        let (mut file, path, mut guard) = if ours {
            file.sync_all().map_err(io(&path))?;
            (file, path, guard)
        } else {
            let mut file = file;
            dir.copy_in(&mut file, &path)?
        };
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        let bytes = file.metadata().map_err(io(&path))?.len();
        let txn = db.begin_write()?;
        let installed = snapshot::install(
            &txn,
            BufReader::with_capacity(snapshot::IO_BUFFER, &mut file),
            &path,
        )?;
        {
            let mut table = txn.open_table(META)?;
            put_applied(&mut table, meta.last_log_id.as_ref())?;
            put_membership(&mut table, &meta.last_membership)?;
            put_meta(&mut table, COMMANDS_APPLIED, &installed.commands_applied)?;
        }
        drop(file);
        let name = SnapshotDir::file_name(&meta.snapshot_id);
        dir.rename_into_place(&path, &name)?;
        guard.disarm();
        let _publishing = dir.lock();
        Self::record_snapshot(&txn, meta, Some(&name))?;
        txn.commit()?;
        dir.remove_others(Some(&name));
        Ok((bytes, installed.counts))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// A checkpoint (see [`StateMachine::checkpoint`]): one durable commit, whatever the size
    /// of the state, so openraft can purge the log often. openraft keeps only the metadata.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (db, memtable, dir) = (
            self.db.clone(),
            self.memtable.clone(),
            self.snapshots.clone(),
        );
        let seq = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let meta = blocking(move || Self::checkpoint(&db, &memtable, &dir, seq))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(File::empty(self.snapshots.path())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.applied_and_membership().map_err(sm_read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // Applying commits without fsync, so it is short CPU work: running it inline saves two
        // thread hand-offs per group commit on the acknowledgement path.
        let applied = Self::apply_entries(&self.db, &self.memtable, &self.config, &entries)
            .map_err(sm_write_err)?;
        if let (Some(effects), Some(last)) = (&self.effects, entries.last()) {
            let batch = AppliedBatch {
                through: LogIndex(last.log_id.index),
                entries: applied
                    .iter()
                    .filter(|entry| !entry.effects.is_empty())
                    .cloned()
                    .collect(),
            };
            // A closed channel means the partition actor is gone: nobody executes effects.
            let _ = effects.send(batch).await;
        }
        Ok(applied)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<File>, StorageError<NodeId>> {
        let file = self
            .snapshots
            .incoming_file()
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<File>,
    ) -> Result<(), StorageError<NodeId>> {
        let signature = meta.signature();
        let started = Instant::now();
        let parts = snapshot.into_parts().await.map_err(|e| {
            StorageIOError::write_snapshot(
                Some(signature.clone()),
                &Error::Io {
                    path: self.snapshots.path().to_path_buf(),
                    source: e,
                },
            )
        })?;
        let (db, memtable, dir, owned) = (
            self.db.clone(),
            self.memtable.clone(),
            self.snapshots.clone(),
            meta.clone(),
        );
        let (bytes, counts) = blocking(move || {
            // Held throughout: no reader sees the memtable's rows over the installed state.
            let mut mem = memtable::lock(&memtable)?;
            mem.clear();
            Self::install_file(&db, &dir, &owned, parts)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        let installed = meta.last_log_id;
        tracing::info!(
            last_log_id = ?installed,
            snapshot = %meta.snapshot_id,
            bytes,
            rows = counts.rows,
            ms = started.elapsed().as_millis() as u64,
            "installed a snapshot sent by the leader"
        );
        // The applied position jumped without entries: the leader's view of it moves along.
        if let (Some(effects), Some(last)) = (&self.effects, installed) {
            let _ = effects
                .send(AppliedBatch {
                    through: LogIndex(last.index),
                    entries: Vec::new(),
                })
                .await;
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let metadata_only = std::mem::replace(&mut self.startup_snapshot_read, false);
        let (db, memtable, dir) = (
            self.db.clone(),
            self.memtable.clone(),
            self.snapshots.clone(),
        );
        let seq = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let read = move || -> Result<Option<Snapshot<TypeConfig>>, Error> {
            // Before the directory's lock: settling takes the write transaction, which a
            // checkpoint holds while it waits for that lock.
            settle(&db, &mut *memtable::lock(&memtable)?)?;
            // Held until the file is open: a new snapshot cannot remove it in between.
            let _publishing = dir.lock();
            let txn = db.begin_read()?;
            let Some((meta, name)) = Self::current_snapshot(&txn.open_table(SNAPSHOT)?)? else {
                return Ok(None);
            };
            let Some(name) = name else {
                if metadata_only {
                    return Ok(Some(Snapshot {
                        meta,
                        snapshot: Box::new(File::empty(dir.path())),
                    }));
                }
                // A checkpoint has no file: one is written from the state as it is now (at
                // or past the checkpoint), off this thread, and its reader waits for it.
                let (state, now, commands_applied) = Self::begin_file(&db, seq)?;
                // Nothing applied since the checkpoint: the file is the checkpoint's own.
                let meta = if now.last_log_id == meta.last_log_id {
                    meta
                } else {
                    now
                };
                let path = dir.file_path(&SnapshotDir::file_name(&meta.snapshot_id));
                let (done, finished) = oneshot::channel();
                let owned = meta.clone();
                let (db, dir) = (db.clone(), dir.clone());
                tokio::task::spawn_blocking(move || {
                    let written = Self::write_file(&db, &dir, state, &owned, commands_applied);
                    let _ = done.send(written.map(|(file, _)| file));
                });
                return Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(File::writing(path, finished)),
                }));
            };
            let path = dir.file_path(&name);
            let file = std::fs::File::open(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(File::current(file, path)),
            }))
        };
        blocking(read)
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

/// Which objects a scan of an object-keyed table (state, inbox, locks, promises) visits; the
/// narrower scopes read one contiguous key range instead of the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScope<'a> {
    /// Every object of the partition.
    All,
    /// Every object of one service.
    Service(&'a str),
    /// One object.
    Object(&'a ObjectKey),
}

impl ObjectScope<'_> {
    /// The key prefix shared by every row in scope.
    fn prefix(&self) -> Vec<u8> {
        match self {
            ObjectScope::All => Vec::new(),
            ObjectScope::Service(service) => service_prefix(service),
            ObjectScope::Object(object) => object_prefix(object),
        }
    }
}

/// Which invocations a scan of an invocation-keyed table (invocations, journal) visits: ids
/// start with their partition key, so each scope is one contiguous key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationScope {
    /// Every invocation of the partition.
    All,
    /// The invocations routed by one partition key (all invocations of one object).
    PartitionKey(u64),
    /// One invocation.
    Invocation(InvocationId),
}

impl InvocationScope {
    fn prefix(&self) -> Vec<u8> {
        match self {
            InvocationScope::All => Vec::new(),
            InvocationScope::PartitionKey(key) => key.to_be_bytes().to_vec(),
            InvocationScope::Invocation(id) => id.to_bytes().to_vec(),
        }
    }
}

/// The key prefix of every object of `service` (the first part of an object prefix).
fn service_prefix(service: &str) -> Vec<u8> {
    let len = u32::try_from(service.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(service.as_bytes());
    out
}

/// Splits an object-keyed row key into its object and the bytes after the object prefix.
fn split_object(key: &[u8]) -> Result<(ObjectKey, &[u8]), Error> {
    let corrupt = || Error::CorruptKey(key.len());
    let (service, rest) = take_part(key).ok_or_else(corrupt)?;
    let (object_key, rest) = take_part(rest).ok_or_else(corrupt)?;
    Ok((ObjectKey::new(service, object_key), rest))
}

/// Reads the key layout of `keys::idempotency_key` back into its target and idempotency key.
fn parse_idempotency(key: &[u8]) -> Result<(Target, String), Error> {
    let corrupt = || Error::CorruptKey(key.len());
    let (service, rest) = take_part(key).ok_or_else(corrupt)?;
    let (handler, rest) = take_part(rest).ok_or_else(corrupt)?;
    let (object_key, rest) = match rest.split_first() {
        Some((0, rest)) => (None, rest),
        Some((1, rest)) => {
            let (object_key, rest) = take_part(rest).ok_or_else(corrupt)?;
            (Some(object_key), rest)
        }
        _ => return Err(corrupt()),
    };
    let (idempotency_key, rest) = take_part(rest).ok_or_else(corrupt)?;
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok((Target::new(service, handler, object_key), idempotency_key))
}

fn read_invocation_id(table: &'static str, bytes: &[u8]) -> Result<InvocationId, Error> {
    InvocationId::from_bytes(bytes).ok_or(Error::CorruptRecord {
        table,
        len: bytes.len(),
    })
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

fn read_outbox<M: std::ops::Deref<Target = Memtable>>(
    view: &View<M>,
) -> Result<Vec<(u64, OutboxMessage)>, Error> {
    let mut out = Vec::new();
    view.scan(slot::OUTBOX, Bound::Unbounded, |key, value| {
        let seq: [u8; 8] = key.try_into().map_err(|_| Error::CorruptKey(key.len()))?;
        out.push((u64::from_be_bytes(seq), pack::decode(value)?));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

/// Visits the rows of `table` whose key starts with `prefix` (every row for an empty prefix), in
/// key order, until `visit` breaks.
fn scan_prefix(
    table: &ReadTable,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, Error>,
) -> Result<(), Error> {
    for item in table.range(prefix..)? {
        let (key, value) = item?;
        if !key.value().starts_with(prefix) {
            break;
        }
        if visit(key.value(), value.value())?.is_break() {
            break;
        }
    }
    Ok(())
}

/// A consistent, read-only view of one partition's applied state: one redb read transaction, so
/// every scan through it sees the same applied command, however long it runs and whatever is
/// applied meanwhile. Blocking; use it from a blocking thread. Every `scan_*` visits rows in key
/// order and stops early when the visitor returns [`ControlFlow::Break`].
pub struct StateSnapshot {
    txn: redb::ReadTransaction,
}

impl StateMachine {
    /// Opens a consistent read view of the applied state, for introspection scans.
    pub fn read_snapshot(&self) -> Result<StateSnapshot, Error> {
        self.settle()?;
        Ok(StateSnapshot {
            txn: self.db.begin_read()?,
        })
    }
}

impl StateSnapshot {
    fn table(
        &self,
        definition: TableDefinition<'static, &'static [u8], &'static [u8]>,
    ) -> Result<ReadTable, Error> {
        Ok(self.txn.open_table(definition)?)
    }

    /// One invocation's status record.
    pub fn invocation(&self, id: InvocationId) -> Result<Option<Invocation>, Error> {
        let table = self.table(tables::INVOCATIONS)?;
        match table.get(id.to_bytes().as_slice())? {
            Some(bytes) => Ok(Some(pack::decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The invocation records in `scope`, by id.
    pub fn scan_invocations(
        &self,
        scope: InvocationScope,
        mut visit: impl FnMut(InvocationId, Invocation) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::INVOCATIONS)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let id = InvocationId::from_bytes(key).ok_or(Error::CorruptKey(key.len()))?;
            Ok(visit(id, pack::decode(value)?))
        })
    }

    /// The journal entries of the invocations in `scope`, by invocation then index.
    pub fn scan_journal(
        &self,
        scope: InvocationScope,
        mut visit: impl FnMut(InvocationId, EntryIndex, JournalItem) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::JOURNAL)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let corrupt = || Error::CorruptKey(key.len());
            let (id, index) = key
                .split_at_checked(InvocationId::BYTES)
                .ok_or_else(corrupt)?;
            let id = InvocationId::from_bytes(id).ok_or_else(corrupt)?;
            let index: [u8; 4] = index.try_into().map_err(|_| corrupt())?;
            let index = EntryIndex(u32::from_be_bytes(index));
            Ok(visit(id, index, pack::decode(value)?))
        })
    }

    /// The state entries in `scope` as (object, name, value), by object then name.
    pub fn scan_state(
        &self,
        scope: ObjectScope<'_>,
        mut visit: impl FnMut(&ObjectKey, &str, &[u8]) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::STATE)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let (object, name) = parse_state_key(key)?;
            Ok(visit(&object, &name, value))
        })
    }

    /// The inboxes in `scope` as (object, arrival number, waiting invocation), in arrival order
    /// per object.
    pub fn scan_inbox(
        &self,
        scope: ObjectScope<'_>,
        mut visit: impl FnMut(&ObjectKey, u64, InvocationId) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::INBOX)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let (object, seq) = split_object(key)?;
            let seq: [u8; 8] = seq.try_into().map_err(|_| Error::CorruptKey(key.len()))?;
            let id = read_invocation_id("inbox", value)?;
            Ok(visit(&object, u64::from_be_bytes(seq), id))
        })
    }

    /// The object locks in `scope` as (object, holding invocation).
    pub fn scan_locks(
        &self,
        scope: ObjectScope<'_>,
        mut visit: impl FnMut(&ObjectKey, InvocationId) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::LOCKS)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let (object, rest) = split_object(key)?;
            if !rest.is_empty() {
                return Err(Error::CorruptKey(key.len()));
            }
            Ok(visit(&object, read_invocation_id("locks", value)?))
        })
    }

    /// The idempotency index as (target, idempotency key, invocation), all of it or only the
    /// targets of one service.
    pub fn scan_idempotency(
        &self,
        service: Option<&str>,
        mut visit: impl FnMut(&Target, &str, InvocationId) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::IDEMPOTENCY)?;
        let prefix = service.map(service_prefix).unwrap_or_default();
        scan_prefix(&table, &prefix, |key, value| {
            let (target, idempotency_key) = parse_idempotency(key)?;
            let id = read_invocation_id("idempotency", value)?;
            Ok(visit(&target, &idempotency_key, id))
        })
    }

    /// The workflow promises in `scope` as (workflow, promise name, promise).
    pub fn scan_promises(
        &self,
        scope: ObjectScope<'_>,
        mut visit: impl FnMut(&ObjectKey, &str, Promise) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::PROMISES)?;
        scan_prefix(&table, &scope.prefix(), |key, value| {
            let (object, name) = parse_state_key(key)?;
            Ok(visit(&object, &name, pack::decode(value)?))
        })
    }

    /// What this partition keeps of every limit it is home of, as (name, state, when its oldest
    /// waiting request asked).
    pub fn scan_limit_states(
        &self,
        mut visit: impl FnMut(&str, holdfast_fsm::state::LimitState, Option<u64>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::LIMITS)?;
        let queue = self.table(tables::LIMIT_QUEUE)?;
        scan_prefix(&table, &[], |key, value| {
            if key == tables::APPLIED_LIMITS {
                return Ok(ControlFlow::Continue(()));
            }
            let name = std::str::from_utf8(key).map_err(|_| Error::CorruptKey(key.len()))?;
            let state: holdfast_fsm::state::LimitState = pack::decode(value)?;
            let head = crate::keys::limit_queue_key(name, state.head);
            let oldest = match queue.get(head.as_slice())? {
                Some(row) if state.queued() > 0 => {
                    Some(pack::decode::<holdfast_fsm::state::Queued>(row.value())?.at_ms)
                }
                _ => None,
            };
            Ok(visit(name, state, oldest))
        })
    }

    /// The record of every schedule this partition fires, as (schedule name, record).
    pub fn scan_schedule_runs(
        &self,
        mut visit: impl FnMut(&str, holdfast_fsm::state::ScheduleRun) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let table = self.table(tables::SCHEDULES)?;
        scan_prefix(&table, &[], |key, value| {
            let name = std::str::from_utf8(key).map_err(|_| Error::CorruptKey(key.len()))?;
            Ok(visit(name, pack::decode(value)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_fsm::Store;
    use holdfast_fsm::state::Promise;
    use holdfast_types::Timer;

    /// A snapshot file read back as the previous release's blob.
    fn legacy_body(snapshot: &Snapshot<TypeConfig>) -> snapshot::SnapshotBody {
        let path = snapshot.snapshot.path();
        let file = std::fs::File::open(path).expect("open snapshot file");
        snapshot::to_legacy(file, path).expect("read snapshot file")
    }

    /// `bytes` received into a new incoming file of `sm`, as the transport does.
    async fn received(sm: &mut StateMachine, bytes: &[u8]) -> Box<File> {
        use tokio::io::AsyncWriteExt;
        let mut incoming = sm.begin_receiving_snapshot().await.expect("incoming");
        incoming.write_all(bytes).await.expect("write");
        incoming.shutdown().await.expect("shutdown");
        incoming
    }

    /// The current snapshot, which must exist.
    async fn current_snapshot(sm: &mut StateMachine) -> Snapshot<TypeConfig> {
        sm.get_current_snapshot()
            .await
            .expect("read")
            .expect("present")
    }

    /// Every byte of a snapshot's data.
    async fn read_all(mut data: Box<File>) -> Vec<u8> {
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut *data, &mut bytes)
            .await
            .expect("read the snapshot");
        bytes
    }

    /// The names of the files in `sm`'s snapshot directory, sorted.
    fn snapshot_files(sm: &StateMachine) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(sm.snapshot_dir())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    fn open(dir: &tempfile::TempDir, name: &str) -> StateMachine {
        StateMachine::open(&dir.path().join(name)).expect("open")
    }

    fn id(nonce: u128) -> InvocationId {
        InvocationId {
            partition_key: 3,
            nonce,
        }
    }

    fn sleep(at: u64, nonce: u128) -> TimerKey {
        TimerKey::new(
            at,
            Timer::Sleep {
                id: id(nonce),
                index: EntryIndex(2),
            },
        )
    }

    /// Runs `work` against the store tables, as applying does, then settles the memtable.
    fn write<T>(sm: &StateMachine, work: impl FnOnce(&mut Tables<'_>) -> T) -> T {
        let mut mem = memtable::lock(&sm.memtable).expect("memtable");
        let out = {
            let mut tables = Tables::new(&mut mem, sm.db.begin_read().expect("read"));
            work(&mut tables)
        };
        settle(&sm.db, &mut mem).expect("settle");
        out
    }

    #[test]
    fn limits_and_their_queues_and_holders_are_kept_as_written() {
        use holdfast_fsm::state::{LimitState, Queued};
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let limit = holdfast_types::Limit {
            name: "api".into(),
            service: "S".into(),
            handler: None,
            key_prefix: None,
            max_concurrency: Some(2),
            rate: None,
        };
        let written = write(&sm, |t| {
            let before = t.get_limits()?;
            t.put_limits(std::slice::from_ref(&limit))?;
            let after = t.get_limits()?;
            t.put_limit_state(
                "api",
                &LimitState {
                    running: 1,
                    tail: 1,
                    ..LimitState::default()
                },
            )?;
            let row = Queued {
                id: id(1),
                epoch: holdfast_types::Epoch(1),
                at_ms: 7,
            };
            t.put_limit_queued("api", 0, &row)?;
            t.set_limit_held("api", id(2), 1)?;
            t.set_limit_held("other", id(2), 3)?;
            Ok::<_, Error>((before, after))
        })
        .expect("write");
        assert_eq!(written, (Vec::new(), vec![limit.clone()]));
        assert_eq!(
            sm.applied_limits().expect("read"),
            std::slice::from_ref(&limit)
        );
        // A later batch reads what the first wrote; clearing one limit's holders keeps the other's.
        let read = write(&sm, |t| {
            let limits = t.get_limits()?;
            let held = (t.limit_held("api", id(2))?, t.limit_held("api", id(3))?);
            t.clear_limit_held("api")?;
            let cleared = (t.limit_held("api", id(2))?, t.limit_held("other", id(2))?);
            Ok::<_, Error>((limits, held, cleared, t.get_limit_queued("api", 0)?))
        })
        .expect("read");
        assert_eq!(read.0, [limit]);
        assert_eq!(read.1, (1, 0));
        assert_eq!(read.2, (0, 3));
        assert_eq!(read.3.map(|row| row.at_ms), Some(7));
        let mut states = Vec::new();
        sm.read_snapshot()
            .expect("snapshot")
            .scan_limit_states(|name, state, oldest| {
                states.push((name.to_owned(), state.running, oldest));
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(states, [("api".to_owned(), 1, Some(7))]);
    }

    #[test]
    fn journal_entries_are_read_one_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let awakeable = JournalItem::new(holdfast_protocol::Entry::Awakeable(
            holdfast_protocol::message::Awakeable { result: None },
        ));
        write(&sm, |t| t.put_journal(id(1), EntryIndex(2), &awakeable)).expect("put");
        assert_eq!(
            sm.journal_entry(id(1), EntryIndex(2)).expect("read"),
            Some(awakeable)
        );
        assert_eq!(sm.journal_entry(id(1), EntryIndex(3)).expect("read"), None);
        assert_eq!(sm.journal_entry(id(2), EntryIndex(2)).expect("read"), None);
    }

    #[test]
    fn timers_come_back_in_fire_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let timers = [
            sleep(300, 1),
            TimerKey::new(100, Timer::Purge { id: id(9) }),
            TimerKey::new(200, Timer::Start { id: id(4) }),
            sleep(100, 2),
        ];
        write(&sm, |t| {
            for timer in &timers {
                t.put_timer(timer).expect("put");
            }
        });
        let mut expected = timers.to_vec();
        expected.sort();
        assert_eq!(sm.timers_after(None, 100).expect("read"), expected);
        assert_eq!(
            expected.iter().map(|t| t.fire_at_ms).collect::<Vec<_>>(),
            [100, 100, 200, 300]
        );
        assert_eq!(sm.pending_timers().expect("count"), 4);
    }

    #[test]
    fn paging_with_after_visits_every_timer_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let timers: Vec<TimerKey> = (0..10u64)
            .map(|n| sleep(1_000 + n * 10, u128::from(n)))
            .collect();
        write(&sm, |t| {
            for timer in timers.iter().rev() {
                t.put_timer(timer).expect("put");
            }
        });
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = sm.timers_after(after.as_ref(), 3).expect("page");
            assert!(page.len() <= 3);
            let Some(last) = page.last().copied() else {
                break;
            };
            seen.extend(page);
            after = Some(last);
        }
        assert_eq!(seen, timers);
        assert!(sm.timers_after(None, 0).expect("empty").is_empty());
        // `after` need not be stored: paging resumes at the next later key.
        let between = TimerKey::new(1_045, Timer::Start { id: id(0) });
        assert_eq!(
            sm.timers_after(Some(&between), 2).expect("page"),
            timers[5..7]
        );
    }

    #[test]
    fn timers_put_has_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let timer = sleep(50, 1);
        let other = sleep(50, 2);
        write(&sm, |t| {
            assert!(!t.has_timer(&timer).expect("has"));
            t.put_timer(&timer).expect("put");
            t.put_timer(&timer).expect("put again");
            assert!(t.has_timer(&timer).expect("has"));
            assert!(!t.has_timer(&other).expect("has"));
        });
        assert_eq!(sm.pending_timers().expect("count"), 1);
        write(&sm, |t| {
            t.delete_timer(&other).expect("delete absent");
            t.delete_timer(&timer).expect("delete");
            assert!(!t.has_timer(&timer).expect("has"));
        });
        assert_eq!(sm.pending_timers().expect("count"), 0);
        assert!(sm.timers_after(None, 10).expect("read").is_empty());
    }

    #[test]
    fn promises_are_kept_per_workflow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let run = ObjectKey::new("Signup", "alice");
        let other = ObjectKey::new("Signup", "alicia");
        let pending = Promise::Pending {
            waiters: vec![(id(1), EntryIndex(4))],
        };
        write(&sm, |t| {
            t.put_promise(&run, "email", &pending).expect("put");
            t.put_promise(&run, "sms", &pending).expect("put");
            t.put_promise(&other, "email", &pending).expect("put");
            assert_eq!(
                t.get_promise(&run, "email").expect("get"),
                Some(pending.clone())
            );
            assert_eq!(t.get_promise(&run, "fax").expect("get"), None);
            t.delete_promises(&run).expect("delete");
            assert_eq!(t.get_promise(&run, "email").expect("get"), None);
            assert_eq!(t.get_promise(&run, "sms").expect("get"), None);
            assert_eq!(
                t.get_promise(&other, "email").expect("get"),
                Some(pending.clone())
            );
        });
    }

    #[test]
    fn snapshot_scans_read_each_scope_as_one_key_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let cart = |key: &str| ObjectKey::new("Cart", key);
        let target = Target::new("Cart", "add", Some("a".to_owned()));
        write(&sm, |t| {
            t.put_state(&cart("a"), "x", b"1").expect("put");
            t.put_state(&cart("a"), "y", b"2").expect("put");
            t.put_state(&cart("ab"), "x", b"3").expect("put");
            t.put_state(&ObjectKey::new("Carts", "a"), "x", b"4")
                .expect("put");
            t.inbox_push(&cart("a"), id(1)).expect("push");
            t.inbox_push(&cart("a"), id(2)).expect("push");
            t.put_lock(&cart("a"), id(3)).expect("lock");
            t.put_idempotency(&target, "k1", id(4)).expect("idem");
            t.put_idempotency(&Target::new("Greeter", "hi", None), "k2", id(5))
                .expect("idem");
            t.put_promise(&cart("a"), "p", &Promise::Pending { waiters: vec![] })
                .expect("promise");
        });
        let snapshot = sm.read_snapshot().expect("snapshot");
        let state = |scope| {
            let mut out = Vec::new();
            snapshot
                .scan_state(scope, |object, name, value| {
                    out.push((object.key.clone(), name.to_owned(), value.to_vec()));
                    ControlFlow::Continue(())
                })
                .expect("scan");
            out
        };
        assert_eq!(state(ObjectScope::All).len(), 4);
        assert_eq!(state(ObjectScope::Service("Cart")).len(), 3);
        assert_eq!(
            state(ObjectScope::Object(&cart("a"))),
            [
                ("a".to_owned(), "x".to_owned(), b"1".to_vec()),
                ("a".to_owned(), "y".to_owned(), b"2".to_vec())
            ]
        );
        let mut inbox = Vec::new();
        snapshot
            .scan_inbox(ObjectScope::Object(&cart("a")), |object, seq, waiting| {
                inbox.push((object.clone(), seq, waiting));
                ControlFlow::Continue(())
            })
            .expect("inbox");
        assert_eq!(inbox, [(cart("a"), 0, id(1)), (cart("a"), 1, id(2))]);
        let mut locks = Vec::new();
        snapshot
            .scan_locks(ObjectScope::All, |object, holder| {
                locks.push((object.clone(), holder));
                ControlFlow::Continue(())
            })
            .expect("locks");
        assert_eq!(locks, [(cart("a"), id(3))]);
        let mut keys = Vec::new();
        snapshot
            .scan_idempotency(None, |target, key, owner| {
                keys.push((target.clone(), key.to_owned(), owner));
                ControlFlow::Continue(())
            })
            .expect("idempotency");
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&(target.clone(), "k1".to_owned(), id(4))));
        let mut only_cart = 0;
        snapshot
            .scan_idempotency(Some("Cart"), |_, _, _| {
                only_cart += 1;
                ControlFlow::Continue(())
            })
            .expect("idempotency");
        assert_eq!(only_cart, 1);
        let mut promises = Vec::new();
        snapshot
            .scan_promises(ObjectScope::Service("Cart"), |object, name, promise| {
                promises.push((object.clone(), name.to_owned(), promise));
                ControlFlow::Continue(())
            })
            .expect("promises");
        assert_eq!(promises.len(), 1);
        // A visitor that breaks stops the scan.
        let mut visited = 0;
        snapshot
            .scan_state(ObjectScope::All, |_, _, _| {
                visited += 1;
                ControlFlow::Break(())
            })
            .expect("scan");
        assert_eq!(visited, 1);
    }

    #[test]
    fn a_snapshot_does_not_see_later_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let item = JournalItem::new(holdfast_protocol::Entry::Awakeable(
            holdfast_protocol::message::Awakeable { result: None },
        ));
        let other = InvocationId {
            partition_key: 4,
            nonce: 1,
        };
        write(&sm, |t| {
            t.put_journal(id(1), EntryIndex(0), &item).expect("put");
            t.put_journal(id(1), EntryIndex(1), &item).expect("put");
            t.put_journal(other, EntryIndex(0), &item).expect("put");
        });
        let snapshot = sm.read_snapshot().expect("snapshot");
        write(&sm, |t| {
            t.put_journal(id(2), EntryIndex(0), &item).expect("put")
        });
        let journal = |scope| {
            let mut out = Vec::new();
            snapshot
                .scan_journal(scope, |owner, index, _| {
                    out.push((owner, index.0));
                    ControlFlow::Continue(())
                })
                .expect("scan");
            out
        };
        assert_eq!(journal(InvocationScope::All).len(), 3);
        assert_eq!(
            journal(InvocationScope::Invocation(id(1))),
            [(id(1), 0), (id(1), 1)]
        );
        assert_eq!(journal(InvocationScope::PartitionKey(4)), [(other, 0)]);
        assert_eq!(journal(InvocationScope::PartitionKey(3)).len(), 2);
        let mut fresh = 0;
        sm.read_snapshot()
            .expect("snapshot")
            .scan_journal(InvocationScope::PartitionKey(3), |_, _, _| {
                fresh += 1;
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(fresh, 3);
    }

    #[test]
    fn a_weak_handle_does_not_keep_the_database_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sm = open(&dir, "state.redb");
        let weak = sm.downgrade();
        write(&sm, |t| t.put_timer(&sleep(1, 1)).expect("put"));
        let upgraded = weak.upgrade().expect("still open");
        assert_eq!(upgraded.pending_timers().expect("count"), 1);
        drop((sm, upgraded));
        assert!(weak.upgrade().is_none());
        let reopened = open(&dir, "state.redb");
        assert_eq!(reopened.pending_timers().expect("count"), 1);
    }

    /// Applies an invocation of `Counter/add` on `key` that calls out and suspends on the call.
    async fn suspended_invocation(sm: &mut StateMachine, key: &str, first_index: u64) {
        let target = Target::new("Counter", "add", Some(key.to_owned()));
        let id = InvocationId::new(&target, 1);
        let request = holdfast_types::InvocationRequest {
            id,
            target,
            kind: holdfast_types::HandlerKind::Exclusive,
            argument: holdfast_protocol::Payload::from(&b"1"[..]),
            headers: Vec::new(),
            source: holdfast_types::Source::Ingress,
            idempotency_key: None,
            retention_ms: 100,
            response: true,
            at_ms: 5,
            deployment: None,
            retry: None,
            secret: 0,
            execute_at_ms: None,
            trace: None,
        };
        let call = holdfast_protocol::Entry::Call(holdfast_protocol::message::Call {
            handler: "greet".into(),
            headers: Vec::new(),
            idempotency_key: None,
            key: None,
            parameter: holdfast_protocol::Payload::from(&b"p"[..]),
            result: None,
            service: "Greeter".into(),
        });
        let commands = [
            holdfast_types::Command::Invoke(Box::new(request)),
            holdfast_types::Command::JournalAppend {
                id,
                epoch: holdfast_types::Epoch(1),
                index: EntryIndex(1),
                entry: call,
                ack: false,
                callee_kind: None,
                at_ms: 6,
                callee_retry: None,
            },
            holdfast_types::Command::AttemptEnded {
                id,
                epoch: holdfast_types::Epoch(1),
                ending: holdfast_types::Ending::Suspended {
                    waiting: vec![EntryIndex(1)],
                },
                at_ms: 7,
            },
        ];
        let entries: Vec<_> = commands
            .into_iter()
            .zip(first_index..)
            .map(|(command, index)| Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Batch::new(vec![command])),
            })
            .collect();
        sm.apply(entries).await.expect("apply");
    }

    #[tokio::test]
    async fn a_panic_while_the_applied_state_is_held_stops_the_machine_until_it_is_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        assert_eq!(sm.suspended_invocations().expect("count"), 1);
        // Applied in memory, not yet in state.redb: a panic now must not drop it unnoticed.
        suspended_invocation(&mut sm, "b", 4).await;
        let held = sm.memtable.clone();
        let panicked = std::thread::spawn(move || {
            let _mem = memtable::lock(&held).expect("lock");
            panic!("a reader failed while holding the applied state");
        })
        .join();
        assert!(panicked.is_err());
        assert!(matches!(
            sm.suspended_invocations(),
            Err(Error::MemtablePoisoned)
        ));
        let applied = sm.applied_state().await;
        assert!(applied.is_err(), "{applied:?}");
        let next = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), 7),
            payload: EntryPayload::Normal(Batch::new(vec![holdfast_types::Command::SetState {
                object: ObjectKey::new("Counter", "c"),
                name: "n".into(),
                value: b"1".to_vec(),
            }])),
        };
        let more = sm.apply(vec![next]).await.map(|_| ());
        assert!(more.is_err(), "applied over uncertain state");
        let snapshot = sm.write_snapshot().await;
        assert!(
            snapshot.is_err(),
            "a snapshot of uncertain state was written"
        );
        drop(sm);
        // The restart's view: what was settled, and the applied id it describes (openraft
        // applies the log above it again).
        let reopened = open(&dir, "state.redb");
        let (applied, _) = reopened.clone().applied_state().await.expect("applied");
        assert!(applied.is_some_and(|id| id.index < 6), "{applied:?}");
    }

    #[tokio::test]
    async fn a_database_without_the_suspended_index_gets_it_built_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        suspended_invocation(&mut sm, "b", 4).await;
        assert_eq!(sm.suspended_invocations().expect("count"), 2);
        // What a release before the index wrote: the same state, no index table.
        let txn = sm.db.begin_write().expect("begin");
        assert!(txn.delete_table(tables::SUSPENDED).expect("delete"));
        txn.commit().expect("commit");
        drop(sm);
        let reopened = open(&dir, "state.redb");
        assert_eq!(reopened.suspended_invocations().expect("count"), 2);
    }

    #[tokio::test]
    async fn a_snapshot_without_the_suspended_index_gets_it_built_on_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = open(&dir, "source.redb");
        suspended_invocation(&mut source, "a", 1).await;
        let snapshot = source.write_snapshot().await.expect("snapshot");
        // What the previous release sent: one blob, here without the index table.
        let mut body = legacy_body(&snapshot);
        body.tables
            .retain(|(name, _)| name != tables::SUSPENDED.name());
        let old = codec::encode(&body).expect("encode");

        let mut target = open(&dir, "target.redb");
        suspended_invocation(&mut target, "z", 1).await;
        suspended_invocation(&mut target, "y", 4).await;
        let incoming = received(&mut target, &old).await;
        target
            .install_snapshot(&snapshot.meta, incoming)
            .await
            .expect("install");
        assert_eq!(target.suspended_invocations().expect("count"), 1);
    }

    #[tokio::test]
    async fn snapshots_carry_timers_and_promises() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = open(&dir, "source.redb");
        let target = open(&dir, "target.redb");
        let run = ObjectKey::new("Signup", "bob");
        let promise = Promise::Pending {
            waiters: vec![(id(7), EntryIndex(1))],
        };
        let timers = [sleep(10, 1), TimerKey::new(20, Timer::Purge { id: id(2) })];
        write(&source, |t| {
            for timer in &timers {
                t.put_timer(timer).expect("put");
            }
            t.put_promise(&run, "done", &promise).expect("put");
        });
        let stale = sleep(5, 99);
        write(&target, |t| t.put_timer(&stale).expect("put"));

        let snapshot = source.write_snapshot().await.expect("snapshot");
        let mut installing = target.clone();
        installing
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");

        assert_eq!(target.timers_after(None, 10).expect("read"), timers);
        assert_eq!(target.pending_timers().expect("count"), 2);
        let read = write(&target, |t| t.get_promise(&run, "done").expect("get"));
        assert_eq!(read, Some(promise));
    }

    #[tokio::test]
    async fn a_new_snapshot_file_replaces_the_older_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        assert_eq!(sm.snapshot_dir(), dir.path().join("snapshots"));
        assert!(sm.get_current_snapshot().await.expect("read").is_none());
        suspended_invocation(&mut sm, "a", 1).await;
        let first = sm.write_snapshot().await.expect("snapshot");
        let first_name = SnapshotDir::file_name(&first.meta.snapshot_id);
        assert_eq!(snapshot_files(&sm), std::slice::from_ref(&first_name));
        assert!(first.snapshot.path().ends_with(&first_name));
        let bytes = std::fs::read(first.snapshot.path()).expect("read");
        assert!(bytes.starts_with(&snapshot::MAGIC), "not the framed format");

        suspended_invocation(&mut sm, "b", 4).await;
        let second = sm.write_snapshot().await.expect("snapshot");
        assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
        let second_name = SnapshotDir::file_name(&second.meta.snapshot_id);
        assert_eq!(snapshot_files(&sm), [second_name]);
        // A handle to the replaced file still reads it whole.
        let mut old = first.snapshot;
        let mut again = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut *old, &mut again)
            .await
            .expect("read the removed file");
        assert_eq!(again, bytes);

        let current = current_snapshot(&mut sm).await;
        assert_eq!(current.meta, second.meta);
        // The record names the file: it survives reopening.
        drop((sm, current, second.snapshot));
        let mut reopened = open(&dir, "state.redb");
        let current = current_snapshot(&mut reopened).await;
        assert_eq!(current.meta, second.meta);
    }

    #[tokio::test]
    async fn a_checkpoint_writes_no_file_until_a_peer_needs_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        drop(sm.write_snapshot().await.expect("an older file"));
        suspended_invocation(&mut sm, "b", 4).await;
        let applied = |sm: &StateMachine| sm.summary().expect("summary").applied;
        let checkpoint = sm.build_snapshot().await.expect("checkpoint");
        assert_eq!(
            checkpoint.meta.last_log_id.map(|id| LogIndex(id.index)),
            applied(&sm)
        );
        assert!(snapshot_files(&sm).is_empty(), "the older file was kept");

        // openraft's first read, when the group starts: the metadata, and no file is written.
        let startup = current_snapshot(&mut sm).await;
        assert_eq!(startup.meta, checkpoint.meta);
        let bytes = read_all(startup.snapshot).await;
        assert!(bytes.is_empty());
        assert!(snapshot_files(&sm).is_empty());

        // Applied past the checkpoint, then a peer needs a snapshot: it is written from the
        // state as it is now, and describes that position.
        suspended_invocation(&mut sm, "c", 7).await;
        let sent = current_snapshot(&mut sm).await;
        assert!(sent.meta.last_log_id > checkpoint.meta.last_log_id);
        assert_eq!(
            sent.meta.last_log_id.map(|id| LogIndex(id.index)),
            applied(&sm)
        );
        let mut target = open(&dir, "target.redb");
        target
            .install_snapshot(&sent.meta, sent.snapshot)
            .await
            .expect("install");
        assert_eq!(target.suspended_invocations().expect("count"), 3);
        assert_eq!(
            target.summary().expect("summary"),
            sm.summary().expect("summary")
        );

        // The written file is now the current snapshot: served again as it is, and kept by a
        // checkpoint with nothing applied since; a checkpoint further on removes it.
        assert_eq!(snapshot_files(&sm).len(), 1);
        let again = current_snapshot(&mut sm).await;
        assert_eq!(again.meta, sent.meta);
        assert_eq!(
            sm.build_snapshot().await.expect("checkpoint").meta,
            sent.meta
        );
        assert_eq!(snapshot_files(&sm).len(), 1);
        suspended_invocation(&mut sm, "d", 10).await;
        let later = sm.build_snapshot().await.expect("checkpoint");
        assert!(later.meta.last_log_id > sent.meta.last_log_id);
        assert!(snapshot_files(&sm).is_empty());
        // The handle read before still reads its (removed) file whole.
        let served = read_all(again.snapshot).await;
        assert!(served.starts_with(&snapshot::MAGIC));

        // The record survives reopening: a group starting again sees the checkpoint.
        drop((sm, target));
        let mut reopened = open(&dir, "state.redb");
        let current = current_snapshot(&mut reopened).await;
        assert_eq!(current.meta, later.meta);
    }

    #[tokio::test]
    async fn a_checkpoint_recorded_while_a_file_is_written_leaves_a_consistent_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        let snapshots = sm.snapshots.clone();
        let recorded = |sm: &StateMachine| {
            let txn = sm.db.begin_read().expect("read");
            StateMachine::current_snapshot(&txn.open_table(SNAPSHOT).expect("table"))
                .expect("record")
                .expect("present")
        };

        // A checkpoint at the same position lands while the file is written: the file is
        // recorded, and it exists under the recorded name.
        sm.settle().expect("settle");
        let (txn, meta, commands) = StateMachine::begin_file(&sm.db, 100).expect("begin");
        StateMachine::checkpoint(&sm.db, &sm.memtable, &snapshots, 101).expect("checkpoint");
        let (_, path) =
            StateMachine::write_file(&sm.db, &snapshots, txn, &meta, commands).expect("write");
        let (current, name) = recorded(&sm);
        assert_eq!(current, meta);
        let name = name.expect("a file is recorded");
        assert_eq!(path, sm.snapshot_dir().join(&name));
        assert!(path.exists(), "the recorded file {name} is missing");
        assert_eq!(snapshot_files(&sm), [name]);

        // A checkpoint further on lands while a file is written: the checkpoint stays, and no
        // file is left behind, yet the writer's reader has the whole file.
        sm.settle().expect("settle");
        let (txn, meta, commands) = StateMachine::begin_file(&sm.db, 102).expect("begin");
        suspended_invocation(&mut sm, "b", 4).await;
        let later =
            StateMachine::checkpoint(&sm.db, &sm.memtable, &snapshots, 103).expect("checkpoint");
        let (mut reader, _) =
            StateMachine::write_file(&sm.db, &snapshots, txn, &meta, commands).expect("write");
        assert_eq!(recorded(&sm), (later, None));
        assert!(snapshot_files(&sm).is_empty(), "{:?}", snapshot_files(&sm));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut bytes).expect("read");
        assert!(bytes.starts_with(&snapshot::MAGIC));
    }

    #[tokio::test]
    async fn after_a_restart_a_checkpoint_is_written_to_a_file_for_a_peer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        let checkpoint = sm.build_snapshot().await.expect("checkpoint");
        drop(sm);
        let mut sm = open(&dir, "state.redb");
        let startup = current_snapshot(&mut sm).await;
        assert_eq!(startup.meta, checkpoint.meta);
        // Two peers need it at once: two writers of the same file.
        let other = current_snapshot(&mut sm).await;
        let sent = current_snapshot(&mut sm).await;
        assert_eq!(sent.meta, checkpoint.meta);
        assert_eq!(other.meta, checkpoint.meta);
        assert!(read_all(other.snapshot).await.starts_with(&snapshot::MAGIC));
        let mut bytes = Vec::new();
        let mut data = sent.snapshot;
        tokio::io::AsyncSeekExt::seek(&mut *data, std::io::SeekFrom::End(0))
            .await
            .expect("seek to the end");
        tokio::io::AsyncSeekExt::seek(&mut *data, std::io::SeekFrom::Start(0))
            .await
            .expect("seek back");
        tokio::io::AsyncReadExt::read_to_end(&mut *data, &mut bytes)
            .await
            .expect("read the written file");
        assert!(bytes.starts_with(&snapshot::MAGIC));
    }

    #[tokio::test]
    async fn a_snapshot_of_the_previous_release_is_converted_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = open(&dir, "state.redb");
        suspended_invocation(&mut source, "a", 1).await;
        write(&source, |t| t.put_timer(&sleep(10, 1)).expect("put"));
        let built = source.write_snapshot().await.expect("snapshot");
        // What the previous release left: the blob and its metadata in the table, no file.
        let blob = codec::encode(&legacy_body(&built)).expect("encode");
        {
            let txn = source.db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(SNAPSHOT).expect("table");
                table.remove(SNAPSHOT_FILE).expect("remove");
                table
                    .insert(SNAPSHOT_DATA, blob.as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let dir_path = source.snapshot_dir().to_path_buf();
        drop((source, built.snapshot));
        std::fs::remove_dir_all(&dir_path).expect("remove the snapshot directory");

        let mut upgraded = open(&dir, "state.redb");
        let name = SnapshotDir::file_name(&built.meta.snapshot_id);
        assert_eq!(snapshot_files(&upgraded), [name]);
        {
            let txn = upgraded.db.begin_read().expect("begin");
            let table = txn.open_table(SNAPSHOT).expect("table");
            assert!(
                table.get(SNAPSHOT_DATA).expect("get").is_none(),
                "blob kept"
            );
        }
        let current = current_snapshot(&mut upgraded).await;
        assert_eq!(current.meta, built.meta);

        // The converted file installs like a built one.
        let mut target = open(&dir, "target.redb");
        target
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .expect("install");
        assert_eq!(target.suspended_invocations().expect("count"), 1);
        assert_eq!(
            target.timers_after(None, 10).expect("timers"),
            [sleep(10, 1)]
        );
        assert_eq!(
            target.summary().expect("summary"),
            upgraded.summary().expect("summary")
        );
        // And the old blob itself still installs when a peer of the previous release sends it.
        let mut other = open(&dir, "other.redb");
        let incoming = received(&mut other, &blob).await;
        other
            .install_snapshot(&built.meta, incoming)
            .await
            .expect("install the blob");
        assert_eq!(
            other.timers_after(None, 10).expect("timers"),
            [sleep(10, 1)]
        );
        let served = current_snapshot(&mut other).await;
        assert_eq!(served.meta, built.meta);
    }

    #[tokio::test]
    async fn leftovers_of_a_crash_are_removed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        suspended_invocation(&mut sm, "a", 1).await;
        let built = sm.write_snapshot().await.expect("snapshot");
        let name = SnapshotDir::file_name(&built.meta.snapshot_id);
        // A crash mid-receive (the file is never dropped), mid-build, and between a rename and
        // its record.
        let incoming = received(&mut sm, b"partial").await;
        let incoming_path = incoming.path().to_path_buf();
        std::mem::forget(incoming);
        std::fs::write(sm.snapshot_dir().join("T9-N9-99-0.snap.tmp"), b"x").expect("write");
        std::fs::write(sm.snapshot_dir().join("T9-N9-99-0.snap"), b"x").expect("write");
        assert!(incoming_path.exists());
        assert_eq!(snapshot_files(&sm).len(), 4);
        drop((sm, built.snapshot));

        let mut reopened = open(&dir, "state.redb");
        assert_eq!(snapshot_files(&reopened), [name]);
        let current = current_snapshot(&mut reopened).await;
        assert_eq!(current.meta, built.meta);
    }

    #[tokio::test]
    async fn a_received_file_that_is_not_installed_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(&dir, "state.redb");
        let incoming = received(&mut sm, b"abandoned").await;
        let path = incoming.path().to_path_buf();
        assert!(path.starts_with(sm.snapshot_dir()), "{}", path.display());
        assert!(path.exists());
        drop(incoming);
        assert!(!path.exists());
        assert!(snapshot_files(&sm).is_empty());
    }

    #[tokio::test]
    async fn a_truncated_snapshot_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = open(&dir, "source.redb");
        suspended_invocation(&mut source, "a", 1).await;
        let built = source.write_snapshot().await.expect("snapshot");
        let bytes = std::fs::read(built.snapshot.path()).expect("read");

        let mut target = open(&dir, "target.redb");
        suspended_invocation(&mut target, "z", 1).await;
        suspended_invocation(&mut target, "y", 4).await;
        let before = target.summary().expect("summary");
        for cut in [1, 7, bytes.len() / 2, bytes.len() - 3] {
            let incoming = received(&mut target, &bytes[..cut]).await;
            let path = incoming.path().to_path_buf();
            let refused = target.install_snapshot(&built.meta, incoming).await;
            assert!(refused.is_err(), "a file cut at {cut} bytes was installed");
            assert!(!path.exists(), "the refused file was kept");
        }
        assert_eq!(target.summary().expect("summary"), before);
        assert_eq!(target.suspended_invocations().expect("count"), 2);
        assert!(target.get_current_snapshot().await.expect("read").is_none());
        assert!(snapshot_files(&target).is_empty());
    }

    #[test]
    fn snapshot_file_names_stay_inside_the_directory() {
        assert_eq!(SnapshotDir::file_name("T1-N2-30-0"), "T1-N2-30-0.snap");
        assert_eq!(
            SnapshotDir::file_name("../../etc/passwd"),
            "_.._.._etc_passwd.snap"
        );
        assert_eq!(SnapshotDir::file_name(""), "_.snap");
        assert_eq!(SnapshotDir::file_name("incoming-1"), "_incoming-1.snap");
        let long = "x".repeat(1000);
        assert_eq!(SnapshotDir::file_name(&long).len(), 128 + ".snap".len());
    }
}
