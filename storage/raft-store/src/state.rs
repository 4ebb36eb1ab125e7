//! The state-machine store: the applied state of one partition in `state.redb`.
//!
//! Each `apply` call is one redb transaction committed without fsync, so the applied log id and the
//! state it describes always move together; [`StateMachine::flush`] makes them durable. A crash
//! loses at most the unflushed tail, which openraft re-applies from the log.

use crate::error::blocking;
use crate::keys::{object_prefix, parse_state_key, state_key};
use crate::{Applied, Batch, Error, TypeConfig};
use holdfast_types::{LogIndex, ObjectKey, codec};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const COMMANDS_APPLIED: &str = "commands_applied";
const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type SnapshotParts = (Option<LogId<NodeId>>, Membership, Vec<u8>);

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

/// A snapshot's payload: the whole applied state.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    state: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    commands_applied: u64,
}

/// Handle to a partition's applied state; clones share the same database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    snapshots_built: Arc<AtomicU64>,
}

/// Adapts a redb state table to the pure state machine's [`holdfast_fsm::Store`].
struct StateTable<'a, 't> {
    table: &'a mut Table<'t, &'static [u8], &'static [u8]>,
}

impl holdfast_fsm::Store for StateTable<'_, '_> {
    type Error = Error;

    fn get_state(&self, object: &ObjectKey, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let key = state_key(object, name);
        Ok(self.table.get(key.as_slice())?.map(|v| v.value().to_vec()))
    }

    fn put_state(&mut self, object: &ObjectKey, name: &str, value: &[u8]) -> Result<(), Error> {
        self.table
            .insert(state_key(object, name).as_slice(), value)?;
        Ok(())
    }

    fn delete_state(&mut self, object: &ObjectKey, name: &str) -> Result<(), Error> {
        self.table.remove(state_key(object, name).as_slice())?;
        Ok(())
    }

    fn delete_all_state(&mut self, object: &ObjectKey) -> Result<(), Error> {
        let prefix = object_prefix(object);
        let mut doomed = Vec::new();
        for item in self.table.range(prefix.as_slice()..)? {
            let (key, _) = item?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            doomed.push(key.value().to_vec());
        }
        for key in doomed {
            self.table.remove(key.as_slice())?;
        }
        Ok(())
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

fn sm_read_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    /// Opens or creates the state database at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(STATE)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            snapshots_built: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Makes every applied change durable (one fsync). Called periodically, before a snapshot and
    /// at shutdown; never on the acknowledgement path.
    pub async fn flush(&self) -> Result<(), Error> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// The applied index and command count of this partition.
    pub fn summary(&self) -> Result<PartitionSummary, Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let applied: Option<LogId<NodeId>> = get_meta(&meta, APPLIED)?.flatten();
        Ok(PartitionSummary {
            applied: applied.map(|id| LogIndex(id.index)),
            commands_applied: get_meta(&meta, COMMANDS_APPLIED)?.unwrap_or(0),
        })
    }

    /// Every state entry of this partition, ordered by object and name.
    pub fn entries(&self) -> Result<Vec<StateEntry>, Error> {
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
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok((
            get_meta(&meta, APPLIED)?.flatten(),
            get_meta(&meta, MEMBERSHIP)?.unwrap_or_default(),
        ))
    }

    fn apply_entries(db: &Database, entries: &[Entry<TypeConfig>]) -> Result<Vec<Applied>, Error> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut responses = Vec::with_capacity(entries.len());
        {
            let mut state = txn.open_table(STATE)?;
            let mut meta = txn.open_table(META)?;
            let mut commands_applied: u64 = get_meta(&meta, COMMANDS_APPLIED)?.unwrap_or(0);
            let mut store = StateTable { table: &mut state };
            for entry in entries {
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(Batch(commands)) => {
                        for command in commands {
                            holdfast_fsm::apply(&mut store, command)?;
                        }
                        commands_applied += commands.len() as u64;
                    }
                    EntryPayload::Membership(membership) => {
                        let stored = Membership::new(Some(entry.log_id), membership.clone());
                        put_meta(&mut meta, MEMBERSHIP, &stored)?;
                    }
                }
                responses.push(Applied {
                    index: LogIndex(entry.log_id.index),
                });
            }
            if let Some(last) = entries.last() {
                put_meta(&mut meta, APPLIED, &Some(last.log_id))?;
                put_meta(&mut meta, COMMANDS_APPLIED, &commands_applied)?;
            }
        }
        txn.commit()?;
        Ok(responses)
    }

    fn read_snapshot_body(db: &Database) -> Result<SnapshotParts, Error> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let state = txn.open_table(STATE)?;
        let mut body = SnapshotBody {
            state: Vec::new(),
            commands_applied: get_meta(&meta, COMMANDS_APPLIED)?.unwrap_or(0),
        };
        for item in state.iter()? {
            let (key, value) = item?;
            body.state.push((
                serde_bytes::ByteBuf::from(key.value()),
                serde_bytes::ByteBuf::from(value.value()),
            ));
        }
        Ok((
            get_meta(&meta, APPLIED)?.flatten(),
            get_meta(&meta, MEMBERSHIP)?.unwrap_or_default(),
            codec::encode(&body)?,
        ))
    }

    fn save_snapshot(
        txn: &redb::WriteTransaction,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), Error> {
        let mut table = txn.open_table(SNAPSHOT)?;
        put_meta(&mut table, SNAPSHOT_META, meta)?;
        table.insert(SNAPSHOT_DATA, data)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Logs are purged below a snapshot, so the state it describes must be durable first.
        self.flush().await.map_err(sm_write_err)?;
        let db = self.db.clone();
        let seq = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let (meta, data) = blocking(move || {
            let (last_log_id, last_membership, data) = Self::read_snapshot_body(&db)?;
            let snapshot_id = match last_log_id {
                Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            };
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None)?;
            Self::save_snapshot(&txn, &meta, &data)?;
            txn.commit()?;
            Ok((meta, data))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
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
        Self::apply_entries(&self.db, &entries).map_err(sm_write_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let meta = meta.clone();
        let db = self.db.clone();
        let signature = meta.signature();
        blocking(move || {
            let body: SnapshotBody = codec::decode(&data)?;
            let txn = db.begin_write()?;
            txn.delete_table(STATE)?;
            {
                let mut state = txn.open_table(STATE)?;
                for (key, value) in &body.state {
                    state.insert(key.as_slice(), value.as_slice())?;
                }
                let mut table = txn.open_table(META)?;
                put_meta(&mut table, APPLIED, &meta.last_log_id)?;
                put_meta(&mut table, MEMBERSHIP, &meta.last_membership)?;
                put_meta(&mut table, COMMANDS_APPLIED, &body.commands_applied)?;
            }
            Self::save_snapshot(&txn, &meta, &data)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let read = || -> Result<Option<Snapshot<TypeConfig>>, Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(SNAPSHOT)?;
            let meta = get_meta(&table, SNAPSHOT_META)?;
            let data = table.get(SNAPSHOT_DATA)?.map(|v| v.value().to_vec());
            Ok(meta.zip(data).map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
        };
        read().map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
