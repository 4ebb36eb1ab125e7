//! `state`: one row per state entry of every virtual object and workflow in the partition.

use super::{columns, utf8};
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_raft_store::ObjectScope;
use holdfast_types::ObjectKey;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        ServiceName = "service_name": Utf8,
        ServiceKey = "service_key": Utf8,
        Key = "key": Utf8,
        ValueUtf8 = "value_utf8": Utf8,
        Value = "value": Binary,
        ValueLength = "value_length": U64,
        Service = "service": Utf8,
        ServiceKeyUtf8 = "service_key_utf8": Utf8,
        KeyLength = "key_length": U64,
    }
}

struct StateRow<'a> {
    object: &'a ObjectKey,
    name: &'a str,
    value: &'a [u8],
}

impl Row for StateRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::PartitionKey => Cell::U64(self.object.partition_key()),
            Col::ServiceName | Col::Service => Cell::Str(&self.object.service),
            Col::ServiceKey | Col::ServiceKeyUtf8 => Cell::Str(&self.object.key),
            Col::Key => Cell::Str(self.name),
            Col::ValueUtf8 => utf8(self.value),
            Col::Value => Cell::Bytes(self.value),
            Col::ValueLength => Cell::U64(self.value.len() as u64),
            Col::KeyLength => Cell::U64(self.name.len() as u64),
        }
    }
}

/// The object scope of a lookup on an object-keyed table.
pub(crate) fn object_scope(lookup: &Lookup) -> Option<ObjectScope<'_>> {
    match lookup {
        Lookup::Empty | Lookup::Ids(_) => None,
        Lookup::Object(object) => Some(ObjectScope::Object(object)),
        Lookup::Service(service) => Some(ObjectScope::Service(service)),
        Lookup::PartitionKey(_) | Lookup::Scan => Some(ObjectScope::All),
    }
}

/// `state`.
pub(crate) struct StateTable {
    schema: SchemaRef,
}

impl StateTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for StateTable {
    fn name(&self) -> &'static str {
        "state"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: None,
            service: &["service_name", "service"],
            key: &["service_key", "service_key_utf8"],
            by_id: false,
            by_service: true,
            by_partition_key: false,
        }
    }

    fn scan(
        &self,
        part: &PartitionRead<'_>,
        lookup: &Lookup,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let Some(scope) = object_scope(lookup) else {
            return Ok(ControlFlow::Continue(()));
        };
        let mut flow = Flow::default();
        let scanned = part.snapshot.scan_state(scope, |object, name, value| {
            sink.read(1);
            let pushed = sink.push(&StateRow {
                object,
                name,
                value,
            });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}
