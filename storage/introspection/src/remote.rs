//! Partitions this node holds no replica of: the request a node sends to one that does
//! ([`RemoteScan`]), the serving side that runs it ([`ScanServer`]), and the rows' encoding on
//! the way back.
//!
//! ```text
//!   requesting node: Reader ─ RemoteScan ─► PartitionStores::remote_scan ══ transport ══┐
//!        Sink ◄─ decode_chunk ◄─ Arrow IPC chunks ◄══════════════════════════════════════╡
//!   serving node:   ScanServer::serve ─ read barrier ─ the same Reader over its store ─ encode_batch
//! ```
//!
//! **Why Arrow IPC.** The scan already produces Arrow batches, so the serving node sends its
//! buffers as they are and the requesting node gets back exactly the columns, types and nulls a
//! local scan builds (zoned timestamps, binary), with no per-value conversion on either side.
//! Each chunk is a self-contained IPC stream (schema and one batch, a few hundred bytes of
//! schema per 1,024 rows), so chunks decode independently and the receiver compares the schema
//! with its own table and refuses a peer whose table differs (another release) instead of
//! mislabelling columns. The versioned msgpack codec would need a row format per column type
//! and a second batch builder, and would copy every value twice.

use crate::pushdown::Lookup;
use crate::scan::{Part, ScanError, ScanShared, ScanSpec};
use crate::tables::partition_tables;
use crate::{PartitionStores, RemoteRows};
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use futures::{StreamExt, TryStreamExt};
use holdfast_schema::Registry;
use holdfast_types::PartitionId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// The size a chunk of rows is kept under: well below the transport's message limit and about
/// one HTTP/2 stream window, so a chunk neither fails nor stalls the transfer. A larger batch
/// is split; a single row is sent whole whatever its size.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// One partition's scan as the requesting node asks for it: the same table, columns, lookup
/// and limit its own scan would use. Every pushed filter is `Inexact` (DataFusion applies it
/// again to what the scan returns, on the requesting node), so the lookup is all the serving
/// node needs; a filter declared `Exact` would have to travel here as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemoteScan {
    /// The table's SQL name.
    pub table: String,
    /// The projected columns, as indexes into the table's full schema.
    pub columns: Vec<usize>,
    /// What to read inside the partition.
    pub lookup: Lookup,
    /// At most this many rows are wanted.
    pub limit: Option<u64>,
}

