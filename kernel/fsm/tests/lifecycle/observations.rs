//! Observations: the metrics facts every leader sees, and the spans derived from the log for
//! sampled invocations when tracing is on.

use crate::support::*;
use holdfast_fsm::memory::MemoryStore;
use holdfast_fsm::{Config, Effect, Observation};
use holdfast_protocol::{EntryIndex, Outcome};
use holdfast_types::trace::{
    SpanKind, SpanRecord, attempt_span, entry_span, invocation_span, ms_to_ns,
};
use holdfast_types::{
    Command, Ending, Epoch, HandlerKind, InvocationId, OutboxMessage, SpanId, TraceContext, TraceId,
};

const TRACE: TraceContext = TraceContext {
    trace_id: TraceId(0xabc),
    parent: SpanId(0x77),
    sampled: true,
};

fn tracing() -> Config {
    Config {
        tracing: true,
        ..Config::default()
    }
}

fn observations(effects: &[Effect]) -> Vec<Observation> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Observe(observation) => Some(observation.clone()),
            _ => None,
        })
        .collect()
}

fn spans(effects: &[Effect]) -> Vec<SpanRecord> {
    observations(effects)
        .into_iter()
        .filter_map(|observation| match observation {
            Observation::Span(span) => Some(*span),
            _ => None,
        })
        .collect()
}

/// A traced exclusive Counter invocation, running attempt 1.
fn traced(store: &mut MemoryStore, config: &Config, trace: TraceContext) -> InvocationId {
    let mut request = request(counter("a"), HandlerKind::Exclusive, 1);
    request.trace = Some(trace);
    let id = request.id;
    step_with(store, config, &[invoke(request)]);
    id
}

/// The one span among `effects`.
fn only_span(effects: &[Effect]) -> SpanRecord {
    match <[SpanRecord; 1]>::try_from(spans(effects)) {
        Ok([span]) => span,
        Err(found) => panic!("expected one span, got {found:#?}"),
    }
}

fn attribute<'a>(
    span: &'a SpanRecord,
    key: &str,
) -> Option<&'a holdfast_types::trace::AttributeValue> {
    span.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value)
}

/// The invocation request of the first call or send in the outbox.
fn first_callee(store: &MemoryStore) -> holdfast_types::InvocationRequest {
    match outbox(store).into_iter().next() {
        Some(OutboxMessage::Invoke(callee)) => *callee,
        other => panic!("no callee in the outbox: {other:?}"),
    }
}

#[test]
fn a_new_invocation_is_accepted_once_and_keeps_its_trace() {
    let mut store = MemoryStore::default();
    let mut request = request(counter("a"), HandlerKind::Exclusive, 1);
    request.trace = Some(TRACE);
    let effects = step_with(&mut store, &Config::default(), &[invoke(request.clone())]);
    assert_eq!(
        observations(&effects),
        vec![Observation::Accepted {
            target: counter("a")
        }]
    );
    assert_eq!(record(&store, request.id).trace, Some(TRACE));
    // A repeated request joins it: nothing new is accepted.
    let effects = step_with(&mut store, &Config::default(), &[invoke(request)]);
    assert_eq!(observations(&effects), vec![]);
}

#[test]
fn completion_reports_target_duration_and_failure_and_without_tracing_no_span() {
    let mut store = MemoryStore::default();
    let id = traced(&mut store, &Config::default(), TRACE);
    let effects = step_with(
        &mut store,
        &Config::default(),
        &[ended(
            id,
            1,
            Ending::Failed {
                code: 400,
                message: "bad".into(),
                retryable: false,
                retry_after_ms: None,
            },
        )],
    );
    let observed = observations(&effects);
    let [Observation::Completed(completion)] = observed.as_slice() else {
        panic!("expected one completion in {effects:?}");
    };
    assert_eq!(completion.target, counter("a"));
    assert_eq!(completion.created_at_ms, T0);
    assert_eq!(completion.completed_at_ms, T0 + 10);
    assert_eq!(completion.failure.as_ref().map(|f| f.code), Some(400));
}

#[test]
fn a_retryable_failure_is_observed_as_a_retry() {
    let mut store = MemoryStore::default();
    let id = traced(&mut store, &Config::default(), TRACE);
    let effects = step_with(
        &mut store,
        &Config::default(),
        &[ended(id, 1, retryable(500))],
    );
    assert_eq!(
        observations(&effects),
        vec![Observation::Retrying {
            target: counter("a")
        }]
    );
}

#[test]
fn the_invocation_span_spans_acceptance_to_completion_under_its_parent() {
    let mut store = MemoryStore::default();
    let config = tracing();
    let id = traced(&mut store, &config, TRACE);
    let effects = step_with(
        &mut store,
        &config,
        &[
            append(id, 1, 1, output("ok")),
            ended(id, 1, Ending::Completed),
        ],
    );
    let span = only_span(&effects);
    assert_eq!(span.trace_id, TRACE.trace_id);
    assert_eq!(span.span_id, invocation_span(id));
    assert_eq!(span.parent, Some(TRACE.parent));
    assert_eq!(span.name, "invoke Counter/add");
    assert_eq!(span.start_ns, ms_to_ns(T0));
    assert_eq!(span.end_ns, Some(ms_to_ns(T0 + 10)));
    assert_eq!(span.error, None);
    assert_eq!(
        attribute(&span, "holdfast.invocation.id"),
        Some(&id.to_string().into())
    );
    assert_eq!(attribute(&span, "holdfast.object.key"), Some(&"a".into()));
}

