//! Observations for metrics and traces. Spans derived from the log are built here, from stored
//! records only, so any leader builds the same span for the same step: an invocation's span
//! (acceptance to completion, a child of its ingress request or caller's entry), and the spans of
//! journal actions that wait or leave the invocation (children of the attempt that wrote them).

use super::Ctx;
use crate::state::{Invocation, JournalItem};
use crate::{Completion, Effect, Observation, Store};
use holdfast_protocol::message::Entry;
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::trace::{
    SpanKind, SpanRecord, TraceContext, attempt_span, entry_span, invocation_span, ms_to_ns,
};
use holdfast_types::{Epoch, InvocationId, Target};

/// Records a fact for the leader's metrics.
pub(crate) fn observe<S: Store>(cx: &mut Ctx<'_, S>, observation: Observation) {
    cx.effects.push(Effect::Observe(observation));
}

/// The trace of `rec` if spans of it are wanted: tracing on and the trace sampled.
fn traced<S: Store>(cx: &Ctx<'_, S>, rec: &Invocation) -> Option<TraceContext> {
    rec.trace.filter(|trace| cx.config.tracing && trace.sampled)
}

fn span<S: Store>(cx: &mut Ctx<'_, S>, span: SpanRecord) {
    observe(cx, Observation::Span(Box::new(span)));
}

/// The failure text of an outcome, for a span's error status.
fn error_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Failure(failure) => Some(format!("{} {}", failure.code, failure.message)),
        _ => None,
    }
}

fn target_text(service: &str, handler: &str) -> String {
    format!("{service}/{handler}")
}

/// `rec` completed at `at_ms`: its metrics, and its span if traced.
pub(crate) fn completed<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
    outcome: &Outcome,
    at_ms: u64,
) {
    let failure = match outcome {
        Outcome::Failure(failure) => Some(failure.clone()),
        _ => None,
    };
    observe(
        cx,
        Observation::Completed(Box::new(Completion {
            target: rec.target.clone(),
            created_at_ms: rec.created_at_ms,
            completed_at_ms: at_ms,
            failure,
        })),
    );
    let Some(trace) = traced(cx, rec) else {
        return;
    };
    let mut record = with_target(
        SpanRecord::new(
            &trace,
            invocation_span(id),
            format!(
                "invoke {}",
                target_text(&rec.target.service, &rec.target.handler)
            ),
            SpanKind::Internal,
            ms_to_ns(rec.created_at_ms),
        ),
        &rec.target,
    )
    .with("holdfast.invocation.id", id.to_string())
    .with("holdfast.invocation.attempts", rec.attempts);
    record.end_ns = Some(ms_to_ns(at_ms.max(rec.created_at_ms)));
    record.error = error_of(outcome);
    span(cx, record);
}

fn with_target(record: SpanRecord, target: &Target) -> SpanRecord {
    let record = record
        .with("rpc.service", target.service.as_str())
        .with("rpc.method", target.handler.as_str());
    match &target.key {
        Some(key) => record.with("holdfast.object.key", key.as_str()),
        None => record,
    }
}

/// Whether an entry of this kind waits for a result that gets a span from append to completion.
pub(crate) fn is_timed(entry: &Entry) -> bool {
    match entry {
        Entry::Call(e) => e.result.is_none(),
        Entry::Run(e) => e.result.is_none(),
        Entry::Sleep(e) => e.result.is_none(),
        Entry::Awakeable(e) => e.result.is_none(),
        Entry::GetPromise(e) => e.result.is_none(),
        _ => false,
    }
}

/// The attributes naming the callee of a `call` or `send` entry.
fn callee_attributes(
    service: &str,
    handler: &str,
    key: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        ("rpc.service", service.to_owned()),
        ("rpc.method", handler.to_owned()),
    ];
    attributes.extend(key.map(|key| ("holdfast.object.key", key.to_owned())));
    attributes
}

