//! Scheduling and routing scenarios end to end: the real `holdfast` binary on four partitions,
//! real Node endpoints built with the SDK, real HTTP through the ingress. Keyed objects run in
//! parallel across keys and one at a time on a key, shared handlers run beside an exclusive one,
//! call chains and one-way sends cross partitions, and deployment revisions pin the invocations
//! that started on them. The fixtures (`fixtures/scenario-services.mjs`,
//! `fixtures/release-services.mjs`) return or print what their handlers measured.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, http, http_get, poll, register,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SCENARIOS: &str = "tests/e2e/fixtures/scenario-services.mjs";
const RELEASE: &str = "tests/e2e/fixtures/release-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
const PARTITIONS: u32 = 4;
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(45);

/// A kernel on [`PARTITIONS`] partitions with `fixture`'s services registered.
fn node_with(fixture: &str) -> (NodeFiles, Kernel, ServiceProcess) {
    let files = NodeFiles::new(PARTITIONS, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(fixture, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    (files, kernel, endpoint)
}

fn call(ingress: SocketAddr, path: &str, body: &Value) -> Response {
    http(ingress, "POST", path, &[JSON], &body.to_string())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A call that must answer 200; returns the JSON answer.
fn ok(ingress: SocketAddr, path: &str, body: &Value) -> Value {
    let response = call(ingress, path, body);
    assert_eq!(
        response.status, 200,
        "POST {path}: {} {}",
        response.status, response.body
    );
    response.json()
}

/// Starts `path` with `body` on a thread of its own.
fn call_in_background(ingress: SocketAddr, path: &str, body: Value) -> JoinHandle<Response> {
    let path = path.to_string();
    std::thread::spawn(move || call(ingress, &path, &body))
}

/// The partition of an invocation id: its partition key modulo the partition count.
fn partition_of(id: &str) -> u64 {
    let id: holdfast_types::InvocationId = id
        .parse()
        .unwrap_or_else(|e| panic!("not an invocation id: {e}"));
    id.partition_key % u64::from(PARTITIONS)
}

/// A `{start, end}` interval (milliseconds on the endpoint's clock) from a handler's answer.
fn interval(answer: &Value) -> (i64, i64) {
    let at = |field: &str| {
        answer[field]
            .as_i64()
            .unwrap_or_else(|| panic!("no {field} in {answer}"))
    };
    (at("start"), at("end"))
}

/// The most intervals that are open at one instant.
fn max_overlap(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // At equal times an end comes before a start: touching intervals do not overlap.
    edges.sort_unstable();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, edge) in edges {
        open += edge;
        most = most.max(open);
    }
    usize::try_from(most).unwrap_or(0)
}

#[test]
fn calls_on_different_keys_of_one_object_run_in_parallel() {
    let (files, kernel, _endpoint) = node_with(SCENARIOS);
    let ingress = files.ingress;
    const KEYS: i64 = 6;
    const HOLD_MS: i64 = 1500;
    let started = Instant::now();
    let calls: Vec<_> = (0..KEYS)
        .map(|k| call_in_background(ingress, &format!("/Clock/k{k}/hold"), json!(HOLD_MS)))
        .collect();
    let intervals: Vec<(i64, i64)> = calls
        .into_iter()
        .enumerate()
        .map(|(k, c)| {
            let response = c.join().expect("client thread");
            assert_eq!(response.status, 200, "Clock/k{k}: {}", response.body);
            let answer = response.json();
            assert_eq!(answer["key"], json!(format!("k{k}")), "{answer}");
            interval(&answer)
        })
        .collect();
    let wall = started.elapsed();
    // Node's timers may fire a millisecond before `Date.now()` has moved on by the delay.
    for &(start, end) in &intervals {
        assert!(
            end - start >= HOLD_MS - 10,
            "a hold ended early: {intervals:?}"
        );
    }
    let first = intervals.iter().map(|i| i.0).min().expect("intervals");
    let last = intervals.iter().map(|i| i.1).max().expect("intervals");
    let overlap = max_overlap(&intervals);
    eprintln!(
        "{KEYS} keys held {HOLD_MS} ms each: {overlap} at once at most, span {} ms, wall {wall:?}",
        last - first
    );
    // One at a time, the holds would take KEYS × HOLD_MS = 9 s end to end.
    let serial = Duration::from_millis((KEYS * HOLD_MS) as u64);
    assert!(overlap >= 2, "no two keys held at once: {intervals:?}");
    assert!(
        last - first < KEYS * HOLD_MS / 2,
        "the holds spanned {} ms, serialized they take {} ms: {intervals:?}",
        last - first,
        KEYS * HOLD_MS
    );
    assert!(
        wall < serial / 2,
        "{KEYS} parallel calls took {wall:?}, serialized they take {serial:?}"
    );
    drop(kernel);
}

#[test]
fn calls_on_one_key_are_strictly_serialized() {
    let (files, kernel, _endpoint) = node_with(SCENARIOS);
    let ingress = files.ingress;
    const CALLS: i64 = 4;
    const HOLD_MS: i64 = 300;
    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS)
        .map(|_| call_in_background(ingress, "/Clock/solo/hold", json!(HOLD_MS)))
        .collect();
    let mut intervals: Vec<(i64, i64)> = calls
        .into_iter()
        .map(|c| {
            let response = c.join().expect("client thread");
            assert_eq!(response.status, 200, "Clock/solo: {}", response.body);
            interval(&response.json())
        })
        .collect();
    let wall = started.elapsed();
    intervals.sort_unstable();
    eprintln!("{CALLS} calls on one key held {HOLD_MS} ms each: {intervals:?}, wall {wall:?}");
    for pair in intervals.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "a hold started before the previous one on the key ended: {intervals:?}"
        );
    }
    assert_eq!(max_overlap(&intervals), 1, "{intervals:?}");
    assert!(
        wall >= Duration::from_millis((CALLS * HOLD_MS) as u64),
        "{CALLS} serialized holds of {HOLD_MS} ms answered within {wall:?}"
    );
    drop(kernel);
}