#[test]
fn a_call_span_runs_from_append_to_completion_and_the_callee_is_its_child() {
    let mut store = MemoryStore::default();
    let config = tracing();
    let id = traced(&mut store, &config, TRACE);
    let effects = step_with(
        &mut store,
        &config,
        &[append(id, 1, 1, call(&greeter(), None))],
    );
    // Nothing ends at the append of a call...
    assert_eq!(spans(&effects), vec![]);
    // ...but the callee continues the trace under the call entry's span.
    let callee = first_callee(&store);
    assert_eq!(
        callee.trace,
        Some(TRACE.child_of(entry_span(id, EntryIndex(1))))
    );
    let effects = step_with(
        &mut store,
        &config,
        &[Command::Completion {
            id,
            index: EntryIndex(1),
            outcome: failure(500, "callee failed"),
        }],
    );
    let span = only_span(&effects);
    assert_eq!(span.span_id, entry_span(id, EntryIndex(1)));
    assert_eq!(span.parent, Some(attempt_span(id, Epoch(1))));
    assert_eq!(span.name, "call Greeter/greet");
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.start_ns, ms_to_ns(T0));
    assert_eq!(span.end_ns, None, "stamped by the leader when it applies");
    assert_eq!(span.error.as_deref(), Some("500 callee failed"));
    assert_eq!(
        attribute(&span, "holdfast.callee.id"),
        Some(&callee.id.to_string().into())
    );
}

#[test]
fn a_sleep_span_ends_when_its_timer_fires_under_the_attempt_that_slept() {
    let mut store = MemoryStore::default();
    let config = tracing();
    let id = traced(&mut store, &config, TRACE);
    step_with(
        &mut store,
        &config,
        &[append(id, 1, 1, sleep(100)), ended(id, 1, suspended(&[1]))],
    );
    let effects = step_with(
        &mut store,
        &config,
        &[fire(sleep_timer(id, 1, T0 + 100), T0 + 100)],
    );
    let span = only_span(&effects);
    assert_eq!(span.name, "sleep");
    assert_eq!(span.parent, Some(attempt_span(id, Epoch(1))));
    assert_eq!(span.start_ns, ms_to_ns(T0));
    // The fired sleep resumed the invocation with attempt 2.
    assert!(effects.iter().any(|effect| matches!(
        effect,
        Effect::RunAttempt {
            epoch: Epoch(2),
            ..
        }
    )));
}

#[test]
fn a_run_span_ends_with_its_result() {
    let mut store = MemoryStore::default();
    let config = tracing();
    let id = traced(&mut store, &config, TRACE);
    step_with(&mut store, &config, &[append(id, 1, 1, run("charge"))]);
    let effects = step_with(
        &mut store,
        &config,
        &[Command::RunCompleted {
            id,
            epoch: Epoch(1),
            index: EntryIndex(1),
            outcome: Outcome::Void,
            ack: true,
        }],
    );
    let span = only_span(&effects);
    assert_eq!(span.name, "run charge");
    assert_eq!(span.span_id, entry_span(id, EntryIndex(1)));
}

#[test]
fn a_one_way_send_is_an_instant_span_and_its_callee_is_its_child() {
    let mut store = MemoryStore::default();
    let config = tracing();
    let id = traced(&mut store, &config, TRACE);
    let effects = step_with(
        &mut store,
        &config,
        &[append(id, 1, 1, send(&greeter(), Some(5_000)))],
    );
    let span = only_span(&effects);
    assert_eq!(span.name, "send Greeter/greet");
    assert_eq!(span.kind, SpanKind::Producer);
    assert_eq!(span.start_ns, ms_to_ns(T0));
    assert_eq!(span.end_ns, Some(ms_to_ns(T0)));
    assert_eq!(
        attribute(&span, "holdfast.send.delay_ms"),
        Some(&"5000".into())
    );
    let callee = first_callee(&store);
    assert_eq!(callee.trace, Some(TRACE.child_of(span.span_id)));
}

#[test]
fn an_unsampled_trace_or_tracing_off_yields_no_spans_but_keeps_the_context() {
    for (config, trace) in [
        (
            tracing(),
            TraceContext {
                sampled: false,
                ..TRACE
            },
        ),
        (Config::default(), TRACE),
    ] {
        let mut store = MemoryStore::default();
        let id = traced(&mut store, &config, trace);
        let mut effects = step_with(
            &mut store,
            &config,
            &[append(id, 1, 1, call(&greeter(), None))],
        );
        effects.extend(step_with(
            &mut store,
            &config,
            &[
                Command::Completion {
                    id,
                    index: EntryIndex(1),
                    outcome: Outcome::Void,
                },
                append(id, 1, 2, output("ok")),
                ended(id, 1, Ending::Completed),
            ],
        ));
        assert_eq!(spans(&effects), vec![]);
        let callee = first_callee(&store);
        assert_eq!(callee.trace.map(|t| t.trace_id), Some(trace.trace_id));
        assert_eq!(callee.trace.map(|t| t.sampled), Some(trace.sampled));
    }
}

#[test]
fn every_appended_entry_is_counted() {
    let mut store = MemoryStore::default();
    let id = traced(&mut store, &Config::default(), TRACE);
    let effects = step_with(
        &mut store,
        &Config::default(),
        &[append(id, 1, 1, set_state("n", "1"))],
    );
    assert_eq!(observations(&effects), vec![Observation::Appended]);
    // A fenced append is not an appended entry.
    let effects = step_with(
        &mut store,
        &Config::default(),
        &[append(id, 1, 5, set_state("n", "1"))],
    );
    assert_eq!(observations(&effects), vec![]);
}
