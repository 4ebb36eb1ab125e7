//! The exporter: one dedicated OS thread drains the span queue into batches and sends them to an
//! OTLP/HTTP collector with opentelemetry-otlp's blocking client.
//!
//! The client blocks, so it must never run on an async runtime's worker: it lives on its own
//! thread ("holdfast-otlp"), is even built there, and is polled with `futures`' tiny executor. A
//! batch leaves when it holds `batch_size` spans or `flush_interval` after its first span was
//! queued, whichever comes first. A failed export loses its batch (counted as dropped): spans are
//! diagnostics, and retrying beyond the client's own bounded retries would only let the queue
//! overflow later instead of now.

use crate::convert;
use crate::{SpanSink, TraceSnapshot, TraceStats};
use holdfast_types::SpanRecord;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The path of the traces signal under an OTLP/HTTP base URL.
const TRACES_PATH: &str = "/v1/traces";
/// The longest the idle thread sleeps before looking for a shutdown request.
const POLL: Duration = Duration::from_millis(50);
/// Failed exports are logged at most this often; the ones in between are counted.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How to reach the collector and how to batch; mirrors the `[tracing]` config section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The collector's OTLP/HTTP base URL (`http://jaeger:4318`) or its full traces URL
    /// (`http://jaeger:4318/v1/traces`); `/v1/traces` is appended unless it is already there.
    /// The HTTP client is built without TLS, so `https://` URLs are accepted but fail to export.
    pub endpoint: String,
    /// `service.name` of the resource: what the trace UI lists the spans under.
    pub service_name: String,
    /// This node's id, reported as `service.instance.id = node-<id>` and `holdfast.node.id`.
    pub node_id: u64,
    /// Spans queued at most; more are dropped (and counted) rather than slowing the caller.
    pub queue_capacity: usize,
    /// Spans per export request at most.
    pub batch_size: usize,
    /// A batch is sent at the latest this long after its first span was queued.
    pub flush_interval: Duration,
    /// Deadline of one export request, retries included.
    pub export_timeout: Duration,
}

