//! SQL tables over the live partition stores and the registry, for DataFusion.
//!
//! ```text
//!   admin POST /query, `holdfast sql` ──► QueryEngine::query(sql) ──► QueryResult (+ render_table)
//!   pgwire                            ──► QueryEngine::context()  ──► SessionContext
//!
//!   SessionContext
//!     ├─ sys_invocation, sys_journal, state, sys_inbox, sys_keyed_service_status,
//!     │  sys_idempotency, sys_promise,       PartitionScan over every partition: the stores open
//!     │  sys_schedule_run                    here, the others on a node holding a replica
//!     ├─ sys_service, sys_deployment,         the current registry, in memory
//!     │  sys_schedule
//!     └─ sys_status (view over sys_invocation)
//! ```
//!
//! A partition scan reads each partition through one redb read transaction (a consistent
//! snapshot of that partition), on a blocking thread that hands batches of at most
//! [`BATCH_ROWS`] rows to the query through a bounded channel: a scan of a million rows holds a
//! few batches in memory, never the table. Equality filters on the routing columns (`id`,
//! `service_name` + `service_key`, `partition_key`) are pushed into the scan, so a point lookup
//! reads one partition and only the rows it names; `EXPLAIN` shows which partitions a scan
//! reads (and which of them on other nodes) and by which lookup. A partition with no open store
//! here is scanned by a node that holds a replica ([`PartitionStores::remote_scan`], served by a
//! [`ScanServer`]) with the same lookup and limit, its rows streamed back as Arrow IPC into the
//! same batches; if no replica can, the query fails naming the partition.
//!
//! # Layout
//! - [`engine`]: [`QueryEngine`], its limits, results and errors.
//! - `memory`: a statement's share of the node's memory pool.
//! - `pushdown`: which filters narrow a scan, and to what.
//! - `scan`: the partition scan plan, its reader threads and batch building.
//! - `remote`: scans of partitions held by other nodes: the request, the serving side, the
//!   rows' encoding.
//! - `tables`: one module per table, and the registry tables.
//! - [`render`]: psql-like text rendering of a result.

pub mod engine;
mod memory;
mod pushdown;
mod remote;
pub mod render;
mod scan;
mod tables;

/// The arrow version the tables produce, for callers that encode results.
pub use datafusion::arrow;
pub use engine::{QueryEngine, QueryError, QueryLimits, QueryResult, ResourceLimits};
pub use remote::{RemoteScanError, ScanServer};
pub use render::render_table;
pub use tables::cluster::{ClusterSource, ReplicaRow};

use holdfast_raft_store::StateMachine;
use holdfast_types::PartitionId;

/// Rows per record batch produced by a partition scan (and the session's batch size).
pub const BATCH_ROWS: usize = 1024;

/// A remote scan's answer as it arrives: Arrow IPC chunks (what [`ScanServer::serve`] yields
/// on the node holding the partition). It ends only after the last chunk; an `Err` (no replica
/// could serve the partition, or its scan failed) ends it and fails the query.
pub type RemoteRows = futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>;

/// The partition stores of this node, as the kernel sees them right now; the tables read them.
pub trait PartitionStores: Send + Sync {
    /// Every partition open on this node and a read handle to its applied state; a partition
    /// that is not open here is absent (its rows are read through [`Self::remote_scan`]).
    fn stores(&self) -> Vec<(PartitionId, StateMachine)>;

    /// How many partitions the cluster has, to route an id or object to its partition.
    fn partition_count(&self) -> u32;

    /// Waits until this node's replicas of `partitions` have applied everything their leaders
    /// had committed when it was called, so a query on a follower sees every write acknowledged
    /// before it began. A store that always leads may answer at once.
    fn read_barrier(
        &self,
        partitions: Vec<PartitionId>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let _ = partitions;
        Box::pin(futures::future::ready(Ok(())))
    }

    /// Has a node holding a replica of `partition` (none open here) run `request` (for its
    /// [`ScanServer::serve`]) and streams its rows back. The default reaches no other node, so
    /// such a partition fails the query.
    fn remote_scan(&self, partition: PartitionId, request: Vec<u8>) -> RemoteRows {
        let _ = request;
        let reason = format!("this node holds no replica of partition {partition}");
        Box::pin(futures::stream::once(futures::future::ready(Err(reason))))
    }
}
