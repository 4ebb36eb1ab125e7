//! [`SpanRecord`] → OpenTelemetry [`SpanData`], the shape the OTLP exporter encodes.
//!
//! Conversion is total: a record with a zero trace or span id (which a collector would reject,
//! failing the whole batch with it) is refused with `None` so the caller counts it as dropped,
//! and odd times (an end before the start, a time past what `SystemTime` holds) are clamped
//! instead of panicking.

use holdfast_types::SpanRecord;
use holdfast_types::trace::{AttributeValue, SpanKind};
use opentelemetry::trace::{self as otel, SpanContext, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The instrumentation scope every Holdfast span is reported under.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("holdfast")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Converts one record; `None` when its ids are invalid (zero) and it must not be sent.
pub(crate) fn span_data(record: SpanRecord, scope: &InstrumentationScope) -> Option<SpanData> {
    if record.trace_id.0 == 0 || record.span_id.0 == 0 {
        return None;
    }
    let start_time = system_time(record.start_ns);
    // The sink stamps a missing end; a record that bypassed it ends where it started.
    let end_ns = record
        .end_ns
        .unwrap_or(record.start_ns)
        .max(record.start_ns);
    let parent = record
        .parent
        .map_or(otel::SpanId::INVALID, |p| otel::SpanId::from(p.0));
    let status = match record.error {
        Some(description) => Status::error(description),
        None => Status::Unset,
    };
    Some(SpanData {
        span_context: SpanContext::new(
            otel::TraceId::from(record.trace_id.0),
            otel::SpanId::from(record.span_id.0),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: span_kind(record.kind),
        name: record.name.into(),
        start_time,
        end_time: system_time(end_ns),
        attributes: record
            .attributes
            .into_iter()
            .map(|(key, value)| KeyValue::new(key, attribute(value)))
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    })
}

fn span_kind(kind: SpanKind) -> otel::SpanKind {
    match kind {
        SpanKind::Internal => otel::SpanKind::Internal,
        SpanKind::Server => otel::SpanKind::Server,
        SpanKind::Client => otel::SpanKind::Client,
        SpanKind::Producer => otel::SpanKind::Producer,
    }
}

fn attribute(value: AttributeValue) -> Value {
    match value {
        AttributeValue::Text(text) => Value::from(text),
        AttributeValue::Int(n) => Value::I64(n),
        AttributeValue::Bool(b) => Value::Bool(b),
    }
}

/// Unix nanoseconds as a `SystemTime`, saturating at the epoch if the platform cannot hold it.
fn system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(ns))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_types::{SpanId, TraceContext, TraceId};

    fn record() -> SpanRecord {
        let trace = TraceContext {
            trace_id: TraceId(0x0af7651916cd43dd8448eb211c80319c),
            parent: SpanId(0xb7ad6b7169203331),
            sampled: true,
        };
        SpanRecord::new(
            &trace,
            SpanId(0x00f067aa0ba902b7),
            "invoke Greeter/greet",
            SpanKind::Client,
            1_700_000_000_000_000_000,
        )
        .with("holdfast.invocation.id", "inv_1")
        .with("holdfast.attempt", 3u32)
        .with("holdfast.retry", true)
    }

    #[test]
    fn converts_ids_kind_times_attributes_and_status() {
        let mut input = record();
        input.end_ns = Some(1_700_000_000_500_000_000);
        input.error = Some("boom".to_owned());
        let span = span_data(input, &scope()).expect("valid ids");
        assert_eq!(
            span.span_context.trace_id(),
            otel::TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128)
        );
        assert_eq!(
            span.span_context.span_id(),
            otel::SpanId::from(0x00f067aa0ba902b7_u64)
        );
        assert!(span.span_context.is_sampled());
        assert_eq!(
            span.parent_span_id,
            otel::SpanId::from(0xb7ad6b7169203331_u64)
        );
        assert_eq!(span.span_kind, otel::SpanKind::Client);
        assert_eq!(span.name, "invoke Greeter/greet");
        assert_eq!(
            span.end_time.duration_since(span.start_time).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            span.attributes,
            vec![
                KeyValue::new("holdfast.invocation.id", "inv_1"),
                KeyValue::new("holdfast.attempt", 3_i64),
                KeyValue::new("holdfast.retry", true),
            ]
        );
        assert_eq!(span.status, Status::error("boom"));
        assert_eq!(span.instrumentation_scope.name(), "holdfast");
    }

    #[test]
    fn root_spans_have_no_parent_and_successful_ones_no_status() {
        let mut input = record();
        input.parent = None;
        let span = span_data(input, &scope()).expect("valid ids");
        assert_eq!(span.parent_span_id, otel::SpanId::INVALID);
        assert_eq!(span.status, Status::Unset);
    }

    #[test]
    fn zero_ids_are_refused() {
        let mut input = record();
        input.trace_id = TraceId(0);
        assert!(span_data(input, &scope()).is_none());
        let mut input = record();
        input.span_id = SpanId(0);
        assert!(span_data(input, &scope()).is_none());
    }

    #[test]
    fn odd_times_are_clamped_not_panicking() {
        let mut input = record();
        input.end_ns = Some(5);
        let span = span_data(input, &scope()).expect("valid ids");
        assert_eq!(span.end_time, span.start_time);
        let mut input = record();
        input.start_ns = u64::MAX;
        input.end_ns = None;
        let span = span_data(input, &scope()).expect("valid ids");
        assert!(span.end_time >= span.start_time);
    }
}
