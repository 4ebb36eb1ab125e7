//! `sys_invocation`: one row per invocation the partition knows (scheduled, pending in its
//! object's inbox, running, suspended, backing off, paused, or completed and still retained).
//! `sys_invocation_status` has the same rows and columns with the lifecycle's own status names
//! (`inboxed`, `invoked` for running and backing off), as Restate's two tables differ.

use super::{columns, failure_text, outcome_result, target_text};
use crate::pushdown::{Lookup, Routing};
use crate::scan::{Cell, Flow, PartitionRead, Row, ScanError, Sink, SysTable};
use datafusion::arrow::datatypes::SchemaRef;
use holdfast_fsm::state::{Invocation, Status};
use holdfast_protocol::Outcome;
use holdfast_raft_store::{InvocationScope, StateSnapshot};
use holdfast_types::{InvocationId, PartitionId, Source};
use std::collections::HashMap;
use std::ops::ControlFlow;

columns! {
    pub(crate) enum Col {
        PartitionKey = "partition_key": U64,
        Id = "id": Utf8,
        Target = "target": Utf8,
        TargetServiceName = "target_service_name": Utf8,
        TargetServiceKey = "target_service_key": Utf8,
        TargetHandlerName = "target_handler_name": Utf8,
        TargetServiceTy = "target_service_ty": Utf8,
        Status = "status": Utf8 [required],
        InvokedBy = "invoked_by": Utf8,
        InvokedByServiceName = "invoked_by_service_name": Utf8,
        InvokedById = "invoked_by_id": Utf8,
        PinnedDeploymentId = "pinned_deployment_id": Utf8,
        RetryCount = "retry_count": U64,
        LastFailure = "last_failure": Utf8,
        LastFailureErrorCode = "last_failure_error_code": Utf8,
        TraceId = "trace_id": Utf8,
        IdempotencyKey = "idempotency_key": Utf8,
        JournalSize = "journal_size": U32,
        CreatedAt = "created_at": Time,
        ModifiedAt = "modified_at": Time,
        CompletedAt = "completed_at": Time,
        ScheduledStartAt = "scheduled_start_at": Time,
        CompletionResult = "completion_result": Utf8,
        CompletionFailure = "completion_failure": Utf8,
        InvokedByTarget = "invoked_by_target": Utf8,
        LastAttemptDeploymentId = "last_attempt_deployment_id": Utf8,
        LastAttemptServer = "last_attempt_server": Utf8,
        NextRetryAt = "next_retry_at": Time,
        LastStartAt = "last_start_at": Time,
        LastFailureRelatedEntryIndex = "last_failure_related_entry_index": U64,
        LastFailureRelatedEntryName = "last_failure_related_entry_name": Utf8,
        LastFailureRelatedEntryType = "last_failure_related_entry_type": Utf8,
    }
}

/// Which status names a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusNames {
    /// `sys_invocation`'s, as an operator reads them: `pending`, `running`, `backing-off`, …
    Operator,
    /// `sys_invocation_status`'s, the lifecycle's own: `inboxed`, `invoked`, …
    Lifecycle,
}

/// The SQL name of a status in a table showing `names` (in `sys_invocation` a running attempt
/// is `running`, one waiting in its object's inbox `pending`, as Restate calls them).
fn status_name_as(status: &Status, names: StatusNames) -> &'static str {
    let operator = names == StatusNames::Operator;
    match status {
        Status::Scheduled { .. } => "scheduled",
        Status::Inboxed if operator => "pending",
        Status::Inboxed => "inboxed",
        Status::Invoked { .. } if operator => "running",
        Status::BackingOff { .. } if operator => "backing-off",
        Status::Invoked { .. } | Status::BackingOff { .. } => "invoked",
        Status::Suspended { .. } => "suspended",
        Status::Throttled { .. } if operator => "ready",
        Status::Throttled { .. } => "throttled",
        Status::Paused { .. } => "paused",
        Status::Completed { .. } => "completed",
    }
}

struct InvocationRow<'a> {
    id: InvocationId,
    rec: &'a Invocation,
    names: StatusNames,
    service_ty: Option<&'static str>,
    caller: Option<Caller>,
    /// The SDK version of the deployment that ran the last attempt.
    server: Option<&'a str>,
}

