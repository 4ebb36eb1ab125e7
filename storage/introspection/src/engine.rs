//! [`QueryEngine`]: a fresh DataFusion session over the introspection tables per query, with a
//! statement timeout and a row cap for the admin API and the CLI.

use crate::scan::{PartitionTable, ScanError};
use crate::tables::cluster::{ClusterSource, ClusterTable};
use crate::tables::{WholeTable, partition_tables, registry_tables};
use crate::{BATCH_ROWS, PartitionStores};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlanBuilder, col};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use holdfast_schema::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Bounds on one [`QueryEngine::query`]: introspection must not tie up a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// The query fails with [`QueryError::Timeout`] when it runs longer.
    pub statement_timeout: Duration,
    /// At most this many rows are returned; the result says when more were left out.
    pub max_rows: usize,
}

impl Default for QueryLimits {
    /// 30 s and 100 000 rows.
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

/// The rows of one query, collected.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows, in batches.
    pub batches: Vec<RecordBatch>,
    /// More rows than [`QueryLimits::max_rows`] matched; the rest were not read.
    pub truncated: bool,
}

impl QueryResult {
    /// How many rows the result holds.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query itself is wrong (syntax, unknown table or column, type error, refused
    /// statement); the message is DataFusion's.
    #[error("{0}")]
    Sql(String),
    /// The query ran longer than the statement timeout and was abandoned.
    #[error("query exceeded the statement timeout of {0:?}")]
    Timeout(Duration),
    /// Reading the stores failed (among them a partition no reachable replica could scan), or
    /// the engine failed on its own.
    #[error("internal error: {0}")]
    Internal(String),
    /// A partition the query needs cannot be read now: no replica answered, or its leader is out
    /// of reach for the read index. Retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl QueryError {
    /// Whether the caller is to blame (an HTTP 400 rather than a 500).
    pub fn is_user_error(&self) -> bool {
        matches!(self, QueryError::Sql(_))
    }
}

impl From<DataFusionError> for QueryError {
    /// Errors of the query's own making are [`QueryError::Sql`]; storage and engine failures
    /// (external, internal, I/O, resources) are [`QueryError::Internal`].
    fn from(e: DataFusionError) -> Self {
        let root = e.find_root();
        // A scan's own failure (storage, an unavailable partition) reads best without
        // DataFusion's "External error" wrapping.
        if let DataFusionError::External(inner) = root
            && let Some(scan) = inner.downcast_ref::<ScanError>()
        {
            return match scan {
                ScanError::Unavailable { .. } | ScanError::Barrier(_) => {
                    QueryError::Unavailable(scan.to_string())
                }
                _ => QueryError::Internal(scan.to_string()),
            };
        }
        let message = e.strip_backtrace();
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::ArrowError(..)
            | DataFusionError::Execution(_)
            | DataFusionError::Collection(_) => QueryError::Sql(message),
            _ => QueryError::Internal(message),
        }
    }
}

/// The SQL of the `sys_status` view: the founding post's names for `sys_invocation` columns.
const SYS_STATUS: &str = "SELECT partition_key, id, target_service_name AS service, \
     target_service_key AS service_key, target_handler_name AS method, status, invoked_by, \
     invoked_by_service_name AS invoked_by_service, invoked_by_id, created_at, \
     completion_result FROM sys_invocation";

/// SQL over the node's partition stores and registry; cheap to clone.
#[derive(Clone)]
pub struct QueryEngine {
    stores: Arc<dyn PartitionStores>,
    registry: watch::Receiver<Arc<Registry>>,
    limits: QueryLimits,
    scanned: Arc<AtomicU64>,
    /// The node's view of its replicas, for `sys_cluster` (absent: no such table).
    cluster: Option<Arc<dyn ClusterSource>>,
}

impl QueryEngine {
    /// An engine over `stores` and the registry `registry` follows, bounded by `limits`.
    pub fn new(
        stores: Arc<dyn PartitionStores>,
        registry: watch::Receiver<Arc<Registry>>,
        limits: QueryLimits,
    ) -> Self {
        Self {
            stores,
            registry,
            limits,
            scanned: Arc::new(AtomicU64::new(0)),
            cluster: None,
        }
    }

