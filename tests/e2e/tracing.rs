//! Traces and metrics end to end: the real binary exports spans over OTLP/HTTP to a real receiver
//! that decodes them with the opentelemetry-proto definitions, for a three-service call chain
//! (`tests/e2e/fixtures/trace-services.mjs`) with a retried attempt and a sleep; a kill -9 of the
//! kernel mid-chain does not break the trace (its context travels in the log); with the
//! collector gone, invocations still complete and the dropped spans are counted; `/metrics`
//! parses as Prometheus text and counts the invocations made.

use holdfast_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use holdfast_e2e::{Kernel, NodeFiles, ServiceProcess, free_port, http, http_get, poll, register};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

const FIXTURE: &str = "tests/e2e/fixtures/trace-services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(45);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The `[tracing]` section pointing at `endpoint`, flushing quickly.
fn tracing_toml(endpoint: &str) -> String {
    format!(
        "[tracing]\nendpoint = \"{endpoint}\"\nflush_interval_ms = 50\nexport_timeout_ms = 1000\n"
    )
}

fn call(ingress: SocketAddr, path: &str, body: &Value, headers: &[(&str, &str)]) -> Value {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let response = http(ingress, "POST", path, &all, &body.to_string()).expect("call");
    assert_eq!(response.status, 200, "{path}: {}", response.body);
    response.json()
}

fn metrics(admin: SocketAddr) -> holdfast_e2e::prometheus::Metrics {
    let page = http_get(admin, "/metrics").expect("metrics");
    assert_eq!(page.status, 200, "{}", page.body);
    holdfast_e2e::prometheus::parse(&page.body)
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{}", page.body))
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "exactly one {name:?} span in {spans:#?}");
    found[0]
}

fn child_of(span: &ReceivedSpan, parent: &ReceivedSpan) {
    assert_eq!(
        span.parent_span_id.as_deref(),
        Some(parent.span_id.as_str()),
        "{:?} must be a child of {:?}",
        span.name,
        parent.name
    );
}

fn attribute<'a>(span: &'a ReceivedSpan, key: &str) -> &'a str {
    span.attributes
        .get(key)
        .unwrap_or_else(|| panic!("{:?} has no attribute {key}: {span:#?}", span.name))
}

/// OTLP's status code for an error.
const STATUS_ERROR: i32 = 2;