/// Why a node refuses to run a scan another node asked for.
#[derive(Debug, thiserror::Error)]
pub enum RemoteScanError {
    /// The request does not decode (a peer of another release, or garbage).
    #[error("undecodable scan request: {0}")]
    Undecodable(#[from] holdfast_types::codec::Error),
    /// The request names a table this node does not have.
    #[error("no partition table {0:?} on this node")]
    UnknownTable(String),
    /// The request's columns are not the table's.
    #[error("table {table} has no columns {columns:?}")]
    Columns {
        /// The table.
        table: String,
        /// The columns asked for.
        columns: Vec<usize>,
    },
    /// The partition's store is not open here: the caller asks another replica.
    #[error("this node holds no open replica of partition {0}")]
    NotHosted(PartitionId),
}

/// Runs the scans other nodes ask this one for, over its open partition stores.
#[derive(Clone)]
pub struct ScanServer {
    stores: Arc<dyn PartitionStores>,
    registry: watch::Receiver<Arc<Registry>>,
    scanned: Arc<AtomicU64>,
}

impl ScanServer {
    /// A server over `stores`, with the registry `registry` follows (for the service types
    /// some tables show).
    pub fn new(stores: Arc<dyn PartitionStores>, registry: watch::Receiver<Arc<Registry>>) -> Self {
        Self {
            stores,
            registry,
            scanned: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records read from the stores for other nodes so far: for tests and metrics.
    pub fn rows_scanned(&self) -> u64 {
        self.scanned.load(Ordering::Relaxed)
    }

    /// Starts the scan `request` (an encoded [`RemoteScan`]) of `partition`: refused unless its
    /// store is open here. The rows come in Arrow IPC chunks of about [`CHUNK_BYTES`], after
    /// this replica has applied what its leader had committed (the read barrier of follower
    /// reads: nothing to wait for on the leader), so they hold every acknowledged write.
    pub fn serve(
        &self,
        partition: PartitionId,
        request: &[u8],
    ) -> Result<RemoteRows, RemoteScanError> {
        let request: RemoteScan = holdfast_types::codec::decode(request)?;
        let Some(table) = partition_tables()
            .into_iter()
            .find(|table| table.name() == request.table)
        else {
            return Err(RemoteScanError::UnknownTable(request.table));
        };
        let schema = match table.schema().project(&request.columns) {
            Ok(schema) => Arc::new(schema),
            Err(_) => {
                return Err(RemoteScanError::Columns {
                    table: request.table,
                    columns: request.columns,
                });
            }
        };
        let stores = self.stores.stores();
        let Some(store) = stores
            .iter()
            .find(|(id, _)| *id == partition)
            .map(|(_, store)| store.clone())
        else {
            return Err(RemoteScanError::NotHosted(partition));
        };
        let spec = ScanSpec {
            table,
            schema,
            columns: request.columns,
            shared: Arc::new(ScanShared::new(
                stores,
                self.stores.clone(),
                self.registry.borrow().clone(),
            )),
            lookup: Arc::new(request.lookup),
            limit: request
                .limit
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            scanned: self.scanned.clone(),
        };
        let barrier = self.stores.read_barrier(vec![partition]);
        let rows = futures::stream::once(async move {
            barrier
                .await
                .map_err(|e| ScanError::Barrier(e).to_string())?;
            let batches = spec
                .read(vec![Part::local(partition, store)])
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(batches.map_err(|e| e.to_string()))
        })
        .try_flatten()
        .flat_map(|batch| {
            let chunks = match batch {
                Ok(batch) => match encode_batch(&batch, CHUNK_BYTES) {
                    Ok(chunks) => chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect(),
                    Err(e) => vec![Err(ScanError::from(e).to_string())],
                },
                Err(e) => vec![Err(e.to_string())],
            };
            futures::stream::iter(chunks)
        });
        Ok(rows.boxed())
    }
}

/// `batch` as Arrow IPC chunks of at most `target` bytes each, in row order: halved until each
/// part fits (a single row is sent whole whatever its size).
pub(crate) fn encode_batch(batch: &RecordBatch, target: usize) -> Result<Vec<Vec<u8>>, ArrowError> {
    let mut chunks = Vec::new();
    // Parts still to encode, the next one last.
    let mut pending = vec![batch.clone()];
    while let Some(part) = pending.pop() {
        let bytes = ipc(&part)?;
        let rows = part.num_rows();
        if bytes.len() <= target || rows <= 1 {
            chunks.push(bytes);
        } else {
            let half = rows / 2;
            pending.push(part.slice(half, rows - half));
            pending.push(part.slice(0, half));
        }
    }
    Ok(chunks)
}

/// One batch as a self-contained IPC stream.
fn ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// The batches of one chunk, as batches of `schema` (the requesting scan's projected columns);
/// a chunk whose columns differ in name or type is refused.
pub(crate) fn decode_chunk(
    chunk: &[u8],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let reader = StreamReader::try_new(std::io::Cursor::new(chunk), None)?;
    let theirs = reader.schema();
    let same = theirs.fields().len() == schema.fields().len()
        && theirs
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(ArrowError::SchemaError(format!(
            "the peer sent columns {:?}, this node expects {:?}",
            field_list(&theirs),
            field_list(schema)
        )));
    }
    reader
        .map(|batch| {
            let batch = batch?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &options)
        })
        .collect()
}

fn field_list(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::timestamp;
    use datafusion::arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, StringArray, TimestampMillisecondArray, UInt32Array,
        UInt64Array,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use holdfast_types::{InvocationId, ObjectKey};

    fn every_type(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("n64", DataType::UInt64, true),
            Field::new("n32", DataType::UInt32, false),
            Field::new("flag", DataType::Boolean, true),
            Field::new("at", timestamp(), true),
            Field::new("raw", DataType::Binary, true),
        ]));
        let some = |i: usize| !i.is_multiple_of(3);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| some(i).then(|| format!("row {i} ✓"))),
            )),
            Arc::new(UInt64Array::from_iter(
                (0..rows).map(|i| some(i).then_some(u64::MAX - i as u64)),
            )),
            Arc::new(UInt32Array::from_iter_values((0..rows).map(|i| i as u32))),
            Arc::new(BooleanArray::from_iter(
                (0..rows).map(|i| some(i).then_some(i % 2 == 0)),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(
                    (0..rows).map(|i| some(i).then_some(1_700_000_000_000 + i as i64)),
                )
                .with_timezone(crate::scan::UTC),
            ),
            Arc::new(BinaryArray::from_iter(
                (0..rows).map(|i| some(i).then(|| vec![i as u8; i % 50])),
            )),
        ];
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    fn decode_all(chunks: &[Vec<u8>], schema: &SchemaRef) -> Vec<RecordBatch> {
        chunks
            .iter()
            .flat_map(|chunk| decode_chunk(chunk, schema).expect("decode"))
            .collect()
    }

    #[test]
    fn a_batch_of_every_column_type_round_trips() {
        let batch = every_type(1000);
        let chunks = encode_batch(&batch, CHUNK_BYTES).expect("encode");
        assert_eq!(chunks.len(), 1);
        let back = decode_all(&chunks, &batch.schema());
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn a_batch_above_the_chunk_size_is_split_in_row_order() {
        let batch = every_type(1000);
        let chunks = encode_batch(&batch, 8 * 1024).expect("encode");
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        // Each chunk carries only its slice's bytes (a little over the target at most, for the
        // schema and framing of one row's worth).
        assert!(
            chunks.iter().all(|c| c.len() <= 16 * 1024),
            "oversized chunk"
        );
        let back = decode_all(&chunks, &batch.schema());
        let rows: usize = back.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1000);
        let joined =
            datafusion::arrow::compute::concat_batches(&batch.schema(), &back).expect("concat");
        assert_eq!(joined, batch);
    }

    #[test]
    fn a_count_without_columns_keeps_its_row_count() {
        let schema = Arc::new(Schema::empty());
        let options = RecordBatchOptions::new().with_row_count(Some(42));
        let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options)
            .expect("empty batch");
        let chunks = encode_batch(&batch, CHUNK_BYTES).expect("encode");
        let back = decode_all(&chunks, &schema);
        assert_eq!(back.iter().map(RecordBatch::num_rows).sum::<usize>(), 42);
    }

    #[test]
    fn a_chunk_of_other_columns_is_refused() {
        let batch = every_type(3);
        let chunks = encode_batch(&batch, CHUNK_BYTES).expect("encode");
        let renamed = Arc::new(Schema::new(
            batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = if i == 1 { "other" } else { f.name().as_str() };
                    Field::new(name, f.data_type().clone(), true)
                })
                .collect::<Vec<_>>(),
        ));
        let refused = decode_chunk(&chunks[0], &renamed).expect_err("refused");
        assert!(refused.to_string().contains("other"), "{refused}");
    }

    #[test]
    fn every_pushdown_round_trips_through_the_request_codec() {
        let id = InvocationId {
            partition_key: 7,
            nonce: 9,
        };
        for lookup in [
            Lookup::Empty,
            Lookup::Ids(vec![id, InvocationId { nonce: 10, ..id }]),
            Lookup::Object(ObjectKey::new("Counter", "k ✓")),
            Lookup::Service("Greeter".into()),
            Lookup::PartitionKey(u64::MAX),
            Lookup::Scan,
        ] {
            let request = RemoteScan {
                table: "sys_invocation".into(),
                columns: vec![0, 3, 5],
                lookup,
                limit: Some(10),
            };
            let bytes = holdfast_types::codec::encode(&request).expect("encode");
            let back: RemoteScan = holdfast_types::codec::decode(&bytes).expect("decode");
            assert_eq!(back, request);
        }
    }
}
