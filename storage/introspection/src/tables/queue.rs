//! `sys_queue`: per limit, what its home partition keeps — permits out (attempts running under
//! it), invocations waiting for a permit and since when the oldest waits, permits granted, and
//! whole tokens in its bucket. The definitions are in `sys_limit` (the registry); join on `name`.
//! Which invocations wait: `sys_invocation` rows with status `ready`.

use super::columns;
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_fsm::state::LimitState;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        Partition = "partition": U32,
        Name = "name": Utf8 [required],
        Running = "running": U64 [required],
        Queued = "queued": U64 [required],
        OldestQueuedAt = "oldest_queued_at": Time,
        Granted = "granted": U64 [required],
        Tokens = "tokens": U64 [required],
    }
}

struct QueueRow<'a> {
    partition: u32,
    name: &'a str,
    state: &'a LimitState,
    oldest: Option<u64>,
}

impl Row for QueueRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::Partition => Cell::U32(self.partition),
            Col::Name => Cell::Str(self.name),
            Col::Running => Cell::U64(self.state.running),
            Col::Queued => Cell::U64(self.state.queued()),
            Col::OldestQueuedAt => match self.oldest {
                Some(at) => Cell::Time(at),
                None => Cell::Null,
            },
            Col::Granted => Cell::U64(self.state.granted),
            Col::Tokens => Cell::U64(self.state.level / holdfast_types::limit::MILLI),
        }
    }
}

/// `sys_queue`.
pub(crate) struct QueueTable {
    schema: SchemaRef,
}

impl QueueTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for QueueTable {
    fn name(&self) -> &'static str {
        "sys_queue"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows are keyed by limit name, which no filter routes by: every partition is read.
    fn routing(&self) -> Routing {
        Routing {
            id: None,
            service: &[],
            key: &[],
            by_id: false,
            by_service: false,
            by_partition_key: false,
        }
    }

    fn scan(
        &self,
        part: &PartitionRead<'_>,
        lookup: &Lookup,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        if matches!(lookup, Lookup::Empty) {
            return Ok(ControlFlow::Continue(()));
        }
        let mut flow = Flow::default();
        let partition = part.partition.0;
        let scanned = part.snapshot.scan_limit_states(|name, state, oldest| {
            sink.read(1);
            let pushed = sink.push(&QueueRow {
                partition,
                name,
                state: &state,
                oldest,
            });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}
