//! `sys_cluster`: one row per replica of each partition this node holds, as this node sees it —
//! the leader, the term, each replica's applied index and lag (the same as `GET /cluster`).

use super::Whole;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result as DfResult;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;

/// One replica of one partition, as the node answering the query sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// The partition.
    pub partition: u32,
    /// The replica's node.
    pub node: u64,
    /// The partition's leader, if known.
    pub leader: Option<u64>,
    /// The partition's current term.
    pub term: u64,
    /// The replica's applied index, where this node knows it.
    pub applied_index: Option<u64>,
    /// How far the replica is behind the leader's log (known only on the leader).
    pub lag: Option<u64>,
}

/// Where `sys_cluster` reads its rows: the node's view of the partitions it holds.
pub trait ClusterSource: Send + Sync {
    /// Every replica of every partition this node holds.
    fn replicas(&self) -> BoxFuture<'static, Vec<ReplicaRow>>;
}

/// The `sys_cluster` table.
pub(crate) struct ClusterTable {
    source: Arc<dyn ClusterSource>,
    schema: SchemaRef,
}

impl ClusterTable {
    pub(crate) fn new(source: Arc<dyn ClusterSource>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("partition_id", DataType::UInt32, false),
            Field::new("node_id", DataType::UInt64, false),
            Field::new("is_leader", DataType::Boolean, false),
            Field::new("leader_node_id", DataType::UInt64, true),
            Field::new("term", DataType::UInt64, false),
            Field::new("applied_index", DataType::UInt64, true),
            Field::new("lag", DataType::UInt64, true),
        ]));
        Self { source, schema }
    }

    fn rows(&self, rows: &[ReplicaRow]) -> DfResult<RecordBatch> {
        let u64s = |f: fn(&ReplicaRow) -> Option<u64>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<UInt64Array>())
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(rows.iter().map(|r| r.partition).collect::<UInt32Array>()),
            u64s(|r| Some(r.node)),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.leader == Some(r.node)))
                    .collect::<BooleanArray>(),
            ),
            u64s(|r| r.leader),
            u64s(|r| Some(r.term)),
            u64s(|r| r.applied_index),
            u64s(|r| r.lag),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl fmt::Debug for ClusterTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTable").finish_non_exhaustive()
    }
}

#[async_trait]
impl Whole for ClusterTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn batch(&self) -> DfResult<RecordBatch> {
        let rows = self.source.replicas().await;
        self.rows(&rows)
    }
}
