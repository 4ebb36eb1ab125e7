//! The ingress HTTP surface over real sockets: a raw HTTP/1.1 client talks to the server, an
//! in-test dispatcher records what reached it and answers with canned outcomes.

use bytes::Bytes;
use futures::future::BoxFuture;
use holdfast_ingress::access::{BearerAuth, Cors};
use holdfast_ingress::{
    AwakeableCompletion, BAD_PATH, DispatchError, Dispatcher, Failure, IngressConfig,
    IngressMetrics, IngressRequest, InvocationRef, Mode, Outcome, Output, RegistryView,
    SendAccepted, SendStatus, Target,
};
use holdfast_otlp::{SpanSink, TraceStats};
use holdfast_protocol::manifest::{
    Handler, HandlerKind, Manifest, ProtocolMode, Service, ServiceType,
};
use holdfast_schema::{DeploymentId, Millis, Registry, RegistryCommand, ServicePatch, Timestamp};
use holdfast_types::trace::{AttributeValue, SpanKind};
use holdfast_types::{
    AwakeableId, EntryIndex, InvocationId, SpanId, SpanRecord, TraceContext, TraceId,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// Registry: a service, an object with a private handler, a workflow, and a private service.

fn handler(name: &str, kind: HandlerKind, input: &str) -> Handler {
    Handler {
        name: name.into(),
        kind,
        input: input.into(),
        output: "application/json".into(),
        retry_policy: None,
        inactivity_timeout_ms: None,
        abort_timeout_ms: None,
        schedules: Vec::new(),
    }
}

const JSON: &str = "application/json";
const BINARY: &str = "application/octet-stream";

fn manifest() -> Manifest {
    Manifest {
        min_protocol_version: 1,
        max_protocol_version: 1,
        sdk_version: None,
        protocol_modes: vec![ProtocolMode::Stream],
        services: vec![
            Service {
                name: "Greeter".into(),
                ty: ServiceType::Service,
                handlers: vec![
                    handler("greet", HandlerKind::Shared, JSON),
                    handler("blob", HandlerKind::Shared, BINARY),
                ],
                retry_policy: None,
                inactivity_timeout_ms: None,
                abort_timeout_ms: None,
            },
            Service {
                name: "Counter".into(),
                ty: ServiceType::Object,
                handlers: vec![
                    handler("add", HandlerKind::Exclusive, JSON),
                    handler("get", HandlerKind::Shared, JSON),
                    handler("reset", HandlerKind::Exclusive, JSON),
                ],
                retry_policy: None,
                inactivity_timeout_ms: None,
                abort_timeout_ms: None,
            },
            Service {
                name: "Signup".into(),
                ty: ServiceType::Workflow,
                handlers: vec![
                    handler("run", HandlerKind::Workflow, JSON),
                    handler("status", HandlerKind::Shared, JSON),
                ],
                retry_policy: None,
                inactivity_timeout_ms: None,
                abort_timeout_ms: None,
            },
            Service {
                name: "Internal".into(),
                ty: ServiceType::Service,
                handlers: vec![handler("ping", HandlerKind::Shared, JSON)],
                retry_policy: None,
                inactivity_timeout_ms: None,
                abort_timeout_ms: None,
            },
        ],
    }
}

const SEED: u128 = 7;

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .apply(&RegistryCommand::RegisterDeployment {
            seed: SEED,
            uri: "http://127.0.0.1:9080/".into(),
            manifest: manifest(),
            force: false,
            at_ms: Timestamp(1_700_000_000_000),
        })
        .expect("registration applies");
    registry
        .apply(&RegistryCommand::ModifyService {
            service: "Internal".into(),
            patch: ServicePatch {
                public: Some(false),
                ..ServicePatch::default()
            },
        })
        .expect("patch applies");
    // Discovery manifests cannot mark a single handler private yet, so the test flips
    // Counter/reset in the registry's own serialized form (what snapshots hold).
    let mut snapshot = serde_json::to_value(&registry).expect("registry serializes");
    let mut flipped = 0;
    if let Some(deployments) = snapshot["deployments"].as_object_mut() {
        for deployment in deployments.values_mut() {
            for service in deployment["services"].as_array_mut().into_iter().flatten() {
                if service["name"] != "Counter" {
                    continue;
                }
                for handler in service["handlers"].as_array_mut().into_iter().flatten() {
                    if handler["name"] == "reset" {
                        handler["public"] = Value::Bool(false);
                        flipped += 1;
                    }
                }
            }
        }
    }
    assert_eq!(flipped, 1, "the snapshot layout changed");
    serde_json::from_value(snapshot).expect("registry deserializes")
}

// ---------------------------------------------------------------------------------------------
// A dispatcher that records every call and answers from a queue of canned replies.

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Call(IngressRequest),
    Send(IngressRequest),
    Attach(InvocationRef),
    Output(InvocationRef),
    Awakeable(AwakeableId, AwakeableCompletion),
}

enum Reply {
    Call(Result<Outcome, DispatchError>),
    Send(Result<SendAccepted, DispatchError>),
    Output(Result<Option<Outcome>, DispatchError>),
    Awakeable(Result<(), DispatchError>),
}

const ID: &str = "inv_0123456789abcdeffedcba98765432100011223344556677";

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    replies: Mutex<VecDeque<Reply>>,
}

impl Recorder {
    fn record(&self, seen: Seen) {
        if let Ok(mut all) = self.seen.lock() {
            all.push(seen);
        }
    }

    fn next(&self) -> Option<Reply> {
        self.replies.lock().ok()?.pop_front()
    }

    fn reply(&self, reply: Reply) {
        if let Ok(mut replies) = self.replies.lock() {
            replies.push_back(reply);
        }
    }

    fn take(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .map(|mut all| std::mem::take(&mut *all))
            .unwrap_or_default()
    }
}

/// By default a call echoes its argument, a send is accepted, a lookup finds nothing.
fn echo(request: &IngressRequest) -> Outcome {
    Outcome {
        invocation_id: ID.into(),
        result: Ok(Output {
            body: request.argument.clone(),
            content_type: (!request.argument.is_empty()).then(|| JSON.to_owned()),
        }),
        expires_at: None,
    }
}

