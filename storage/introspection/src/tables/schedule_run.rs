//! `sys_schedule_run`: what each partition recorded of the schedules it fires — the newest tick,
//! how many ticks fired and were skipped, what runs and what waits. The definitions are in
//! `sys_schedule` (the registry); join the two on `name`.

use super::columns;
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_fsm::state::ScheduleRun;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        Partition = "partition": U32,
        Name = "name": Utf8 [required],
        LastTickAt = "last_tick_at": Time,
        Fired = "fired": U64 [required],
        Skipped = "skipped": U64 [required],
        Running = "running": U64 [required],
        Queued = "queued": U64 [required],
        LastInvocationId = "last_invocation_id": Utf8,
    }
}

struct RunRow<'a> {
    partition: u32,
    name: &'a str,
    run: &'a ScheduleRun,
}

impl Row for RunRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        match column {
            Col::Partition => Cell::U32(self.partition),
            Col::Name => Cell::Str(self.name),
            Col::LastTickAt => Cell::Time(self.run.last_tick_ms),
            Col::Fired => Cell::U64(self.run.fired),
            Col::Skipped => Cell::U64(self.run.skipped),
            Col::Running => Cell::U64(self.run.running.len() as u64),
            Col::Queued => Cell::U64(self.run.queued.len() as u64),
            Col::LastInvocationId => {
                Cell::opt_text(self.run.last_invocation.map(|id| id.to_string()))
            }
        }
    }
}

/// `sys_schedule_run`.
pub(crate) struct ScheduleRunTable {
    schema: SchemaRef,
}

impl ScheduleRunTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for ScheduleRunTable {
    fn name(&self) -> &'static str {
        "sys_schedule_run"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows are keyed by schedule name, which no filter routes by: every partition is read.
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
        let scanned = part.snapshot.scan_schedule_runs(|name, run| {
            sink.read(1);
            let pushed = sink.push(&RunRow {
                partition,
                name,
                run: &run,
            });
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}