#[test]
fn a_call_chain_of_three_services_answers_across_partitions() {
    let (files, kernel, _endpoint) = node_with(SCENARIOS);
    let ingress = files.ingress;
    let names = ["ada", "bob", "cy", "dee", "eve", "fay"];
    let calls: Vec<_> = names
        .iter()
        .map(|name| call_in_background(ingress, "/ChainA/start", json!(name)))
        .collect();
    let mut crossing = 0;
    let mut touched = BTreeSet::new();
    for (name, c) in names.iter().zip(calls) {
        let response = c.join().expect("client thread");
        assert_eq!(
            response.status, 200,
            "ChainA/start {name}: {}",
            response.body
        );
        let answer = response.json();
        assert_eq!(
            answer["text"],
            json!(format!("A(B(C({name})))")),
            "{answer}"
        );
        let ids: Vec<&str> = answer["ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no ids in {answer}"))
            .iter()
            .map(|id| id.as_str().expect("an invocation id"))
            .collect();
        assert_eq!(ids.len(), 3, "one id per hop: {answer}");
        assert_eq!(
            ids[0],
            response.invocation_id(),
            "the first hop is the call"
        );
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            3,
            "three invocations: {answer}"
        );
        let hops: Vec<u64> = ids.iter().map(|id| partition_of(id)).collect();
        eprintln!("{name}: hops on partitions {hops:?}");
        let partitions: BTreeSet<u64> = hops.into_iter().collect();
        crossing += usize::from(partitions.len() > 1);
        touched.extend(partitions);
    }
    assert_eq!(
        crossing,
        names.len(),
        "chains that crossed partitions, of {}",
        names.len()
    );
    assert!(touched.len() >= 2, "every hop on partitions {touched:?}");
    drop(kernel);
}

