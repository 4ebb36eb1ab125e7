//! `sys_promise`: one row per durable promise of every workflow run in the partition.

use super::state::object_scope;
use super::{columns, failure_text, utf8};
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_fsm::state::Promise;
use holdfast_protocol::Outcome;
use holdfast_types::ObjectKey;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        ServiceName = "service_name": Utf8,
        ServiceKey = "service_key": Utf8,
        Key = "key": Utf8,
        Completed = "completed": Bool,
        CompletionSuccessValue = "completion_success_value": Binary,
        CompletionSuccessValueUtf8 = "completion_success_value_utf8": Utf8,
        CompletionFailure = "completion_failure": Utf8,
    }
}

struct PromiseRow<'a> {
    workflow: &'a ObjectKey,
    name: &'a str,
    promise: &'a Promise,
}

impl Row for PromiseRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        let outcome = match self.promise {
            Promise::Completed(outcome) => Some(outcome),
            Promise::Pending { .. } => None,
        };
        let value: Option<&[u8]> = match outcome {
            Some(Outcome::Value(payload)) => Some(&payload.0),
            Some(Outcome::Void) => Some(&[]),
            _ => None,
        };
        match column {
            Col::PartitionKey => Cell::U64(self.workflow.partition_key()),
            Col::ServiceName => Cell::Str(&self.workflow.service),
            Col::ServiceKey => Cell::Str(&self.workflow.key),
            Col::Key => Cell::Str(self.name),
            Col::Completed => Cell::Bool(outcome.is_some()),
            Col::CompletionSuccessValue => value.map_or(Cell::Null, Cell::Bytes),
            Col::CompletionSuccessValueUtf8 => value.map_or(Cell::Null, utf8),
            Col::CompletionFailure => match outcome {
                Some(Outcome::Failure(failure)) => Cell::Text(failure_text(failure)),
                _ => Cell::Null,
            },
        }
    }
}

/// `sys_promise`.
pub(crate) struct PromiseTable {
    schema: SchemaRef,
}

impl PromiseTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for PromiseTable {
    fn name(&self) -> &'static str {
        "sys_promise"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: None,
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
        let Some(scope) = object_scope(lookup) else {
            return Ok(ControlFlow::Continue(()));
        };
        let mut flow = Flow::default();
        let scanned = part
            .snapshot
            .scan_promises(scope, |workflow, name, promise| {
                sink.read(1);
                let pushed = sink.push(&PromiseRow {
                    workflow,
                    name,
                    promise: &promise,
                });
                flow.step(pushed)
            });
        flow.end(part, scanned)
    }
}