    /// Adds `sys_cluster`, read from `source`.
    pub fn with_cluster(mut self, source: Arc<dyn ClusterSource>) -> Self {
        self.cluster = Some(source);
        self
    }

    /// The limits [`QueryEngine::query`] enforces.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// Records read from the partition stores by every scan so far (a point lookup reads about
    /// one): for tests and metrics.
    pub fn rows_scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    /// A fresh session with every table and view registered (`datafusion.public`,
    /// information_schema on); the pgwire server runs its statements in one.
    pub fn context(&self) -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public")
            .with_target_partitions(2)
            .with_batch_size(BATCH_ROWS);
        let ctx = SessionContext::new_with_config(config);
        let mut invocations: Option<Arc<dyn TableProvider>> = None;
        for table in partition_tables() {
            let name = table.name();
            let provider: Arc<dyn TableProvider> = Arc::new(PartitionTable::new(
                table,
                self.stores.clone(),
                self.registry.clone(),
                self.scanned.clone(),
            ));
            if name == "sys_invocation" {
                invocations = Some(provider.clone());
            }
            register(&ctx, name, provider);
        }
        for (name, table) in registry_tables(&self.registry) {
            register(&ctx, name, Arc::new(WholeTable(table)));
        }
        if let Some(source) = &self.cluster {
            let table = WholeTable(ClusterTable::new(source.clone()));
            register(&ctx, "sys_cluster", Arc::new(table));
        }
        if let Some(invocations) = invocations
            && let Some(view) = sys_status(invocations)
        {
            register(&ctx, "sys_status", view);
        }
        ctx
    }

    /// Runs one read-only statement and collects its rows, within the statement timeout and
    /// the row cap.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let ctx = self.context();
        let max_rows = self.limits.max_rows;
        let run = async move {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let frame = ctx.sql_with_options(sql, options).await?;
            let mut stream = frame.execute_stream().await?;
            let schema = stream.schema();
            let mut batches = Vec::new();
            let mut rows = 0;
            let mut truncated = false;
            // Stop reading at the cap: dropping the stream stops the scans behind it.
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if batch.num_rows() == 0 {
                    continue;
                }
                let room = max_rows - rows;
                if batch.num_rows() > room {
                    truncated = true;
                    if room > 0 {
                        batches.push(batch.slice(0, room));
                    }
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok::<_, DataFusionError>(QueryResult {
                schema,
                batches,
                truncated,
            })
        };
        match tokio::time::timeout(self.limits.statement_timeout, run).await {
            Ok(result) => result.map_err(QueryError::from),
            Err(_) => Err(QueryError::Timeout(self.limits.statement_timeout)),
        }
    }
}

/// Registers `provider` as `name`. Names are fixed and distinct, so this cannot fail at run time.
fn register(ctx: &SessionContext, name: &str, provider: Arc<dyn TableProvider>) {
    let registered = ctx.register_table(name, provider);
    debug_assert!(registered.is_ok(), "registering {name}: {registered:?}");
}

/// The `sys_status` view over `sys_invocation`.
fn sys_status(invocations: Arc<dyn TableProvider>) -> Option<Arc<dyn TableProvider>> {
    let columns = [
        col("partition_key"),
        col("id"),
        col("target_service_name").alias("service"),
        col("target_service_key").alias("service_key"),
        col("target_handler_name").alias("method"),
        col("status"),
        col("invoked_by"),
        col("invoked_by_service_name").alias("invoked_by_service"),
        col("invoked_by_id"),
        col("created_at"),
        col("completion_result"),
    ];
    let plan = LogicalPlanBuilder::scan("sys_invocation", provider_as_source(invocations), None)
        .and_then(|builder| builder.project(columns))
        .and_then(LogicalPlanBuilder::build);
    debug_assert!(plan.is_ok(), "building sys_status: {plan:?}");
    let plan = plan.ok()?;
    Some(Arc::new(ViewTable::new(plan, Some(SYS_STATUS.to_owned()))))
}
