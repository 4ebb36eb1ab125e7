//! The ingress span of an invocation request: the trace it joins (the client's `traceparent`, or
//! a new one), a random span id, and the context the invocation inherits as the span's child.
//!
//! ```text
//!  traceparent: 00-T-P-01 ──► ingress span (trace T, parent P, random id S) ──► invocation: T, parent S
//!  no / malformed header  ──► ingress span (new random trace T, root)       ──► invocation: T, parent S
//! ```

use actix_web::http::header::HeaderMap;
use holdfast_types::trace::{SpanKind, parse_traceparent};
use holdfast_types::{SpanId, SpanRecord, TraceContext, TraceId};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The W3C trace context request header.
pub const TRACEPARENT: &str = "traceparent";

/// Where an invocation request sits in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The trace, and the ingress span's parent as the client named it.
    pub incoming: TraceContext,
    /// Whether the client named the parent; `false` makes the ingress span the trace's root.
    pub has_parent: bool,
    /// The ingress span's own id.
    pub span: SpanId,
}

impl Placement {
    /// Reads `traceparent` from `headers`; a missing or malformed one starts a new, sampled trace.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let incoming = headers
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_traceparent(value).ok());
        let (trace_id, span) = random_ids();
        match incoming {
            Some(incoming) => Placement {
                incoming,
                has_parent: true,
                span,
            },
            None => Placement {
                incoming: TraceContext {
                    trace_id,
                    parent: span,
                    sampled: true,
                },
                has_parent: false,
                span,
            },
        }
    }

    /// The context the invocation gets: same trace, parented to the ingress span.
    pub fn child(&self) -> TraceContext {
        self.incoming.child_of(self.span)
    }
}

/// What ingress learns about an invocation request while serving it, for its span.
#[derive(Debug)]
pub(crate) struct IngressSpan {
    /// Its place in the trace.
    pub placement: Placement,
    /// `ingress Svc/handler` or `ingress send Svc/handler`.
    pub name: String,
    /// The service.
    pub service: String,
    /// The handler.
    pub handler: String,
    /// The object or workflow key, if the target is keyed.
    pub key: Option<String>,
    /// The invocation's id, once the kernel named it.
    pub invocation_id: Option<String>,
    /// The message of the JSON error body, if the answer is one.
    pub error: Option<String>,
}

impl IngressSpan {
    /// A span for a request to `service/handler`, recorded only if the trace is sampled.
    pub fn new(
        placement: Placement,
        service: &str,
        handler: &str,
        key: Option<&str>,
        send: bool,
    ) -> Self {
        let verb = if send { "ingress send" } else { "ingress" };
        IngressSpan {
            placement,
            name: format!("{verb} {service}/{handler}"),
            service: service.to_owned(),
            handler: handler.to_owned(),
            key: key.map(str::to_owned),
            invocation_id: None,
            error: None,
        }
    }

    /// The finished span of a request answered with `status`; the error is kept only for 5xx.
    pub fn finish(
        self,
        method: &str,
        path: &str,
        status: u16,
        start_ns: u64,
        end_ns: u64,
    ) -> SpanRecord {
        let placement = self.placement;
        let mut record = SpanRecord::new(
            &placement.incoming,
            placement.span,
            self.name,
            SpanKind::Server,
            start_ns,
        )
        .with("http.request.method", method)
        .with("url.path", path)
        .with("http.response.status_code", u32::from(status))
        .with("rpc.service", self.service)
        .with("rpc.method", self.handler);
        if let Some(key) = self.key {
            record = record.with("holdfast.object.key", key);
        }
        if let Some(id) = self.invocation_id {
            record = record.with("holdfast.invocation.id", id);
        }
        if !placement.has_parent {
            record.parent = None;
        }
        record.end_ns = Some(end_ns.max(start_ns));
        record.error = if (500..600).contains(&status) {
            self.error
        } else {
            None
        };
        record
    }
}

