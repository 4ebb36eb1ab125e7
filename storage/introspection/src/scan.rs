//! The partition scan: a [`TableProvider`] over the open partition stores, and the execution
//! plan that reads them.
//!
//! ```text
//!   execute(i) ──► reader (blocking thread)                         ──► stream of batches
//!                    for each partition assigned to output i:
//!                      open here: one read transaction ─► table rows ─► Sink ─► mpsc(2) ─┘
//!                      elsewhere: remote_scan ─► Arrow IPC chunks ─► batches ─┘
//! ```
//!
//! Output partition `i` of the plan reads every `n`-th selected partition, one after the other:
//! a partition open here through its own read transaction, any other through a node holding a
//! replica of it ([`crate::remote`]), whose batches join the same sink. The sink turns rows into
//! batches of at most [`BATCH_ROWS`] rows and blocks while the channel is full, so a slow
//! consumer holds back the reader (and through it the remote scan) instead of letting batches
//! pile up; when the consumer goes away (done, limit, timeout) the next send fails and the
//! reader stops.

use crate::pushdown::{Lookup, Pushdown, Routing};
use crate::remote::{RemoteScan, decode_chunk};
use crate::{BATCH_ROWS, PartitionStores};
use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, project_schema};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use holdfast_raft_store::{StateMachine, StateSnapshot};
use holdfast_schema::Registry;
use holdfast_types::{DeploymentId, PartitionId};
use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, watch};

/// The time zone of every timestamp column.
pub(crate) const UTC: &str = "+00:00";

/// The type of every timestamp column: Unix milliseconds, UTC.
pub(crate) fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
}

/// Why a partition scan failed; reaches the query as a DataFusion external error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    /// The partition's store could not be read.
    #[error("reading partition {partition}: {source}")]
    Storage {
        partition: PartitionId,
        source: holdfast_raft_store::Error,
    },
    /// A batch could not be assembled.
    #[error("building a batch: {0}")]
    Arrow(#[from] ArrowError),
    /// A table produced a value of the wrong type for its column: a bug in this crate.
    #[error("column {column}: {value} does not fit {data_type}")]
    Mismatch {
        column: String,
        value: &'static str,
        data_type: DataType,
    },
    /// The reader thread could not be started.
    #[error("starting the scan reader: {0}")]
    Spawn(std::io::Error),
    /// No node holding a replica of the partition could scan it (all unreachable, or its scan
    /// failed there): the query fails rather than miss the partition's rows.
    #[error("partition {partition} is unavailable: {reason}")]
    Unavailable {
        partition: PartitionId,
        reason: String,
    },
    /// The rows a peer sent for a partition are not this node's table (another release).
    #[error("partition {partition}: the rows from the node holding it do not fit: {source}")]
    Foreign {
        partition: PartitionId,
        source: ArrowError,
    },
    /// The local replicas could not be brought up to their leaders' read index (a leader out
    /// of reach): reading them could miss acknowledged writes.
    #[error("read barrier: {0}")]
    Barrier(String),
}

impl From<ScanError> for DataFusionError {
    fn from(e: ScanError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// One value of a row, as a table hands it to the batch builder.
pub(crate) enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// Borrowed text.
    Str(&'a str),
    /// Text formatted for this row.
    Text(String),
    /// An unsigned 64-bit integer.
    U64(u64),
    /// An unsigned 32-bit integer.
    U32(u32),
    /// A boolean.
    Bool(bool),
    /// A time in Unix milliseconds.
    Time(u64),
    /// Raw bytes.
    Bytes(&'a [u8]),
}

impl<'a> Cell<'a> {
    /// Borrowed text, or NULL.
    pub(crate) fn opt_str(value: Option<&'a str>) -> Self {
        value.map_or(Cell::Null, Cell::Str)
    }

    /// Formatted text, or NULL.
    pub(crate) fn opt_text(value: Option<String>) -> Self {
        value.map_or(Cell::Null, Cell::Text)
    }

    /// A time, or NULL.
    pub(crate) fn opt_time(value: Option<u64>) -> Self {
        value.map_or(Cell::Null, Cell::Time)
    }

    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "null",
            Cell::Str(_) | Cell::Text(_) => "text",
            Cell::U64(_) => "u64",
            Cell::U32(_) => "u32",
            Cell::Bool(_) => "bool",
            Cell::Time(_) => "time",
            Cell::Bytes(_) => "bytes",
        }
    }
}

/// A table row: its value in each column of the table's full schema, by column index.
pub(crate) trait Row {
    /// The value of column `column`.
    fn cell(&self, column: usize) -> Cell<'_>;
}

/// Accumulates one column of a batch.
enum Builder {
    Utf8(StringBuilder),
    U64(UInt64Builder),
    U32(UInt32Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
    Binary(BinaryBuilder),
}

impl Builder {
    fn new(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::UInt64 => Builder::U64(UInt64Builder::new()),
            DataType::UInt32 => Builder::U32(UInt32Builder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Timestamp(TimeUnit::Millisecond, zone) => {
                Builder::Time(TimestampMillisecondBuilder::new().with_timezone_opt(zone.clone()))
            }
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            _ => return None,
        })
    }