impl ExportSettings {
    /// Settings with the `[tracing]` section's defaults, sending to `endpoint` as node 1.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ExportSettings {
            endpoint: endpoint.into(),
            service_name: "holdfast".to_owned(),
            node_id: 1,
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval: Duration::from_millis(500),
            export_timeout: Duration::from_secs(5),
        }
    }

    /// The URL spans are POSTed to: the endpoint with `/v1/traces` appended if it lacks it.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.trim().trim_end_matches('/');
        if base.ends_with(TRACES_PATH) {
            base.to_owned()
        } else {
            format!("{base}{TRACES_PATH}")
        }
    }

    fn check(&self) -> Result<(), ExportError> {
        let endpoint = self.endpoint.trim();
        let lower = endpoint.to_ascii_lowercase();
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| lower.strip_prefix(scheme));
        if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
            return Err(ExportError::InvalidEndpoint {
                endpoint: self.endpoint.clone(),
            });
        }
        let invalid = |setting, reason: &str| {
            Err(ExportError::InvalidSetting {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.service_name.trim().is_empty() {
            return invalid("service_name", "must not be empty");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be at least 1");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be at least 1");
        }
        if self.flush_interval.is_zero() {
            return invalid("flush_interval", "must be longer than zero");
        }
        if self.export_timeout.is_zero() {
            return invalid("export_timeout", "must be longer than zero");
        }
        Ok(())
    }

    /// The resource every span of this node is reported with.
    fn resource(&self) -> Resource {
        Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attributes([
                KeyValue::new("service.instance.id", format!("node-{}", self.node_id)),
                KeyValue::new(
                    "holdfast.node.id",
                    i64::try_from(self.node_id).unwrap_or(i64::MAX),
                ),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build()
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error("tracing endpoint {endpoint:?} is not an http:// or https:// URL")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// A batching setting is out of range.
    #[error("tracing setting `{setting}` {reason}")]
    InvalidSetting {
        /// The [`ExportSettings`] field.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// opentelemetry-otlp refused the configuration (e.g. a URL it cannot parse).
    #[error("cannot build the OTLP exporter for {url}: {source}")]
    Build {
        /// The traces URL it was built for.
        url: String,
        /// The library's reason.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The OS refused to start the exporter thread.
    #[error("cannot start the OTLP exporter thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The exporter thread ended before reporting whether it started (it panicked).
    #[error("the OTLP exporter thread ended while starting")]
    ThreadDied,
}

/// A running span exporter: hand out [`Exporter::sink`]s, and [`Exporter::shutdown`] it last.
/// Dropped without shutdown, it stops accepting spans and lets its thread flush in the
/// background for at most `export_timeout`.
#[derive(Debug)]
pub struct Exporter {
    sink: SpanSink,
    open: Arc<AtomicBool>,
    /// Sends the flush deadline that tells the thread to drain and stop.
    stop: Option<Sender<Instant>>,
    thread: Option<JoinHandle<()>>,
    url: String,
    export_timeout: Duration,
}

/// Starts exporting to `settings.endpoint`: builds the OTLP/HTTP exporter, the bounded queue and
/// the exporter thread. Blocks only while the thread builds its HTTP client.
pub fn start(settings: ExportSettings) -> Result<Exporter, ExportError> {
    settings.check()?;
    let url = settings.traces_url();
    if url.to_ascii_lowercase().starts_with("https://") {
        tracing::warn!(
            %url,
            "this build has no TLS: exports to an https:// collector will fail; \
             use http:// or a local collector"
        );
    }
    let export_timeout = settings.export_timeout;
    let (queue_tx, queue_rx) = mpsc::sync_channel(settings.queue_capacity);
    let stats = Arc::new(TraceStats::default());
    let open = Arc::new(AtomicBool::new(true));
    let sink = SpanSink::gated(queue_tx, Arc::clone(&stats), Arc::clone(&open));
    let (stop_tx, stop_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);

    let worker = Worker {
        queue: queue_rx,
        stop: stop_rx,
        stats,
        scope: convert::scope(),
        url: url.clone(),
        batch_size: settings.batch_size,
        flush_interval: settings.flush_interval,
        export_timeout: settings.export_timeout,
        last_warning: None,
        suppressed: 0,
    };
    let thread = std::thread::Builder::new()
        .name("holdfast-otlp".to_owned())
        .spawn(move || {
            // Built here so that the blocking client is created and dropped off any runtime.
            match build_exporter(&settings, &worker.url) {
                Ok(exporter) => {
                    // start() waits for this message; if it is gone nobody will ever shut down.
                    if ready_tx.send(Ok(())).is_ok() {
                        worker.run(exporter);
                    }
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                }
            }
        })
        .map_err(ExportError::Spawn)?;

    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Exporter {
            sink,
            open,
            stop: Some(stop_tx),
            thread: Some(thread),
            url,
            export_timeout,
        }),
        Ok(Err(err)) => {
            let _ = thread.join();
            Err(err)
        }
        Err(_) => {
            let _ = thread.join();
            Err(ExportError::ThreadDied)
        }
    }
}

fn build_exporter(
    settings: &ExportSettings,
    url: &str,
) -> Result<opentelemetry_otlp::SpanExporter, ExportError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(settings.export_timeout)
        .build()
        .map_err(|source| ExportError::Build {
            url: url.to_owned(),
            source,
        })?;
    exporter.set_resource(&settings.resource());
    Ok(exporter)
}

impl Exporter {
    /// A handle that queues spans for this exporter; hand one to every component.
    pub fn sink(&self) -> SpanSink {
        self.sink.clone()
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> TraceSnapshot {
        self.sink.stats()
    }

    /// The URL spans are POSTed to (the endpoint with `/v1/traces`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting spans, exports what is queued and joins the thread, all within `timeout`.
    /// Returns false if the thread was still busy at the deadline (an export stuck on a slow
    /// collector); it is then left to finish on its own and whatever it still held is lost.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.open.store(false, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(deadline);
        }
        let Some(thread) = self.thread.take() else {
            return true;
        };
        while !thread.is_finished() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
        thread.join().is_ok()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Instant::now() + self.export_timeout);
        }
    }
}

/// The exporter thread's state.
struct Worker {
    queue: Receiver<SpanRecord>,
    stop: Receiver<Instant>,
    stats: Arc<TraceStats>,
    scope: InstrumentationScope,
    url: String,
    batch_size: usize,
    flush_interval: Duration,
    export_timeout: Duration,
    last_warning: Option<Instant>,
    /// Failed exports not logged since `last_warning`.
    suppressed: u64,
}

