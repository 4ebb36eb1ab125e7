//! Leadership end to end: the real `holdfast` binary, real Node endpoints built with the SDK
//! (`tests/e2e/fixtures/leadership-services.mjs`), real HTTP.
//!
//! - A kill -9 right after the first 202 of a burst of one-way sends, whose handlers send on to
//!   objects in other partitions: after restart every accepted send takes effect exactly once.
//!   `HOLDFAST_LEADERSHIP_ROUNDS` sets the number of rounds (default 3; the bar is 50).
//! - A flood of sends against a one-command queue, 200 clients retrying their 503s: every
//!   accepted invocation completes exactly once, nothing is left running, nothing needed the
//!   reconciler.
//! - A failed attempt's 5 s backoff survives a kill -9: the retry comes after the remaining
//!   backoff, not at once.
//! - A failing log append stops the process (exit 75); the restart has every acknowledged send.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, holdfast_bin, http, http_get, poll,
    register, try_wait_healthy,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/e2e/fixtures/leadership-services.mjs";
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(120);
const JSON: (&str, &str) = ("content-type", "application/json");

/// A one-way send of `message` to box `to`, through the relay (crossing partitions) or directly.
#[derive(Debug, Clone)]
struct Send {
    key: String,
    path: String,
    body: String,
}

impl Send {
    fn relayed(key: String, to: &str) -> Self {
        let body = json!({ "box": to, "message": key }).to_string();
        Self {
            path: "/Relay/forward/send".to_owned(),
            body,
            key,
        }
    }

    fn direct(key: String, to: &str) -> Self {
        Self {
            path: format!("/Box/{to}/add/send"),
            body: json!(key).to_string(),
            key,
        }
    }

    /// Posts it once with its idempotency key (its message, unique per send).
    fn post(&self, ingress: SocketAddr) -> std::io::Result<Response> {
        http(
            ingress,
            "POST",
            &self.path,
            &[JSON, ("idempotency-key", &self.key)],
            &self.body,
        )
    }

    /// Posts it until it is accepted, as a client retrying unanswered and refused requests.
    fn deliver(&self, ingress: SocketAddr) -> u32 {
        let deadline = Instant::now() + PATIENCE;
        let mut refusals = 0;
        loop {
            match self.post(ingress) {
                Ok(response) if response.status == 202 => return refusals,
                Ok(response) if response.status == 503 => {
                    assert!(
                        response.header("retry-after").is_some(),
                        "503 without retry-after: {}",
                        response.headers
                    );
                    refusals += 1;
                }
                Ok(response) => panic!(
                    "{} {}: {} {}",
                    self.path, self.key, response.status, response.body
                ),
                Err(_) => refusals += 1,
            }
            assert!(Instant::now() < deadline, "{} never accepted", self.key);
            std::thread::sleep(Duration::from_millis(20 + u64::from(refusals % 5) * 10));
        }
    }
}

/// Reads every box until together they hold `expected` messages, then checks each box holds
/// exactly its expected messages, each once.
fn assert_delivered_once(ingress: SocketAddr, expected: &BTreeMap<String, Vec<String>>) {
    let total: usize = expected.values().map(Vec::len).sum();
    let boxes = poll("every message in its box", PATIENCE, || {
        let mut boxes = BTreeMap::new();
        for name in expected.keys() {
            let response = http(
                ingress,
                "POST",
                &format!("/Box/{name}/list"),
                &[JSON],
                "null",
            )
            .ok()
            .filter(|r| r.status == 200)?;
            let messages: Vec<String> = serde_json::from_value(response.json()).ok()?;
            boxes.insert(name.clone(), messages);
        }
        let seen: usize = boxes.values().map(Vec::len).sum();
        (seen >= total).then_some(boxes)
    });
    for (name, want) in expected {
        let got = &boxes[name];
        let distinct: BTreeSet<&String> = got.iter().collect();
        assert_eq!(
            distinct.len(),
            got.len(),
            "box {name} has a duplicate: {got:?}"
        );
        let want: BTreeSet<&String> = want.iter().collect();
        assert_eq!(distinct, want, "box {name}");
    }
}

