//! A test OTLP/HTTP collector: point a node's `tracing.endpoint` at [`OtlpReceiver::endpoint`]
//! and assert on the spans it exported.
//!
//! Plain std threads and a small HTTP/1.1 server (keep-alive, `Content-Length` bodies), so the
//! synchronous e2e tests need no async runtime. Requests to `POST /v1/traces` are decoded with
//! the OTLP protobuf definitions and answered with an empty `ExportTraceServiceResponse`;
//! `GET /count` answers the number of spans received so far (used by the `otlp-sink` benchmark
//! binary, which runs the receiver in [`Mode::Count`]).

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request body accepted; a bigger one is answered 413 and the connection closed.
const MAX_BODY: usize = 64 << 20;

/// One span as the collector received it, flattened for easy assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The span id, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent span id (16 hex digits); `None` for a trace's root.
    pub parent_span_id: Option<String>,
    /// The span name.
    pub name: String,
    /// OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds.
    pub end_ns: u64,
    /// Attributes with their values as text (integers and booleans rendered).
    pub attributes: BTreeMap<String, String>,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    /// The status message (the error description).
    pub status_message: String,
    /// The attributes of the resource that reported the span (`service.name`, ...).
    pub resource: BTreeMap<String, String>,
}

/// What the receiver keeps of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decode and keep every span, for [`OtlpReceiver::spans`].
    Store,
    /// Decode and only count spans (benchmarks: no memory growth).
    Count,
}

/// State shared by the accept thread, the connection threads and the handle.
struct Shared {
    mode: Mode,
    spans: Mutex<Vec<ReceivedSpan>>,
    span_count: AtomicU64,
    requests: AtomicUsize,
    stopped: AtomicBool,
    /// Open connections, so that stopping can cut keep-alive connections too.
    connections: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    fn spans(&self) -> MutexGuard<'_, Vec<ReceivedSpan>> {
        // A panicking test thread must not hide the spans from the next assertion.
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running OTLP/HTTP collector on loopback; stopped (listener closed) on [`OtlpReceiver::stop`]
/// or drop, after which exports to it are refused.
pub struct OtlpReceiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts a storing receiver on `127.0.0.1:<free port>`.
    pub fn start() -> OtlpReceiver {
        let address = SocketAddr::from(([127, 0, 0, 1], 0));
        OtlpReceiver::bind(address, Mode::Store).expect("bind the OTLP receiver")
    }

    /// Starts a receiver on `address` (port 0: a free one) keeping spans as `mode` says.
    pub fn bind(address: SocketAddr, mode: Mode) -> std::io::Result<OtlpReceiver> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode,
            spans: Mutex::new(Vec::new()),
            span_count: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("otlp-receiver".to_owned())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(OtlpReceiver {
            address,
            shared,
            accept: Some(accept),
        })
    }

    /// The base URL to configure as `tracing.endpoint`: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every span received so far, in arrival order (empty in [`Mode::Count`]).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans().clone()
    }

    /// How many spans were received so far (both modes).
    pub fn span_count(&self) -> u64 {
        self.shared.span_count.load(Ordering::Relaxed)
    }

    /// How many export requests were received (decoded or not).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Waits until `predicate` holds for the spans received so far and returns them; panics
    /// after `timeout` naming `what` and listing every span seen.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if predicate(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {} request(s), {} span(s):\n{}",
                    self.requests(),
                    spans.len(),
                    describe(&spans)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the listener and every open connection: later exports are refused.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        let _ = accept.join();
        for (_, stream) in self.shared.connections().drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One line per span, for failure messages.
pub fn describe(spans: &[ReceivedSpan]) -> String {
    let mut out = String::new();
    for span in spans {
        let _ = writeln!(
            out,
            "  {} {} parent={} kind={} status={}{} {:?} attrs={:?}",
            span.trace_id,
            span.span_id,
            span.parent_span_id.as_deref().unwrap_or("-"),
            span.kind,
            span.status_code,
            if span.status_message.is_empty() {
                String::new()
            } else {
                format!("({})", span.status_message)
            },
            span.name,
            span.attributes
        );
    }
    out
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            continue;
        };
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = stream.try_clone() {
            shared.connections().insert(id, clone);
        }
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("otlp-connection".to_owned())
            .spawn(move || {
                serve(stream, &shared);
                shared.connections().remove(&id);
            });
        if spawned.is_err() {
            // Out of threads: the stream was moved into the failed closure and is closed.
            continue;
        }
    }
}

/// One parsed HTTP/1.1 request.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    close: bool,
}

