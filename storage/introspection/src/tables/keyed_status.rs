//! `sys_keyed_service_status`: which invocation holds each virtual object's or workflow's lock.

use super::columns;
use super::inbox::scan_by_object;
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_raft_store::ObjectScope;
use holdfast_types::{InvocationId, ObjectKey};
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        ServiceName = "service_name": Utf8,
        ServiceKey = "service_key": Utf8,
        InvocationId = "invocation_id": Utf8,
    }
}

struct LockRow<'a> {
    object: &'a ObjectKey,
    holder: InvocationId,
}

impl Row for LockRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::PartitionKey => Cell::U64(self.object.partition_key()),
            Col::ServiceName => Cell::Str(&self.object.service),
            Col::ServiceKey => Cell::Str(&self.object.key),
            Col::InvocationId => Cell::Text(self.holder.to_string()),
        }
    }
}

/// `sys_keyed_service_status`.
pub(crate) struct KeyedStatusTable {
    schema: SchemaRef,
}

impl KeyedStatusTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }

    fn scan_scope(
        part: &PartitionRead<'_>,
        scope: ObjectScope<'_>,
        only: Option<InvocationId>,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let mut flow = Flow::default();
        let scanned = part.snapshot.scan_locks(scope, |object, holder| {
            sink.read(1);
            if only.is_some_and(|only| only != holder) {
                return ControlFlow::Continue(());
            }
            let pushed = sink.push(&LockRow { object, holder });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}

impl SysTable for KeyedStatusTable {
    fn name(&self) -> &'static str {
        "sys_keyed_service_status"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: Some("invocation_id"),
            service: &["service_name"],
            key: &["service_key"],
            by_id: true,
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
        scan_by_object(part, lookup, sink, Self::scan_scope)
    }
}