#[test]
fn a_call_chain_is_one_trace_with_attempts_calls_a_retry_and_a_sleep() {
    let receiver = OtlpReceiver::start();
    let files = NodeFiles::new(2, &tracing_toml(&receiver.endpoint()));
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let output = call(
        files.ingress,
        "/Front/handle",
        &json!({"value": 21, "sleepMs": 300}),
        &[("traceparent", &traceparent)],
    );
    assert_eq!(output["value"], 42, "{output}");

    // The invocation spans end with their invocations; Front's is last.
    let spans = receiver.wait_for("the whole chain", PATIENCE, |spans| {
        spans.iter().any(|span| span.name == "invoke Front/handle")
            && spans.iter().any(|span| span.name.starts_with("ingress"))
    });
    let spans: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|span| span.trace_id == TRACE_ID)
        .collect();

    // The client's span is the parent of the ingress request.
    let ingress = one(&spans, "ingress Front/handle");
    assert_eq!(ingress.parent_span_id.as_deref(), Some(CLIENT_SPAN));
    assert_eq!(attribute(ingress, "http.response.status_code"), "200");
    assert_eq!(
        ingress.resource.get("service.name").map(String::as_str),
        Some("holdfast")
    );

    // ingress -> invoke Front -> attempt -> call Middle -> invoke Middle -> attempt -> call Back
    // -> invoke Back -> attempts.
    let front = one(&spans, "invoke Front/handle");
    child_of(front, ingress);
    let front_attempt = one(&spans, "attempt Front/handle");
    child_of(front_attempt, front);
    let call_middle = one(&spans, "call Middle/relay");
    child_of(call_middle, front_attempt);
    let middle = one(&spans, "invoke Middle/relay");
    child_of(middle, call_middle);
    let middle_attempt = one(&spans, "attempt Middle/relay");
    child_of(middle_attempt, middle);
    let call_back = one(&spans, "call Back/work");
    child_of(call_back, middle_attempt);
    let back = one(&spans, "invoke Back/work");
    child_of(back, call_back);
    assert_eq!(attribute(back, "rpc.service"), "Back");
    assert_eq!(attribute(back, "rpc.method"), "work");
    assert_eq!(
        attribute(call_back, "holdfast.callee.id"),
        attribute(back, "holdfast.invocation.id")
    );

    // Back's first attempt failed and was retried; the retry slept.
    let mut back_attempts = named(&spans, "attempt Back/work");
    back_attempts.sort_by_key(|span| attribute(span, "holdfast.attempt.epoch").to_owned());
    assert!(back_attempts.len() >= 2, "{back_attempts:#?}");
    for attempt in &back_attempts {
        child_of(attempt, back);
    }
    let failed = back_attempts[0];
    assert_eq!(attribute(failed, "holdfast.attempt.epoch"), "1");
    assert_eq!(attribute(failed, "holdfast.attempt.outcome"), "failed");
    assert_eq!(failed.status_code, STATUS_ERROR);
    assert!(
        failed.status_message.contains("transient failure"),
        "{failed:#?}"
    );
    let sleep = one(&spans, "sleep");
    let sleeper = back_attempts[1];
    assert_eq!(attribute(sleeper, "holdfast.attempt.epoch"), "2");
    child_of(sleep, sleeper);
    assert!(
        sleep.end_ns - sleep.start_ns >= 250_000_000,
        "a 300 ms sleep lasted {} ns",
        sleep.end_ns - sleep.start_ns
    );
    // Every invocation span covers its callees.
    assert!(front.start_ns <= back.start_ns && back.end_ns <= front.end_ns + 1_000_000);

    // The handler received its attempt's span as traceparent, so its own spans can join.
    let last_back = back_attempts.last().expect("an attempt");
    assert_eq!(
        output["traceparent"],
        format!("00-{TRACE_ID}-{}-01", last_back.span_id),
        "{output}"
    );

    // sys_invocation shows the trace of each invocation.
    let back_id = attribute(back, "holdfast.invocation.id");
    let query = http(
        files.admin,
        "POST",
        "/query",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        &json!({"query": format!("SELECT trace_id FROM sys_invocation WHERE id = '{back_id}'")})
            .to_string(),
    )
    .expect("query");
    assert_eq!(query.status, 200, "{}", query.body);
    assert_eq!(
        query.json()["rows"][0]["trace_id"],
        TRACE_ID,
        "{}",
        query.body
    );

    // The metrics count what happened.
    let page = metrics(files.admin);
    for (service, handler) in [("Front", "handle"), ("Middle", "relay"), ("Back", "work")] {
        let labels = [("service", service), ("handler", handler)];
        assert_eq!(page.sum("holdfast_invocations_started_total", &labels), 1.0);
        assert_eq!(
            page.sum("holdfast_invocations_completed_total", &labels),
            1.0
        );
        assert_eq!(page.sum("holdfast_invocations_failed_total", &labels), 0.0);
        assert_eq!(
            page.sum("holdfast_invocation_duration_seconds_count", &labels),
            1.0
        );
    }
    let back_labels = [("service", "Back"), ("handler", "work")];
    assert_eq!(
        page.sum("holdfast_invocation_retries_total", &back_labels),
        1.0
    );
    assert!(page.sum("holdfast_invocation_attempts_total", &back_labels) >= 2.0);
    assert!(page.sum("holdfast_partition_journal_entries_total", &[]) >= 6.0);
    assert_eq!(
        page.sum("holdfast_ingress_requests_total", &[("status_code", "200")]),
        1.0
    );
    assert!(page.sum("holdfast_trace_spans_exported_total", &[]) >= spans.len() as f64);
    assert_eq!(page.sum("holdfast_trace_spans_dropped_total", &[]), 0.0);
}

#[test]
fn with_the_collector_gone_invocations_complete_and_dropped_spans_are_counted() {
    let receiver = OtlpReceiver::start();
    let endpoint_url = receiver.endpoint();
    receiver.stop();
    let files = NodeFiles::new(2, &tracing_toml(&endpoint_url));
    let _kernel = Kernel::start(&files, "error");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);

    const CALLS: usize = 20;
    for n in 0..CALLS {
        let output = call(
            files.ingress,
            "/Front/handle",
            &json!({"value": n, "sleepMs": 1}),
            &[],
        );
        assert_eq!(output["value"], n * 2, "{output}");
    }
    // A terminal failure is counted as failed, with its status code at the ingress.
    let refused = http(
        files.ingress,
        "POST",
        "/Back/fail",
        &[("content-type", "application/json")],
        "null",
    )
    .expect("fail");
    assert_eq!(refused.status, 422, "{}", refused.body);

    let dropped = poll("dropped spans to be counted", PATIENCE, || {
        let page = metrics(files.admin);
        let dropped = page.sum("holdfast_trace_spans_dropped_total", &[]);
        (dropped > 0.0).then_some((dropped, page))
    });
    let (dropped, page) = dropped;
    assert!(page.sum("holdfast_trace_export_failures_total", &[]) >= 1.0);
    assert_eq!(page.sum("holdfast_trace_spans_exported_total", &[]), 0.0);
    assert!(dropped <= page.sum("holdfast_trace_spans_emitted_total", &[]));
    let front = [("service", "Front"), ("handler", "handle")];
    assert_eq!(
        page.sum("holdfast_invocations_completed_total", &front),
        CALLS as f64
    );
    let fail = [("service", "Back"), ("handler", "fail")];
    assert_eq!(page.sum("holdfast_invocations_failed_total", &fail), 1.0);
    assert_eq!(
        page.sum("holdfast_ingress_requests_total", &[("status_code", "200")]),
        CALLS as f64
    );
    assert_eq!(
        page.sum("holdfast_ingress_requests_total", &[("status_code", "422")]),
        1.0
    );
}

