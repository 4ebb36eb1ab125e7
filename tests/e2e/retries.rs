//! Retry policies and attempt timeouts end to end: a service's manifest override of its retry
//! policy pauses an always-failing invocation after that many attempts (until resumed), and the
//! node configuration's inactivity timeout closes a silent attempt, which then suspends. Both run
//! the real binary against a real Node endpoint (`tests/e2e/fixtures/retry-services.mjs`), whose
//! own log lines show every attempt.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, http, http_get, register,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const FIXTURE: &str = "tests/e2e/fixtures/retry-services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(45);
/// How long nothing more may happen once an invocation is paused or suspended.
const QUIET: Duration = Duration::from_millis(1_500);

/// Starts `path` as a one-way send and returns the invocation id.
fn send(ingress: SocketAddr, path: &str) -> String {
    let accepted = http(
        ingress,
        "POST",
        &format!("{path}/send"),
        &[("content-type", "application/json")],
        "null",
    )
    .expect("send");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    accepted.json()["invocationId"]
        .as_str()
        .expect("invocation id")
        .to_string()
}

fn output(ingress: SocketAddr, id: &str) -> Response {
    http_get(ingress, &format!("/restate/invocation/{id}/output")).expect("output")
}

fn service(admin: SocketAddr, name: &str) -> Value {
    let found = http_get(admin, &format!("/services/{name}")).expect("service");
    assert_eq!(found.status, 200, "{}", found.body);
    found.json()
}

#[test]
fn a_service_retry_override_pauses_after_its_attempts_until_resumed() {
    let files = NodeFiles::new(2, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    // The manifest's override is what the registry shows; the rest is the node's default.
    let policy = &service(files.admin, "Flaky")["retry_policy"];
    assert_eq!(policy["max_attempts"], 3, "{policy}");
    assert_eq!(policy["initial_interval"], "20ms", "{policy}");
    assert_eq!(policy["max_interval"], "1m", "{policy}");

    let id = send(files.ingress, "/Flaky/fail");
    let attempt = format!("attempt Flaky.fail {id} ");
    endpoint
        .log
        .wait_until("three attempts", PATIENCE, |lines| {
            lines.iter().filter(|l| l.starts_with(&attempt)).count() >= 3
        });
    // Paused: no fourth attempt, no result.
    std::thread::sleep(QUIET);
    assert_eq!(endpoint.log.count(&attempt), 3, "{}", endpoint.log.text());
    for n in 1..=3 {
        assert_eq!(
            endpoint.log.count(&format!("{attempt}{n}")),
            1,
            "attempt {n}"
        );
    }
    let pending = output(files.ingress, &id);
    assert_eq!(pending.status, 470, "{}", pending.body);

    // Resuming runs it again, with a fresh budget of three attempts.
    let resumed = http(
        files.admin,
        "PATCH",
        &format!("/invocations/{id}/resume"),
        &[],
        "",
    )
    .expect("resume");
    assert!(resumed.status < 300, "{} {}", resumed.status, resumed.body);
    endpoint
        .log
        .wait_until("three more attempts", PATIENCE, |lines| {
            lines.iter().filter(|l| l.starts_with(&attempt)).count() >= 6
        });
    std::thread::sleep(QUIET);
    assert_eq!(endpoint.log.count(&attempt), 6, "{}", endpoint.log.text());
    assert_eq!(output(files.ingress, &id).status, 470);
    drop((kernel, endpoint));
}

#[test]
fn the_node_inactivity_timeout_closes_a_silent_attempt_which_suspends() {
    let files = NodeFiles::new(
        2,
        "[invocation]\ninactivity_timeout_ms = 300\nretry_max_attempts = 5\n",
    );
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    // Services that declare nothing show the node's configuration.
    let silent = service(files.admin, "Silent");
    assert_eq!(silent["inactivity_timeout"], "300ms", "{silent}");
    assert_eq!(silent["retry_policy"]["max_attempts"], 5, "{silent}");

    let id = send(files.ingress, "/Silent/wait");
    // The SDK would wait 10 minutes before suspending on its own: the kernel's 300 ms
    // inactivity timeout closes the stream, and the SDK suspends at once.
    endpoint.log.wait_until(
        "Silent.wait to suspend and its stream to close",
        PATIENCE,
        |lines| {
            lines.iter().any(|l| l == "suspension sent Silent.wait")
                && lines.iter().any(|l| l == "stream closed Silent.wait")
        },
    );
    let lines = endpoint.log.lines();
    let started = lines
        .iter()
        .position(|l| l.starts_with(&format!("attempt Silent.wait {id} 1")))
        .expect("the attempt started");
    let suspended = lines
        .iter()
        .position(|l| l == "suspension sent Silent.wait")
        .expect("suspension");
    assert!(started < suspended, "{}", lines.join("\n"));
    // Suspended, not failed: no new attempt starts while the awakeable is pending.
    std::thread::sleep(QUIET);
    assert_eq!(
        endpoint.log.count("attempt Silent.wait"),
        1,
        "{}",
        endpoint.log.text()
    );
    assert_eq!(output(files.ingress, &id).status, 470);
    drop((kernel, endpoint));
}
