//! [`QueryEngine`]: a fresh DataFusion session over the introspection tables per query, with a
//! statement timeout, a row cap, a result byte cap and a memory pool for the admin API and the
//! CLI (the pgwire server runs its statements in [`QueryEngine::context`], which carries the
//! same memory pool).

use crate::memory::StatementPool;
use crate::scan::{PartitionTable, ScanError};
use crate::tables::cluster::{ClusterSource, ClusterTable};
use crate::tables::{WholeTable, partition_tables, registry_tables};
use crate::{BATCH_ROWS, PartitionStores};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{LogicalPlanBuilder, col};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use holdfast_schema::Registry;
use std::num::NonZeroUsize;
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

/// What the statements of one node may hold in memory, and how large a collected result may grow.
/// Zero turns a limit off (the default: [`QueryEngine::new`] sets no memory limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// The node's memory pool: every statement's operators (aggregations, sorts, joins, …)
    /// reserve from it, and a statement that cannot reserve fails with
    /// [`QueryError::ResourcesExhausted`]. One statement may hold at most half of it
    /// ([`ResourceLimits::statement_memory_bytes`]), so a runaway statement always leaves room
    /// for the others.
    pub memory_limit_bytes: usize,
    /// A collected result stops growing at this many bytes (Arrow's in-memory size; for pgwire
    /// the encoded rows): the rest is cut off as with the row cap.
    pub max_result_bytes: usize,
}

impl ResourceLimits {
    /// The share of the node pool one statement may hold: half of it (zero: unbounded).
    pub fn statement_memory_bytes(&self) -> usize {
        self.memory_limit_bytes.div_ceil(2)
    }
}

/// The rows of one query, collected.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows, in batches.
    pub batches: Vec<RecordBatch>,
    /// More rows than [`QueryLimits::max_rows`] matched, or the rows outgrew
    /// [`ResourceLimits::max_result_bytes`]; the rest were not read.
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
    /// The query needed more memory than its share of the node's pool (SQLSTATE 53200 on
    /// pgwire); the message is DataFusion's, naming the largest consumers.
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
}

impl QueryError {
    /// Whether the caller is to blame (an HTTP 400 rather than a 500).
    pub fn is_user_error(&self) -> bool {
        matches!(self, QueryError::Sql(_))
    }
}