#[test]
fn one_way_sends_across_partitions_are_delivered_exactly_once() {
    let (files, kernel, _endpoint) = node_with(SCENARIOS);
    let ingress = files.ingress;
    const DIRECT: usize = 50;
    const FORWARDED: usize = 20;
    let direct = ["north", "south"];
    let response = call(
        ingress,
        "/Fanout/spray",
        &json!({ "direct": direct, "n": DIRECT, "via": "east", "forwarded": FORWARDED }),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let sender = response.invocation_id();
    assert_eq!(response.json(), json!(sender));

    let expected = [("north", DIRECT), ("south", DIRECT), ("east", FORWARDED)];
    let mut targets = BTreeSet::new();
    for (key, n) in expected {
        let path = format!("/Tally/{key}/get");
        let what = format!("Tally/{key} to count {n} deliveries");
        let last = poll(&what, PATIENCE, || {
            let count = ok(ingress, &path, &json!(null));
            let count = count.as_u64().unwrap_or_else(|| panic!("{path}: {count}"));
            assert!(
                count <= n as u64,
                "Tally/{key} counted {count} of {n} sends"
            );
            (count == n as u64).then_some(call(ingress, &path, &json!(null)))
        });
        targets.insert(partition_of(&last.invocation_id()));
        let tags = ok(ingress, &format!("/Tally/{key}/tags"), &json!(null));
        let mut tags: Vec<u64> = tags
            .as_array()
            .unwrap_or_else(|| panic!("Tally/{key} tags: {tags}"))
            .iter()
            .map(|t| t.as_u64().expect("a tag"))
            .collect();
        tags.sort_unstable();
        assert_eq!(
            tags,
            (0..n as u64).collect::<Vec<_>>(),
            "Tally/{key}: every send delivered once"
        );
    }
    // Nothing arrives late: the counts stay where they are while the kernel keeps running.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        for (key, n) in expected {
            assert_eq!(
                ok(ingress, &format!("/Tally/{key}/get"), &json!(null)),
                json!(n),
                "Tally/{key} after every send was delivered"
            );
        }
    }
    let from = partition_of(&sender);
    eprintln!("sent from partition {from} to Tally on partitions {targets:?}");
    assert!(
        targets.iter().any(|p| *p != from),
        "every Tally on the sender's partition {from}"
    );
    drop(kernel);
}

#[test]
fn shared_handlers_read_state_while_an_exclusive_one_holds_the_key() {
    let (files, kernel, endpoint) = node_with(SCENARIOS);
    let ingress = files.ingress;
    let gate = files.dir.path().join("gate");
    assert_eq!(
        ok(ingress, "/Account/acct/deposit", &json!({ "amount": 5 })),
        json!(5)
    );

    // An exclusive deposit takes the key and blocks inside its step.
    let holder = call_in_background(
        ingress,
        "/Account/acct/deposit",
        json!({ "amount": 1, "gate": gate.display().to_string() }),
    );
    endpoint
        .log
        .wait_until("the deposit to hold the key", PATIENCE, |lines| {
            lines.iter().any(|l| l.starts_with("holding acct "))
        });
    let holding = endpoint
        .log
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("holding acct ").map(str::to_string))
        .expect("a holding line");

    // A second exclusive call on the key queues behind it.
    let queued = call(
        ingress,
        "/Account/acct/deposit/send",
        &json!({ "amount": 10 }),
    );
    assert_eq!(queued.status, 202, "{}", queued.body);
    let queued = queued.json()["invocationId"]
        .as_str()
        .expect("an invocation id")
        .to_string();

    // Shared handlers answer meanwhile, with the state before the deposit in progress, and run
    // beside each other.
    for _ in 0..3 {
        assert_eq!(ok(ingress, "/Account/acct/balance", &json!(null)), json!(5));
    }
    const PEEKS: usize = 3;
    const HOLD_MS: i64 = 800;
    let peeks: Vec<_> = (0..PEEKS)
        .map(|_| call_in_background(ingress, "/Account/acct/peek", json!(HOLD_MS)))
        .collect();
    let intervals: Vec<(i64, i64)> = peeks
        .into_iter()
        .map(|p| {
            let response = p.join().expect("client thread");
            assert_eq!(response.status, 200, "Account/acct/peek: {}", response.body);
            let answer = response.json();
            assert_eq!(answer["balance"], json!(5), "{answer}");
            interval(&answer)
        })
        .collect();
    eprintln!("shared peeks while {holding} holds the key: {intervals:?}");
    assert!(
        max_overlap(&intervals) >= 2,
        "shared handlers on one key ran one at a time: {intervals:?}"
    );
    assert!(
        !holder.is_finished() && !gate.exists(),
        "the exclusive deposit ended before the shared handlers answered"
    );
    let lines = endpoint.log.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("begin deposit") && l.contains(&queued)),
        "the queued deposit {queued} began while {holding} held the key:\n{}",
        lines.join("\n")
    );
    let pending =
        http_get(ingress, &format!("/restate/invocation/{queued}/output")).expect("output");
    assert_eq!(pending.status, 470, "{}", pending.body);

    // Released, the holder finishes first, then the queued deposit runs.
    std::fs::write(&gate, "open").expect("open the gate");
    let held = holder.join().expect("client thread");
    assert_eq!(held.status, 200, "{}", held.body);
    assert_eq!(held.json(), json!(6));
    assert_eq!(held.invocation_id(), holding);
    let attached =
        http_get(ingress, &format!("/restate/invocation/{queued}/attach")).expect("attach");
    assert_eq!(attached.status, 200, "{}", attached.body);
    assert_eq!(attached.json(), json!(16));
    assert_eq!(
        ok(ingress, "/Account/acct/balance", &json!(null)),
        json!(16)
    );
    drop(kernel);
}