    /// Appends `cell`; `false` if it does not fit the column's type.
    fn append(&mut self, cell: Cell<'_>) -> bool {
        match (self, cell) {
            (Builder::Utf8(b), Cell::Null) => b.append_null(),
            (Builder::U64(b), Cell::Null) => b.append_null(),
            (Builder::U32(b), Cell::Null) => b.append_null(),
            (Builder::Bool(b), Cell::Null) => b.append_null(),
            (Builder::Time(b), Cell::Null) => b.append_null(),
            (Builder::Binary(b), Cell::Null) => b.append_null(),
            (Builder::Utf8(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Utf8(b), Cell::Text(s)) => b.append_value(s),
            (Builder::U64(b), Cell::U64(n)) => b.append_value(n),
            (Builder::U32(b), Cell::U32(n)) => b.append_value(n),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            // Times beyond i64 milliseconds (year 292 million) do not occur; clamp, never wrap.
            (Builder::Time(b), Cell::Time(ms)) => {
                b.append_value(i64::try_from(ms).unwrap_or(i64::MAX))
            }
            (Builder::Binary(b), Cell::Bytes(v)) => b.append_value(v),
            _ => return false,
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

type BatchResult = DfResult<RecordBatch>;

/// Where a reader puts its rows: builds batches of the projected columns and sends each full
/// one; counts the rows read from storage.
pub(crate) struct Sink {
    schema: SchemaRef,
    /// For each projected column, its index in the table's full schema.
    columns: Vec<usize>,
    builders: Vec<Builder>,
    rows: usize,
    /// Rows still wanted under the scan's limit.
    remaining: Option<usize>,
    tx: mpsc::Sender<BatchResult>,
    read: u64,
    scanned: Arc<AtomicU64>,
}

impl Sink {
    fn new(
        schema: SchemaRef,
        columns: Vec<usize>,
        limit: Option<usize>,
        tx: mpsc::Sender<BatchResult>,
        scanned: Arc<AtomicU64>,
    ) -> Result<Self, ScanError> {
        let builders = schema
            .fields()
            .iter()
            .map(|field| {
                Builder::new(field.data_type()).ok_or_else(|| ScanError::Mismatch {
                    column: field.name().clone(),
                    value: "any",
                    data_type: field.data_type().clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            schema,
            columns,
            builders,
            rows: 0,
            remaining: limit,
            tx,
            read: 0,
            scanned,
        })
    }

    /// Whether the query reads column `column` (of the full schema): expensive values are only
    /// computed when it does.
    pub(crate) fn wants(&self, column: usize) -> bool {
        self.columns.contains(&column)
    }

    /// Counts `n` records read from storage.
    pub(crate) fn read(&mut self, n: u64) {
        self.read += n;
    }

    /// Adds one row; `Break` once the scan should stop (limit reached, or nobody listens).
    pub(crate) fn push(&mut self, row: &impl Row) -> Result<ControlFlow<()>, ScanError> {
        if self.remaining == Some(0) {
            return Ok(ControlFlow::Break(()));
        }
        for (builder, (&column, field)) in self
            .builders
            .iter_mut()
            .zip(self.columns.iter().zip(self.schema.fields()))
        {
            let cell = row.cell(column);
            let kind = cell.kind();
            if !builder.append(cell) {
                return Err(ScanError::Mismatch {
                    column: field.name().clone(),
                    value: kind,
                    data_type: field.data_type().clone(),
                });
            }
        }
        self.rows += 1;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        if self.rows >= BATCH_ROWS || self.remaining == Some(0) {
            let sent = self.flush()?;
            if sent.is_break() || self.remaining == Some(0) {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Sends the rows built so far as one batch; `Break` if the consumer is gone.
    fn flush(&mut self) -> Result<ControlFlow<()>, ScanError> {
        self.scanned
            .fetch_add(std::mem::take(&mut self.read), Ordering::Relaxed);
        if self.rows == 0 {
            return Ok(ControlFlow::Continue(()));
        }
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        self.rows = 0;
        Ok(match self.tx.blocking_send(Ok(batch)) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        })
    }

    /// Adds a batch another node scanned (of this sink's columns) after the rows built so far,
    /// cut to the limit; `Break` once the scan should stop.
    fn forward(&mut self, batch: RecordBatch) -> Result<ControlFlow<()>, ScanError> {
        if self.flush()?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        let batch = match &mut self.remaining {
            Some(0) => return Ok(ControlFlow::Break(())),
            Some(remaining) => {
                let batch = batch.slice(0, batch.num_rows().min(*remaining));
                *remaining -= batch.num_rows();
                batch
            }
            None => batch,
        };
        if batch.num_rows() > 0 && self.tx.blocking_send(Ok(batch)).is_err() {
            return Ok(ControlFlow::Break(()));
        }
        Ok(if self.remaining == Some(0) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }

    /// Whether the consumer has gone away (the query finished or was cancelled).
    pub(crate) fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn finish(mut self) {
        if let Err(e) = self.flush() {
            self.fail(e);
        }
    }

    fn fail(self, error: ScanError) {
        // If the consumer is gone, nobody needs the error either.
        let _ = self.tx.blocking_send(Err(error.into()));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.scanned.fetch_add(self.read, Ordering::Relaxed);
    }
}

/// Collects the outcome of a storage scan whose visitor pushes rows: the first sink error, and
/// whether the scan was stopped on purpose.
#[derive(Default)]
pub(crate) struct Flow {
    error: Option<ScanError>,
    stopped: bool,
}

impl Flow {
    /// Turns one push into the visitor's answer, remembering why it stops.
    pub(crate) fn step(&mut self, pushed: Result<ControlFlow<()>, ScanError>) -> ControlFlow<()> {
        match pushed {
            Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            Ok(ControlFlow::Break(())) => {
                self.stopped = true;
                ControlFlow::Break(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    /// The scan's result: the storage error, else the sink error, else whether to go on.
    pub(crate) fn end(
        self,
        part: &PartitionRead<'_>,
        scanned: Result<(), holdfast_raft_store::Error>,
    ) -> Result<ControlFlow<()>, ScanError> {
        scanned.map_err(|e| part.storage(e))?;
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(if self.stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }
}

/// What every reader of one query may consult besides its own partition.
pub(crate) struct ScanShared {
    /// Every partition store open on this node (to look up callers in other partitions).
    pub stores: Vec<(PartitionId, StateMachine)>,
    /// The node's partitions, to scan those not open here on another node.
    pub source: Arc<dyn PartitionStores>,
    /// The cluster's partition count.
    pub partition_count: u32,
    /// The registry as of planning time.
    pub registry: Arc<Registry>,
    /// The SQL type name of each live service, built on first use.
    service_types: OnceLock<HashMap<String, &'static str>>,
    /// The SDK version each deployment declared, built on first use.
    sdk_versions: OnceLock<HashMap<DeploymentId, Option<String>>>,
}

impl ScanShared {
    /// The context of a scan over `stores` (open now) of `source`'s partitions.
    pub(crate) fn new(
        stores: Vec<(PartitionId, StateMachine)>,
        source: Arc<dyn PartitionStores>,
        registry: Arc<Registry>,
    ) -> Self {
        Self {
            stores,
            partition_count: source.partition_count(),
            source,
            registry,
            service_types: OnceLock::new(),
            sdk_versions: OnceLock::new(),
        }
    }

    /// The SQL type name of service `name` (`service`, `virtual_object`, `workflow`), if the
    /// registry knows it.
    pub(crate) fn service_type(&self, name: &str) -> Option<&'static str> {
        self.service_types
            .get_or_init(|| {
                self.registry
                    .services()
                    .into_iter()
                    .map(|service| (service.name.clone(), service_type(service.ty)))
                    .collect()
            })
            .get(name)
            .copied()
    }

    /// The SDK version deployment `id` declared, if the registry knows it and it declared one.
    pub(crate) fn sdk_version(&self, id: DeploymentId) -> Option<&str> {
        self.sdk_versions
            .get_or_init(|| {
                self.registry
                    .deployments()
                    .into_iter()
                    .map(|deployment| (deployment.id, deployment.sdk_version.clone()))
                    .collect()
            })
            .get(&id)
            .and_then(Option::as_deref)
    }
}

/// One partition as a table's scan sees it.
pub(crate) struct PartitionRead<'a> {
    /// Which partition.
    pub partition: PartitionId,
    /// Its consistent read view.
    pub snapshot: &'a StateSnapshot,
    /// The rest of the query's context.
    pub shared: &'a ScanShared,
}

impl PartitionRead<'_> {
    /// A storage error of this partition.
    pub(crate) fn storage(&self, source: holdfast_raft_store::Error) -> ScanError {
        ScanError::Storage {
            partition: self.partition,
            source,
        }
    }

    /// Whether invocation `id` lives in this partition (lookups by id read only their own).
    pub(crate) fn owns(&self, id: holdfast_types::InvocationId) -> bool {
        id.partition(self.shared.partition_count) == self.partition
    }
}

/// A table stored in the partition stores.
pub(crate) trait SysTable: Send + Sync + 'static {
    /// The SQL name.
    fn name(&self) -> &'static str;
    /// Every column.
    fn schema(&self) -> SchemaRef;
    /// How rows are routed, for filter pushdown.
    fn routing(&self) -> Routing;
    /// Pushes the rows of one partition selected by `lookup` into `sink`; `Break` stops the
    /// whole scan.
    fn scan(
        &self,
        part: &PartitionRead<'_>,
        lookup: &Lookup,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError>;
}

/// A [`SysTable`] as a DataFusion table over the node's partition stores.
pub(crate) struct PartitionTable {
    table: Arc<dyn SysTable>,
    stores: Arc<dyn PartitionStores>,
    registry: watch::Receiver<Arc<Registry>>,
    scanned: Arc<AtomicU64>,
}

impl PartitionTable {
    pub(crate) fn new(
        table: Arc<dyn SysTable>,
        stores: Arc<dyn PartitionStores>,
        registry: watch::Receiver<Arc<Registry>>,
        scanned: Arc<AtomicU64>,
    ) -> Self {
        Self {
            table,
            stores,
            registry,
            scanned,
        }
    }
}

impl fmt::Debug for PartitionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionTable")
            .field("table", &self.table.name())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for PartitionTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let routing = self.table.routing();
        Ok(filters
            .iter()
            .map(|filter| {
                if routing.understands(filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let full = self.table.schema();
        let schema = project_schema(&full, projection)?;
        let columns = match projection {
            Some(columns) => columns.clone(),
            None => (0..full.fields().len()).collect(),
        };
        let routing = self.table.routing();
        let pushdown = Pushdown::from_filters(filters, &routing);
        let partition_count = self.stores.partition_count();
        let selected = pushdown.partitions(partition_count);
        let lookup = pushdown.lookup(&routing);
        let stores = self.stores.stores();
        // Every selected partition: read here where its store is open, elsewhere otherwise.
        let parts: Vec<Part> = if lookup == Lookup::Empty {
            Vec::new()
        } else {
            (0..partition_count)
                .map(PartitionId)
                .filter(|id| selected.as_ref().is_none_or(|only| only.contains(id)))
                .map(|id| match stores.iter().find(|(open, _)| *open == id) {
                    Some((_, store)) => Part::local(id, store.clone()),
                    None => Part::remote(id),
                })
                .collect()
        };
        // Remote partitions are brought up to date by the node that scans them.
        let local = parts
            .iter()
            .filter(|part| !part.is_remote())
            .map(|part| part.partition)
            .collect();
        self.stores
            .read_barrier(local)
            .await
            .map_err(ScanError::Barrier)?;
        let registry = self.registry.borrow().clone();
        let outputs = parts.len().min(state.config().target_partitions()).max(1);
        Ok(Arc::new(PartitionScanExec {
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(outputs),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            spec: ScanSpec {
                table: self.table.clone(),
                schema,
                columns,
                shared: Arc::new(ScanShared::new(stores, self.stores.clone(), registry)),
                lookup: Arc::new(lookup),
                limit,
                scanned: self.scanned.clone(),
            },
            parts,
            outputs,
        }))
    }
}

/// Where one selected partition is read.
#[derive(Clone)]
enum Source {
    /// From its store, open on this node.
    Local(StateMachine),
    /// By a node holding a replica of it.
    Remote,
}

/// One partition a scan reads, and where.
#[derive(Clone)]
pub(crate) struct Part {
    /// Which partition.
    pub partition: PartitionId,
    source: Source,
}

impl Part {
    /// A partition read from `store`, open on this node.
    pub(crate) fn local(partition: PartitionId, store: StateMachine) -> Self {
        Self {
            partition,
            source: Source::Local(store),
        }
    }

    /// A partition read by a node holding a replica of it.
    fn remote(partition: PartitionId) -> Self {
        Self {
            partition,
            source: Source::Remote,
        }
    }

    fn is_remote(&self) -> bool {
        matches!(self.source, Source::Remote)
    }
}

/// What every reader of one scan reads: a table's projected columns, by one lookup, under one
/// limit; shared by this node's plan and the scans it runs for other nodes.
pub(crate) struct ScanSpec {
    /// The table.
    pub table: Arc<dyn SysTable>,
    /// The projected columns' schema.
    pub schema: SchemaRef,
    /// For each projected column, its index in the table's full schema.
    pub columns: Vec<usize>,
    /// The rest of the query's context.
    pub shared: Arc<ScanShared>,
    /// What to read inside each partition.
    pub lookup: Arc<Lookup>,
    /// At most this many rows per reader.
    pub limit: Option<usize>,
    /// Counts the records read from storage.
    pub scanned: Arc<AtomicU64>,
}

impl ScanSpec {
    /// Reads `parts` one after the other on a blocking thread, started on the first poll
    /// inside the runtime that drives the query; the batches as they come.
    pub(crate) fn read(
        &self,
        parts: Vec<Part>,
    ) -> Result<BoxStream<'static, BatchResult>, ScanError> {
        let (tx, mut rx) = mpsc::channel::<BatchResult>(2);
        let reader = Reader {
            table: self.table.clone(),
            parts,
            shared: self.shared.clone(),
            lookup: self.lookup.clone(),
            runtime: None,
        };
        let sink = Sink::new(
            self.schema.clone(),
            self.columns.clone(),
            self.limit,
            tx.clone(),
            self.scanned.clone(),
        )?;
        let mut pending = Some((reader, sink, tx));
        let stream = futures::stream::poll_fn(move |cx| {
            if let Some((mut reader, sink, tx)) = pending.take() {
                reader.runtime = tokio::runtime::Handle::try_current().ok();
                if let Err(e) = spawn(move || reader.run(sink)) {
                    let _ = tx.try_send(Err(e.into()));
                }
            }
            rx.poll_recv(cx)
        });
        Ok(stream.boxed())
    }
}

/// Reads a [`SysTable`] from a set of partitions; see the module docs.
pub(crate) struct PartitionScanExec {
    spec: ScanSpec,
    parts: Vec<Part>,
    outputs: usize,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for PartitionScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionScanExec")
            .field("table", &self.spec.table.name())
            .field("partitions", &self.partition_ids(false))
            .field("remote", &self.partition_ids(true))
            .field("lookup", &self.spec.lookup)
            .field("limit", &self.spec.limit)
            .finish_non_exhaustive()
    }
}

impl PartitionScanExec {
    /// The partitions read (`only_remote`: those read by other nodes).
    fn partition_ids(&self, only_remote: bool) -> Vec<u32> {
        self.parts
            .iter()
            .filter(|part| !only_remote || part.is_remote())
            .map(|part| part.partition.0)
            .collect()
    }
}

impl DisplayAs for PartitionScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partitions = self.partition_ids(false);
        let remote = self.partition_ids(true);
        let (table, lookup) = (self.spec.table.name(), &self.spec.lookup);
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "PartitionScan: table={table}, partitions={partitions:?}, lookup={lookup}"
                )?;
                if !remote.is_empty() {
                    write!(f, ", remote={remote:?}")?;
                }
                if let Some(limit) = self.spec.limit {
                    write!(f, ", limit={limit}")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "table={table}")?;
                writeln!(f, "partitions={partitions:?}")?;
                if !remote.is_empty() {
                    writeln!(f, "remote={remote:?}")?;
                }
                write!(f, "lookup={lookup}")
            }
        }
    }
}

impl ExecutionPlan for PartitionScanExec {
    fn name(&self) -> &str {
        "PartitionScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "PartitionScanExec has no children".to_owned(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition >= self.outputs {
            return Err(DataFusionError::Internal(format!(
                "PartitionScanExec has {} outputs, asked for {partition}",
                self.outputs
            )));
        }
        let assigned: Vec<Part> = self
            .parts
            .iter()
            .skip(partition)
            .step_by(self.outputs)
            .cloned()
            .collect();
        let stream = self.spec.read(assigned)?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.spec.schema.clone(),
            stream,
        )))
    }
}

/// Runs `work` on the runtime's blocking pool, or on its own thread outside a runtime.
fn spawn(work: impl FnOnce() + Send + 'static) -> Result<(), ScanError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(work);
            Ok(())
        }
        Err(_) => std::thread::Builder::new()
            .name("holdfast-scan".to_owned())
            .spawn(work)
            .map(drop)
            .map_err(ScanError::Spawn),
    }
}

/// The blocking half of one output partition.
struct Reader {
    table: Arc<dyn SysTable>,
    parts: Vec<Part>,
    shared: Arc<ScanShared>,
    lookup: Arc<Lookup>,
    /// The runtime that drives the query, which drives the remote scans too.
    runtime: Option<tokio::runtime::Handle>,
}

impl Reader {
    fn run(self, mut sink: Sink) {
        for part in &self.parts {
            if sink.closed() {
                return;
            }
            let read = match &part.source {
                Source::Local(store) => self.local(part.partition, store, &mut sink),
                Source::Remote => self.remote(part.partition, &mut sink),
            };
            match read {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => break,
                Err(e) => return sink.fail(e),
            }
        }
        sink.finish();
    }

