//! The metadata log's storage: the replicated log of [`RegistryCommand`]s and the [`Registry`] it
//! folds into, kept in redb next to the partitions.
//!
//! ```text
//!   raft-log.redb        raft log: group GroupKey::METADATA (u32::MAX) of the node's SharedLog,
//!                        the partitions' LogStore typed for registry commands
//!   metadata/state.redb  table meta: applied log id, membership, the encoded Registry, snapshot
//! ```
//!
//! Every applied command is committed durably (metadata changes are rare) and the new registry is
//! published on a watch channel, which ingress, admin and invoker read without locks.

/// The node's raft-log file, re-exported for the metadata actor that is handed one.
pub use holdfast_raft_store::SharedLog;
use holdfast_raft_store::records::{self, SnapshotMetaRecord, StoredMembershipRecord};
use holdfast_raft_store::{GroupKey, LogStore};
use holdfast_schema::{Applied, Refusal, Registry, RegistryCommand};
use holdfast_types::codec;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

openraft::declare_raft_types!(
    /// The openraft type configuration of the metadata log.
    pub MetadataConfig:
        D = RegistryCommand,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<MetadataConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Metadata entries are always written at once: every one is an operator's change that waits.
impl holdfast_raft_store::LogTypes for MetadataConfig {}

/// What applying one metadata log entry did, handed back to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome(pub Option<Result<Applied, Refusal>>);

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const REGISTRY: &str = "registry";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Why the metadata store failed; fatal for the metadata group, as for a partition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The redb database reported a failure.
    #[error("metadata storage engine: {0}")]
    Engine(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error("metadata record: {0}")]
    Codec(#[from] codec::Error),
    /// The directory could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The log store could not be opened.
    #[error("metadata log: {0}")]
    Log(#[from] holdfast_raft_store::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Engine(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The metadata state machine: the registry, its applied position, and the channel publishing it.
#[derive(Clone)]
pub struct MetadataStore {
    db: Arc<Database>,
    published: watch::Sender<Arc<Registry>>,
}

/// Opens (creating if needed) the metadata log, as [`GroupKey::METADATA`] of the node's shared
/// `log`, and its state in `dir`; the stored registry and every later one are published on
/// `published`.
pub fn open(
    dir: &Path,
    log: &SharedLog,
    published: watch::Sender<Arc<Registry>>,
) -> Result<(LogStore<MetadataConfig>, MetadataStore), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let log = LogStore::new(log, GroupKey::METADATA);
    let state = MetadataStore::open(&dir.join("state.redb"), published)?;
    Ok((log, state))
}

/// The registry as last applied in `dir`, read before the metadata log starts so that a node
/// never serves requests against an empty registry after a restart.
pub fn recover(dir: &Path) -> Result<Registry, Error> {
    let path = dir.join("state.redb");
    if !path.exists() {
        return Ok(Registry::default());
    }
    let db = Database::builder().set_cache_size(1 << 20).create(&path)?;
    let txn = db.begin_read()?;
    Ok(get(&txn.open_table(META)?, REGISTRY)?.unwrap_or_default())
}

fn get<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, Error> {
    match table.get(key)? {
        Some(bytes) => Ok(Some(codec::decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn put<T: Serialize>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    value: &T,
) -> Result<(), Error> {
    table.insert(key, codec::encode(value)?.as_slice())?;
    Ok(())
}

fn read_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn write_err(e: Error) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl MetadataStore {
    /// Opens or creates the state database at `path` and publishes the registry it holds.
    pub fn open(path: &Path, published: watch::Sender<Arc<Registry>>) -> Result<Self, Error> {
        let db = Database::builder().set_cache_size(1 << 20).create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(META)?;
        txn.commit()?;
        let registry: Registry = {
            let txn = db.begin_read()?;
            get(&txn.open_table(META)?, REGISTRY)?.unwrap_or_default()
        };
        published.send_replace(Arc::new(registry));
        Ok(Self {
            db: Arc::new(db),
            published,
        })
    }

    /// The newest applied registry.
    pub fn registry(&self) -> Arc<Registry> {
        self.published.borrow().clone()
    }

    fn write(
        &self,
        applied: Option<LogId<NodeId>>,
        membership: Option<&Membership>,
        registry: &Registry,
        snapshot: Option<(&SnapshotMeta<NodeId, openraft::BasicNode>, &[u8])>,
    ) -> Result<(), Error> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            put(
                &mut meta,
                APPLIED,
                &records::log_id_record(applied.as_ref()),
            )?;
            if let Some(membership) = membership {
                put(
                    &mut meta,
                    MEMBERSHIP,
                    &StoredMembershipRecord::from(membership),
                )?;
            }
            put(&mut meta, REGISTRY, registry)?;
            if let Some((snapshot_meta, data)) = snapshot {
                put(
                    &mut meta,
                    SNAPSHOT_META,
                    &SnapshotMetaRecord::from(snapshot_meta),
                )?;
                meta.insert(SNAPSHOT_DATA, data)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn read_applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok((
            records::log_id(get(&meta, APPLIED)?.flatten()),
            get::<StoredMembershipRecord>(&meta, MEMBERSHIP)?
                .map(Membership::from)
                .unwrap_or_default(),
        ))
    }
}

impl RaftSnapshotBuilder<MetadataConfig> for MetadataStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataConfig>, StorageError<NodeId>> {
        let (last_log_id, last_membership) = self.read_applied().map_err(read_err)?;
        let registry = self.registry();
        let data = codec::encode(registry.as_ref())
            .map_err(|e| StorageIOError::write_snapshot(None, &Error::from(e)))?;
        let meta = SnapshotMeta {
            snapshot_id: match last_log_id {
                Some(id) => format!("{}-{}", id.leader_id, id.index),
                None => "empty".into(),
            },
            last_log_id,
            last_membership,
        };
        self.write(last_log_id, None, &registry, Some((&meta, &data)))
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<MetadataConfig> for MetadataStore {
    type SnapshotBuilder = MetadataStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.read_applied().map_err(read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut registry = (*self.registry()).clone();
        let mut membership = None;
        let mut last = None;
        let mut outcomes = Vec::new();
        for entry in entries {
            let outcome = match &entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(command) => Some(registry.apply(command)),
                EntryPayload::Membership(m) => {
                    membership = Some(Membership::new(Some(entry.log_id), m.clone()));
                    None
                }
            };
            last = Some(entry.log_id);
            outcomes.push(Outcome(outcome));
        }
        if last.is_none() {
            return Ok(outcomes);
        }
        self.write(last, membership.as_ref(), &registry, None)
            .map_err(write_err)?;
        self.published.send_replace(Arc::new(registry));
        Ok(outcomes)
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
        let install = || -> Result<Registry, Error> {
            let registry: Registry = codec::decode(&data)?;
            self.write(
                meta.last_log_id,
                Some(&meta.last_membership),
                &registry,
                Some((meta, &data)),
            )?;
            Ok(registry)
        };
        let registry =
            install().map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.published.send_replace(Arc::new(registry));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataConfig>>, StorageError<NodeId>> {
        let read = || -> Result<Option<Snapshot<MetadataConfig>>, Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(META)?;
            let meta = get::<SnapshotMetaRecord>(&table, SNAPSHOT_META)?.map(SnapshotMeta::from);
            let data = table.get(SNAPSHOT_DATA)?.map(|v| v.value().to_vec());
            Ok(meta.zip(data).map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
        };
        read().map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
