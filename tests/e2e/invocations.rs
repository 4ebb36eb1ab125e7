//! Durable invocations end to end: the real binary, real Node endpoints built with the SDK, real
//! HTTP through the ingress.

use holdfast_e2e::{
    Endpoint, NodeFiles, Response, Served, free_port, holdfast_bin, http, http_get, http_json,
    terminate, wait_healthy,
};
use serde_json::json;
use std::net::SocketAddr;

const EXAMPLES: &str = "examples/services.mjs";
const ANCHOR: &str = "sdk-ts/test/fixtures/anchor-services.mjs";

/// A node with `script`'s services registered.
fn node_with(script: &str) -> (NodeFiles, Served, Endpoint) {
    let endpoint = Endpoint::start(script);
    let files = NodeFiles::new(4, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let registered = http_json(
        files.admin,
        "POST",
        "/deployments",
        &json!({"uri": endpoint.uri}),
    )
    .expect("register");
    assert_eq!(registered.status, 201, "{}", registered.body);
    (files, node, endpoint)
}

fn post(ingress: SocketAddr, path: &str, body: &str) -> Response {
    http(
        ingress,
        "POST",
        path,
        &[("content-type", "application/json")],
        body,
    )
    .expect("POST")
}

#[test]
fn the_founding_hello_world_counts_per_name() {
    let (files, node, _endpoint) = node_with(EXAMPLES);
    for n in 1..=5 {
        let response = post(files.ingress, "/greeter/Restate/greet", "");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.json(),
            json!(format!("Hello Restate for the {n}-th time!"))
        );
        assert!(
            response
                .headers
                .to_lowercase()
                .contains("x-restate-id: inv_"),
            "{}",
            response.headers
        );
    }
    let other = post(files.ingress, "/greeter/Ada/greet", "");
    assert_eq!(other.json(), json!("Hello Ada for the 1-th time!"));
    terminate(node);
}

#[test]
fn a_session_reserves_a_ticket_through_a_durable_call() {
    let (files, node, _endpoint) = node_with(EXAMPLES);
    let alice = post(
        files.ingress,
        "/UserSession/alice/addTicket",
        "\"seat-12A\"",
    );
    assert_eq!(alice.status, 200, "{}", alice.body);
    assert_eq!(alice.json(), json!(true));
    let bob = post(files.ingress, "/UserSession/bob/addTicket", "\"seat-12A\"");
    assert_eq!(bob.json(), json!(false), "the ticket is taken");
    let cart = post(files.ingress, "/UserSession/alice/cart", "");
    assert_eq!(cart.json(), json!(["seat-12A"]));
    let holder = post(files.ingress, "/TicketService/seat-12A/holder", "");
    assert_eq!(holder.json(), json!("alice"));
    terminate(node);
}

#[test]
fn concurrent_exclusive_calls_on_one_key_are_serialized() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let ingress = files.ingress;
    let calls: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || post(ingress, "/Counter/hot/add", "1")))
        .collect();
    let mut seen: Vec<i64> = calls
        .into_iter()
        .map(|c| {
            let response = c.join().expect("client thread");
            assert_eq!(response.status, 200, "{}", response.body);
            response.json().as_i64().expect("a number")
        })
        .collect();
    seen.sort_unstable();
    // Strict serialization: every call saw a distinct count, 1..=200, and the state is exact.
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    let total = post(files.ingress, "/Counter/hot/get", "");
    assert_eq!(total.json(), json!(200));
    terminate(node);
}

#[test]
fn a_call_to_a_service_runs_on_the_callers_partition() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    for name in ["a", "b", "c", "d", "e", "f"] {
        let response = post(files.ingress, "/Chain/call", &format!("\"{name}\""));
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json(), json!(format!("Hello {name}")));
    }
    // The callers spread over the partitions by their random ids; each callee joined its caller's.
    let rows = http(
        files.admin,
        "POST",
        "/query",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        &json!({ "query": "SELECT id, partition_key, invoked_by_id FROM sys_invocation" })
            .to_string(),
    )
    .expect("query")
    .json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let partition_of = |id: &serde_json::Value| {
        rows.iter()
            .find(|row| &row["id"] == id)
            .map(|row| row["partition_key"].clone())
    };
    let callees: Vec<_> = rows
        .iter()
        .filter(|row| !row["invoked_by_id"].is_null())
        .collect();
    assert_eq!(callees.len(), 6, "{rows:?}");
    for callee in callees {
        assert!(!callee["partition_key"].is_null(), "{rows:?}");
        assert_eq!(
            Some(callee["partition_key"].clone()),
            partition_of(&callee["invoked_by_id"]),
            "{rows:?}"
        );
    }
    terminate(node);
}