    /// Reads a partition open here, through one read transaction: its rows are a consistent
    /// snapshot.
    fn local(
        &self,
        partition: PartitionId,
        store: &StateMachine,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let snapshot = store
            .read_snapshot()
            .map_err(|source| ScanError::Storage { partition, source })?;
        let part = PartitionRead {
            partition,
            snapshot: &snapshot,
            shared: &self.shared,
        };
        self.table.scan(&part, &self.lookup, sink)
    }

    /// Has a node holding a replica of `partition` scan it, and feeds its batches to the sink
    /// as they arrive (one chunk in flight between the runtime and this thread).
    fn remote(
        &self,
        partition: PartitionId,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let unavailable = |reason: String| ScanError::Unavailable { partition, reason };
        let Some(runtime) = &self.runtime else {
            return Err(unavailable("no runtime to reach other nodes from".into()));
        };
        let request = RemoteScan {
            table: self.table.name().to_owned(),
            columns: sink.columns.clone(),
            lookup: self.lookup.as_ref().clone(),
            limit: sink.remaining.map(|n| n as u64),
        };
        let request = holdfast_types::codec::encode(&request)
            .map_err(|e| unavailable(format!("cannot encode the scan: {e}")))?;
        let mut rows = self.shared.source.remote_scan(partition, request);
        let (tx, mut rx) = mpsc::channel(1);
        let consumer = sink.tx.clone();
        // Ends when the rows do, or when this reader or the query stops listening (dropping
        // the scan, which stops it on the other node too), even while no chunk comes.
        runtime.spawn(async move {
            loop {
                let chunk = tokio::select! {
                    () = tx.closed() => return,
                    () = consumer.closed() => return,
                    chunk = rows.next() => chunk,
                };
                let Some(chunk) = chunk else { return };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        while let Some(chunk) = rx.blocking_recv() {
            let chunk = chunk.map_err(unavailable)?;
            let batches = decode_chunk(&chunk, &sink.schema)
                .map_err(|source| ScanError::Foreign { partition, source })?;
            for batch in batches {
                if sink.forward(batch)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// The SQL name of a service type, as Restate spells it.
pub(crate) fn service_type(ty: holdfast_protocol::manifest::ServiceType) -> &'static str {
    use holdfast_protocol::manifest::ServiceType;
    match ty {
        ServiceType::Service => "service",
        ServiceType::Object => "virtual_object",
        ServiceType::Workflow => "workflow",
    }
}