impl Row for InvocationRow<'_> {
    fn cell(&self, column: usize) -> Cell<'_> {
        let Some(column) = Col::at(column) else {
            return Cell::Null;
        };
        let rec = self.rec;
        let target = &rec.target;
        let outcome = match &rec.status {
            Status::Completed { outcome, .. } => Some(outcome),
            _ => None,
        };
        match column {
            Col::PartitionKey => Cell::U64(self.id.partition_key),
            Col::Id => Cell::Text(self.id.to_string()),
            Col::Target => Cell::Text(target_text(
                &target.service,
                target.key.as_deref(),
                &target.handler,
            )),
            Col::TargetServiceName => Cell::Str(&target.service),
            Col::TargetServiceKey => Cell::opt_str(target.key.as_deref()),
            Col::TargetHandlerName => Cell::Str(&target.handler),
            Col::TargetServiceTy => Cell::opt_str(self.service_ty),
            Col::Status => Cell::Str(status_name_as(&rec.status, self.names)),
            Col::InvokedBy => Cell::Str(match rec.source {
                Source::Ingress => "ingress",
                Source::Invocation { .. } => "service",
                Source::Schedule { .. } => "schedule",
            }),
            Col::InvokedByServiceName => {
                Cell::opt_str(self.caller.as_ref().map(|c| c.service.as_str()))
            }
            Col::InvokedByTarget => Cell::opt_str(self.caller.as_ref().map(|c| c.target.as_str())),
            Col::InvokedById => match &rec.source {
                Source::Invocation { id, .. } => Cell::Text(id.to_string()),
                Source::Ingress | Source::Schedule { .. } => Cell::Null,
            },
            Col::PinnedDeploymentId => Cell::opt_text(rec.deployment.map(|d| d.to_string())),
            // Attempts started so far: like Restate's, 1 after a first attempt without failure.
            Col::RetryCount => Cell::U64(u64::from(rec.attempts)),
            Col::LastFailure => {
                Cell::opt_str(rec.last_failure.as_ref().map(|f| f.message.as_str()))
            }
            Col::LastFailureErrorCode => match &rec.last_failure {
                Some(failure) => Cell::Text(failure.code.to_string()),
                None => Cell::Null,
            },
            Col::TraceId => match &rec.trace {
                Some(trace) => Cell::Text(trace.trace_id.to_string()),
                None => Cell::Null,
            },
            // The record keeps no modification time.
            Col::ModifiedAt => Cell::Null,
            Col::IdempotencyKey => Cell::opt_str(rec.idempotency_key.as_deref()),
            Col::JournalSize => Cell::U32(rec.journal_len),
            Col::CreatedAt => Cell::Time(rec.created_at_ms),
            // Completion sets the expiry to completion time plus the retention.
            Col::CompletedAt => Cell::opt_time(match &rec.status {
                Status::Completed { expires_at_ms, .. } => {
                    Some(expires_at_ms.saturating_sub(rec.retention_ms))
                }
                _ => None,
            }),
            Col::ScheduledStartAt => Cell::opt_time(match &rec.status {
                Status::Scheduled { start_at_ms } => Some(*start_at_ms),
                _ => None,
            }),
            Col::CompletionResult => Cell::opt_str(outcome.map(outcome_result)),
            Col::CompletionFailure => match outcome {
                Some(Outcome::Failure(failure)) => Cell::Text(failure_text(failure)),
                _ => Cell::Null,
            },
            // Attempts run on the deployment the invocation is pinned to.
            Col::LastAttemptDeploymentId => Cell::opt_text(
                rec.deployment
                    .filter(|_| rec.attempts > 0)
                    .map(|d| d.to_string()),
            ),
            Col::NextRetryAt => Cell::opt_time(match &rec.status {
                Status::BackingOff { retry_at_ms, .. } => *retry_at_ms,
                _ => None,
            }),
            // The SDK version the pinned deployment declared (attempts run on it); NULL before a
            // first attempt or when the deployment declared none or was removed.
            Col::LastAttemptServer => Cell::opt_str(self.server),
            // Not recorded: an attempt's start time and the entry a failure was about are not
            // kept in the log.
            Col::LastStartAt
            | Col::LastFailureRelatedEntryIndex
            | Col::LastFailureRelatedEntryName
            | Col::LastFailureRelatedEntryType => Cell::Null,
        }
    }
}

/// The invocation that called another: its service and its target text.
#[derive(Clone)]
struct Caller {
    service: String,
    target: String,
}

/// Finds calling invocations, which may live in other partitions: each other partition is read
/// through one snapshot for the whole scan, and answers are cached.
struct Callers<'a> {
    part: &'a PartitionRead<'a>,
    others: HashMap<PartitionId, Option<StateSnapshot>>,
    known: HashMap<InvocationId, Option<Caller>>,
}

/// Callers remembered per scan before the cache starts over (bounds its memory).
const CALLER_CACHE: usize = 4096;

