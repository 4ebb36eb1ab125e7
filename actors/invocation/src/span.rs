//! The span of one attempt: from the actor's start to its stop, a child of the invocation's
//! span, with how the attempt ended.

use holdfast_otlp::{SpanSink, now_ns};
use holdfast_types::trace::{SpanKind, SpanRecord, TraceContext, attempt_span, invocation_span};
use holdfast_types::{Ending, Epoch, InvocationId, Target};

/// What the attempt span needs, kept by the actor while the attempt runs.
#[derive(Debug)]
pub(crate) struct AttemptSpan {
    sink: SpanSink,
    /// The invocation's trace context (sent as `traceparent` whether or not spans are recorded).
    trace: Option<TraceContext>,
    start_ns: u64,
    outcome: Option<(&'static str, Option<String>)>,
}

impl AttemptSpan {
    /// Starts timing an attempt of an invocation in `trace`; recorded only if the trace is
    /// sampled and `sink` exports.
    pub(crate) fn start(sink: SpanSink, trace: Option<TraceContext>) -> Self {
        AttemptSpan {
            sink,
            trace,
            start_ns: now_ns(),
            outcome: None,
        }
    }

    /// The `traceparent` the endpoint receives: this attempt's span in the invocation's trace.
    pub(crate) fn traceparent(&self, id: InvocationId, epoch: Epoch) -> Option<String> {
        self.trace
            .map(|trace| trace.traceparent(attempt_span(id, epoch)))
    }

    /// Exports to `sink` from now on.
    pub(crate) fn export_to(&mut self, sink: SpanSink) {
        self.sink = sink;
    }

    /// Records how the attempt ended (the first ending counts).
    pub(crate) fn ended(&mut self, ending: &Ending) {
        let outcome = match ending {
            Ending::Completed => ("completed", None),
            Ending::Suspended { .. } => ("suspended", None),
            Ending::Failed { code, message, .. } => ("failed", Some(format!("{code} {message}"))),
        };
        self.outcome.get_or_insert(outcome);
    }

    /// Records that the partition stopped the attempt (fenced, killed, or superseded).
    pub(crate) fn stopped(&mut self) {
        self.outcome.get_or_insert(("stopped", None));
    }

    /// Exports the span, once, when the actor stops.
    pub(crate) fn finish(
        &mut self,
        id: InvocationId,
        epoch: Epoch,
        target: &Target,
        endpoint: &str,
    ) {
        let Some(trace) = self
            .trace
            .take()
            .filter(|trace| trace.sampled && self.sink.enabled())
        else {
            return;
        };
        let (outcome, error) = self.outcome.take().unwrap_or(("abandoned", None));
        let parent = trace.child_of(invocation_span(id));
        let mut span = SpanRecord::new(
            &parent,
            attempt_span(id, epoch),
            format!("attempt {}/{}", target.service, target.handler),
            SpanKind::Client,
            self.start_ns,
        )
        .with("rpc.service", target.service.as_str())
        .with("rpc.method", target.handler.as_str())
        .with("holdfast.invocation.id", id.to_string())
        .with("holdfast.attempt.epoch", epoch.0)
        .with("holdfast.attempt.outcome", outcome)
        .with("holdfast.deployment.endpoint", endpoint);
        span.error = error;
        self.sink.emit(span);
    }
}