/// Why a request could not be read.
enum ReadError {
    /// The peer closed the connection (cleanly between requests, or mid-request).
    Closed,
    /// A malformed request: answer with this status and close.
    Bad(u16, &'static str),
}

/// Serves one keep-alive connection until the peer closes it or the receiver stops.
fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !shared.stopped.load(Ordering::SeqCst) {
        let request = match read_request(&mut reader) {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, reason)) => {
                let _ = respond(&mut writer, status, "text/plain", reason.as_bytes(), true);
                return;
            }
        };
        let (status, content_type, body) = handle(&request, shared);
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        if respond(&mut writer, status, content_type, &body, request.close).is_err()
            || request.close
        {
            return;
        }
    }
}

fn handle(request: &Request, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/traces") => {
            shared.requests.fetch_add(1, Ordering::Relaxed);
            match ExportTraceServiceRequest::decode(request.body.as_slice()) {
                Ok(export) => {
                    record(export, shared);
                    let response = ExportTraceServiceResponse::default().encode_to_vec();
                    (200, "application/x-protobuf", response)
                }
                Err(err) => (
                    400,
                    "text/plain",
                    format!("not an ExportTraceServiceRequest: {err}").into_bytes(),
                ),
            }
        }
        ("GET", "/count") => (
            200,
            "text/plain",
            shared
                .span_count
                .load(Ordering::Relaxed)
                .to_string()
                .into_bytes(),
        ),
        _ => (404, "text/plain", b"not found".to_vec()),
    }
}

fn record(export: ExportTraceServiceRequest, shared: &Shared) {
    let mut received = Vec::new();
    let mut count = 0u64;
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            count += scope_spans.spans.len() as u64;
            if shared.mode == Mode::Count {
                continue;
            }
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                received.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: span.kind,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    status_code: status.code,
                    status_message: status.message,
                    resource: resource.clone(),
                });
            }
        }
    }
    if !received.is_empty() {
        shared.spans().extend(received);
    }
    shared.span_count.fetch_add(count, Ordering::Relaxed);
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(x)) => x.to_string(),
        Some(any_value::Value::BytesValue(bytes)) => hex(bytes),
        Some(any_value::Value::ArrayValue(array)) => {
            let items: Vec<String> = array.values.iter().map(|v| value_text(Some(v))).collect();
            format!("[{}]", items.join(", "))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Request, ReadError> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => return Err(ReadError::Closed),
        Ok(_) => {}
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line"));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    // HTTP/1.0 closes after each response unless asked otherwise; 1.1 keeps the connection.
    let mut close = version == "HTTP/1.0";
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return Err(ReadError::Closed),
            Ok(_) => {}
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| ReadError::Bad(400, "bad content-length"))?;
            }
            "transfer-encoding" => {
                return Err(ReadError::Bad(
                    411,
                    "only content-length bodies are supported",
                ));
            }
            "connection" => {
                close = value.eq_ignore_ascii_case("close");
            }
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(ReadError::Bad(413, "body too large"));
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|_| ReadError::Closed)?;
    Ok(Request {
        method,
        path,
        body,
        close,
    })
}

