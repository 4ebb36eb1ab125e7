//! The exporter against a real (tiny, in-test) OTLP/HTTP collector, an absent one and a stuck
//! one: what arrives on the wire, and that the sink never blocks whatever the collector does.

use holdfast_otlp::{ExportSettings, SpanSink, TraceSnapshot, start};
use holdfast_types::trace::SpanKind;
use holdfast_types::{SpanId, SpanRecord, TraceContext, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One POST the collector received.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    content_type: String,
    body: ExportTraceServiceRequest,
}

/// A minimal OTLP/HTTP collector: HTTP/1.1 with keep-alive, answers every POST with 200 and an
/// empty `ExportTraceServiceResponse`.
struct Collector {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let port = listener.local_addr().expect("collector address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Collector { port, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }

    fn spans(&self) -> Vec<(BTreeMap<String, String>, Span)> {
        let mut spans = Vec::new();
        for request in self.requests() {
            for resource_spans in request.body.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
                    assert_eq!(scope, "holdfast");
                    for span in scope_spans.spans {
                        spans.push((resource.clone(), span));
                    }
                }
            }
        }
        spans
    }

    fn wait_for_spans(&self, n: usize) -> Vec<(BTreeMap<String, String>, Span)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} spans, got {}: {spans:?}",
                spans.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Serves one keep-alive connection until the client closes it.
fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP request");
        requests.lock().expect("requests lock").push(Request {
            path,
            content_type,
            body,
        });
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                        content-length: 0\r\n\r\n";
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(n)) => n.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn fast(endpoint: String) -> ExportSettings {
    ExportSettings {
        node_id: 3,
        service_name: "holdfast-test".to_owned(),
        queue_capacity: 1024,
        batch_size: 64,
        flush_interval: Duration::from_millis(10),
        export_timeout: Duration::from_millis(300),
        ..ExportSettings::new(endpoint)
    }
}

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;

fn span(id: u64, parent: Option<u64>, name: &str, kind: SpanKind) -> SpanRecord {
    let trace = TraceContext {
        trace_id: TraceId(TRACE),
        parent: SpanId(parent.unwrap_or(1)),
        sampled: true,
    };
    let mut record = SpanRecord::new(&trace, SpanId(id), name, kind, 1_700_000_000_000_000_000);
    record.parent = parent.map(SpanId);
    record.end_ns = Some(1_700_000_000_250_000_000);
    record
}

/// Polls the sink's counters until `done` holds (or fails after a few seconds).
fn wait_stats(sink: &SpanSink, done: impl Fn(&TraceSnapshot) -> bool) -> TraceSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = sink.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "counters stuck at {stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn spans_arrive_with_ids_parent_kind_attributes_times_status_and_resource() {
    let collector = Collector::start();
    let exporter = start(fast(collector.endpoint())).expect("exporter starts");
    assert_eq!(
        exporter.url(),
        format!("{}/v1/traces", collector.endpoint())
    );
    let sink = exporter.sink();
    assert!(sink.enabled());

    sink.emit(
        span(0x11, None, "ingress POST /Greeter/greet", SpanKind::Server)
            .with("http.method", "POST")
            .with("holdfast.partition", 5u32)
            .with("holdfast.replayed", false),
    );
    let mut failed = span(0x22, Some(0x11), "attempt 1", SpanKind::Client);
    failed.error = Some("endpoint returned 500".to_owned());
    sink.emit(failed);
    // A record with a zero span id would make a collector refuse the whole batch: never sent.
    sink.emit(span(0, Some(0x11), "invalid", SpanKind::Internal));

    let spans = collector.wait_for_spans(2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let by_name: BTreeMap<&str, &(BTreeMap<String, String>, Span)> =
        spans.iter().map(|s| (s.1.name.as_str(), s)).collect();

    let (resource, root) = by_name["ingress POST /Greeter/greet"];
    assert_eq!(resource["service.name"], "holdfast-test");
    assert_eq!(resource["service.instance.id"], "node-3");
    assert_eq!(resource["holdfast.node.id"], "3");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root.trace_id, TRACE.to_be_bytes().to_vec());
    assert_eq!(root.span_id, 0x11_u64.to_be_bytes().to_vec());
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(root.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(root.end_time_unix_nano, 1_700_000_000_250_000_000);
    assert_eq!(
        attributes(&root.attributes),
        BTreeMap::from([
            ("http.method".to_owned(), "POST".to_owned()),
            ("holdfast.partition".to_owned(), "5".to_owned()),
            ("holdfast.replayed".to_owned(), "false".to_owned()),
        ])
    );
    assert_eq!(root.status.as_ref().map_or(0, |s| s.code), 0, "unset");

    let (_, child) = by_name["attempt 1"];
    assert_eq!(child.trace_id, TRACE.to_be_bytes().to_vec());
    assert_eq!(child.parent_span_id, 0x11_u64.to_be_bytes().to_vec());
    assert_eq!(child.kind, 3, "SPAN_KIND_CLIENT");
    let status = child.status.clone().expect("an error status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert_eq!(status.message, "endpoint returned 500");

    for request in collector.requests() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.content_type, "application/x-protobuf");
    }
    let stats = wait_stats(&sink, |s| s.exported == 2);
    assert_eq!(
        stats,
        TraceSnapshot {
            emitted: 3,
            exported: 2,
            dropped: 1,
            failed_exports: 0
        }
    );
    assert!(exporter.shutdown(Duration::from_secs(5)));
    assert!(!sink.enabled(), "a shut down exporter accepts nothing");
    sink.emit(span(0x33, None, "late", SpanKind::Internal));
    assert_eq!(sink.stats().dropped, 2);
}

