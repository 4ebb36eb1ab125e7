//! A partition's durable storage: the openraft log store and state-machine store, both in redb.
//!
//! ```text
//!   <data_dir>/raft-log.redb  the raft logs of every group of the node ([`SharedLog`]): entries,
//!                             vote, committed pointer and purge marker, keyed by group
//!                             ([`GroupKey`]: partition n is n, the metadata log u32::MAX);
//!                             one writer thread, one fsync per batch of appends of any groups
//!                             (a write finding the writer idle is committed by its caller)
//!   partitions/<n>/state.redb applied state: object state, invocations, journals, locks, inboxes,
//!                             outbox, dedup, timers, promises, suspended index; applied log
//!                             id, membership, snapshot
//! ```
//!
//! A partition's [`LogStore`] is a handle on the shared log and its group. Data dirs of the
//! release before kept one `log.redb` per group; [`migrate_legacy_log`] moves them over.
//!
//! The log is the ground truth. Appends are durable before openraft is told they are flushed; the
//! state machine applies into memory, commits to `state.redb` without fsync in large batches and
//! is flushed lazily ([`StateMachine::flush`]), because
//! after a crash openraft re-applies every committed entry above the durable applied log id.
//! Log entries are purged only below a snapshot, and a snapshot is built only from flushed state.
//!
//! Log entries and the invocation tables' records are stored packed (module `pack`: zstd against a
//! built-in dictionary), which takes about a quarter of their plain codec bytes.

mod compact;
mod error;
mod keys;
mod log;
mod memtable;
mod migrate;
mod pack;
pub mod records;
mod shared;
mod state;
mod tables;

pub use compact::{Compacted, compact};
pub use error::Error;
pub use log::{LogStore, LogTypes};
pub use migrate::{Migration, migrate_legacy_log};
pub use pack::PackError;
pub use shared::{GroupKey, LOG_CACHE_BYTES, LogWriterStats, SharedLog};
pub use state::{
    AppliedBatch, InvocationScope, ObjectScope, PartitionSummary, Resumable, STATE_CACHE_BYTES,
    SnapshotFile, StateEntry, StateMachine, StateSnapshot, WeakStateMachine,
};

use holdfast_types::{Command, LogIndex, PartitionId};
use serde::{Deserialize, Serialize};
use std::path::Path;

openraft::declare_raft_types!(
    /// The openraft type configuration of a partition's consensus group.
    pub TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // A file in the partition's `snapshots/` directory, streamed rather than held in memory.
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One raft entry's payload: the commands of one group commit, applied in order and atomically.
/// Stored and sent as its commands alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Batch {
    /// The commands, in the order they apply.
    pub commands: Vec<Command>,
    /// Set by the proposer when nobody waits for these commands: the leader's log may then keep
    /// the entry for the node's next fsync (see [`SharedLog`]'s deferred appends). Never stored
    /// or sent, so a replica's copy is always written at once.
    #[serde(skip)]
    pub deferrable: bool,
}

impl Batch {
    /// A batch of `commands` written as soon as it is appended.
    pub fn new(commands: Vec<Command>) -> Self {
        Self {
            commands,
            deferrable: false,
        }
    }
}

/// What applying one raft entry produced, handed back to the proposer of that entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log index at which the entry was applied.
    pub index: LogIndex,
    /// The effects of the entry's commands, in order. The proposer reads them (did its request
    /// join an existing invocation?); the leader executes them from the [`AppliedBatch`] stream.
    /// Shared, so both get them without a copy.
    #[serde(default)]
    pub effects: std::sync::Arc<[holdfast_fsm::Effect]>,
}

/// Opens (creating if needed) the stores of `partition`: its log in the node's shared `log`,
/// its applied state in `dir` with a page cache of `state_cache_bytes`.
pub fn open(
    dir: &Path,
    log: &SharedLog,
    partition: PartitionId,
    state_cache_bytes: usize,
) -> Result<(LogStore, StateMachine), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let log = LogStore::new(log, GroupKey::partition(partition));
    let state = StateMachine::open_with_cache(&dir.join("state.redb"), state_cache_bytes)?;
    Ok((log, state))
}