fn respond(
    writer: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: {connection}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    fn text(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn request(spans: Vec<Span>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text(
                        "service.name",
                        any_value::Value::StringValue("holdfast".to_owned()),
                    )],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    /// Sends one request on `stream` and reads the response: (status line, headers, body).
    fn exchange(
        stream: &mut TcpStream,
        reader: &mut BufReader<TcpStream>,
        head: &str,
        body: &[u8],
    ) -> (String, String, Vec<u8>) {
        stream
            .write_all(format!("{head}content-length: {}\r\n\r\n", body.len()).as_bytes())
            .expect("send head");
        stream.write_all(body).expect("send body");
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        let mut headers = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("length");
            }
            headers.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        (status.trim_end().to_owned(), headers, body)
    }

    #[test]
    fn receives_decodes_and_counts_over_one_keep_alive_connection() {
        let receiver = OtlpReceiver::start();
        assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
        let mut stream = TcpStream::connect(receiver.address()).expect("connect");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let post =
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n";

        let root = Span {
            trace_id: (1..=16).collect(),
            span_id: vec![0xab; 8],
            name: "ingress".to_owned(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![
                text("n", any_value::Value::IntValue(7)),
                text("flag", any_value::Value::BoolValue(true)),
            ],
            ..Span::default()
        };
        let child = Span {
            trace_id: (1..=16).collect(),
            span_id: vec![0xcd; 8],
            parent_span_id: vec![0xab; 8],
            name: "attempt".to_owned(),
            kind: 3,
            status: Some(Status {
                message: "boom".to_owned(),
                code: 2,
            }),
            ..Span::default()
        };
        let (status, headers, body) =
            exchange(&mut stream, &mut reader, post, &request(vec![root]));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("content-type: application/x-protobuf"),
            "{headers}"
        );
        assert!(ExportTraceServiceResponse::decode(body.as_slice()).is_ok());
        let (status, _, _) = exchange(&mut stream, &mut reader, post, &request(vec![child]));
        assert_eq!(status, "HTTP/1.1 200 OK");

        let spans = receiver.wait_for("two spans", Duration::from_secs(5), |s| s.len() == 2);
        assert_eq!(receiver.requests(), 2);
        assert_eq!(spans[0].trace_id, "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(spans[0].span_id, "abababababababab");
        assert_eq!(spans[0].parent_span_id, None);
        assert_eq!(spans[0].kind, 2);
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (10, 20));
        assert_eq!(spans[0].attributes["n"], "7");
        assert_eq!(spans[0].attributes["flag"], "true");
        assert_eq!(spans[0].resource["service.name"], "holdfast");
        assert_eq!(spans[1].parent_span_id.as_deref(), Some("abababababababab"));
        assert_eq!(
            (spans[1].status_code, spans[1].status_message.as_str()),
            (2, "boom")
        );

        let (status, _, body) = exchange(
            &mut stream,
            &mut reader,
            "GET /count HTTP/1.1\r\nhost: x\r\n",
            b"",
        );
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"2");
        let (status, _, _) = exchange(&mut stream, &mut reader, post, b"\xff\xff");
        assert_eq!(status, "HTTP/1.1 400 Bad Request");

        let address = receiver.address();
        receiver.stop();
        assert!(TcpStream::connect(address).is_err(), "still listening");
        let mut rest = Vec::new();
        // The open keep-alive connection was cut as well.
        assert_eq!(reader.read_to_end(&mut rest).unwrap_or(0), 0);
    }

    #[test]
    fn counting_mode_keeps_no_spans() {
        let receiver =
            OtlpReceiver::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Mode::Count).expect("bind");
        let mut stream = TcpStream::connect(receiver.address()).expect("connect");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let spans = (1..=3u8)
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                ..Span::default()
            })
            .collect();
        let (status, _, _) = exchange(
            &mut stream,
            &mut reader,
            "POST /v1/traces HTTP/1.1\r\n",
            &request(spans),
        );
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(receiver.span_count(), 3);
        assert!(receiver.spans().is_empty());
    }

    #[test]
    fn real_exporter_spans_arrive_and_stop_makes_exports_fail() {
        use holdfast_otlp::{ExportSettings, start};
        use holdfast_types::trace::SpanKind;
        use holdfast_types::{SpanId, SpanRecord, TraceContext, TraceId};

        let receiver = OtlpReceiver::start();
        let settings = ExportSettings {
            node_id: 2,
            flush_interval: Duration::from_millis(5),
            export_timeout: Duration::from_millis(200),
            ..ExportSettings::new(receiver.endpoint())
        };
        let exporter = start(settings).expect("exporter starts");
        let sink = exporter.sink();
        let trace = TraceContext {
            trace_id: TraceId(0xfeed),
            parent: SpanId(0xbeef),
            sampled: true,
        };
        let span = |id: u64| {
            SpanRecord::new(
                &trace,
                SpanId(id),
                "invoke Greeter/greet",
                SpanKind::Internal,
                5,
            )
            .with("holdfast.invocation.id", "inv_x")
        };
        sink.emit(span(7));
        let spans = receiver.wait_for("the exported span", Duration::from_secs(10), |s| {
            !s.is_empty()
        });
        assert_eq!(spans[0].trace_id, format!("{:032x}", 0xfeed));
        assert_eq!(spans[0].span_id, format!("{:016x}", 7));
        assert_eq!(spans[0].parent_span_id, Some(format!("{:016x}", 0xbeef)));
        assert_eq!(spans[0].kind, 1);
        assert_eq!(spans[0].attributes["holdfast.invocation.id"], "inv_x");
        assert_eq!(spans[0].resource["service.instance.id"], "node-2");

        receiver.stop();
        sink.emit(span(8));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.stats().failed_exports == 0 {
            assert!(
                Instant::now() < deadline,
                "export kept succeeding: {:?}",
                sink.stats()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.stats().exported, 1);
        assert!(exporter.shutdown(Duration::from_secs(5)));
    }

    #[test]
    #[should_panic(expected = "waiting for a span named nope")]
    fn wait_for_names_what_it_waited_for() {
        let receiver = OtlpReceiver::start();
        receiver.wait_for("a span named nope", Duration::from_millis(30), |s| {
            s.iter().any(|span| span.name == "nope")
        });
    }
}