#[test]
fn a_send_is_accepted_at_once_and_runs_to_completion() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let accepted = post(files.ingress, "/Counter/sent/add/send", "5");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let body = accepted.json();
    assert_eq!(body["status"], "Accepted");
    let id = body["invocationId"].as_str().expect("id").to_string();
    let attached =
        http_get(files.ingress, &format!("/restate/invocation/{id}/attach")).expect("attach");
    assert_eq!(attached.status, 200, "{}", attached.body);
    assert_eq!(attached.json(), json!(5));
    let output =
        http_get(files.ingress, &format!("/restate/invocation/{id}/output")).expect("output");
    assert_eq!(output.json(), json!(5));
    terminate(node);
}

#[test]
fn one_way_invocations_nobody_awaits_end_with_the_next_commit_and_all_complete() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let parked = || -> f64 {
        let page = http_get(files.admin, "/metrics").expect("metrics").body;
        page.lines()
            .filter_map(|line| line.strip_prefix("holdfast_log_parked_total "))
            .filter_map(|value| value.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(parked(), 0.0, "nothing parked before any invocation");
    // One client, one send after the other: each one's ending is proposed while the log is idle
    // or busy with the next acceptance, so it waits for a commit instead of making its own.
    let ids: Vec<String> = (0..40)
        .map(|i| {
            let accepted = post(files.ingress, "/Greeter/greet/send", &format!("\"n{i}\""));
            assert_eq!(accepted.status, 202, "{}", accepted.body);
            accepted.json()["invocationId"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    // Attached at once, the last one's waiter makes its ending go without waiting longer.
    for (i, id) in ids.iter().enumerate().rev() {
        let attached =
            http_get(files.ingress, &format!("/restate/invocation/{id}/attach")).expect("attach");
        assert_eq!(attached.status, 200, "{}", attached.body);
        assert_eq!(attached.json(), json!(format!("Hello n{i}")));
    }
    assert!(parked() > 0.0, "no ending was parked");
    terminate(node);
}

#[test]
fn an_idempotency_key_runs_the_handler_once() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "once"),
    ];
    let first = http(files.ingress, "POST", "/Counter/idem/add", &headers, "10").expect("POST");
    let second = http(files.ingress, "POST", "/Counter/idem/add", &headers, "10").expect("POST");
    assert_eq!(first.json(), json!(10));
    assert_eq!(
        second.json(),
        json!(10),
        "the first result, not a second run"
    );
    let id = |r: &Response| {
        r.headers.lines().find_map(|l| {
            l.to_lowercase()
                .strip_prefix("x-restate-id: ")
                .map(str::to_string)
        })
    };
    assert_eq!(id(&first), id(&second));
    let total = post(files.ingress, "/Counter/idem/get", "");
    assert_eq!(total.json(), json!(10));
    let by_key = http_get(
        files.ingress,
        "/restate/invocation/Counter/idem/add/once/output",
    )
    .expect("output");
    assert_eq!(by_key.json(), json!(10));
    terminate(node);
}

#[test]
fn terminal_errors_reach_the_caller_with_their_code() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let failed = post(files.ingress, "/Failer/fail", "\"boom\"");
    assert!(failed.status >= 400, "{} {}", failed.status, failed.body);
    let body = failed.json();
    assert_eq!(body["code"], failed.status);
    assert!(
        body["message"].as_str().unwrap_or("").contains("boom"),
        "{body}"
    );
    terminate(node);
}