impl From<DataFusionError> for QueryError {
    /// Errors of the query's own making are [`QueryError::Sql`]; storage and engine failures
    /// (external, internal, I/O) are [`QueryError::Internal`]; an exhausted memory pool is
    /// [`QueryError::ResourcesExhausted`].
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
            DataFusionError::ResourcesExhausted(inner) => {
                QueryError::ResourcesExhausted(inner.clone())
            }
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
    resources: ResourceLimits,
    /// The node's memory pool every statement reserves from (absent: unbounded).
    pool: Option<Arc<dyn MemoryPool>>,
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
            resources: ResourceLimits::default(),
            pool: None,
            scanned: Arc::new(AtomicU64::new(0)),
            cluster: None,
        }
    }

    /// Bounds the memory of every statement of this engine (and of its clones) by one node pool
    /// of `resources.memory_limit_bytes` (a greedy pool that names its top consumers when it is
    /// exhausted), and caps collected results at `resources.max_result_bytes`.
    pub fn with_resources(mut self, resources: ResourceLimits) -> Self {
        self.resources = resources;
        self.pool = (resources.memory_limit_bytes > 0).then(|| {
            let top = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
            let greedy = GreedyMemoryPool::new(resources.memory_limit_bytes);
            Arc::new(TrackConsumersPool::new(greedy, top)) as Arc<dyn MemoryPool>
        });
        self
    }

    /// The memory and result limits [`QueryEngine::query`] enforces.
    pub fn resources(&self) -> ResourceLimits {
        self.resources
    }

    /// Bytes reserved from the node's memory pool right now (zero without a pool).
    pub fn memory_reserved(&self) -> usize {
        self.pool.as_ref().map_or(0, |pool| pool.reserved())
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
    /// information_schema on); the pgwire server runs its statements in one. Its memory is
    /// bounded by a statement's share of the node pool (a connection runs one statement at a
    /// time, so the share is per statement).
    pub fn context(&self) -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public")
            .with_target_partitions(2)
            .with_batch_size(BATCH_ROWS);
        let ctx = match &self.pool {
            Some(node) => {
                let share =
                    StatementPool::new(node.clone(), self.resources.statement_memory_bytes());
                // No spill files: a statement over its share fails instead of filling a disk.
                let runtime = RuntimeEnvBuilder::new()
                    .with_disk_manager_builder(
                        DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                    )
                    .with_memory_pool(Arc::new(share))
                    .build_arc();
                // A runtime without a disk manager has nothing that can fail to build.
                debug_assert!(runtime.is_ok(), "building the query runtime: {runtime:?}");
                match runtime {
                    Ok(runtime) => SessionContext::new_with_config_rt(config, runtime),
                    Err(_) => SessionContext::new_with_config(config),
                }
            }
            None => SessionContext::new_with_config(config),
        };
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

    /// Runs one read-only statement and collects its rows, within the statement timeout, the
    /// row cap, the result byte cap and the statement's share of the memory pool. Every
    /// operator yields to the runtime regularly (as on pgwire), so the timeout fires and the
    /// other requests of the thread run even while one operator produces batch after batch.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let ctx = self.context();
        let max_rows = self.limits.max_rows;
        let max_bytes = self.resources.max_result_bytes;
        let run = async move {
            let options = SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let frame = ctx.sql_with_options(sql, options).await?;
            let task_ctx = Arc::new(frame.task_ctx());
            let plan = cooperative(frame.create_physical_plan().await?)?;
            let mut stream = execute_stream(plan, task_ctx)?;
            let schema = stream.schema();
            let mut batches = Vec::new();
            let mut rows = 0;
            let mut bytes = 0;
            let mut truncated = false;
            // Stop reading at a cap: dropping the stream stops the scans behind it.
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if batch.num_rows() == 0 {
                    continue;
                }
                let mut room = max_rows - rows;
                if max_bytes > 0 {
                    room = room.min(rows_within(&batch, max_bytes - bytes));
                }
                if batch.num_rows() > room {
                    truncated = true;
                    if room > 0 {
                        batches.push(batch.slice(0, room));
                    }
                    break;
                }
                rows += batch.num_rows();
                bytes += batch.get_array_memory_size();
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

/// How many of `batch`'s rows fit into `budget` bytes, at its average bytes per row.
fn rows_within(batch: &RecordBatch, budget: usize) -> usize {
    let size = batch.get_array_memory_size();
    if size <= budget {
        return batch.num_rows();
    }
    let per_row = size.div_ceil(batch.num_rows().max(1)).max(1);
    budget / per_row
}

/// Makes every operator yield to the runtime periodically, not only the leaves: operators that
/// emit many batches per input batch (joins, unnest) would otherwise keep a worker thread busy
/// without ever returning `Pending`, so the statement timeout could not fire.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    plan.transform_up(|node| {
        if node.is::<CooperativeExec>() {
            return Ok(Transformed::no(node));
        }
        Ok(Transformed::yes(
            Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
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

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_raft_store::StateMachine;
    use holdfast_types::PartitionId;

    /// A node with no partition open: SQL over the registry and literals only.
    struct NoStores;

    impl PartitionStores for NoStores {
        fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
            Vec::new()
        }

        fn partition_count(&self) -> u32 {
            1
        }
    }

    fn engine(resources: ResourceLimits) -> (QueryEngine, watch::Sender<Arc<Registry>>) {
        let (tx, registry) = watch::channel(Arc::new(Registry::default()));
        let limits = QueryLimits {
            statement_timeout: Duration::from_secs(60),
            ..QueryLimits::default()
        };
        let engine =
            QueryEngine::new(Arc::new(NoStores), registry, limits).with_resources(resources);
        (engine, tx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_bomb_exhausts_its_share_and_frees_it() {
        let (engine, _registry) = engine(ResourceLimits {
            memory_limit_bytes: 16 << 20,
            max_result_bytes: 0,
        });
        let bomb = "SELECT array_agg(value) FROM generate_series(1, 2000000000)";
        let failed = engine.query(bomb).await.expect_err("over the pool");
        assert!(
            matches!(failed, QueryError::ResourcesExhausted(_)),
            "{failed}"
        );
        assert!(!failed.is_user_error());
        // The statement's other partitions run on spawned tasks, aborted when the stream is
        // dropped: their reservations go back to the pool as those tasks wind down.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.memory_reserved() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} bytes still reserved",
                engine.memory_reserved()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fine = engine
            .query("SELECT sum(value) AS s FROM generate_series(1, 100000)")
            .await
            .expect("a small aggregate");
        assert_eq!(fine.num_rows(), 1);
    }

    /// On a single-threaded runtime (an actix worker's), the timeout fires inside a cross join
    /// that emits batch after batch: every operator yields.
    #[tokio::test(flavor = "current_thread")]
    async fn the_timeout_fires_inside_a_busy_operator() {
        let (tx, registry) = watch::channel(Arc::new(Registry::default()));
        let limits = QueryLimits {
            statement_timeout: Duration::from_millis(300),
            ..QueryLimits::default()
        };
        let engine = QueryEngine::new(Arc::new(NoStores), registry, limits);
        let slow = "SELECT max(a.value + b.value) AS m FROM generate_series(1, 100000000) a, \
                    generate_series(1, 100000000) b";
        let began = std::time::Instant::now();
        let result = engine.query(slow).await;
        assert_eq!(
            result.err(),
            Some(QueryError::Timeout(Duration::from_millis(300)))
        );
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{:?}",
            began.elapsed()
        );
        drop(tx);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_stop_at_the_byte_cap() {
        let (engine, _registry) = engine(ResourceLimits {
            memory_limit_bytes: 0,
            max_result_bytes: 64 << 10,
        });
        let result = engine
            .query("SELECT value FROM generate_series(1, 1000000)")
            .await
            .expect("query");
        assert!(result.truncated);
        let bytes: usize = result
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        assert!(result.num_rows() > 0, "{bytes}");
        assert!(result.num_rows() < 1_000_000);
    }
}