#[test]
fn an_in_flight_invocation_stays_on_its_deployment_revision() {
    let files = NodeFiles::new(PARTITIONS, "");
    let kernel = Kernel::start(&files, "warn");
    let ingress = files.ingress;
    let mut v1 = ServiceProcess::start(RELEASE, free_port(), &[("VERSION", "v1")]);
    let v1_id = register(files.admin, &v1.uri);
    let gate = files.dir.path().join("gate");

    // An invocation starts on v1 and blocks inside its step.
    let pinned = call_in_background(ingress, "/Release/hold", json!(gate.display().to_string()));
    v1.log
        .wait_until("the step to run on v1", PATIENCE, |lines| {
            lines.iter().any(|l| l.starts_with("waiting "))
        });
    let id = v1
        .log
        .lines()
        .iter()
        .find_map(|l| {
            l.strip_prefix("waiting ")?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .expect("a waiting line");

    // v2 is registered at another uri: a new revision of the same service.
    let v2 = ServiceProcess::start(RELEASE, free_port(), &[("VERSION", "v2")]);
    let v2_id = register(files.admin, &v2.uri);
    assert_ne!(v1_id, v2_id);
    let service = http_get(files.admin, "/services/Release").expect("GET service");
    assert_eq!(service.status, 200, "{}", service.body);
    assert_eq!(
        service.json()["deployment_id"],
        json!(v2_id),
        "{}",
        service.body
    );

    // New invocations go to v2.
    for _ in 0..3 {
        assert_eq!(ok(ingress, "/Release/hold", &json!(null)), json!("v2"));
    }
    assert_eq!(ok(ingress, "/Release/version", &json!(null)), json!("v2"));

    // v1 dies under the in-flight invocation. New invocations do not need it; the pinned one is
    // retried on v1 once v1 is back on its port.
    let dead = v1.pid();
    v1.kill9();
    assert_eq!(ok(ingress, "/Release/hold", &json!(null)), json!("v2"));
    v1.restart();
    let reborn = v1.pid();
    let retried = format!("waiting {id} v1 pid={reborn}");
    v1.log
        .wait_until("the retry to reach the restarted v1", PATIENCE, |lines| {
            lines.contains(&retried)
        });
    assert!(!pinned.is_finished(), "the pinned invocation ended early");

    std::fs::write(&gate, "open").expect("open the gate");
    let response = pinned.join().expect("client thread");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.invocation_id(), id);
    assert_eq!(
        response.json(),
        json!("v1"),
        "finished on the revision it started on"
    );
    assert_eq!(v1.log.count(&format!("end {id} v1 pid={reborn}")), 1);
    assert!(
        v1.log.count(&format!("begin {id} v1 pid={dead}")) >= 1,
        "the pinned invocation began on the first v1 process:\n{}",
        v1.log.text()
    );
    let v2_lines = v2.log.text();
    assert!(
        !v2_lines.contains(&id),
        "the pinned invocation {id} reached v2:\n{v2_lines}"
    );
    let v2_invocations: BTreeSet<String> = v2
        .log
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("begin ")?.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        v2_invocations.len(),
        4,
        "v2 ran the four new holds:\n{v2_lines}"
    );
    drop(kernel);
}