/// A random non-zero trace id and span id, from the OS in one call; if it has no randomness to
/// give, from a randomly keyed hash of the clock and a counter, which never repeats in a process.
fn random_ids() -> (TraceId, SpanId) {
    let mut bytes = [0u8; 24];
    let (trace, span) = match getrandom::fill(&mut bytes) {
        Ok(()) => {
            let (trace, span) = bytes.split_at(16);
            let trace: [u8; 16] = trace.try_into().unwrap_or_default();
            let span: [u8; 8] = span.try_into().unwrap_or_default();
            (u128::from_be_bytes(trace), u64::from_be_bytes(span))
        }
        Err(_) => {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let word = |salt: u64| {
                let mut hasher = RandomState::new().build_hasher();
                hasher.write_u64(n);
                hasher.write_u64(salt);
                hasher.write_u64(holdfast_otlp::now_ns());
                hasher.finish()
            };
            ((u128::from(word(1)) << 64) | u128::from(word(2)), word(3))
        }
    };
    (TraceId(trace.max(1)), SpanId(span.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use holdfast_types::trace::AttributeValue;

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(value) = traceparent {
            map.insert(
                HeaderName::from_static(TRACEPARENT),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn an_incoming_traceparent_parents_the_ingress_span() {
        let placement = Placement::from_headers(&headers(Some(INCOMING)));
        assert!(placement.has_parent);
        assert_eq!(
            placement.incoming.trace_id,
            TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(placement.incoming.parent, SpanId(0x00f067aa0ba902b7));
        let child = placement.child();
        assert_eq!(child.trace_id, placement.incoming.trace_id);
        assert_eq!(child.parent, placement.span);
        assert_ne!(placement.span, SpanId(0x00f067aa0ba902b7));
        assert!(child.sampled);
    }

    #[test]
    fn missing_or_malformed_traceparents_start_a_new_sampled_trace() {
        let mut traces = std::collections::HashSet::new();
        for header in [
            None,
            Some("garbage"),
            Some("00-00-00-00"),
            Some(&INCOMING[..20]),
        ] {
            let placement = Placement::from_headers(&headers(header));
            assert!(!placement.has_parent, "{header:?}");
            let child = placement.child();
            assert!(child.sampled);
            assert_eq!(child.parent, placement.span);
            assert_ne!(child.trace_id, TraceId(0));
            assert_ne!(placement.span, SpanId(0));
            assert!(traces.insert(child.trace_id), "trace ids repeat");
        }
    }

    #[test]
    fn an_unsampled_incoming_trace_stays_unsampled() {
        let unsampled = INCOMING.replace("-01", "-00");
        let placement = Placement::from_headers(&headers(Some(&unsampled)));
        assert!(!placement.child().sampled);
    }

    fn attribute<'a>(record: &'a SpanRecord, key: &str) -> Option<&'a AttributeValue> {
        record
            .attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_finished_span_carries_the_request_and_its_answer() {
        let placement = Placement::from_headers(&headers(Some(INCOMING)));
        let mut span = IngressSpan::new(placement, "Counter", "add", Some("k1"), false);
        span.invocation_id = Some("inv_1".into());
        span.error = Some("boom".into());
        let record = span.finish("POST", "/Counter/k1/add", 503, 10, 20);
        assert_eq!(record.name, "ingress Counter/add");
        assert_eq!(record.kind, SpanKind::Server);
        assert_eq!(record.span_id, placement.span);
        assert_eq!(record.parent, Some(SpanId(0x00f067aa0ba902b7)));
        assert_eq!((record.start_ns, record.end_ns), (10, Some(20)));
        assert_eq!(record.error.as_deref(), Some("boom"));
        for (key, value) in [
            ("http.request.method", AttributeValue::from("POST")),
            ("url.path", "/Counter/k1/add".into()),
            ("http.response.status_code", 503u32.into()),
            ("rpc.service", "Counter".into()),
            ("rpc.method", "add".into()),
            ("holdfast.object.key", "k1".into()),
            ("holdfast.invocation.id", "inv_1".into()),
        ] {
            assert_eq!(attribute(&record, key), Some(&value), "{key}");
        }
    }

    #[test]
    fn a_root_send_span_has_no_parent_and_no_error_below_500() {
        let placement = Placement::from_headers(&headers(None));
        let mut span = IngressSpan::new(placement, "Greeter", "greet", None, true);
        span.error = Some("not json".into());
        let record = span.finish("POST", "/Greeter/greet/send", 400, 10, 5);
        assert_eq!(record.name, "ingress send Greeter/greet");
        assert_eq!(record.parent, None);
        assert_eq!(record.trace_id, placement.incoming.trace_id);
        assert_eq!(record.error, None);
        assert_eq!(record.end_ns, Some(10));
        assert_eq!(attribute(&record, "holdfast.object.key"), None);
        assert_eq!(attribute(&record, "holdfast.invocation.id"), None);
    }
}