#[test]
fn the_trace_context_survives_a_kill_9_of_the_kernel_mid_invocation() {
    let receiver = OtlpReceiver::start();
    let files = NodeFiles::new(2, &tracing_toml(&receiver.endpoint()));
    let mut kernel = Kernel::start(&files, "warn");
    // Handlers suspend as soon as they wait, so the whole chain is suspended mid-flight.
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[("SUSPEND_AFTER_MS", "100")]);
    register(files.admin, &endpoint.uri);

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let accepted = http(
        files.ingress,
        "POST",
        "/Front/handle/send",
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
        &json!({"value": 5, "sleepMs": 5_000}).to_string(),
    )
    .expect("send");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.json()["invocationId"]
        .as_str()
        .expect("invocation id")
        .to_owned();
    // Back's second attempt is sleeping: the whole chain is in flight when the kernel dies.
    endpoint
        .log
        .wait_until("Back's second attempt", PATIENCE, |lines| {
            lines
                .iter()
                .any(|line| line.starts_with("attempt Back.work ") && line.ends_with(" 2"))
        });
    // Front and Middle wait for their calls, Back for its timer: all three suspended, as the
    // gauge read from the applied state says before and after the crash.
    let suspended = |admin| metrics(admin).sum("holdfast_partition_suspended_invocations", &[]);
    poll("the chain to suspend", PATIENCE, || {
        (suspended(files.admin) == 3.0).then_some(())
    });
    kernel.kill9();
    kernel.restart();
    // Read within the sleep's 5 s, which a restart takes a fraction of.
    assert_eq!(suspended(files.admin), 3.0);

    let output = poll("the chain to complete after the restart", PATIENCE, || {
        let response = http_get(files.ingress, &format!("/restate/invocation/{id}/output")).ok()?;
        (response.status == 200).then(|| response.json())
    });
    assert_eq!(output["value"], 10, "{output}");
    assert_eq!(suspended(files.admin), 0.0);
    // The attempt that finished after the restart still belongs to the client's trace.
    let received = output["traceparent"].as_str().unwrap_or_default();
    assert!(received.starts_with(&format!("00-{TRACE_ID}-")), "{output}");

    let spans = receiver.wait_for("the chain's spans after the restart", PATIENCE, |spans| {
        spans.iter().any(|span| span.name == "invoke Front/handle")
    });
    let spans: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|span| span.trace_id == TRACE_ID)
        .collect();
    // Spans recorded before and after the crash form one tree: the ids the new incarnation
    // derives from the log are the ones the old one used.
    let ingress = one(&spans, "ingress send Front/handle");
    let front = one(&spans, "invoke Front/handle");
    child_of(front, ingress);
    let call_middle = one(&spans, "call Middle/relay");
    let middle = one(&spans, "invoke Middle/relay");
    child_of(middle, call_middle);
    let call_back = one(&spans, "call Back/work");
    let back = one(&spans, "invoke Back/work");
    child_of(back, call_back);
    assert_eq!(attribute(front, "holdfast.invocation.id"), id);
    let sleep = one(&spans, "sleep");
    assert!(
        sleep.end_ns - sleep.start_ns >= 4_900_000_000,
        "the 5 s sleep lasted {} ns",
        sleep.end_ns - sleep.start_ns
    );
    // The attempt that resumed after the restart is a child of Back's invocation span.
    let resumed = named(&spans, "attempt Back/work");
    assert!(
        !resumed.is_empty(),
        "{}",
        holdfast_e2e::otlp::describe(&spans)
    );
    for attempt in resumed {
        child_of(attempt, back);
    }
}