impl Dispatcher for Recorder {
    fn call(&self, request: IngressRequest) -> BoxFuture<'_, Result<Outcome, DispatchError>> {
        Box::pin(async move {
            let answer = match self.next() {
                Some(Reply::Call(answer)) => answer,
                _ => Ok(echo(&request)),
            };
            self.record(Seen::Call(request));
            answer
        })
    }

    fn send(&self, request: IngressRequest) -> BoxFuture<'_, Result<SendAccepted, DispatchError>> {
        Box::pin(async move {
            let answer = match self.next() {
                Some(Reply::Send(answer)) => answer,
                _ => Ok(SendAccepted {
                    invocation_id: ID.into(),
                    status: SendStatus::Accepted,
                    execution_time: None,
                }),
            };
            self.record(Seen::Send(request));
            answer
        })
    }

    fn attach(&self, invocation: InvocationRef) -> BoxFuture<'_, Result<Outcome, DispatchError>> {
        Box::pin(async move {
            let answer = match self.next() {
                Some(Reply::Call(answer)) => answer,
                _ => Err(DispatchError::NotFound),
            };
            // Attach waits for the result: make the wait observable.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.record(Seen::Attach(invocation));
            answer
        })
    }

    fn output(
        &self,
        invocation: InvocationRef,
    ) -> BoxFuture<'_, Result<Option<Outcome>, DispatchError>> {
        Box::pin(async move {
            let answer = match self.next() {
                Some(Reply::Output(answer)) => answer,
                _ => Err(DispatchError::NotFound),
            };
            self.record(Seen::Output(invocation));
            answer
        })
    }

    fn complete_awakeable(
        &self,
        id: AwakeableId,
        completion: AwakeableCompletion,
    ) -> BoxFuture<'_, Result<(), DispatchError>> {
        Box::pin(async move {
            let answer = match self.next() {
                Some(Reply::Awakeable(answer)) => answer,
                _ => Ok(()),
            };
            self.record(Seen::Awakeable(id, completion));
            answer
        })
    }

    fn health_services(&self) -> Vec<String> {
        vec!["Counter".into(), "Greeter".into(), "Signup".into()]
    }
}

// ---------------------------------------------------------------------------------------------
// Server and a raw HTTP/1.1 client.

struct Harness {
    address: SocketAddr,
    recorder: Arc<Recorder>,
    registry: watch::Sender<Arc<Registry>>,
    server: actix_web::dev::ServerHandle,
}

