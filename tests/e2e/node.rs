//! A node as an operator meets it: it starts, answers `/health` and `/metrics`, stops cleanly on
//! SIGTERM, recovers on restart, and refuses a data dir it must not use.

use holdfast_e2e::{NodeFiles, http_get, terminate, wait_healthy};
use std::process::Command;

#[test]
fn health_reports_every_partition_led_by_this_node() {
    let files = NodeFiles::new(8, "");
    let mut node = files.serve();
    let health = wait_healthy(files.admin, &mut node);
    assert_eq!(health["node_id"], 1);
    let partitions = health["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 8);
    for (n, p) in partitions.iter().enumerate() {
        assert_eq!(p["id"], n);
        assert_eq!(p["leader"], 1);
        assert!(p["term"].as_u64().unwrap_or(0) >= 1, "{p}");
        assert!(p["applied_index"].as_u64().unwrap_or(0) >= 1, "{p}");
    }
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
}

#[test]
fn metrics_are_prometheus_text_per_partition() {
    let files = NodeFiles::new(2, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let metrics = http_get(files.admin, "/metrics").expect("GET /metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers.to_lowercase().contains("text/plain"));
    for line in [
        "# TYPE holdfast_partition_proposals_total counter",
        "holdfast_partition_applied_index{partition=\"1\"}",
        "# TYPE holdfast_partition_batch_size histogram",
        "holdfast_partition_commit_latency_seconds_bucket{partition=\"0\",le=\"+Inf\"}",
        "holdfast_partition_is_leader{partition=\"0\"} 1",
    ] {
        assert!(
            metrics.body.contains(line),
            "{line} missing in\n{}",
            metrics.body
        );
    }
    terminate(node);
}

#[test]
fn unknown_admin_path_is_a_json_404() {
    let files = NodeFiles::new(1, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let response = http_get(files.admin, "/no/such/thing").expect("GET");
    assert_eq!(response.status, 404);
    let body = response.json();
    assert_eq!(body["code"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("/no/such/thing")
    );
    terminate(node);
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_resumes_the_log() {
    let files = NodeFiles::new(4, "");
    let mut node = files.serve();
    let before = wait_healthy(files.admin, &mut node);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");

    let mut node = files.serve();
    let after = wait_healthy(files.admin, &mut node);
    for (b, a) in before["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(after["partitions"].as_array().into_iter().flatten())
    {
        assert_eq!(a["leader"], 1);
        assert!(a["term"].as_u64() >= b["term"].as_u64(), "{b} -> {a}");
        assert!(
            a["applied_index"].as_u64() >= b["applied_index"].as_u64(),
            "{b} -> {a}"
        );
    }
    terminate(node);
}

#[test]
fn a_data_dir_created_with_another_partition_count_is_refused() {
    let files = NodeFiles::new(4, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    terminate(node);
    let output = Command::new(holdfast_e2e::holdfast_bin())
        .args(["serve", "--config"])
        .arg(&files.config)
        .env("HOLDFAST__CLUSTER__PARTITIONS", "8")
        .output()
        .expect("run holdfast");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("created with 4 partitions"), "{stderr}");
    assert!(stderr.contains("cluster.partitions"), "{stderr}");
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let files = NodeFiles::new(1, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let output = files.run(&["dump"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another holdfast process"),
        "{stderr}"
    );
    terminate(node);
}

#[test]
fn an_admin_port_in_use_fails_the_start_naming_the_key() {
    let files = NodeFiles::new(1, "");
    let _taken = std::net::TcpListener::bind(files.admin).expect("occupy admin port");
    let output = files.run(&["serve"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("admin.bind_address"), "{stderr}");
}

#[test]
fn a_peer_port_in_use_fails_the_start_naming_the_key_without_a_panic() {
    let files = NodeFiles::new(1, "");
    let config = std::fs::read_to_string(&files.config).expect("read config");
    let peer = config
        .lines()
        .find_map(|line| line.strip_prefix("address = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the node's peer address");
    let _taken = std::net::TcpListener::bind(peer).expect("occupy the peer port");
    let output = files.run(&["serve"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for peers on {peer}"))
            && stderr.contains("cluster.nodes"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Said once, not repeated as its own cause.
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn serve_without_a_config_file_runs_on_the_embedded_default() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let [admin, ingress, sql] = holdfast_e2e::free_ports::<3>();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    // Only the listeners move (so the test can run beside a kernel on the default ports).
    let mut node = Command::new(holdfast_e2e::holdfast_bin())
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("HOLDFAST_DATA_DIR")
        .env("HOLDFAST__ADMIN__BIND_ADDRESS", admin.to_string())
        .env(
            "HOLDFAST__INGRESS__BIND_ADDRESS",
            format!("127.0.0.1:{ingress}"),
        )
        .env("HOLDFAST__SQL__BIND_ADDRESS", format!("127.0.0.1:{sql}"))
        .env("HOLDFAST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn holdfast serve");
    let health = wait_healthy(admin, &mut node);
    assert_eq!(health["partitions"].as_array().map(Vec::len), Some(8));
    assert!(cwd.path().join("holdfast-data/node.json").exists());
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
}