/// `count` sends of messages `<prefix>m<i>` over `boxes` boxes, every other one through the relay
/// (crossing partitions); each is recorded in `expected` under its box.
fn mixed_sends(
    prefix: &str,
    count: usize,
    boxes: usize,
    expected: &mut BTreeMap<String, Vec<String>>,
) -> Vec<Send> {
    (0..count)
        .map(|i| {
            let to = format!("b{}", i % boxes);
            let key = format!("{prefix}m{i}");
            expected.entry(to.clone()).or_default().push(key.clone());
            if i % 2 == 0 {
                Send::relayed(key, &to)
            } else {
                Send::direct(key, &to)
            }
        })
        .collect()
}

fn rounds() -> u64 {
    std::env::var("HOLDFAST_LEADERSHIP_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

#[test]
fn a_kill9_right_after_a_burst_of_accepted_sends_loses_and_duplicates_nothing() {
    const BURST: usize = 64;
    const CLIENTS: usize = 16;
    const BOXES: usize = 6;
    let files = NodeFiles::new(4, "");
    let mut kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..rounds() {
        let sends = mixed_sends(&format!("r{round}-"), BURST, BOXES, &mut expected);
        // Each client sends its share one after another, so requests keep arriving (and
        // entries keep being appended) while the kernel is killed.
        let (accepted_tx, accepted) = mpsc::channel();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let mine: Vec<Send> = sends
                    .iter()
                    .skip(client)
                    .step_by(CLIENTS)
                    .cloned()
                    .collect();
                let accepted_tx = accepted_tx.clone();
                std::thread::spawn(move || {
                    let mut unanswered = Vec::new();
                    for send in mine {
                        let answered = send
                            .post(ingress)
                            .is_ok_and(|response| response.status == 202);
                        if answered {
                            let _ = accepted_tx.send(());
                        } else {
                            unanswered.push(send);
                        }
                    }
                    unanswered
                })
            })
            .collect();
        drop(accepted_tx);
        accepted
            .recv_timeout(PATIENCE)
            .expect("no send of the burst was accepted");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 31));
        kernel.kill9();
        let unanswered: Vec<Send> = clients
            .into_iter()
            .flat_map(|client| client.join().expect("client"))
            .collect();
        kernel.restart();
        // Clients retry what was not answered; the idempotency key makes that safe.
        for send in &unanswered {
            send.deliver(ingress);
        }
    }
    assert_delivered_once(ingress, &expected);
}

#[test]
fn a_flood_of_sends_against_a_tiny_queue_completes_every_accepted_invocation_once() {
    const CLIENTS: usize = 200;
    const SENDS: usize = 1_200;
    const BOXES: usize = 16;
    let files = NodeFiles::new(4, "[log]\nmax_batch_commands = 1\n");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let sends = mixed_sends("", SENDS, BOXES, &mut expected);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let mine: Vec<Send> = sends
                .iter()
                .skip(client)
                .step_by(CLIENTS)
                .cloned()
                .collect();
            std::thread::spawn(move || mine.iter().map(|send| send.deliver(ingress)).sum::<u32>())
        })
        .collect();
    let refusals: u32 = clients
        .into_iter()
        .map(|client| client.join().expect("client"))
        .sum();
    println!(
        "{SENDS} sends accepted in {:.1} s after {refusals} refusals",
        started.elapsed().as_secs_f64()
    );
    assert!(
        refusals > 0,
        "the queue never filled up: the test proves nothing"
    );
    assert_delivered_once(ingress, &expected);

    // Nothing is left running or queued, and the leader never lost track of an attempt.
    let unfinished = poll("every invocation to complete", PATIENCE, || {
        let rows = query(
            files.admin,
            "SELECT status, count(*) AS n FROM sys_invocation WHERE status <> 'completed' GROUP BY status",
        );
        rows.as_array()
            .is_some_and(|rows| rows.is_empty())
            .then_some(rows)
    });
    assert_eq!(unfinished, json!([]));
    let metrics = http_get(files.admin, "/metrics").expect("metrics").body;
    let reconciled: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("holdfast_partition_reconciled_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        metrics.contains("holdfast_partition_reconciled_total{"),
        "{metrics}"
    );
    assert_eq!(reconciled, 0.0, "the reconciler had to restart invocations");
}

