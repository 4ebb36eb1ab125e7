//! Shared fixture: an endpoint over in-memory tables shaped like Holdfast's
//! introspection tables, with one column of each interesting Arrow type.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use holdfast_pgwire::{PgLimits, PgServer};

fn invocations() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("retry_count", DataType::Int32, false),
        Field::new("attempt", DataType::Int16, true),
        Field::new("priority", DataType::Int8, true),
        Field::new("journal_len", DataType::Int64, true),
        Field::new("partition", DataType::UInt32, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ratio", DataType::Float32, true),
        Field::new("completed", DataType::Boolean, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new("payload", DataType::Binary, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("a");
    tags.values().append_value("b c");
    tags.append(true);
    tags.append(false);
    tags.values().append_value("x");
    tags.append(true);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["inv_1", "inv_2", "inv_3"])),
        Arc::new(StringArray::from(vec![
            Some("Greeter/greet"),
            None,
            Some("Cart/add"),
        ])),
        Arc::new(StringArray::from(vec!["completed", "running", "suspended"])),
        Arc::new(Int32Array::from(vec![0, 3, 1])),
        Arc::new(Int16Array::from(vec![Some(1), Some(4), None])),
        Arc::new(Int8Array::from(vec![Some(-1), Some(0), Some(7)])),
        Arc::new(Int64Array::from(vec![Some(10), Some(20_000_000_000), None])),
        Arc::new(UInt32Array::from(vec![
            Some(1),
            Some(4_000_000_000),
            Some(2),
        ])),
        Arc::new(UInt64Array::from(vec![Some(5), Some(6), None])),
        Arc::new(Float64Array::from(vec![Some(1.5), Some(-0.25), None])),
        Arc::new(Float32Array::from(vec![Some(0.5), None, Some(2.0)])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(
            TimestampMillisecondArray::from(vec![
                Some(1_700_000_000_123),
                Some(1_700_000_001_000),
                None,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from(vec![Some(19_675), None, Some(0)])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"\x01\x02"[..]),
            None,
            Some(&b"hi"[..]),
        ])),
        Arc::new(tags.finish()),
    ];
    RecordBatch::try_new(schema, columns).expect("fixture batch")
}

fn state() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
        Field::new("value_utf8", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["Cart", "Cart", "Greeter"])),
        Arc::new(StringArray::from(vec!["items", "owner", "count"])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"[1,2]"[..]),
            Some(&b"bob"[..]),
            None,
        ])),
        Arc::new(StringArray::from(vec![Some("[1,2]"), Some("bob"), None])),
    ];
    RecordBatch::try_new(schema, columns).expect("fixture batch")
}

/// A context with `sys_invocation` and `state` registered in `public`.
pub fn fixture_context() -> SessionContext {
    let ctx = SessionContext::new();
    for (name, batch) in [("sys_invocation", invocations()), ("state", state())] {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("mem table");
        ctx.register_table(name, Arc::new(table)).expect("register");
    }
    ctx
}

/// Starts an endpoint on 127.0.0.1:0 over the fixture tables.
pub async fn start(limits: PgLimits) -> PgServer {
    PgServer::bind("127.0.0.1:0", Arc::new(fixture_context), limits)
        .await
        .expect("bind")
}

pub fn default_limits() -> PgLimits {
    PgLimits {
        statement_timeout: Duration::from_secs(20),
        max_rows: 1_000,
        ..PgLimits::default()
    }
}