/// A journal action's span before ids and times: its name, kind and attributes.
type Described = (String, SpanKind, Vec<(&'static str, String)>);

/// The name, kind and attributes of a journal action's span; `None` for entries without one.
fn describe(entry: &Entry) -> Option<Described> {
    let described = match entry {
        Entry::Call(e) => (
            format!("call {}", target_text(&e.service, &e.handler)),
            SpanKind::Client,
            callee_attributes(&e.service, &e.handler, e.key.as_deref()),
        ),
        Entry::Send(e) => {
            let mut attributes = callee_attributes(&e.service, &e.handler, e.key.as_deref());
            attributes.extend(
                e.delay_ms
                    .map(|delay| ("holdfast.send.delay_ms", delay.to_string())),
            );
            (
                format!("send {}", target_text(&e.service, &e.handler)),
                SpanKind::Producer,
                attributes,
            )
        }
        Entry::Run(e) if e.name.is_empty() => ("run".to_owned(), SpanKind::Internal, vec![]),
        Entry::Run(e) => (format!("run {}", e.name), SpanKind::Internal, vec![]),
        Entry::Sleep(e) => (
            "sleep".to_owned(),
            SpanKind::Internal,
            vec![("holdfast.sleep.duration_ms", e.duration_ms.to_string())],
        ),
        Entry::Awakeable(_) => ("awakeable".to_owned(), SpanKind::Internal, vec![]),
        Entry::CompleteAwakeable(e) => (
            match e.result {
                Outcome::Failure(_) => "reject awakeable",
                _ => "resolve awakeable",
            }
            .to_owned(),
            SpanKind::Producer,
            vec![("holdfast.awakeable.id", e.id.clone())],
        ),
        Entry::GetPromise(e) => (
            format!("promise {}", e.name),
            SpanKind::Internal,
            vec![("holdfast.promise.name", e.name.clone())],
        ),
        Entry::CompletePromise(e) => (
            match e.completion {
                Outcome::Failure(_) => format!("reject promise {}", e.name),
                _ => format!("resolve promise {}", e.name),
            },
            SpanKind::Internal,
            vec![("holdfast.promise.name", e.name.clone())],
        ),
        _ => return None,
    };
    Some(described)
}

fn entry_record(
    trace: &TraceContext,
    id: InvocationId,
    epoch: Epoch,
    index: EntryIndex,
    entry: &Entry,
    start_ms: u64,
) -> Option<SpanRecord> {
    let (name, kind, attributes) = describe(entry)?;
    let parent = trace.child_of(attempt_span(id, epoch));
    let mut record = SpanRecord::new(
        &parent,
        entry_span(id, index),
        name,
        kind,
        ms_to_ns(start_ms),
    )
    .with("holdfast.invocation.id", id.to_string())
    .with("holdfast.entry.index", index.0)
    .with("holdfast.attempt.epoch", epoch.0);
    for (key, value) in attributes {
        record = record.with(key, value);
    }
    Some(record)
}

/// Entry `index` was appended by attempt `epoch` at `at_ms`: an action that leaves the
/// invocation without waiting (a one-way send, a promise or awakeable completion) gets its
/// span now, with no duration; waiting ones get theirs when they complete.
pub(crate) fn appended<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
    epoch: Epoch,
    index: EntryIndex,
    entry: &Entry,
    at_ms: u64,
) {
    observe(cx, Observation::Appended);
    let Some(trace) = traced(cx, rec) else {
        return;
    };
    if is_timed(entry) {
        return;
    }
    if let Some(mut record) = entry_record(&trace, id, epoch, index, entry, at_ms) {
        record.end_ns = Some(record.start_ns);
        span(cx, record);
    }
}

/// Waiting entry `item` at `index` received `outcome`: its span ends now.
pub(crate) fn settled<S: Store>(
    cx: &mut Ctx<'_, S>,
    id: InvocationId,
    rec: &Invocation,
    index: EntryIndex,
    item: &JournalItem,
    outcome: &Outcome,
) {
    let (Some(trace), Some(appended)) = (traced(cx, rec), item.appended) else {
        return;
    };
    if let Some(mut record) = entry_record(
        &trace,
        id,
        appended.epoch,
        index,
        &item.entry,
        appended.at_ms,
    ) {
        if let Some(callee) = item.callee {
            record = record.with("holdfast.callee.id", callee.to_string());
        }
        record.error = error_of(outcome);
        span(cx, record);
    }
}