impl<'a> Callers<'a> {
    fn new(part: &'a PartitionRead<'a>) -> Self {
        Self {
            part,
            others: HashMap::new(),
            known: HashMap::new(),
        }
    }

    fn find(&mut self, caller: InvocationId, sink: &mut Sink) -> Result<Option<Caller>, ScanError> {
        if let Some(known) = self.known.get(&caller) {
            return Ok(known.clone());
        }
        let partition = caller.partition(self.part.shared.partition_count);
        let record = if partition == self.part.partition {
            sink.read(1);
            self.part
                .snapshot
                .invocation(caller)
                .map_err(|e| self.part.storage(e))?
        } else {
            let snapshot = match self.others.entry(partition) {
                std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let store = self
                        .part
                        .shared
                        .stores
                        .iter()
                        .find(|(id, _)| *id == partition);
                    let snapshot = match store {
                        Some((_, store)) => Some(
                            store
                                .read_snapshot()
                                .map_err(|source| ScanError::Storage { partition, source })?,
                        ),
                        None => None,
                    };
                    slot.insert(snapshot)
                }
            };
            match snapshot {
                Some(snapshot) => {
                    sink.read(1);
                    snapshot
                        .invocation(caller)
                        .map_err(|source| ScanError::Storage { partition, source })?
                }
                // Not open on this node: the caller's service is unknown here.
                None => None,
            }
        };
        let found = record.map(|rec| Caller {
            target: target_text(
                &rec.target.service,
                rec.target.key.as_deref(),
                &rec.target.handler,
            ),
            service: rec.target.service,
        });
        if self.known.len() >= CALLER_CACHE {
            self.known.clear();
        }
        self.known.insert(caller, found.clone());
        Ok(found)
    }
}

/// `sys_invocation`, or `sys_invocation_status` with the lifecycle's status names.
pub(crate) struct InvocationTable {
    schema: SchemaRef,
    names: StatusNames,
}

impl InvocationTable {
    pub(crate) fn new(names: StatusNames) -> Self {
        Self {
            schema: Col::schema(),
            names,
        }
    }
}

impl SysTable for InvocationTable {
    fn name(&self) -> &'static str {
        match self.names {
            StatusNames::Operator => "sys_invocation",
            StatusNames::Lifecycle => "sys_invocation_status",
        }
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn routing(&self) -> Routing {
        Routing {
            id: Some("id"),
            service: &["target_service_name"],
            key: &["target_service_key"],
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
        let wants_ty = sink.wants(Col::TargetServiceTy.index());
        let wants_server = sink.wants(Col::LastAttemptServer.index());
        let wants_caller = sink.wants(Col::InvokedByServiceName.index())
            || sink.wants(Col::InvokedByTarget.index());
        let names = self.names;
        let mut callers = Callers::new(part);
        let mut emit = |id: InvocationId,
                        rec: &Invocation,
                        sink: &mut Sink|
         -> Result<ControlFlow<()>, ScanError> {
            let caller = match (&rec.source, wants_caller) {
                (Source::Invocation { id: caller, .. }, true) => callers.find(*caller, sink)?,
                _ => None,
            };
            let row = InvocationRow {
                id,
                rec,
                names,
                service_ty: if wants_ty {
                    part.shared.service_type(&rec.target.service)
                } else {
                    None
                },
                caller,
                server: match rec.deployment {
                    Some(deployment) if wants_server && rec.attempts > 0 => {
                        part.shared.sdk_version(deployment)
                    }
                    _ => None,
                },
            };
            sink.push(&row)
        };
        let scope = match lookup {
            Lookup::Empty => return Ok(ControlFlow::Continue(())),
            Lookup::Ids(ids) => {
                for id in ids.iter().copied().filter(|id| part.owns(*id)) {
                    sink.read(1);
                    let record = part.snapshot.invocation(id).map_err(|e| part.storage(e))?;
                    if let Some(rec) = record
                        && emit(id, &rec, sink)?.is_break()
                    {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                return Ok(ControlFlow::Continue(()));
            }
            // Invocations of an object are routed by the object's partition key, which leads
            // their ids.
            Lookup::Object(object) => InvocationScope::PartitionKey(object.partition_key()),
            Lookup::PartitionKey(key) => InvocationScope::PartitionKey(*key),
            Lookup::Service(_) | Lookup::Scan => InvocationScope::All,
        };
        let mut flow = Flow::default();
        let scanned = part.snapshot.scan_invocations(scope, |id, rec| {
            sink.read(1);
            let pushed = emit(id, &rec, sink);
            flow.step(pushed)
        });
        flow.end(part, scanned)
    }
}