#[test]
fn bad_requests_are_refused_before_anything_is_written() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    let unknown = post(files.ingress, "/Nope/greet", "");
    assert_eq!(unknown.status, 404);
    let no_key = post(files.ingress, "/Counter/add", "1");
    assert_eq!(no_key.status, 400);
    let not_json = post(files.ingress, "/Greeter/greet", "not json");
    assert_eq!(not_json.status, 400);
    for response in [&unknown, &no_key, &not_json] {
        assert!(response.json()["message"].is_string(), "{}", response.body);
    }
    terminate(node);
}

#[test]
fn a_clean_stop_purges_the_log_and_compacts_the_files_and_the_state_survives_it() {
    let (files, node, _endpoint) = node_with(ANCHOR);
    for n in 1..=300 {
        let response = post(files.ingress, "/Counter/disk/add", "1");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.json(), json!(n));
    }
    let length = |path: &std::path::Path| std::fs::metadata(path).expect("file").len();
    let raft_log = files.data_dir.join("raft-log.redb");
    let running = length(&raft_log);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("not compacted"), "{stderr}");
    // Every entry is purged behind a final checkpoint, and the file gives its pages back.
    let stopped = length(&raft_log);
    println!("raft log: {running} bytes running, {stopped} after a clean stop");
    assert!(
        stopped <= 128 << 10 && stopped < running,
        "raft log of {stopped} bytes after a clean stop ({running} running)"
    );

    // The state the purged entries built is all there after a restart.
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let response = post(files.ingress, "/Counter/disk/add", "1");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json(), json!(301));
    terminate(node);
}

/// `holdfast bench floor`, the benchmarks' yardstick, serves every workload through the real
/// endpoint and commits each durable point once: the accepted invocation, each acknowledged run,
/// a sleep and its firing, a call and its result, the output with the end.
#[test]
fn the_floor_serves_every_workload_and_commits_each_durable_point() {
    let endpoint = Endpoint::start(ANCHOR);
    for (log, extra) in [("redb", Some("--log-thread")), ("file", None)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let mut floor = std::process::Command::new(holdfast_bin())
            .args([
                "bench",
                "floor",
                "--log",
                log,
                "--listen",
                &listen.to_string(),
            ])
            .args(["--endpoint", &endpoint.uri])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn holdfast bench floor");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while http_get(listen, "/in-flight").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the floor never listened"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // (path, body, status, output, records committed)
        let cases = [
            ("/Greeter/greet", "\"x\"", 200, json!("Hello x"), 2),
            ("/Steps/run3", "{}", 200, json!(6), 5),
            ("/Chain/call", "\"y\"", 200, json!("Hello y"), 5),
            ("/Sleeper/nap", "10", 200, json!("slept 10"), 4),
            ("/Counter/k1/add", "1", 200, json!(1), 2),
            ("/Greeter/greet/send", "\"z\"", 202, json!({}), 2),
        ];
        for (path, body, status, output, _) in &cases {
            let response = post(listen, path, body);
            assert_eq!(response.status, *status, "{log} {path}: {}", response.body);
            assert_eq!(response.json(), *output, "{log} {path}");
        }
        let refused = post(listen, "/Greeter", "\"x\"");
        assert_eq!(refused.status, 404, "{}", refused.body);
        assert_eq!(refused.json()["code"], json!("not_found"));
        while http_get(listen, "/in-flight").expect("in-flight").body != "0" {
            assert!(
                std::time::Instant::now() < deadline,
                "the one-way send never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut stdout = floor.stdout.take().expect("stdout");
        let (status, stderr) = terminate(floor);
        assert!(status.success(), "{stderr}");
        let mut counters = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut counters).expect("read counters");
        let counters: serde_json::Value = serde_json::from_str(&counters).expect("JSON counters");
        assert_eq!(counters["failures"], json!({}), "{log}: {counters}");
        let records: u64 = cases.iter().map(|case| case.4).sum();
        assert_eq!(counters["records"], json!(records), "{log}: {counters}");
        let commits = counters["commits"].as_u64().expect("commits");
        assert!((1..=records).contains(&commits), "{log}: {counters}");
    }
}
