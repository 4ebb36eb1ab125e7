//! `sys_idempotency`: the idempotency keys the partition remembers, and the invocation each
//! one names.

use super::columns;
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_types::{InvocationId, Target};
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        ServiceName = "service_name": Utf8,
        ServiceKey = "service_key": Utf8,
        ServiceHandler = "service_handler": Utf8,
        IdempotencyKey = "idempotency_key": Utf8,
        InvocationId = "invocation_id": Utf8,
    }
}

struct IdempotencyRow<'a> {
    target: &'a Target,
    key: &'a str,
    id: InvocationId,
}

impl Row for IdempotencyRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::PartitionKey => Cell::U64(self.id.partition_key),
            Col::ServiceName => Cell::Str(&self.target.service),
            Col::ServiceKey => Cell::opt_str(self.target.key.as_deref()),
            Col::ServiceHandler => Cell::Str(&self.target.handler),
            Col::IdempotencyKey => Cell::Str(self.key),
            Col::InvocationId => Cell::Text(self.id.to_string()),
        }
    }
}

/// `sys_idempotency`.
pub(crate) struct IdempotencyTable {
    schema: SchemaRef,
}

impl IdempotencyTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for IdempotencyTable {
    fn name(&self) -> &'static str {
        "sys_idempotency"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Keys lead with the service, then the handler: a service's keys are one range, an
    /// object's are not (an id or an object still narrows the partitions read).
    fn routing(&self) -> Routing {
        Routing {
            id: Some("invocation_id"),
            service: &["service_name"],
            key: &["service_key"],
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
        let service = match lookup {
            Lookup::Empty => return Ok(ControlFlow::Continue(())),
            Lookup::Object(object) => Some(object.service.as_str()),
            Lookup::Service(service) => Some(service.as_str()),
            Lookup::Ids(_) | Lookup::PartitionKey(_) | Lookup::Scan => None,
        };
        let mut flow = Flow::default();
        let scanned = part.snapshot.scan_idempotency(service, |target, key, id| {
            sink.read(1);
            let pushed = sink.push(&IdempotencyRow { target, key, id });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}
