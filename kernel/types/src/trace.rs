//! Trace context and spans. An invocation's trace context is stored with it and travels in the
//! log (in [`crate::InvocationRequest`]), so a callee on another partition or node joins its
//! caller's trace without any shared memory. Span ids of invocations, attempts and journal
//! entries are derived from their ids, so every replica and every later leader names the same
//! span the same way; only ingress spans get random ids.

use crate::{EntryIndex, Epoch, InvocationId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// A W3C trace id (16 bytes); never zero when valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceId(pub u128);

/// A W3C span id (8 bytes); never zero when valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where an invocation sits in a trace: its trace, the span it is a child of, and whether spans
/// of this trace are recorded at all (the W3C `sampled` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// The trace every span of the invocation belongs to.
    pub trace_id: TraceId,
    /// The span the invocation's span is a child of: the ingress request, or the caller's
    /// `call`/`send` entry.
    pub parent: SpanId,
    /// False: the trace is not recorded (a caller said so in its `traceparent`).
    pub sampled: bool,
}

impl TraceContext {
    /// The `traceparent` header value naming `span` of this trace as the parent.
    pub fn traceparent(&self, span: SpanId) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            span,
            u8::from(self.sampled)
        )
    }

    /// The context a span `span` of this trace gives its children.
    pub fn child_of(&self, span: SpanId) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            parent: span,
            sampled: self.sampled,
        }
    }
}

/// Why a `traceparent` header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent {value:?}: {reason}")]
pub struct TraceparentError {
    /// The header as received.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a W3C `traceparent` (`version-traceid-parentid-flags`, lowercase hex). Versions above
/// `00` are read by their first four fields, as the W3C specification asks.
pub fn parse_traceparent(value: &str) -> Result<TraceContext, TraceparentError> {
    let error = |reason| TraceparentError {
        value: value.to_owned(),
        reason,
    };
    let mut parts = value.trim().split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(error("expected version-traceid-parentid-flags"));
    };
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" {
        return Err(error("unsupported version"));
    }
    if version == "00" && parts.next().is_some() {
        return Err(error("version 00 has exactly four fields"));
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return Err(error("fields must be lowercase hex of 32, 16 and 2 digits"));
    }
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        u128::from_str_radix(trace, 16),
        u64::from_str_radix(parent, 16),
        u8::from_str_radix(flags, 16),
    ) else {
        return Err(error("fields must be hex"));
    };
    if trace_id == 0 {
        return Err(error("the trace id is all zeros"));
    }
    if span_id == 0 {
        return Err(error("the parent id is all zeros"));
    }
    Ok(TraceContext {
        trace_id: TraceId(trace_id),
        parent: SpanId(span_id),
        sampled: flags & 1 == 1,
    })
}

/// A 64-bit mix (splitmix64's finalizer): spreads structured ids over the span id space.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn derive(id: InvocationId, tag: u64, n: u64) -> SpanId {
    let nonce = mix(id.nonce as u64) ^ mix((id.nonce >> 64) as u64).rotate_left(17);
    let value = mix(id.partition_key ^ mix(nonce ^ mix(tag.wrapping_add(n << 8))));
    SpanId(value.max(1))
}

/// The span of an invocation as a whole, from acceptance to completion.
pub fn invocation_span(id: InvocationId) -> SpanId {
    derive(id, 1, 0)
}

/// The span of attempt `epoch` of an invocation.
pub fn attempt_span(id: InvocationId, epoch: Epoch) -> SpanId {
    derive(id, 2, u64::from(epoch.0))
}

/// The span of journal entry `index` of an invocation; a `call` or `send` entry's callee is its
/// child.
pub fn entry_span(id: InvocationId, index: EntryIndex) -> SpanId {
    derive(id, 3, u64::from(index.0))
}

/// What a span stands for, as OTLP's span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKind {
    /// Work inside the kernel (an invocation, an attempt, a sleep).
    Internal,
    /// A request the kernel serves (ingress).
    Server,
    /// A request the kernel makes (an attempt's request to the endpoint, a call).
    Client,
    /// A message the kernel sends without waiting (a one-way send).
    Producer,
}

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
    /// A flag.
    Bool(bool),
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::Text(value)
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::Text(value.to_owned())
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        AttributeValue::Int(value)
    }
}

impl From<u32> for AttributeValue {
    fn from(value: u32) -> Self {
        AttributeValue::Int(i64::from(value))
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

/// One finished span, ready to export. Times are Unix nanoseconds; `end_ns` of `None` means
/// "now", stamped by whoever exports it (the leader applying the command that ended it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// Its parent; `None` for a trace's root.
    pub parent: Option<SpanId>,
    /// What it is, e.g. `invoke Greeter/greet` or `sleep`.
    pub name: String,
    /// OTLP span kind.
    pub kind: SpanKind,
    /// When it started.
    pub start_ns: u64,
    /// When it ended; `None`: now.
    pub end_ns: Option<u64>,
    /// Key/value attributes.
    pub attributes: Vec<(Cow<'static, str>, AttributeValue)>,
    /// Set when the work it stands for failed: the error description.
    pub error: Option<String>,
}

impl SpanRecord {
    /// A span of `trace` with no attributes yet, parented as `trace` says.
    pub fn new(
        trace: &TraceContext,
        span_id: SpanId,
        name: impl Into<String>,
        kind: SpanKind,
        start_ns: u64,
    ) -> Self {
        SpanRecord {
            trace_id: trace.trace_id,
            span_id,
            parent: Some(trace.parent),
            name: name.into(),
            kind,
            start_ns,
            end_ns: None,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: &'static str, value: impl Into<AttributeValue>) -> Self {
        self.attributes.push((Cow::Borrowed(key), value.into()));
        self
    }
}

/// Milliseconds (the log's clock unit) as span nanoseconds.
pub fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(value).expect("valid");
        assert_eq!(
            context.trace_id,
            TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(context.parent, SpanId(0x00f067aa0ba902b7));
        assert!(context.sampled);
        assert_eq!(context.traceparent(context.parent), value);
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .expect("valid");
        assert!(!unsampled.sampled);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_err(), "{bad:?} accepted");
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_ok()
        );
    }

    #[test]
    fn derived_span_ids_are_stable_and_distinct() {
        let a = InvocationId {
            partition_key: 7,
            nonce: 42,
        };
        let b = InvocationId {
            partition_key: 7,
            nonce: 43,
        };
        assert_eq!(invocation_span(a), invocation_span(a));
        let mut seen = std::collections::HashSet::new();
        for id in [a, b] {
            assert!(seen.insert(invocation_span(id)));
            for n in 1..50 {
                assert!(seen.insert(attempt_span(id, Epoch(n))));
                assert!(seen.insert(entry_span(id, EntryIndex(n))));
            }
        }
        assert!(!seen.contains(&SpanId(0)));
    }
}
