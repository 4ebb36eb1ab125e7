//! SQL tables over the live partition stores and the registry, for DataFusion.
//!
//! ```text
//!   admin POST /query, `holdfast sql` ──► QueryEngine::query(sql) ──► QueryResult (+ render_table)
//!   pgwire                            ──► QueryEngine::context()  ──► SessionContext
//!
//!   SessionContext
//!     ├─ sys_invocation, sys_journal, state, sys_inbox, sys_keyed_service_status,
//!     │  sys_idempotency, sys_promise        PartitionScan over every open partition store
//!     ├─ sys_service, sys_deployment          the current registry, in memory
//!     └─ sys_status (view over sys_invocation)
//! ```
//!
//! A partition scan reads each partition through one redb read transaction (a consistent
//! snapshot of that partition), on a blocking thread that hands batches of at most
//! [`BATCH_ROWS`] rows to the query through a bounded channel: a scan of a million rows holds a
//! few batches in memory, never the table. Equality filters on the routing columns (`id`,
//! `service_name` + `service_key`, `partition_key`) are pushed into the scan, so a point lookup
//! reads one partition and only the rows it names; `EXPLAIN` shows which partitions a scan
//! reads and by which lookup.
//!
//! # Layout
//! - [`engine`]: [`QueryEngine`], its limits, results and errors.
//! - `pushdown`: which filters narrow a scan, and to what.
//! - `scan`: the partition scan plan, its reader threads and batch building.
//! - `tables`: one module per table, and the registry tables.
//! - [`render`]: psql-like text rendering of a result.

pub mod engine;
mod pushdown;
pub mod render;
mod scan;
mod tables;

/// The arrow version the tables produce, for callers that encode results.
pub use datafusion::arrow;
pub use engine::{QueryEngine, QueryError, QueryLimits, QueryResult};
pub use render::render_table;
pub use tables::cluster::{ClusterSource, ReplicaRow};

use holdfast_raft_store::StateMachine;
use holdfast_types::PartitionId;

/// Rows per record batch produced by a partition scan (and the session's batch size).
pub const BATCH_ROWS: usize = 1024;

/// The partition stores of this node, as the kernel sees them right now; the tables read them.
pub trait PartitionStores: Send + Sync {
    /// Every partition open on this node and a read handle to its applied state; a partition
    /// that is not open here is absent (its rows are simply not in the tables).
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
}
