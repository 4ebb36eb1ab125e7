//! `sys_inbox`: the invocations queued for each virtual object's or workflow's lock, in arrival
//! order.

use super::columns;
use super::state::object_scope;
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
        Id = "id": Utf8,
        SequenceNumber = "sequence_number": U64,
        CreatedAt = "created_at": Time,
    }
}

struct InboxRow<'a> {
    object: &'a ObjectKey,
    seq: u64,
    id: InvocationId,
    created_at: Option<u64>,
}

impl Row for InboxRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::PartitionKey => Cell::U64(self.object.partition_key()),
            Col::ServiceName => Cell::Str(&self.object.service),
            Col::ServiceKey => Cell::Str(&self.object.key),
            Col::Id => Cell::Text(self.id.to_string()),
            Col::SequenceNumber => Cell::U64(self.seq),
            Col::CreatedAt => Cell::opt_time(self.created_at),
        }
    }
}

/// Scans a table keyed by object whose rows name an invocation (`sys_inbox`,
/// `sys_keyed_service_status`): for an id lookup only the objects of those ids, each keeping
/// only its id's rows; otherwise the object scope the lookup allows. `scan_scope` reads one scope.
pub(crate) fn scan_by_object(
    part: &PartitionRead<'_>,
    lookup: &Lookup,
    sink: &mut Sink,
    scan_scope: impl Fn(
        &PartitionRead<'_>,
        ObjectScope<'_>,
        Option<InvocationId>,
        &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError>,
) -> Result<ControlFlow<()>, ScanError> {
    if let Lookup::Ids(ids) = lookup {
        for (id, object) in objects_of(part, ids, sink)? {
            if scan_scope(part, ObjectScope::Object(&object), Some(id), sink)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        return Ok(ControlFlow::Continue(()));
    }
    match object_scope(lookup) {
        Some(scope) => scan_scope(part, scope, None, sink),
        None => Ok(ControlFlow::Continue(())),
    }
}

/// The objects whose rows can name one of `ids`: each id's own object, read from its record
/// (an invocation waits in, or holds the lock of, its target's object only).
fn objects_of(
    part: &PartitionRead<'_>,
    ids: &[InvocationId],
    sink: &mut Sink,
) -> Result<Vec<(InvocationId, ObjectKey)>, ScanError> {
    let mut out = Vec::new();
    for id in ids.iter().copied().filter(|id| part.owns(*id)) {
        sink.read(1);
        let record = part.snapshot.invocation(id).map_err(|e| part.storage(e))?;
        if let Some(object) = record.and_then(|rec| rec.target.object()) {
            out.push((id, object));
        }
    }
    Ok(out)
}

/// `sys_inbox`.
pub(crate) struct InboxTable {
    schema: SchemaRef,
}

impl InboxTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }

    /// Pushes the inbox rows of `scope`, only those of `only` if given.
    fn scan_scope(
        part: &PartitionRead<'_>,
        scope: ObjectScope<'_>,
        only: Option<InvocationId>,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let wants_created = sink.wants(Col::CreatedAt.index());
        let mut flow = Flow::default();
        let scanned = part.snapshot.scan_inbox(scope, |object, seq, id| {
            sink.read(1);
            if only.is_some_and(|only| only != id) {
                return std::ops::ControlFlow::Continue(());
            }
            let created_at = if wants_created {
                sink.read(1);
                match part.snapshot.invocation(id) {
                    Ok(record) => record.map(|rec| rec.created_at_ms),
                    Err(e) => return flow.step(Err(part.storage(e))),
                }
            } else {
                None
            };
            let pushed = sink.push(&InboxRow {
                object,
                seq,
                id,
                created_at,
            });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}

impl SysTable for InboxTable {
    fn name(&self) -> &'static str {
        "sys_inbox"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: Some("id"),
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