impl Worker {
    fn run(mut self, exporter: opentelemetry_otlp::SpanExporter) {
        let mut batch = Vec::with_capacity(self.batch_size.min(4096));
        let mut first_queued: Option<Instant> = None;
        loop {
            match self.stop.try_recv() {
                Ok(deadline) => {
                    self.drain(&exporter, batch, deadline);
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    let deadline = Instant::now() + self.export_timeout;
                    self.drain(&exporter, batch, deadline);
                    break;
                }
                Err(TryRecvError::Empty) => {}
            }
            let wait = first_queued.map_or(POLL, |first| {
                self.flush_interval
                    .saturating_sub(first.elapsed())
                    .min(POLL)
            });
            match self.queue.recv_timeout(wait) {
                Ok(record) => {
                    if self.push(&mut batch, record) {
                        first_queued.get_or_insert_with(Instant::now);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(&exporter, std::mem::take(&mut batch));
                    break;
                }
            }
            let due = first_queued.is_some_and(|first| first.elapsed() >= self.flush_interval);
            if !batch.is_empty() && (batch.len() >= self.batch_size || due) {
                self.export(&exporter, std::mem::take(&mut batch));
                first_queued = None;
            }
        }
        let _ = exporter.shutdown();
    }

    /// Adds a record to the batch; false if it was refused (invalid ids) and counted as dropped.
    fn push(&self, batch: &mut Vec<SpanData>, record: SpanRecord) -> bool {
        match convert::span_data(record, &self.scope) {
            Some(span) => {
                batch.push(span);
                true
            }
            None => {
                self.stats.add_dropped(1);
                false
            }
        }
    }

    /// Exports what is queued, in full batches, until the queue is empty or `deadline` passes;
    /// whatever is left then is counted as dropped.
    fn drain(
        &mut self,
        exporter: &opentelemetry_otlp::SpanExporter,
        mut batch: Vec<SpanData>,
        deadline: Instant,
    ) {
        loop {
            while batch.len() < self.batch_size {
                match self.queue.try_recv() {
                    Ok(record) => {
                        self.push(&mut batch, record);
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let left = self.queue.try_iter().count();
                self.stats
                    .add_dropped(count(batch.len()).saturating_add(count(left)));
                return;
            }
            self.export(exporter, std::mem::take(&mut batch));
        }
    }

    fn export(&mut self, exporter: &opentelemetry_otlp::SpanExporter, batch: Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = count(batch.len());
        // The library is not expected to panic; if it does, this thread must survive it.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            futures::executor::block_on(exporter.export(batch))
        }));
        let error = match outcome {
            Ok(Ok(())) => {
                self.stats.add_exported(spans);
                return;
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "the OTLP exporter panicked".to_owned(),
        };
        self.stats.add_dropped(spans);
        self.stats.add_failed_export();
        self.warn(spans, &error);
    }

    /// Logs a failed export, at most once per [`WARN_EVERY`]; counts the ones it holds back.
    fn warn(&mut self, spans: u64, error: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            url = %self.url,
            spans,
            suppressed = self.suppressed,
            %error,
            "OTLP span export failed; the batch is dropped"
        );
        self.last_warning = Some(now);
        self.suppressed = 0;
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_accepts_base_and_full_urls() {
        for (endpoint, url) in [
            ("http://jaeger:4318", "http://jaeger:4318/v1/traces"),
            ("http://jaeger:4318/", "http://jaeger:4318/v1/traces"),
            (
                "http://jaeger:4318/v1/traces",
                "http://jaeger:4318/v1/traces",
            ),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
            (
                " http://127.0.0.1:4318/v1/traces/ ",
                "http://127.0.0.1:4318/v1/traces",
            ),
        ] {
            assert_eq!(
                ExportSettings::new(endpoint).traces_url(),
                url,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_before_anything_starts() {
        for endpoint in ["", "jaeger:4318", "ftp://x", "http://", "http:///v1/traces"] {
            assert!(
                matches!(
                    start(ExportSettings::new(endpoint)),
                    Err(ExportError::InvalidEndpoint { .. })
                ),
                "{endpoint:?} accepted"
            );
        }
        let base = ExportSettings::new("http://127.0.0.1:4318");
        let cases = [
            (
                "queue_capacity",
                ExportSettings {
                    queue_capacity: 0,
                    ..base.clone()
                },
            ),
            (
                "batch_size",
                ExportSettings {
                    batch_size: 0,
                    ..base.clone()
                },
            ),
            (
                "service_name",
                ExportSettings {
                    service_name: " ".to_owned(),
                    ..base.clone()
                },
            ),
            (
                "flush_interval",
                ExportSettings {
                    flush_interval: Duration::ZERO,
                    ..base.clone()
                },
            ),
            (
                "export_timeout",
                ExportSettings {
                    export_timeout: Duration::ZERO,
                    ..base.clone()
                },
            ),
        ];
        for (field, settings) in cases {
            match start(settings) {
                Err(ExportError::InvalidSetting { setting, .. }) => assert_eq!(setting, field),
                other => panic!("{field}: expected InvalidSetting, got {other:?}"),
            }
        }
    }

    #[test]
    fn resource_names_service_and_node() {
        let settings = ExportSettings {
            node_id: 7,
            service_name: "holdfast-test".to_owned(),
            ..ExportSettings::new("http://127.0.0.1:4318")
        };
        let resource = settings.resource();
        let get = |key: &'static str| resource.get(&opentelemetry::Key::from(key));
        assert_eq!(get("service.name"), Some("holdfast-test".into()));
        assert_eq!(get("service.instance.id"), Some("node-7".into()));
        assert_eq!(get("holdfast.node.id"), Some(7_i64.into()));
        assert_eq!(
            get("service.version"),
            Some(env!("CARGO_PKG_VERSION").into())
        );
    }
}
