//! Flow-control limits end to end: the real `holdfast` binary with four partitions (so a
//! limit's permits travel between partitions), limits set through the admin API, and a real
//! Node endpoint (`tests/e2e/fixtures/flow-services.mjs`) that counts its running handlers
//! itself and prints every start and end.

use holdfast_e2e::{
    Kernel, NodeFiles, ProcessLog, Response, ServiceProcess, free_port, http, http_json, poll,
    register,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const FIXTURE: &str = "tests/e2e/fixtures/flow-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
/// Upper bound of every wait; far above what a loaded 2-core machine needs.
const PATIENCE: Duration = Duration::from_secs(90);
/// Partitions apply the registry's limits within about a second; this is ample.
const APPLIED: Duration = Duration::from_secs(3);

fn admin(files: &NodeFiles, method: &str, path: &str, body: &Value) -> Response {
    http_json(files.admin, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A node with four partitions, the fixture endpoint registered and `limit` created (given time
/// for every partition to apply it); returns them and the limit as the API shows it.
fn node_with_limit(limit: Value) -> (NodeFiles, Kernel, ServiceProcess, Value) {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let created = admin(&files, "POST", "/limits", &limit);
    assert_eq!(created.status, 201, "{}", created.body);
    std::thread::sleep(APPLIED);
    (files, kernel, endpoint, created.json())
}

fn sql_rows(files: &NodeFiles, query: &str) -> Vec<Value> {
    let response = admin(files, "POST", "/query", &json!({ "query": query }));
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Sends `count` one-way invocations of `path` from 8 threads, `body(seq)` each.
fn send_many(ingress: SocketAddr, path: &str, count: u64, body: impl Fn(u64) -> Value + Sync) {
    std::thread::scope(|scope| {
        for lane in 0..8 {
            let body = &body;
            scope.spawn(move || {
                for seq in (lane..count).step_by(8) {
                    let response = http(ingress, "POST", path, &[JSON], &body(seq).to_string())
                        .unwrap_or_else(|e| panic!("send {seq}: {e}"));
                    assert_eq!(response.status, 202, "send {seq}: {}", response.body);
                }
            });
        }
    });
}

/// One start or end line of the endpoint: (service, seq, running after it, unix ms).
fn events(log: &ProcessLog, kind: &str) -> Vec<(String, i64, u64, u64)> {
    log.lines()
        .iter()
        .filter_map(|line| {
            let mut parts = line.strip_prefix(kind)?.split_whitespace();
            let service = parts.next()?.to_owned();
            let seq = parts.next()?.parse().ok()?;
            let running = parts.next()?.parse().ok()?;
            let at = parts.next()?.parse().ok()?;
            Some((service, seq, running, at))
        })
        .collect()
}

/// Waits until `count` different invocations (service and seq) ended; an attempt run again after
/// a crash ends twice but counts once.
fn wait_ended(log: &ProcessLog, count: usize) {
    log.wait_until(&format!("{count} invocations to end"), PATIENCE, |lines| {
        let ended: BTreeSet<(&str, &str)> = lines
            .iter()
            .filter_map(|l| {
                let mut parts = l.strip_prefix("end ")?.split_whitespace();
                Some((parts.next()?, parts.next()?))
            })
            .collect();
        ended.len() >= count
    });
}

fn metric(files: &NodeFiles, series: &str) -> Option<u64> {
    let metrics = holdfast_e2e::http_get(files.admin, "/metrics").expect("metrics");
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn two_hundred_invocations_under_max_concurrency_five_never_run_more_than_five_and_all_complete() {
    let (files, _kernel, endpoint, created) =
        node_with_limit(json!({ "name": "gate", "service": "Gate", "max_concurrency": 5 }));
    assert_eq!(created["max_concurrency"], 5);

    send_many(
        files.ingress,
        "/Gate/work/send",
        200,
        |seq| json!({ "seq": seq, "holdMs": 40 }),
    );
    // While they run, the queue is visible in SQL and metrics.
    let waiting = poll("invocations waiting in sys_queue", PATIENCE, || {
        let rows = sql_rows(
            &files,
            "SELECT name, running, queued, oldest_queued_at FROM sys_queue WHERE name = 'gate'",
        );
        rows.into_iter()
            .find(|row| row["queued"].as_u64() > Some(0))
    });
    assert!(waiting["running"].as_u64() <= Some(5), "{waiting:?}");
    assert!(waiting["oldest_queued_at"].is_string(), "{waiting:?}");
    let ready = sql_rows(
        &files,
        "SELECT count(*) AS n FROM sys_invocation WHERE target_service_name = 'Gate' AND status = 'ready'",
    );
    assert!(ready[0]["n"].as_u64() > Some(0), "{ready:?}");

    wait_ended(&endpoint.log, 200);
    let starts = events(&endpoint.log, "start ");
    let most = starts.iter().map(|(_, _, running, _)| *running).max();
    assert_eq!(
        most,
        Some(5),
        "the endpoint saw at most 5 at once, and the limit was reached"
    );
    let seqs: BTreeSet<i64> = events(&endpoint.log, "end ").iter().map(|e| e.1).collect();
    assert_eq!(seqs, (0..200).collect(), "every invocation ran, each once");
    assert_eq!(starts.len(), 200, "no invocation ran twice");

    poll("every invocation completed", PATIENCE, || {
        let rows = sql_rows(
            &files,
            "SELECT count(*) AS n FROM sys_invocation WHERE target_service_name = 'Gate' AND status = 'completed'",
        );
        (rows[0]["n"] == 200).then_some(())
    });
    // Every one of them went through the limit's home, which has given every permit back.
    let queue = sql_rows(&files, "SELECT running, queued, granted FROM sys_queue");
    assert_eq!(
        queue,
        [json!({ "running": 0, "queued": 0, "granted": 200 })]
    );
    assert_eq!(
        metric(&files, "holdfast_limit_granted_total{limit=\"gate\"} "),
        Some(200)
    );
    assert_eq!(
        metric(&files, "holdfast_limit_running{limit=\"gate\"} "),
        Some(0)
    );
    let defined = sql_rows(
        &files,
        "SELECT name, service_name, max_concurrency, rate FROM sys_limit",
    );
    assert_eq!(
        defined,
        [json!({ "name": "gate", "service_name": "Gate", "max_concurrency": 5, "rate": null })]
    );
}

#[test]
fn a_rate_of_fifty_per_second_holds_within_ten_percent_over_ten_seconds() {
    let (files, _kernel, endpoint, created) = node_with_limit(
        json!({ "name": "api", "service": "Gate", "handler": "work", "rate": "50/s" }),
    );
    assert_eq!(created["rate"], "50/s");
    assert_eq!(created["burst"], 1);

    // More than ten seconds' worth, so the queue never runs dry in the window measured.
    send_many(
        files.ingress,
        "/Gate/work/send",
        600,
        |seq| json!({ "seq": seq, "holdMs": 5 }),
    );
    wait_ended(&endpoint.log, 600);
    let mut times: Vec<u64> = events(&endpoint.log, "start ")
        .iter()
        .map(|e| e.3)
        .collect();
    times.sort_unstable();
    let first = times[0];
    let in_window = times.iter().filter(|at| **at < first + 10_000).count();
    assert!(
        (450..=550).contains(&in_window),
        "{in_window} starts in the first 10 s at 50/s"
    );
    // And no burst anywhere: no second holds more than 10 % over the rate (+1 for edges).
    for (i, at) in times.iter().enumerate() {
        let in_second = times[i..].iter().take_while(|t| **t < at + 1000).count();
        assert!(
            in_second <= 56,
            "{in_second} starts in the second from {at}"
        );
    }
}

#[test]
fn limits_changed_live_take_effect_and_a_queue_survives_a_kill_9_in_order() {
    // One lane of one key: its invocations are admitted in order on one partition.
    let (files, mut kernel, endpoint, _) = node_with_limit(
        json!({ "name": "lane", "service": "Lane", "key_prefix": "eu-", "max_concurrency": 1 }),
    );
    // Another key prefix is not covered (first: the endpoint counts every running handler).
    let response = http(
        files.ingress,
        "POST",
        "/Lane/us-1/work",
        &[JSON],
        r#"{"seq":-2}"#,
    )
    .expect("us-1");
    assert_eq!(response.status, 200, "{}", response.body);
    for seq in 0..30 {
        let body = json!({ "seq": seq, "holdMs": 150 }).to_string();
        let response = http(
            files.ingress,
            "POST",
            "/Lane/eu-1/work/send",
            &[JSON],
            &body,
        )
        .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        assert_eq!(response.status, 202, "{}", response.body);
    }

    // Kill -9 while most of the lane waits; nothing queued is lost or reordered.
    endpoint
        .log
        .wait_until("the lane to start", PATIENCE, |lines| {
            lines.iter().filter(|l| l.starts_with("start Lane")).count() >= 3
        });
    kernel.kill9();
    kernel.restart();
    endpoint
        .log
        .wait_until("ten lane invocations to end", PATIENCE, |lines| {
            lines.iter().filter(|l| l.starts_with("end Lane")).count() >= 11
        });
    let lane: Vec<(String, i64, u64, u64)> = events(&endpoint.log, "start ")
        .into_iter()
        .filter(|e| e.0 == "Lane" && e.1 >= 0)
        .collect();
    // One at a time; only the attempt cut by the kill may run again while its first run, which
    // the kernel no longer hears from, still finishes in the endpoint.
    for (i, start) in lane.iter().enumerate() {
        let rerun = lane[..i].iter().any(|earlier| earlier.1 == start.1);
        assert!(
            start.2 == 1 || (rerun && start.2 == 2),
            "one at a time: {lane:?}"
        );
    }

    // Raise the limit: the rest of the lane runs up to four at once.
    let raised = admin(
        &files,
        "PATCH",
        "/limits/lane",
        &json!({ "max_concurrency": 4 }),
    );
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.json()["max_concurrency"], 4);
    wait_ended(&endpoint.log, 31);
    let starts: Vec<(String, i64, u64, u64)> = events(&endpoint.log, "start ")
        .into_iter()
        .filter(|e| e.0 == "Lane" && e.1 >= 0)
        .collect();
    let most = starts.iter().map(|e| e.2).max();
    assert!(most > Some(1) && most <= Some(4), "after raising: {most:?}");
    // Each ran, in the order sent (an attempt cut by the kill may run again, right away).
    let mut order: Vec<i64> = starts.iter().map(|e| e.1).collect();
    order.dedup();
    let first_seen: Vec<i64> = order
        .iter()
        .enumerate()
        .filter(|(i, seq)| !order[..*i].contains(seq))
        .map(|(_, seq)| *seq)
        .collect();
    assert_eq!(
        first_seen,
        (0..30).collect::<Vec<_>>(),
        "started in order: {order:?}"
    );

    // The lane's 30 went through the limit, each once (a restarted attempt keeps its permit); the
    // us-1 invocation did not.
    let granted = sql_rows(&files, "SELECT granted FROM sys_queue WHERE name = 'lane'");
    assert_eq!(granted, [json!({ "granted": 30 })]);

    // Removing the limit: a new burst runs all at once.
    let removed = admin(&files, "DELETE", "/limits/lane", &json!(null));
    assert_eq!(removed.status, 204, "{}", removed.body);
    let gone = admin(&files, "GET", "/limits/lane", &json!(null));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["code"], "unknown_limit");
    std::thread::sleep(APPLIED);
    for seq in 100..110 {
        let body = json!({ "seq": seq, "holdMs": 500 }).to_string();
        http(
            files.ingress,
            "POST",
            "/Lane/eu-2/work/send",
            &[JSON],
            &body,
        )
        .expect("send");
    }
    wait_ended(&endpoint.log, 41);
    let burst = events(&endpoint.log, "start ")
        .iter()
        .filter(|e| e.1 >= 100)
        .map(|e| e.2)
        .max();
    assert!(burst > Some(4), "unlimited after removal: {burst:?}");
}

#[test]
fn bad_limits_are_refused_with_json_errors() {
    let files = NodeFiles::new(1, "");
    let _kernel = Kernel::start(&files, "warn");
    let cases = [
        (json!({ "name": "x", "service": "S" }), 400, "invalid_limit"),
        (
            json!({ "name": "x", "service": "S", "rate": "fast" }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "name": "x y", "service": "S", "max_concurrency": 1 }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "name": "x", "service": "S", "max_concurrency": 0 }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "name": "x", "service": "S", "burst": 3, "max_concurrency": 1 }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "service": "S", "max_concurrency": 1 }),
            400,
            "invalid_limit",
        ),
    ];
    for (body, status, code) in cases {
        let response = admin(&files, "POST", "/limits", &body);
        assert_eq!(response.status, status, "{body}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{body}: {}", response.body);
        assert!(response.json()["message"].is_string());
    }
    let unknown_field = admin(&files, "POST", "/limits", &json!({ "name": "x", "max": 1 }));
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.body);
    assert!(unknown_field.json()["message"].is_string());
    let ok = admin(
        &files,
        "POST",
        "/limits",
        &json!({ "name": "x", "service": "S", "max_concurrency": 1 }),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let again = admin(
        &files,
        "POST",
        "/limits",
        &json!({ "name": "x", "service": "S", "max_concurrency": 2 }),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["code"], "limit_exists");
    let cleared = admin(
        &files,
        "PATCH",
        "/limits/x",
        &json!({ "max_concurrency": null }),
    );
    assert_eq!(
        cleared.status, 400,
        "a limit needs a budget: {}",
        cleared.body
    );
    let renamed = admin(&files, "PATCH", "/limits/x", &json!({ "name": "y" }));
    assert_eq!(renamed.status, 400, "{}", renamed.body);
    let missing = admin(
        &files,
        "PATCH",
        "/limits/nope",
        &json!({ "max_concurrency": 3 }),
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    let listed = admin(&files, "GET", "/limits", &json!(null));
    assert_eq!(
        listed.json(),
        json!({ "limits": [{ "name": "x", "service": "S", "max_concurrency": 1 }] })
    );
}

#[test]
fn limits_declared_in_the_configuration_are_applied_at_start() {
    let extra = "[[limits]]\nname = \"cfg\"\nservice = \"Gate\"\nmax_concurrency = 2\n";
    let files = NodeFiles::new(2, extra);
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let limit = poll("the configured limit in the registry", PATIENCE, || {
        let response = admin(&files, "GET", "/limits/cfg", &json!(null));
        (response.status == 200).then(|| response.json())
    });
    assert_eq!(
        limit,
        json!({ "name": "cfg", "service": "Gate", "max_concurrency": 2 })
    );
    std::thread::sleep(APPLIED);
    send_many(
        files.ingress,
        "/Gate/work/send",
        16,
        |seq| json!({ "seq": seq, "holdMs": 60 }),
    );
    wait_ended(&endpoint.log, 16);
    let most = events(&endpoint.log, "start ").iter().map(|e| e.2).max();
    assert_eq!(most, Some(2));
}

#[test]
fn a_limit_holds_and_its_queue_drains_when_the_leader_of_its_home_is_killed() {
    use holdfast_e2e::cluster::{Cluster, ClusterOptions};
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_for_leaders(PATIENCE);
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(cluster.node(1).admin(), &endpoint.uri);
    for node in cluster.nodes() {
        poll("the deployment on every node", PATIENCE, || {
            let services = holdfast_e2e::http_get(node.admin(), "/services").ok()?;
            services.body.contains("\"Gate\"").then_some(())
        });
    }
    let created = http_json(
        cluster.node(1).admin(),
        "POST",
        "/limits",
        &json!({ "name": "gate", "service": "Gate", "max_concurrency": 3 }),
    )
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.body);
    std::thread::sleep(APPLIED);
    let home_of = |admin: SocketAddr| {
        let response = http_json(
            admin,
            "POST",
            "/query",
            &json!({ "query": "SELECT partition FROM sys_queue WHERE name = 'gate'" }),
        )
        .ok()?;
        let rows = response.json()["rows"].as_array().cloned()?;
        u32::try_from(rows.first()?["partition"].as_u64()?).ok()
    };
    send_many(
        cluster.node(1).ingress(),
        "/Gate/work/send",
        3,
        |seq| json!({ "seq": seq, "holdMs": 150 }),
    );
    let home = poll("the limit's home in sys_queue", PATIENCE, || {
        home_of(cluster.node(1).admin())
    });
    let victim = cluster.leaders()[&home];
    let alive = if victim == 1 { 2 } else { 1 };
    // 57 more through a node that stays; kill the home's leader while they run and wait.
    send_many(
        cluster.node(alive).ingress(),
        "/Gate/work/send",
        57,
        |seq| json!({ "seq": seq + 3, "holdMs": 150 }),
    );
    endpoint
        .log
        .wait_until("ten handlers to end", PATIENCE, |lines| {
            lines.iter().filter(|l| l.starts_with("end Gate")).count() >= 10
        });
    cluster.node(victim).kill9();

    wait_ended(&endpoint.log, 60);
    let starts = events(&endpoint.log, "start ");
    let mut seen = BTreeSet::new();
    let reruns = starts.iter().filter(|e| !seen.insert(e.1)).count();
    let most = starts.iter().map(|e| e.2).max().unwrap_or_default();
    // Attempts the killed node was running may still finish in the endpoint while their next
    // attempts run; nothing else exceeds the limit.
    assert!(
        most <= 3 + u64::try_from(reruns).unwrap_or(u64::MAX),
        "{most} at once with {reruns} re-runs"
    );
    let admin_of = cluster.node(alive).admin();
    poll("the home gave every permit back", PATIENCE, || {
        let response = http_json(
            admin_of,
            "POST",
            "/query",
            &json!({ "query": "SELECT running, queued, granted FROM sys_queue WHERE name = 'gate'" }),
        )
        .ok()?;
        let rows = response.json()["rows"].as_array().cloned()?;
        let row = rows.first()?;
        (row["running"] == 0 && row["queued"] == 0 && row["granted"].as_u64() >= Some(60))
            .then_some(())
    });
}

#[test]
fn a_rate_limited_queue_resumes_after_a_kill_9_without_new_arrivals() {
    let (files, mut kernel, endpoint, _) =
        node_with_limit(json!({ "name": "slow", "service": "Gate", "rate": "10/s" }));
    send_many(
        files.ingress,
        "/Gate/work/send",
        40,
        |seq| json!({ "seq": seq, "holdMs": 5 }),
    );
    endpoint.log.wait_until("five starts", PATIENCE, |lines| {
        lines.iter().filter(|l| l.starts_with("start Gate")).count() >= 5
    });
    // Nothing arrives any more: only the new leader's drain and its wakes start the rest.
    kernel.kill9();
    kernel.restart();
    wait_ended(&endpoint.log, 40);
    let queue = sql_rows(
        &files,
        "SELECT queued, granted FROM sys_queue WHERE name = 'slow'",
    );
    assert_eq!(queue, [json!({ "queued": 0, "granted": 40 })]);
}
