//! The storage layer's failures. All of them are fatal for the partition: openraft stops the
//! group on a storage error and the supervisor restarts it from disk.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a partition store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The redb database reported a failure.
    #[error("storage engine: {0}")]
    Engine(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error("stored record: {0}")]
    Codec(#[from] holdfast_types::codec::Error),
    /// A packed record could not be compressed or unpacked.
    #[error("packed record: {0}")]
    Pack(#[from] crate::pack::PackError),
    /// A file or directory could not be created or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored key does not have the layout this release writes.
    #[error("corrupt state key of {0} bytes")]
    CorruptKey(usize),
    /// A stored value does not have the layout this release writes.
    #[error("corrupt record of {len} bytes in table {table}")]
    CorruptRecord { table: &'static str, len: usize },
    /// A blocking storage task was cancelled or panicked.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The shared raft log's commit failed; every request of its batch fails with the cause.
    #[error("raft log commit failed: {0}")]
    CommitFailed(Arc<Error>),
    /// An earlier commit of the shared raft log failed, so it writes nothing more: after a
    /// failed fsync, Linux may report later ones of the same file as successful.
    #[error("raft log refuses writes after a failed commit ({0})")]
    LogFailed(Arc<Error>),
    /// The shared raft log's writer thread is gone (it panicked, or the log was closed).
    #[error("the raft log writer has stopped")]
    WriterStopped,
    /// A thread panicked while it held the partition's applied state in memory, which may now
    /// hold half a batch or miss rows: every later use fails until a restart rebuilds it from
    /// `state.redb` and the log.
    #[error("a panic left the partition's applied state in memory uncertain; restart the node")]
    MemtablePoisoned,
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
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);

/// Runs blocking redb work off the async runtime's threads.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}