#[test]
fn full_traces_url_is_used_as_is_and_batches_respect_batch_size() {
    let collector = Collector::start();
    let settings = ExportSettings {
        batch_size: 3,
        flush_interval: Duration::from_secs(60),
        ..fast(format!("{}/v1/traces", collector.endpoint()))
    };
    let exporter = start(settings).expect("exporter starts");
    let sink = exporter.sink();
    for id in 1..=6 {
        sink.emit(span(id, None, "s", SpanKind::Internal));
    }
    // Two full batches leave at once, long before the 60 s flush interval.
    collector.wait_for_spans(6);
    let sizes: Vec<usize> = collector
        .requests()
        .iter()
        .map(|r| {
            r.body
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum()
        })
        .collect();
    assert_eq!(sizes, vec![3, 3]);
    assert!(collector.requests().iter().all(|r| r.path == "/v1/traces"));
    assert!(exporter.shutdown(Duration::from_secs(5)));
}

#[test]
fn shutdown_flushes_what_is_queued() {
    let collector = Collector::start();
    let settings = ExportSettings {
        batch_size: 1000,
        flush_interval: Duration::from_secs(60),
        ..fast(collector.endpoint())
    };
    let exporter = start(settings).expect("exporter starts");
    let sink = exporter.sink();
    for id in 1..=10 {
        sink.emit(span(id, None, "queued", SpanKind::Internal));
    }
    assert!(
        collector.spans().is_empty(),
        "nothing is due before the flush interval"
    );
    assert!(exporter.shutdown(Duration::from_secs(5)));
    assert_eq!(collector.spans().len(), 10);
    assert_eq!(sink.stats().exported, 10);
}

#[test]
fn absent_collector_never_blocks_and_counts_failures() {
    // A port that was free a moment ago: connections to it are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let settings = ExportSettings {
        batch_size: 4,
        flush_interval: Duration::from_millis(5),
        export_timeout: Duration::from_millis(100),
        ..fast(format!("http://127.0.0.1:{port}"))
    };
    let exporter = start(settings).expect("exporter starts without a collector");
    let sink = exporter.sink();
    let began = Instant::now();
    for id in 1..=10 {
        sink.emit(span(id, None, "lost", SpanKind::Internal));
    }
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "emit blocked for {:?}",
        began.elapsed()
    );
    let stats = wait_stats(&sink, |s| s.dropped == 10);
    assert_eq!(stats.emitted, 10);
    assert_eq!(stats.exported, 0);
    assert!(stats.failed_exports >= 1, "{stats:?}");
    assert!(exporter.shutdown(Duration::from_secs(5)));
}

#[test]
fn full_queue_drops_and_counts_instead_of_blocking() {
    // Accepts connections (the OS does, into the backlog) but never answers: every export
    // hangs until its timeout, so the exporter thread holds at most one span.
    let stuck = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = stuck.local_addr().expect("address").port();
    let settings = ExportSettings {
        queue_capacity: 4,
        batch_size: 1,
        flush_interval: Duration::from_millis(1),
        export_timeout: Duration::from_secs(3),
        ..fast(format!("http://127.0.0.1:{port}"))
    };
    let exporter = start(settings).expect("exporter starts");
    let sink = exporter.sink();
    let began = Instant::now();
    for id in 1..=20 {
        sink.emit(span(id, None, "overflow", SpanKind::Internal));
    }
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "emit blocked for {:?}",
        began.elapsed()
    );
    let stats = sink.stats();
    assert_eq!(stats.emitted, 20);
    // At most 4 queued plus 1 taken by the thread: the other 15 were dropped on the spot.
    assert!(stats.dropped >= 15, "{stats:?}");
    // The thread is stuck in an export: shutdown gives up at its deadline instead of hanging.
    let began = Instant::now();
    assert!(!exporter.shutdown(Duration::from_millis(100)));
    assert!(began.elapsed() < Duration::from_secs(1));
    drop(stuck);
}
