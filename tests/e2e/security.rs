//! A node locked down as docs/security.md describes: bearer tokens on the admin API and the
//! ingress (`/health` stays open), CORS only for listed origins, registration only inside the
//! allowlist, and a data dir nobody else can read.

use std::time::Duration;

use holdfast_e2e::{
    NodeFiles, Response, ServiceProcess, free_port, http, poll, terminate, wait_healthy,
};

const FIXTURE: &str = "tests/e2e/fixtures/counter-as-service.mjs";
const ADMIN_TOKENS: &str = r#"auth_tokens = ["admin-old", "admin-new"]"#;
const INGRESS_TOKENS: &str = r#"auth_tokens = ["ingress-token"]"#;

/// A single-node config with `admin` and `ingress` lines added to those tables.
fn files(admin: &str, ingress: &str) -> NodeFiles {
    let files = NodeFiles::new(2, "");
    let text = std::fs::read_to_string(&files.config).expect("read config");
    let text = text
        .replacen("[admin]\n", &format!("[admin]\n{admin}\n"), 1)
        .replacen("[ingress]\n", &format!("[ingress]\n{ingress}\n"), 1);
    std::fs::write(&files.config, text).expect("write config");
    files
}

/// `{"code": "unauthorized", …}` with `WWW-Authenticate: Bearer`.
fn assert_unauthorized(response: &Response, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.body);
    assert_eq!(
        response.header("www-authenticate").as_deref(),
        Some("Bearer"),
        "{what}"
    );
    let body = response.json();
    assert_eq!(body["code"], "unauthorized", "{what}");
    assert!(body["message"].is_string(), "{what}: {body}");
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn tokens_guard_admin_and_ingress_and_health_stays_open() {
    let files = files(ADMIN_TOKENS, INGRESS_TOKENS);
    let mut node = files.serve();
    // /health answers without a token: wait_healthy sends none.
    wait_healthy(files.admin, &mut node);
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);

    for (headers, what) in [
        (vec![], "no token"),
        (vec![("authorization", bearer("wrong"))], "a wrong token"),
        (
            vec![("authorization", bearer("ingress-token"))],
            "the ingress token",
        ),
        (vec![("authorization", "admin-old".to_owned())], "no scheme"),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in ["/deployments", "/metrics", "/cluster"] {
            let response = http(files.admin, "GET", path, &headers, "").expect("admin");
            assert_unauthorized(&response, &format!("admin {path} with {what}"));
        }
        let body = serde_json::json!({ "uri": endpoint.uri }).to_string();
        let mut post = headers.clone();
        post.push(("content-type", "application/json"));
        let response = http(files.admin, "POST", "/deployments", &post, &body).expect("register");
        assert_unauthorized(&response, &format!("registration with {what}"));
    }
    // Nothing was registered by the refused attempts.
    let admin_new = bearer("admin-new");
    let listed = http(
        files.admin,
        "GET",
        "/deployments",
        &[("authorization", &admin_new)],
        "",
    )
    .expect("list");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["deployments"], serde_json::json!([]));

    // Both admin tokens are accepted at once (rotation).
    let admin_old = bearer("admin-old");
    let body = serde_json::json!({ "uri": endpoint.uri }).to_string();
    let registered = http(
        files.admin,
        "POST",
        "/deployments",
        &[
            ("authorization", &admin_old),
            ("content-type", "application/json"),
        ],
        &body,
    )
    .expect("register");
    assert_eq!(registered.status, 201, "{}", registered.body);
    let health = http(files.admin, "GET", "/health", &[], "").expect("health");
    assert_eq!(health.status, 200);

    // The ingress: 401 without its token or with the admin's, 200 with it.
    let ingress_token = bearer("ingress-token");
    for (token, what) in [
        (None, "no token"),
        (Some(admin_new.as_str()), "the admin token"),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(token) = token {
            headers.push(("authorization", token));
        }
        let response = http(files.ingress, "POST", "/Counter/add", &headers, "2").expect("call");
        assert_unauthorized(&response, &format!("ingress call with {what}"));
    }
    let called = http(
        files.ingress,
        "POST",
        "/Counter/add",
        &[
            ("content-type", "application/json"),
            ("authorization", &ingress_token),
        ],
        "2",
    )
    .expect("call");
    assert_eq!(called.status, 200, "{}", called.body);
    assert_eq!(called.body, "2");
    let health = http(files.ingress, "GET", "/restate/health", &[], "").expect("health");
    assert_eq!(health.status, 200, "{}", health.body);

    // The CLI sends the token from the environment.
    let refused = files.run(&["sql", "SELECT count(*) AS n FROM sys_deployment"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let output = std::process::Command::new(holdfast_e2e::holdfast_bin())
        .args([
            "sql",
            "SELECT count(*) AS n FROM sys_deployment",
            "--config",
        ])
        .arg(&files.config)
        .env("HOLDFAST_ADMIN_TOKEN", "admin-new")
        .env("HOLDFAST_LOG", "warn")
        .output()
        .expect("holdfast sql");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = files.run(&["cluster", "status", "--token", "admin-old"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
}

#[test]
fn cors_headers_only_for_allowed_origins() {
    let files = files("", r#"cors_allowed_origins = ["http://app.example"]"#);
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let preflight = |origin: &str| {
        http(
            files.ingress,
            "OPTIONS",
            "/Counter/add",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            "",
        )
        .expect("preflight")
    };
    let allowed = preflight("http://app.example");
    assert_eq!(allowed.status, 204, "{}", allowed.headers);
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("http://app.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-methods").as_deref(),
        Some("POST")
    );
    let hostile = preflight("http://evil.example");
    assert_ne!(hostile.status, 204);
    assert_eq!(hostile.header("access-control-allow-origin"), None);
    assert_eq!(hostile.header("access-control-allow-credentials"), None);
    assert_eq!(hostile.header("access-control-allow-methods"), None);
    let call = |origin: &str| {
        http(
            files.ingress,
            "POST",
            "/Nobody/here",
            &[("origin", origin), ("content-type", "application/json")],
            "1",
        )
        .expect("call")
    };
    let hostile = call("http://evil.example");
    assert_eq!(hostile.status, 404);
    assert_eq!(hostile.header("access-control-allow-origin"), None);
    assert_eq!(hostile.header("access-control-allow-credentials"), None);
    let friendly = call("http://app.example");
    assert_eq!(
        friendly.header("access-control-allow-origin").as_deref(),
        Some("http://app.example")
    );
    terminate(node);
}

#[test]
fn registration_outside_the_allowlist_is_refused_and_writes_nothing() {
    let files = files(
        r#"deployment_allowlist = ["10.0.0.0/8", "services.internal"]"#,
        "",
    );
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    for uri in [
        endpoint.uri.clone(),
        "http://169.254.169.254/latest/".to_owned(),
        "http://localhost:9080".to_owned(),
    ] {
        let body = serde_json::json!({ "uri": uri }).to_string();
        let response = http(
            files.admin,
            "POST",
            "/deployments",
            &[("content-type", "application/json")],
            &body,
        )
        .expect("register");
        assert_eq!(response.status, 403, "{uri}: {}", response.body);
        assert_eq!(response.json()["code"], "deployment_not_allowed", "{uri}");
    }
    let listed = http(files.admin, "GET", "/deployments", &[], "").expect("list");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["deployments"], serde_json::json!([]));
    terminate(node);
}

#[test]
fn the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let files = files("", "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&files.data_dir), 0o700);
    assert_eq!(mode(&files.data_dir.join("node.json")), 0o600);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_rewritten_token_file_rotates_tokens_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("admin.tokens");
    std::fs::write(&tokens, "# current\nfirst-token\n").expect("write tokens");
    let line = format!("auth_token_file = {:?}", tokens.display().to_string());
    let files = files(&line, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let status = |token: &str| {
        let header = bearer(token);
        http(
            files.admin,
            "GET",
            "/deployments",
            &[("authorization", &header)],
            "",
        )
        .expect("admin")
        .status
    };
    assert_eq!(status("first-token"), 200);
    assert_eq!(status("second-token"), 401);
    // Rotation: the new token joins, then the old one leaves; no restart in between.
    std::fs::write(&tokens, "first-token\nsecond-token\n").expect("write tokens");
    poll("the second token", Duration::from_secs(10), || {
        (status("second-token") == 200).then_some(())
    });
    assert_eq!(status("first-token"), 200);
    std::fs::write(&tokens, "second-token\n").expect("write tokens");
    poll(
        "the first token to be revoked",
        Duration::from_secs(10),
        || (status("first-token") == 401).then_some(()),
    );
    assert_eq!(status("second-token"), 200);
    drop(node);
}

#[test]
fn a_missing_token_file_stops_the_start_naming_key_and_file() {
    let files = files(r#"auth_token_file = "/nonexistent/admin.tokens""#, "");
    let output = files.run(&["serve", "--check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin.auth_token_file"), "{stderr}");
    assert!(stderr.contains("/nonexistent/admin.tokens"), "{stderr}");
}

#[test]
fn an_open_listener_beyond_loopback_is_warned_about() {
    let files = files("", "");
    let text = std::fs::read_to_string(&files.config).expect("read config");
    let loopback = format!("bind_address = \"{}\"", files.ingress);
    let everywhere = format!("bind_address = \"0.0.0.0:{}\"", files.ingress.port());
    std::fs::write(&files.config, text.replacen(&loopback, &everywhere, 1)).expect("write");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("ingress") && stderr.contains("without authentication"),
        "{stderr}"
    );
    assert!(!stderr.contains("the admin listener"), "{stderr}");
}
