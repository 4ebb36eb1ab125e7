//! `sys_journal`: one row per journal entry of every invocation the partition keeps a journal
//! for.

use super::{columns, failure_text, outcome_result, target_text};
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_fsm::state::{JournalItem, is_completable};
use holdfast_protocol::{Entry, EntryIndex, Outcome};
use holdfast_raft_store::InvocationScope;
use holdfast_types::InvocationId;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        Id = "id": Utf8,
        Index = "index": U32,
        EntryType = "entry_type": Utf8,
        Name = "name": Utf8,
        Completed = "completed": Bool [required],
        InvokedId = "invoked_id": Utf8,
        InvokedTarget = "invoked_target": Utf8,
        SleepWakeupAt = "sleep_wakeup_at": Time,
        PromiseName = "promise_name": Utf8,
        AppendedAt = "appended_at": Time,
        CompletionResult = "completion_result": Utf8,
        CompletionFailure = "completion_failure": Utf8,
    }
}

/// The SQL name of an entry's type: its variant name, except where Restate's tools know it by
/// another (`StateKeys` reads `GetStateKeys`, `Send` reads `OneWayCall`).
fn entry_type(entry: &Entry) -> &'static str {
    match entry {
        Entry::Input(_) => "Input",
        Entry::Output(_) => "Output",
        Entry::GetState(_) => "GetState",
        Entry::SetState(_) => "SetState",
        Entry::ClearState(_) => "ClearState",
        Entry::ClearAllState(_) => "ClearAllState",
        Entry::StateKeys(_) => "GetStateKeys",
        Entry::Call(_) => "Call",
        Entry::Send(_) => "OneWayCall",
        Entry::Sleep(_) => "Sleep",
        Entry::Run(_) => "Run",
        Entry::Awakeable(_) => "Awakeable",
        Entry::CompleteAwakeable(_) => "CompleteAwakeable",
        Entry::GetPromise(_) => "GetPromise",
        Entry::PeekPromise(_) => "PeekPromise",
        Entry::CompletePromise(_) => "CompletePromise",
    }
}

/// The name the entry carries: a run's name, a state key, a promise name.
fn entry_name(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::Run(e) => Some(&e.name),
        Entry::GetState(e) => Some(&e.key),
        Entry::SetState(e) => Some(&e.key),
        Entry::ClearState(e) => Some(&e.key),
        Entry::GetPromise(e) => Some(&e.name),
        Entry::PeekPromise(e) => Some(&e.name),
        Entry::CompletePromise(e) => Some(&e.name),
        _ => None,
    }
}

fn promise_name(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::GetPromise(e) => Some(&e.name),
        Entry::PeekPromise(e) => Some(&e.name),
        Entry::CompletePromise(e) => Some(&e.name),
        _ => None,
    }
}

struct JournalRow<'a> {
    id: InvocationId,
    index: EntryIndex,
    item: &'a JournalItem,
}

impl Row for JournalRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        let entry = &self.item.entry;
        match column {
            Col::PartitionKey => Cell::U64(self.id.partition_key),
            Col::Id => Cell::Text(self.id.to_string()),
            Col::Index => Cell::U32(self.index.0),
            Col::EntryType => Cell::Str(entry_type(entry)),
            Col::Name => Cell::opt_str(entry_name(entry)),
            // False only while a completable entry waits for its result: the others have
            // nothing to wait for.
            Col::Completed => Cell::Bool(!is_completable(entry) || self.item.outcome().is_some()),
            Col::InvokedId => Cell::opt_text(self.item.callee.map(|id| id.to_string())),
            Col::InvokedTarget => Cell::opt_text(match entry {
                Entry::Call(e) => Some(target_text(&e.service, e.key.as_deref(), &e.handler)),
                Entry::Send(e) => Some(target_text(&e.service, e.key.as_deref(), &e.handler)),
                _ => None,
            }),
            Col::SleepWakeupAt => Cell::opt_time(self.item.fire_at_ms),
            Col::PromiseName => Cell::opt_str(promise_name(entry)),
            Col::AppendedAt => Cell::opt_time(self.item.appended.map(|a| a.at_ms)),
            // A completable entry's result once it has one: `success` or `failure`, and then how
            // it failed.
            Col::CompletionResult => Cell::opt_str(
                is_completable(entry)
                    .then(|| self.item.outcome().map(outcome_result))
                    .flatten(),
            ),
            Col::CompletionFailure => match self.item.outcome() {
                Some(Outcome::Failure(failure)) if is_completable(entry) => {
                    Cell::Text(failure_text(failure))
                }
                _ => Cell::Null,
            },
        }
    }
}

/// `sys_journal`.
pub(crate) struct JournalTable {
    schema: SchemaRef,
}

impl JournalTable {
    pub(crate) fn new() -> Self {
        Self {
            schema: Col::schema(),
        }
    }
}

impl SysTable for JournalTable {
    fn name(&self) -> &'static str {
        "sys_journal"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: Some("id"),
            service: &[],
            key: &[],
            by_id: true,
            by_service: false,
            by_partition_key: true,
        }
    }

    fn scan(
        &self,
        part: &PartitionRead<'_>,
        lookup: &Lookup,
        sink: &mut Sink,
    ) -> Result<ControlFlow<()>, ScanError> {
        let scopes: Vec<InvocationScope> = match lookup {
            Lookup::Empty => Vec::new(),
            Lookup::Ids(ids) => ids
                .iter()
                .copied()
                .filter(|id| part.owns(*id))
                .map(InvocationScope::Invocation)
                .collect(),
            Lookup::PartitionKey(key) => vec![InvocationScope::PartitionKey(*key)],
            Lookup::Object(_) | Lookup::Service(_) | Lookup::Scan => vec![InvocationScope::All],
        };
        for scope in scopes {
            let mut flow = Flow::default();
            let scanned = part.snapshot.scan_journal(scope, |id, index, item| {
                sink.read(1);
                let pushed = sink.push(&JournalRow {
                    id,
                    index,
                    item: &item,
                });
                flow.step(pushed)
            });
            if flow.end(part, scanned)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}