fn query(admin: SocketAddr, sql: &str) -> Value {
    let response = http(
        admin,
        "POST",
        "/query",
        &[JSON, ("accept", "application/json")],
        &json!({ "query": sql }).to_string(),
    )
    .expect("query");
    assert_eq!(response.status, 200, "{sql}: {}", response.body);
    response.json()["rows"].clone()
}

/// The Unix millisecond at which attempt `n` of `id` started, from the fixture's log.
fn attempt_started(endpoint: &ServiceProcess, id: &str, n: u32) -> u64 {
    let prefix = format!("attempt {id} {n} ");
    let mut at = None;
    endpoint
        .log
        .wait_until(&format!("attempt {n}"), PATIENCE, |lines| {
            lines.iter().any(|l| l.starts_with(&prefix))
        });
    for line in endpoint.log.lines() {
        if let Some(ms) = line.strip_prefix(&prefix) {
            at = ms.trim().parse().ok();
        }
    }
    at.expect("attempt time")
}

#[test]
fn a_retry_backoff_survives_a_kill9_and_fires_after_the_remaining_backoff() {
    const BACKOFF_MS: u64 = 5_000;
    let files = NodeFiles::new(2, "");
    let mut kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let accepted =
        http(files.ingress, "POST", "/Backoff/once/send", &[JSON], "null").expect("send");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.invocation_id();
    let first = attempt_started(&endpoint, &id, 1);
    std::thread::sleep(Duration::from_millis(1_000));
    kernel.kill9();
    kernel.restart();
    let restarted = now_ms();
    let second = attempt_started(&endpoint, &id, 2);
    assert!(
        second >= first + BACKOFF_MS - 50,
        "retried {} ms after the first attempt, before its {BACKOFF_MS} ms backoff ended",
        second - first
    );
    assert!(
        second < restarted.max(first + BACKOFF_MS) + 10_000,
        "retried {} ms after the restart",
        second.saturating_sub(restarted)
    );
    let output = poll("the result", PATIENCE, || {
        let response = http_get(files.ingress, &format!("/restate/invocation/{id}/output")).ok()?;
        (response.status == 200).then(|| response.json())
    });
    assert_eq!(output, json!("recovered"));
    assert_eq!(endpoint.log.count(&format!("attempt {id} ")), 2);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn a_failing_log_append_stops_the_process_and_a_restart_keeps_every_acknowledged_send() {
    let files = NodeFiles::new(1, "");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    let mut faulty = Command::new(holdfast_bin())
        .args(["serve", "--config"])
        .arg(&files.config)
        .env("HOLDFAST_LOG", "warn")
        .env("HOLDFAST_FAULT_LOG_APPENDS", "40")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn holdfast serve");
    let log = holdfast_e2e::ProcessLog::default();
    log.collect(faulty.stderr.take().expect("stderr"));
    try_wait_healthy(files.admin, &mut faulty).expect("healthy");
    register(files.admin, &endpoint.uri);
    let mut acknowledged = Vec::new();
    let status = loop {
        if let Some(status) = faulty.try_wait().expect("wait") {
            break status;
        }
        let n = acknowledged.len();
        let send = Send::direct(format!("m{n}"), "faults");
        if let Ok(response) = send.post(files.ingress)
            && response.status == 202
        {
            acknowledged.push(send.key);
        }
        assert!(n < 1_000, "the injected fault never stopped the process");
    };
    assert_eq!(status.code(), Some(75), "{}", log.text());
    assert!(
        log.text().contains("storage failed"),
        "no clear log line:\n{}",
        log.text()
    );
    assert!(
        !acknowledged.is_empty(),
        "nothing was acknowledged before the fault"
    );

    let _kernel = Kernel::start(&files, "warn");
    // Every acknowledged send is there once; a send whose answer was lost may be there too.
    let boxes = poll("the acknowledged messages", PATIENCE, || {
        let response = http(files.ingress, "POST", "/Box/faults/list", &[JSON], "null").ok()?;
        let messages: Vec<String> = serde_json::from_value(response.json()).ok()?;
        acknowledged
            .iter()
            .all(|m| messages.contains(m))
            .then_some(messages)
    });
    let distinct: BTreeSet<&String> = boxes.iter().collect();
    assert_eq!(distinct.len(), boxes.len(), "a duplicate: {boxes:?}");
}
