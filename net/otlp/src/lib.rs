//! Span export: every part of the kernel hands finished spans ([`SpanRecord`]) to a [`SpanSink`],
//! which queues them without blocking; a dedicated exporter thread batches the queue and sends
//! it to an OTLP collector over HTTP/protobuf. The sink never waits: when the queue is full (the
//! collector is down or slow) a span is dropped and counted, so tracing never slows an
//! invocation.
//!
//! ```text
//!  ingress / partition / attempt ──emit──► bounded queue ──► exporter thread ──OTLP/HTTP──► collector
//!                                    └─ full: dropped += 1         └─ export failed: dropped += batch
//! ```
//!
//! # Layout
//!
//! - this file: the sink every component holds and the pipeline's counters;
//! - `export`: [`start`] builds the OTLP/HTTP exporter and runs the batching thread ([`Exporter`]);
//! - `convert`: [`SpanRecord`] to OpenTelemetry's span shape, refusing invalid ids.

mod convert;
mod export;

pub use export::{ExportError, ExportSettings, Exporter, start};

use holdfast_types::SpanRecord;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters of the span pipeline, shared by the sink handles and the exporter thread.
#[derive(Debug, Default)]
pub struct TraceStats {
    emitted: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
}

/// A point-in-time copy of [`TraceStats`], for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TraceSnapshot {
    /// Spans handed to the sink.
    pub emitted: u64,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans lost: the queue was full, or their export failed.
    pub dropped: u64,
    /// Export requests that failed (collector down, refused, timed out).
    pub failed_exports: u64,
}

impl TraceStats {
    /// Copies the counters.
    pub fn snapshot(&self) -> TraceSnapshot {
        TraceSnapshot {
            emitted: self.emitted.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
        }
    }

    /// Counts `n` spans accepted by the collector.
    pub fn add_exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` spans lost.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one failed export request.
    pub fn add_failed_export(&self) {
        self.failed_exports.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where finished spans go. Cheap to clone; a disabled sink (tracing off) ignores everything,
/// and callers check [`SpanSink::enabled`] before building a span at all.
#[derive(Debug, Clone)]
pub struct SpanSink {
    queue: Option<SyncSender<SpanRecord>>,
    stats: Arc<TraceStats>,
    /// Cleared when the exporter shuts down, so late spans are counted as dropped at once
    /// instead of piling up in a queue nobody drains.
    open: Arc<AtomicBool>,
}

impl Default for SpanSink {
    fn default() -> Self {
        Self::disabled()
    }
}

impl SpanSink {
    /// A sink that records nothing (no OTLP endpoint configured).
    pub fn disabled() -> Self {
        SpanSink {
            queue: None,
            stats: Arc::new(TraceStats::default()),
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A sink feeding `queue`, counting into `stats`; the exporter drains the other end.
    pub fn new(queue: SyncSender<SpanRecord>, stats: Arc<TraceStats>) -> Self {
        Self::gated(queue, stats, Arc::new(AtomicBool::new(true)))
    }

    /// A sink whose `open` flag the exporter clears on shutdown.
    pub(crate) fn gated(
        queue: SyncSender<SpanRecord>,
        stats: Arc<TraceStats>,
        open: Arc<AtomicBool>,
    ) -> Self {
        SpanSink {
            queue: Some(queue),
            stats,
            open,
        }
    }

    /// Whether spans are recorded; building a span is wasted work otherwise. False once the
    /// exporter has shut down.
    pub fn enabled(&self) -> bool {
        self.queue.is_some() && self.open.load(Ordering::Relaxed)
    }

    /// Queues a finished span without blocking; stamps a missing end time with now. Counts it as
    /// dropped when the queue is full or the exporter is gone or shut down.
    pub fn emit(&self, mut span: SpanRecord) {
        let Some(queue) = &self.queue else {
            return;
        };
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        if !self.open.load(Ordering::Relaxed) {
            self.stats.add_dropped(1);
            return;
        }
        if span.end_ns.is_none() {
            span.end_ns = Some(now_ns().max(span.start_ns));
        }
        match queue.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.add_dropped(1);
            }
        }
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> TraceSnapshot {
        self.stats.snapshot()
    }
}

/// The wall clock in Unix nanoseconds (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