impl Harness {
    async fn start(config: IngressConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let address = listener.local_addr().expect("local address");
        let (registry, view): (_, RegistryView) = watch::channel(Arc::new(registry()));
        let recorder = Arc::new(Recorder::default());
        let server = holdfast_ingress::serve_on(listener, config, view, recorder.clone())
            .expect("server starts");
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            address,
            recorder,
            registry,
            server: handle,
        }
    }

    async fn default() -> Self {
        Self::start(IngressConfig::default()).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply1 {
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        )
        .into_bytes();
        for (name, value) in headers {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body);
        exchange(self.address, &raw).await
    }

    async fn post_json(&self, path: &str, body: &str) -> Reply1 {
        self.send("POST", path, &[("content-type", JSON)], body.as_bytes())
            .await
    }

    async fn get(&self, path: &str) -> Reply1 {
        self.send("GET", path, &[], b"").await
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply1 {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply1 {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an ingress rejection: status, JSON body and error-source header.
    fn assert_rejected(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.json(),
            json!({"code": status, "message": message, "source": "ingress"})
        );
        assert_eq!(self.header("x-restate-error-source"), Some("ingress"));
        assert_eq!(self.header("content-type"), Some(JSON));
    }
}

/// Sends `raw` and reads one response (headers, then `content-length` bytes).
async fn exchange(address: SocketAddr, raw: &[u8]) -> Reply1 {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(raw).await.expect("write request");
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> Reply1 {
    let read = async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = stream.read(&mut chunk).await.expect("read response");
            assert!(n > 0, "connection closed before the response head");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buffer[head_end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        Reply1 {
            status,
            status_line: status_line.to_owned(),
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("response within 10 s")
}

fn calls(seen: &[Seen]) -> Vec<&IngressRequest> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Call(r) | Seen::Send(r) => Some(r),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Invocations.

#[actix_rt::test]
async fn call_to_a_service_returns_the_output_with_its_invocation_id() {
    let h = Harness::default().await;
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[("content-type", JSON), ("origin", "http://app.example")],
            b"\"Alice\"",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"\"Alice\"");
    assert_eq!(reply.header("content-type"), Some(JSON));
    assert_eq!(reply.header("x-restate-id"), Some(ID));
    assert_eq!(reply.header("x-restate-error-source"), None);
    // No origin is allowed by default: no CORS headers at all.
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    assert_eq!(reply.header("access-control-allow-origin"), None);

    let seen = h.recorder.take();
    // A new trace each request, checked on its own in the trace tests.
    let trace = calls(&seen).first().and_then(|r| r.trace);
    assert!(trace.is_some_and(|t| t.sampled));
    assert_eq!(
        seen,
        vec![Seen::Call(IngressRequest {
            target: Target {
                service: "Greeter".into(),
                handler: "greet".into(),
                key: None,
            },
            service_type: ServiceType::Service,
            handler_kind: HandlerKind::Shared,
            deployment: DeploymentId::from_seed(SEED),
            idempotency_retention: Millis::DAY,
            workflow_retention: None,
            argument: Bytes::from_static(b"\"Alice\""),
            content_type: Some(JSON.into()),
            headers: vec![("origin".into(), "http://app.example".into())],
            idempotency_key: None,
            mode: Mode::Call,
            trace,
        })]
    );
    h.stop().await;
}

/// Key, handler, kind, service type and workflow retention of one dispatched request.
type Called<'a> = (
    Option<&'a str>,
    &'a str,
    HandlerKind,
    ServiceType,
    Option<Millis>,
);

#[actix_rt::test]
async fn objects_and_workflows_are_called_with_their_key() {
    let h = Harness::default().await;
    assert_eq!(h.post_json("/Counter/k1/add", "5").await.status, 200);
    assert_eq!(
        h.get("/Counter/k1/get").await.status,
        200,
        "GET invokes too"
    );
    assert_eq!(
        h.post_json("/restate/call/Counter/a%2Fb/add", "1")
            .await
            .status,
        200
    );
    assert_eq!(h.post_json("/Signup/w1/run", "\"a@b.c\"").await.status, 200);
    assert_eq!(
        h.send("PUT", "/Signup/w1/status", &[], b"").await.status,
        200
    );
    // A key may be empty.
    assert_eq!(h.post_json("/Counter//add", "1").await.status, 200);

    let seen = h.recorder.take();
    let got: Vec<Called<'_>> = calls(&seen)
        .iter()
        .map(|r| {
            (
                r.target.key.as_deref(),
                r.target.handler.as_str(),
                r.handler_kind,
                r.service_type,
                r.workflow_retention,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some("k1"),
                "add",
                HandlerKind::Exclusive,
                ServiceType::Object,
                None
            ),
            (
                Some("k1"),
                "get",
                HandlerKind::Shared,
                ServiceType::Object,
                None
            ),
            (
                Some("a/b"),
                "add",
                HandlerKind::Exclusive,
                ServiceType::Object,
                None
            ),
            (
                Some("w1"),
                "run",
                HandlerKind::Workflow,
                ServiceType::Workflow,
                Some(Millis::DAY)
            ),
            (
                Some("w1"),
                "status",
                HandlerKind::Shared,
                ServiceType::Workflow,
                Some(Millis::DAY)
            ),
            (
                Some(""),
                "add",
                HandlerKind::Exclusive,
                ServiceType::Object,
                None
            ),
        ]
    );
    assert!(calls(&seen).iter().all(|r| r.mode == Mode::Call));
    h.stop().await;
}

#[actix_rt::test]
async fn an_empty_body_is_no_input_whatever_the_content_type() {
    let h = Harness::default().await;
    let reply = h.send("POST", "/Greeter/greet", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"");
    assert_eq!(
        reply.header("content-type"),
        None,
        "empty output has no type"
    );
    assert_eq!(reply.header("content-length"), Some("0"));
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[("content-type", "text/plain")],
            b"",
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = h.recorder.take();
    assert_eq!(calls(&seen).len(), 2);
    assert!(calls(&seen).iter().all(|r| r.argument.is_empty()));
    h.stop().await;
}

#[actix_rt::test]
async fn send_answers_202_with_the_invocation_id_and_status() {
    let h = Harness::default().await;
    let reply = h.post_json("/Counter/s1/add/send", "1").await;
    assert_eq!(reply.status, 202);
    assert_eq!(reply.header("x-restate-id"), Some(ID));
    assert_eq!(reply.header("content-type"), Some(JSON));
    assert_eq!(
        reply.json(),
        json!({"invocationId": ID, "status": "Accepted"})
    );

    h.recorder.reply(Reply::Send(Ok(SendAccepted {
        invocation_id: ID.into(),
        status: SendStatus::PreviouslyAccepted,
        execution_time: Some(Timestamp(1_795_714_745_860)),
    })));
    let reply = h
        .send(
            "POST",
            "/restate/send/Greeter/greet?delay=1s",
            &[("content-type", JSON), ("idempotency-key", "g1")],
            b"\"x\"",
        )
        .await;
    assert_eq!(reply.status, 202);
    assert_eq!(
        reply.json(),
        json!({
            "invocationId": ID,
            "executionTime": "2026-11-26T17:39:05.860000000Z",
            "status": "PreviouslyAccepted"
        })
    );
    assert_eq!(
        h.post_json("/Greeter/greet/send?delay=PT0.5S", "1")
            .await
            .status,
        202
    );
    assert_eq!(
        h.post_json("/Greeter/greet/send?x=1&delay=1h+30m", "1")
            .await
            .status,
        202
    );

    let seen = h.recorder.take();
    let modes: Vec<(Mode, Option<&str>, Option<&str>)> = seen
        .iter()
        .map(|s| match s {
            Seen::Send(r) => (
                r.mode,
                r.target.key.as_deref(),
                r.idempotency_key.as_deref(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        modes,
        vec![
            (Mode::Send { delay: None }, Some("s1"), None),
            (
                Mode::Send {
                    delay: Some(Duration::from_secs(1))
                },
                None,
                Some("g1")
            ),
            (
                Mode::Send {
                    delay: Some(Duration::from_millis(500))
                },
                None,
                None
            ),
            (
                Mode::Send {
                    delay: Some(Duration::from_secs(5_400))
                },
                None,
                None
            ),
        ]
    );
    h.stop().await;
}

#[actix_rt::test]
async fn terminal_failures_answer_with_their_code_and_invocation_source() {
    let h = Harness::default().await;
    for (code, expected) in [(418, 418), (409, 409), (470, 470), (200, 500), (42, 500)] {
        h.recorder.reply(Reply::Call(Ok(Outcome {
            invocation_id: ID.into(),
            result: Err(Failure {
                code,
                message: "failed: x".into(),
            }),
            expires_at: None,
        })));
        let reply = h.post_json("/Greeter/greet", "\"x\"").await;
        assert_eq!(reply.status, expected, "code {code}");
        assert_eq!(
            reply.json(),
            json!({"code": expected, "message": "failed: x", "source": "invocation"})
        );
        assert_eq!(reply.header("x-restate-error-source"), Some("invocation"));
        assert_eq!(reply.header("x-restate-id"), Some(ID));
    }
    h.stop().await;
}

#[actix_rt::test]
async fn dispatch_errors_map_to_statuses_from_ingress() {
    let h = Harness::default().await;
    let cases = [
        (
            DispatchError::Unavailable("no leader".into()),
            503,
            "unavailable: no leader",
        ),
        (DispatchError::Conflict("busy".into()), 409, "busy"),
        (
            DispatchError::Internal("disk".into()),
            500,
            "internal error: disk",
        ),
        (DispatchError::NotFound, 404, "invocation not found"),
    ];
    for (error, status, message) in cases {
        h.recorder.reply(Reply::Call(Err(error)));
        let reply = h.post_json("/Greeter/greet", "1").await;
        reply.assert_rejected(status, message);
        assert_eq!(reply.header("x-restate-id"), None);
    }
    h.recorder.reply(Reply::Send(Err(DispatchError::Unavailable(
        "shutting down".into(),
    ))));
    h.post_json("/Greeter/greet/send", "1")
        .await
        .assert_rejected(503, "unavailable: shutting down");
    h.stop().await;
}

#[actix_rt::test]
async fn idempotency_key_passes_through_and_stored_results_echo_their_expiry() {
    let h = Harness::default().await;
    h.recorder.reply(Reply::Call(Ok(Outcome {
        invocation_id: ID.into(),
        result: Ok(Output {
            body: Bytes::from_static(b"10"),
            content_type: Some(JSON.into()),
        }),
        expires_at: Some(Timestamp(1_795_801_143_196)),
    })));
    let reply = h
        .send(
            "POST",
            "/Counter/i1/add",
            &[("content-type", JSON), ("idempotency-key", "ik1")],
            b"99",
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"10");
    assert_eq!(reply.header("x-restate-id"), Some(ID));
    assert_eq!(
        reply.header("idempotency-expires"),
        Some("2026-11-27T17:39:03.196+00:00")
    );
    let seen = h.recorder.take();
    assert_eq!(calls(&seen)[0].idempotency_key.as_deref(), Some("ik1"));
    // The key is carried in its own field, not among the forwarded headers.
    assert!(calls(&seen)[0].headers.is_empty());
    h.stop().await;
}

#[actix_rt::test]
async fn handlers_see_only_end_to_end_headers() {
    let h = Harness::default().await;
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[
                ("content-type", JSON),
                ("connection", "close, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("x-restate-target", "internal"),
                ("authorization", "Bearer t"),
                ("x-trace-id", "abc"),
            ],
            b"1",
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = h.recorder.take();
    assert_eq!(
        calls(&seen)[0].headers,
        vec![
            ("authorization".to_owned(), "Bearer t".to_owned()),
            ("x-trace-id".to_owned(), "abc".to_owned()),
        ]
    );
    assert_eq!(calls(&seen)[0].content_type.as_deref(), Some(JSON));
    h.stop().await;
}

#[actix_rt::test]
async fn health_lists_the_dispatchers_services() {
    let h = Harness::default().await;
    let reply = h.get("/restate/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(JSON));
    assert_eq!(
        reply.json(),
        json!({"services": ["Counter", "Greeter", "Signup"]})
    );
    assert!(h.recorder.take().is_empty());
    h.stop().await;
}

#[actix_rt::test]
async fn registry_versions_published_later_are_used_by_the_next_request() {
    let h = Harness::default().await;
    h.post_json("/Later/go", "1").await.assert_rejected(
        404,
        "service 'Later' not found, make sure to register the service before calling it.",
    );
    let mut next = registry();
    next.apply(&RegistryCommand::RegisterDeployment {
        seed: SEED + 1,
        uri: "http://127.0.0.1:9081/".into(),
        manifest: Manifest {
            min_protocol_version: 1,
            max_protocol_version: 1,
            sdk_version: None,
            protocol_modes: vec![ProtocolMode::Stream],
            services: vec![Service {
                name: "Later".into(),
                ty: ServiceType::Service,
                handlers: vec![handler("go", HandlerKind::Shared, JSON)],
                retry_policy: None,
                inactivity_timeout_ms: None,
                abort_timeout_ms: None,
            }],
        },
        force: false,
        at_ms: Timestamp(1_700_000_000_001),
    })
    .expect("second registration");
    h.registry.send_replace(Arc::new(next));
    assert_eq!(h.post_json("/Later/go", "1").await.status, 200);
    let seen = h.recorder.take();
    assert_eq!(
        calls(&seen)[0].deployment,
        DeploymentId::from_seed(SEED + 1)
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Attach and output.

fn stored(body: &'static [u8]) -> Outcome {
    Outcome {
        invocation_id: ID.into(),
        result: Ok(Output {
            body: Bytes::from_static(body),
            content_type: Some(JSON.into()),
        }),
        expires_at: Some(Timestamp(1_795_801_143_196)),
    }
}

#[actix_rt::test]
async fn attach_and_output_by_invocation_id() {
    let h = Harness::default().await;
    h.recorder.reply(Reply::Call(Ok(stored(b"\"Hello Sent\""))));
    let reply = h.get(&format!("/restate/invocation/{ID}/attach")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"\"Hello Sent\"");
    assert_eq!(reply.header("x-restate-id"), Some(ID));
    assert_eq!(
        reply.header("idempotency-expires"),
        Some("2026-11-27T17:39:03.196+00:00")
    );

    h.recorder.reply(Reply::Output(Ok(Some(stored(b"1")))));
    let reply = h.get(&format!("/restate/invocation/{ID}/output")).await;
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"1"[..]));

    h.recorder.reply(Reply::Output(Ok(None)));
    let reply = h.get(&format!("/restate/invocation/{ID}/output")).await;
    reply.assert_rejected(470, "the invocation exists but has not completed yet");
    assert_eq!(reply.status_line, "HTTP/1.1 470 <none>");

    h.recorder
        .reply(Reply::Output(Err(DispatchError::NotReady)));
    h.get(&format!("/restate/invocation/{ID}/output"))
        .await
        .assert_rejected(470, "the invocation exists but has not completed yet");

    h.get(&format!("/restate/invocation/{ID}/output"))
        .await
        .assert_rejected(404, "invocation not found");

    h.recorder.reply(Reply::Call(Ok(Outcome {
        invocation_id: ID.into(),
        result: Err(Failure {
            code: 500,
            message: "nope".into(),
        }),
        expires_at: Some(Timestamp(0)),
    })));
    let reply = h.get(&format!("/restate/invocation/{ID}/attach")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.json(),
        json!({"code": 500, "message": "nope", "source": "invocation"})
    );
    assert_eq!(
        reply.header("idempotency-expires"),
        Some("1970-01-01T00:00:00.000+00:00")
    );

    let id = InvocationRef::Id(ID.into());
    assert_eq!(
        h.recorder.take(),
        vec![
            Seen::Attach(id.clone()),
            Seen::Output(id.clone()),
            Seen::Output(id.clone()),
            Seen::Output(id.clone()),
            Seen::Output(id.clone()),
            Seen::Attach(id),
        ]
    );
    h.stop().await;
}

#[actix_rt::test]
async fn attach_and_output_by_idempotency_key() {
    let h = Harness::default().await;
    h.recorder
        .reply(Reply::Output(Ok(Some(stored(b"\"Hello Idem\"")))));
    let reply = h.get("/restate/invocation/Greeter/greet/g1/output").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"\"Hello Idem\"");
    h.recorder.reply(Reply::Call(Ok(stored(b"10"))));
    let reply = h
        .get("/restate/invocation/Counter/i1/add/ik%201/attach")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        h.recorder.take(),
        vec![
            Seen::Output(InvocationRef::Idempotency {
                target: Target {
                    service: "Greeter".into(),
                    handler: "greet".into(),
                    key: None,
                },
                idempotency_key: "g1".into(),
            }),
            Seen::Attach(InvocationRef::Idempotency {
                target: Target {
                    service: "Counter".into(),
                    handler: "add".into(),
                    key: Some("i1".into()),
                },
                idempotency_key: "ik 1".into(),
            }),
        ]
    );
    h.stop().await;
}

#[actix_rt::test]
async fn attach_and_output_of_a_workflow_run() {
    let h = Harness::default().await;
    h.recorder.reply(Reply::Call(Ok(stored(b"\"signed up\""))));
    let reply = h.get("/restate/workflow/Signup/w1/attach").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"\"signed up\"");
    h.recorder.reply(Reply::Output(Ok(None)));
    h.get("/restate/workflow/Signup/w1/output")
        .await
        .assert_rejected(470, "the invocation exists but has not completed yet");
    // A run that never happened: the kernel answers with the invocation's own 404.
    h.recorder.reply(Reply::Call(Ok(Outcome {
        invocation_id: ID.into(),
        result: Err(Failure {
            code: 404,
            message: "not found".into(),
        }),
        expires_at: None,
    })));
    let reply = h.get("/restate/workflow/Signup/never/attach").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-restate-error-source"), Some("invocation"));
    let workflow = |key: &str| InvocationRef::Workflow {
        service: "Signup".into(),
        key: key.into(),
    };
    assert_eq!(
        h.recorder.take(),
        vec![
            Seen::Attach(workflow("w1")),
            Seen::Output(workflow("w1")),
            Seen::Attach(workflow("never")),
        ]
    );
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The bad-input matrix: each answered with a JSON error, nothing dispatched.

#[actix_rt::test]
async fn bad_requests_are_rejected_before_dispatch() {
    let h = Harness::start(IngressConfig {
        max_body_bytes: 64,
        ..IngressConfig::default()
    })
    .await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let cases: Vec<(Reply1, u16, String)> = vec![
        (
            h.post_json("/Nope/greet", "1").await,
            404,
            "service 'Nope' not found, make sure to register the service before calling it.".into(),
        ),
        (
            h.post_json("/Greeter/nope", "1").await,
            404,
            "the service 'Greeter' exists, but the handler 'nope' was not found, check that the handler exists in the latest registered service version.".into(),
        ),
        (h.post_json("/Counter/add", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/Signup/run", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/Counter/k1", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/Greeter/x/greet", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/restate/call/Greeter/greet/send", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/", "1").await, 400, BAD_PATH.into()),
        (h.post_json("/Counter/%zz/add", "1").await, 400, BAD_PATH.into()),
        (
            h.post_json("/Greeter/greet", "not json").await,
            400,
            "input validation error: the body is not valid JSON: expected ident at line 1 column 2".into(),
        ),
        (
            h.send("POST", "/Greeter/greet", &form, b"\"x\"").await,
            400,
            "input validation error: Content-type 'application/x-www-form-urlencoded' does not match 'application/json'".into(),
        ),
        (
            h.send("POST", "/Greeter/greet", &[], b"\"x\"").await,
            400,
            "input validation error: missing content-type, expected 'application/json'".into(),
        ),
        (
            h.post_json("/Greeter/greet", &"1".repeat(65)).await,
            413,
            "the request body exceeds the limit of 64 bytes".into(),
        ),
        (
            h.post_json("/Counter/k1/reset", "1").await,
            403,
            "the handler 'Counter/reset' is private: only other services may call it".into(),
        ),
        (
            h.post_json("/Internal/ping/send", "1").await,
            403,
            "the handler 'Internal/ping' is private: only other services may call it".into(),
        ),
        (
            h.post_json("/Greeter/greet?delay=1s", "1").await,
            400,
            "cannot use the delay query parameter with calls. The delay is supported only with sends".into(),
        ),
        (
            h.post_json("/Greeter/greet/send?delay=soon", "1").await,
            400,
            "bad delay query parameter 'soon': expected a number at offset 0".into(),
        ),
        (
            h.post_json("/Greeter/greet/send?delay=P1M", "1").await,
            400,
            "bad delay query parameter 'P1M': malformed ISO 8601 duration, expected P[nW][nD][T[nH][nM][n[.f]S]]".into(),
        ),
        (
            h.send("POST", "/Greeter/greet", &[("idempotency-key", "")], b"").await,
            400,
            "the idempotency-key header must be a non-empty UTF-8 string".into(),
        ),
        (
            h.get("/restate/invocation/inv_doesnotexist/output").await,
            400,
            "invalid invocation id \"inv_doesnotexist\": expected inv_1 followed by 33 base62 digits (or inv_ followed by 48 lower-case hex digits)".into(),
        ),
        (
            h.get("/restate/invocation/Counter/add/ik1/output").await,
            400,
            format!("bad path '/restate/invocation/Counter/add/ik1/output', expected {}", INVOCATION_PATHS),
        ),
        (
            h.get("/restate/invocation/Nope/greet/ik1/output").await,
            404,
            "service 'Nope' not found, make sure to register the service before calling it.".into(),
        ),
        (
            h.get("/restate/invocation/Counter/k/reset/ik1/attach").await,
            403,
            "the handler 'Counter/reset' is private: only other services may call it".into(),
        ),
        (
            h.get("/restate/invocation/Greeter/nope/ik1/attach").await,
            404,
            "the service 'Greeter' exists, but the handler 'nope' was not found, check that the handler exists in the latest registered service version.".into(),
        ),
        (
            h.get(&format!("/restate/invocation/{ID}/peek")).await,
            400,
            format!("bad path '/restate/invocation/{ID}/peek', expected {INVOCATION_PATHS}"),
        ),
        (
            h.get("/restate/workflow/Greeter/k/attach").await,
            400,
            "service 'Greeter' is not a workflow".into(),
        ),
        (
            h.get("/restate/workflow/Nope/k/output").await,
            404,
            "service 'Nope' not found, make sure to register the service before calling it.".into(),
        ),
        (
            h.get("/restate/workflow/Signup/output").await,
            400,
            "bad path '/restate/workflow/Signup/output', expected /restate/workflow/:service/:key/(attach|output)".into(),
        ),
        (
            h.get("/restate/elsewhere").await,
            404,
            "no ingress route for '/restate/elsewhere'".into(),
        ),
        (
            h.send("DELETE", "/restate/health", &[], b"").await,
            405,
            "method DELETE is not allowed here, use GET".into(),
        ),
        (
            h.send("POST", &format!("/restate/invocation/{ID}/attach"), &[], b"").await,
            405,
            "method POST is not allowed here, use GET".into(),
        ),
        (
            h.send("TRACE", "/Greeter/greet", &[], b"").await,
            405,
            "method TRACE is not allowed here, use GET, POST, PUT, PATCH, DELETE".into(),
        ),
        (
            h.send("OPTIONS", "/Greeter/greet", &[], b"").await,
            405,
            "method OPTIONS is not allowed here, use GET, POST, PUT, PATCH, DELETE".into(),
        ),
    ];
    for (reply, status, message) in &cases {
        reply.assert_rejected(*status, message);
        if *status == 405 {
            assert!(reply.header("allow").is_some(), "{reply:?}");
        }
    }
    assert_eq!(
        h.recorder.take(),
        Vec::new(),
        "a rejected request was dispatched"
    );
    h.stop().await;
}

const INVOCATION_PATHS: &str = "/restate/invocation/:id/(attach|output) or /restate/invocation/:service/[:key/]:handler/:idempotency-key/(attach|output)";

#[actix_rt::test]
async fn bodies_up_to_the_limit_are_accepted() {
    let h = Harness::start(IngressConfig {
        max_body_bytes: 64,
        ..IngressConfig::default()
    })
    .await;
    let body = vec![0xffu8; 64];
    let reply = h
        .send("POST", "/Greeter/blob", &[("content-type", BINARY)], &body)
        .await;
    assert_eq!(reply.status, 200);
    let seen = h.recorder.take();
    assert_eq!(calls(&seen)[0].argument.as_ref(), body.as_slice());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Oversized bodies are refused without being read.

#[actix_rt::test]
async fn a_declared_oversized_body_is_refused_before_any_byte_of_it_is_sent() {
    // Default limit (32 MiB): the client announces 33 MiB and sends none of it.
    let h = Harness::default().await;
    let head = format!(
        "POST /Greeter/blob HTTP/1.1\r\nhost: t\r\ncontent-type: {BINARY}\r\ncontent-length: {}\r\n\r\n",
        33 * 1024 * 1024
    );
    let reply = exchange(h.address, head.as_bytes()).await;
    reply.assert_rejected(413, "the request body exceeds the limit of 33554432 bytes");
    assert!(h.recorder.take().is_empty());
    h.stop().await;
}

#[actix_rt::test]
async fn a_chunked_body_is_refused_once_it_passes_the_limit() {
    let h = Harness::start(IngressConfig {
        max_body_bytes: 1024,
        ..IngressConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(h.address).await.expect("connect");
    let head = format!(
        "POST /Greeter/blob HTTP/1.1\r\nhost: t\r\ncontent-type: {BINARY}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    // Three 512-byte chunks pass the 1 KiB limit; the terminating chunk is never sent, so the
    // server can only answer by refusing early.
    for _ in 0..3 {
        stream.write_all(b"200\r\n").await.expect("chunk size");
        stream.write_all(&[b'x'; 512]).await.expect("chunk");
        stream.write_all(b"\r\n").await.expect("chunk end");
    }
    let reply = read_response(&mut stream).await;
    reply.assert_rejected(413, "the request body exceeds the limit of 1024 bytes");
    assert!(h.recorder.take().is_empty());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// CORS and binding.

fn preflight_headers(origin: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type, idempotency-key, authorization",
        ),
    ]
}

#[actix_rt::test]
async fn cors_preflight_is_answered_for_allowed_origins_only() {
    let h = Harness::start(IngressConfig {
        cors: Cors::new(["http://app.example"]),
        auth: BearerAuth::new(["secret"]),
        ..IngressConfig::default()
    })
    .await;
    // The preflight carries no token and is answered all the same.
    let reply = h
        .send(
            "OPTIONS",
            "/Greeter/greet",
            &preflight_headers("http://app.example"),
            b"",
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-methods"), Some("POST"));
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type, idempotency-key, authorization")
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    // A hostile origin gets no preflight answer and no CORS header.
    let reply = h
        .send(
            "OPTIONS",
            "/Greeter/greet",
            &preflight_headers("http://evil.example"),
            b"",
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), None);
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[
                ("content-type", JSON),
                ("origin", "http://evil.example"),
                ("authorization", "Bearer secret"),
            ],
            b"\"Eve\"",
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), None);
    // The allowed origin's actual request gets its header, on errors too.
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[("content-type", JSON), ("origin", "http://app.example")],
            b"\"Ada\"",
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert_eq!(reply.header("vary"), Some("origin"));
    assert_eq!(h.recorder.take().len(), 1);
    h.stop().await;
}

#[actix_rt::test]
async fn any_origin_when_configured_with_a_star() {
    let h = Harness::start(IngressConfig {
        cors: Cors::new(["*"]),
        ..IngressConfig::default()
    })
    .await;
    let reply = h
        .send(
            "OPTIONS",
            "/Greeter/greet",
            &preflight_headers("http://anywhere.example"),
            b"",
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    h.stop().await;
}

#[actix_rt::test]
async fn without_cors_origins_a_preflight_is_not_answered() {
    let h = Harness::default().await;
    let reply = h
        .send(
            "OPTIONS",
            "/Greeter/greet",
            &preflight_headers("http://app.example"),
            b"",
        )
        .await;
    assert_eq!(reply.status, 405, "{reply:?}");
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-methods"), None);
    assert!(h.recorder.take().is_empty());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens.

#[actix_rt::test]
async fn tokens_are_required_when_configured() {
    let h = Harness::start(IngressConfig {
        auth: BearerAuth::new(["old-token", "new-token"]),
        ..IngressConfig::default()
    })
    .await;
    let call = |token: Option<&'static str>| {
        let mut headers = vec![("content-type", JSON)];
        if let Some(token) = token {
            headers.push(("authorization", token));
        }
        headers
    };
    for headers in [
        call(None),
        call(Some("Bearer wrong")),
        call(Some("old-token")),
    ] {
        let reply = h.send("POST", "/Greeter/greet", &headers, b"\"Ada\"").await;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.json()["code"], "unauthorized");
        assert!(reply.json()["message"].is_string());
    }
    assert!(h.recorder.take().is_empty());
    // Both tokens work at once, so clients can move from one to the other.
    for token in ["Bearer old-token", "Bearer new-token"] {
        let reply = h
            .send("POST", "/Greeter/greet", &call(Some(token)), b"\"Ada\"")
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    assert_eq!(h.recorder.take().len(), 2);
    // The health check stays open.
    let reply = h.get("/restate/health").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    h.stop().await;
}

#[actix_rt::test]
async fn serve_binds_the_given_address() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let (_registry, view) = watch::channel(Arc::new(registry()));
    let server = holdfast_ingress::serve(
        address,
        IngressConfig::default(),
        view,
        Arc::new(Recorder::default()),
    )
    .expect("binds");
    let handle = server.handle();
    actix_rt::spawn(server);
    let reply = exchange(
        address,
        b"GET /restate/health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        holdfast_ingress::DEFAULT_ADDRESS.to_string(),
        "127.0.0.1:8080"
    );
    handle.stop(false).await;
}

fn awakeable_id() -> AwakeableId {
    let invocation: InvocationId = ID.parse().expect("test id");
    AwakeableId::new(invocation, EntryIndex(3), 99)
}

#[actix_rt::test]
async fn awakeables_are_resolved_and_rejected_from_outside() {
    let h = Harness::default().await;
    let id = awakeable_id();
    let resolve = format!("/restate/awakeables/{id}/resolve");
    let reply = h.post_json(&resolve, r#"{"ok":true}"#).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    assert!(reply.body.is_empty());
    let reject = format!("/restate/awakeables/{id}/reject");
    let reply = h
        .send("POST", &reject, &[("content-type", "text/plain")], b"nope")
        .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    // A resolution without a content type is passed on as it is.
    let reply = h.send("POST", &resolve, &[], b"raw").await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let seen = h.recorder.take();
    let completions: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Awakeable(seen_id, completion) => Some((*seen_id, completion.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        completions,
        vec![
            (
                id,
                AwakeableCompletion::Resolve(Bytes::from_static(br#"{"ok":true}"#))
            ),
            (id, AwakeableCompletion::Reject("nope".into())),
            (id, AwakeableCompletion::Resolve(Bytes::from_static(b"raw"))),
        ]
    );

    h.recorder
        .reply(Reply::Awakeable(Err(DispatchError::AwakeableNotFound)));
    h.post_json(&resolve, "1")
        .await
        .assert_rejected(404, "awakeable not found");
    h.stop().await;
}

#[actix_rt::test]
async fn bad_awakeable_completions_are_refused_before_dispatch() {
    let h = Harness::default().await;
    let id = awakeable_id();
    let reply = h
        .post_json("/restate/awakeables/sign_1notreal/resolve", "1")
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("bad awakeable id 'sign_1notreal'")),
        "{reply:?}"
    );
    h.post_json(&format!("/restate/awakeables/{id}/resolve"), "not json")
        .await
        .assert_rejected(
            400,
            "input validation error: the body is not valid JSON: expected ident at line 1 column 2",
        );
    h.send(
        "POST",
        &format!("/restate/awakeables/{id}/reject"),
        &[("content-type", "text/plain")],
        &[0xff, 0xfe],
    )
    .await
    .assert_rejected(
        400,
        "the reason of an awakeable rejection must be UTF-8 text",
    );
    h.get(&format!("/restate/awakeables/{id}/resolve"))
        .await
        .assert_rejected(405, "method GET is not allowed here, use POST");
    h.post_json(&format!("/restate/awakeables/{id}/complete"), "1")
        .await
        .assert_rejected(
            400,
            &format!(
                "bad path '/restate/awakeables/{id}/complete', expected /restate/awakeables/:id/(resolve|reject)"
            ),
        );
    assert!(h.recorder.take().is_empty());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Telemetry: responses counted by status code, traces continued, ingress spans emitted.

/// A config whose spans land in the returned queue.
fn traced() -> (IngressConfig, std::sync::mpsc::Receiver<SpanRecord>) {
    let (queue, spans) = std::sync::mpsc::sync_channel(64);
    let config = IngressConfig {
        spans: SpanSink::new(queue, Arc::new(TraceStats::default())),
        ..IngressConfig::default()
    };
    (config, spans)
}

fn attribute<'a>(span: &'a SpanRecord, key: &str) -> Option<&'a AttributeValue> {
    span.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn text(value: &str) -> Option<AttributeValue> {
    Some(AttributeValue::Text(value.to_owned()))
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The trace context of the only request the dispatcher saw.
fn only_trace(h: &Harness) -> TraceContext {
    let seen = h.recorder.take();
    let requests = calls(&seen);
    assert_eq!(requests.len(), 1, "{seen:?}");
    requests[0].trace.expect("a trace context")
}

#[actix_rt::test]
async fn every_response_is_counted_by_its_status_code() {
    let metrics = IngressMetrics::new();
    let h = Harness::start(IngressConfig {
        metrics: metrics.clone(),
        max_body_bytes: 8,
        ..IngressConfig::default()
    })
    .await;
    assert_eq!(h.post_json("/Greeter/greet", "1").await.status, 200);
    assert_eq!(h.post_json("/Greeter/greet", "2").await.status, 200);
    assert_eq!(h.post_json("/Greeter/greet/send", "1").await.status, 202);
    assert_eq!(h.post_json("/Nope/greet", "1").await.status, 404);
    assert_eq!(h.post_json("/restate/nothing", "").await.status, 404);
    assert_eq!(h.post_json("/Counter/add", "1").await.status, 400);
    assert_eq!(h.post_json("/Greeter/greet", "{").await.status, 400);
    assert_eq!(h.post_json("/restate/health", "").await.status, 405);
    assert_eq!(
        h.post_json("/Greeter/greet", "1234567890").await.status,
        413
    );
    assert_eq!(h.post_json("/Internal/ping", "1").await.status, 403);
    h.recorder.reply(Reply::Call(Err(DispatchError::Unavailable(
        "no leader".into(),
    ))));
    assert_eq!(h.post_json("/Greeter/greet", "1").await.status, 503);
    h.recorder.reply(Reply::Output(Ok(None)));
    assert_eq!(
        h.get(&format!("/restate/invocation/{ID}/output"))
            .await
            .status,
        470
    );
    h.recorder.reply(Reply::Call(Ok(Outcome {
        invocation_id: ID.into(),
        result: Err(Failure {
            code: 599,
            message: "custom".into(),
        }),
        expires_at: None,
    })));
    assert_eq!(h.post_json("/Greeter/greet", "1").await.status, 599);
    let preflight = h
        .send(
            "OPTIONS",
            "/Greeter/greet",
            &[
                ("origin", "http://app.example"),
                ("access-control-request-method", "POST"),
            ],
            b"",
        )
        .await;
    // No CORS origin is configured: the preflight is refused like any OPTIONS request.
    assert_eq!(preflight.status, 405);
    assert_eq!(
        metrics.snapshot(),
        [
            (200, 2),
            (202, 1),
            (400, 2),
            (403, 1),
            (404, 2),
            (405, 2),
            (413, 1),
            (470, 1),
            (503, 1),
            (599, 1)
        ]
    );
    h.stop().await;
}

#[actix_rt::test]
async fn an_incoming_traceparent_is_continued_through_the_ingress_span() {
    let (config, spans) = traced();
    let h = Harness::start(config).await;
    let reply = h
        .send(
            "POST",
            "/Counter/k1/add",
            &[("content-type", JSON), ("traceparent", TRACEPARENT)],
            b"5",
        )
        .await;
    assert_eq!(reply.status, 200);
    let trace = only_trace(&h);
    let span = spans.try_recv().expect("the ingress span");
    assert_eq!(trace.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
    assert!(trace.sampled);
    assert_eq!(span.trace_id, trace.trace_id);
    assert_eq!(span.parent, Some(SpanId(0x00f067aa0ba902b7)));
    assert_eq!(
        trace.parent, span.span_id,
        "the invocation is the span's child"
    );
    assert_eq!(span.name, "ingress Counter/add");
    assert_eq!(span.kind, SpanKind::Server);
    assert!(span.end_ns.is_some_and(|end| end >= span.start_ns));
    assert_eq!(span.error, None);
    assert_eq!(
        attribute(&span, "http.request.method"),
        text("POST").as_ref()
    );
    assert_eq!(
        attribute(&span, "url.path"),
        text("/Counter/k1/add").as_ref()
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&AttributeValue::Int(200))
    );
    assert_eq!(attribute(&span, "rpc.service"), text("Counter").as_ref());
    assert_eq!(attribute(&span, "rpc.method"), text("add").as_ref());
    assert_eq!(attribute(&span, "holdfast.object.key"), text("k1").as_ref());
    assert_eq!(
        attribute(&span, "holdfast.invocation.id"),
        text(ID).as_ref()
    );
    assert!(spans.try_recv().is_err(), "one span per request");
    h.stop().await;
}

#[actix_rt::test]
async fn a_missing_or_malformed_traceparent_starts_a_new_trace_and_is_never_refused() {
    let (config, spans) = traced();
    let h = Harness::start(config).await;
    let mut traces = Vec::new();
    for header in [None, Some("00-xyz-01"), Some(&TRACEPARENT[..40])] {
        let headers: Vec<(&str, &str)> = [("content-type", JSON)]
            .into_iter()
            .chain(header.map(|value| ("traceparent", value)))
            .collect();
        let reply = h.send("POST", "/Greeter/greet", &headers, b"1").await;
        assert_eq!(reply.status, 200, "{header:?}");
        let trace = only_trace(&h);
        let span = spans.try_recv().expect("the ingress span");
        assert_eq!(span.parent, None, "a new trace's root: {header:?}");
        assert_eq!(span.trace_id, trace.trace_id);
        assert_eq!(trace.parent, span.span_id);
        assert!(trace.sampled);
        assert_ne!(trace.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
        assert_eq!(attribute(&span, "holdfast.object.key"), None);
        traces.push(trace.trace_id);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "every new trace has its own id");
    h.stop().await;
}

#[actix_rt::test]
async fn sends_and_server_errors_are_named_in_their_spans() {
    let (config, spans) = traced();
    let h = Harness::start(config).await;
    assert_eq!(h.post_json("/Greeter/greet/send", "1").await.status, 202);
    let span = spans.try_recv().expect("send span");
    assert_eq!(span.name, "ingress send Greeter/greet");
    assert_eq!(
        attribute(&span, "holdfast.invocation.id"),
        text(ID).as_ref()
    );

    h.recorder.reply(Reply::Call(Err(DispatchError::Unavailable(
        "no leader".into(),
    ))));
    assert_eq!(h.post_json("/Greeter/greet", "1").await.status, 503);
    let span = spans.try_recv().expect("error span");
    assert_eq!(span.error.as_deref(), Some("unavailable: no leader"));
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&AttributeValue::Int(503))
    );
    assert_eq!(attribute(&span, "holdfast.invocation.id"), None);

    h.recorder.reply(Reply::Call(Ok(Outcome {
        invocation_id: ID.into(),
        result: Err(Failure {
            code: 500,
            message: "handler blew up".into(),
        }),
        expires_at: None,
    })));
    assert_eq!(h.post_json("/Greeter/greet", "1").await.status, 500);
    let span = spans.try_recv().expect("failure span");
    assert_eq!(span.error.as_deref(), Some("handler blew up"));
    assert_eq!(
        attribute(&span, "holdfast.invocation.id"),
        text(ID).as_ref()
    );

    // A 4xx answer is not an error of the span.
    assert_eq!(h.post_json("/Greeter/greet", "{").await.status, 400);
    let span = spans.try_recv().expect("rejected span");
    assert_eq!(span.error, None);
    h.stop().await;
}

#[actix_rt::test]
async fn unsampled_traces_and_non_invocation_routes_emit_no_span() {
    let (config, spans) = traced();
    let h = Harness::start(config).await;
    let unsampled = TRACEPARENT.replace("-01", "-00");
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[("content-type", JSON), ("traceparent", &unsampled)],
            b"1",
        )
        .await;
    assert_eq!(reply.status, 200);
    let trace = only_trace(&h);
    assert!(!trace.sampled, "the caller's decision travels on");
    assert_eq!(trace.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
    assert_eq!(h.get("/restate/health").await.status, 200);
    assert_eq!(h.post_json("/restate/nothing", "").await.status, 404);
    assert!(spans.try_recv().is_err());
    h.stop().await;
}

#[actix_rt::test]
async fn without_a_sink_requests_still_carry_a_trace_context() {
    let h = Harness::default().await;
    let reply = h
        .send(
            "POST",
            "/Greeter/greet",
            &[("content-type", JSON), ("traceparent", TRACEPARENT)],
            b"1",
        )
        .await;
    assert_eq!(reply.status, 200);
    let trace = only_trace(&h);
    assert_eq!(trace.trace_id, TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
    assert_ne!(trace.parent, SpanId(0x00f067aa0ba902b7));
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The node-wide budget of request bodies in flight.

#[actix_rt::test]
async fn bodies_in_flight_beyond_the_budget_get_503_with_retry_after() {
    let h = Harness::start(IngressConfig {
        max_inflight_bytes: 100,
        ..IngressConfig::default()
    })
    .await;
    // A slow client announces an 80-byte JSON body and sends 10 bytes of it.
    let slow_body = format!("\"{}\"", "s".repeat(78));
    let mut slow = TcpStream::connect(h.address).await.expect("connect");
    let head = format!(
        "POST /Greeter/greet HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: {JSON}\r\ncontent-length: {}\r\n\r\n",
        slow_body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("write head");
    slow.write_all(&slow_body.as_bytes()[..10])
        .await
        .expect("write start of body");
    // Meanwhile a 42-byte body does not fit beside the 80 held (once the server saw them).
    let other = format!("\"{}\"", "x".repeat(40));
    let mut busy = None;
    for _ in 0..100 {
        let reply = h.post_json("/Greeter/greet", &other).await;
        if reply.status == 503 {
            busy = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let busy = busy.expect("a request beyond the budget was admitted");
    assert_eq!(busy.header("retry-after"), Some("1"));
    let error: serde_json::Value = serde_json::from_slice(&busy.body).expect("JSON error");
    assert_eq!(error["code"], 503);
    // The slow request finishes; its bytes are released and the other fits again.
    slow.write_all(&slow_body.as_bytes()[10..])
        .await
        .expect("write rest of body");
    assert_eq!(read_response(&mut slow).await.status, 200);
    assert_eq!(h.post_json("/Greeter/greet", &other).await.status, 200);
    h.stop().await;
}
