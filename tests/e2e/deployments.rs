//! Registering service endpoints through the admin API: discovery against real Node endpoints
//! built with the SDK, durable registration through the metadata log, and the refusals.

use holdfast_e2e::{
    Endpoint, NodeFiles, http_get, http_json, http_request, terminate, wait_healthy,
};
use serde_json::json;

const ANCHOR: &str = "sdk-ts/test/fixtures/anchor-services.mjs";
const COUNTER_AS_SERVICE: &str = "tests/e2e/fixtures/counter-as-service.mjs";

fn register(files: &NodeFiles, uri: &str, force: bool) -> holdfast_e2e::Response {
    http_json(
        files.admin,
        "POST",
        "/deployments",
        &json!({"uri": uri, "force": force}),
    )
    .expect("POST /deployments")
}

#[test]
fn a_registered_endpoint_is_discovered_listed_and_survives_a_restart() {
    let endpoint = Endpoint::start(ANCHOR);
    let files = NodeFiles::new(2, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);

    // A dry run discovers and answers what registering would do, and writes nothing.
    let dry = |files: &NodeFiles| {
        let body = json!({"uri": endpoint.uri, "dry_run": true, "breaking": false});
        http_json(files.admin, "POST", "/deployments", &body).expect("POST /deployments")
    };
    let preview = dry(&files);
    assert_eq!(preview.status, 201, "{}", preview.body);
    assert!(
        preview.json()["services"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    let listed = http_get(files.admin, "/deployments").expect("list").json();
    assert_eq!(
        listed["deployments"],
        json!([]),
        "a dry run registered something"
    );

    let created = register(&files, &endpoint.uri, false);
    assert_eq!(created.status, 201, "{}", created.body);
    // Now a dry run says it exists already (200) with the real id.
    let again = dry(&files);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], created.json()["id"]);
    let listed = http_get(files.admin, "/deployments").expect("list").json();
    assert_eq!(listed["deployments"][0]["http_version"], "HTTP/2.0");
    // The SDK the endpoint announced in its manifest, as Restate's admin API shows it.
    let from_the_sdk = |view: &serde_json::Value| {
        view["sdk_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("holdfast-sdk-typescript/"))
    };
    assert!(from_the_sdk(&listed["deployments"][0]), "{listed}");
    let body = created.json();
    let id = body["id"].as_str().expect("deployment id").to_string();
    assert!(id.starts_with("dp_"), "{id}");
    assert!(
        created.headers.contains(&format!("deployments/{id}")),
        "{}",
        created.headers
    );
    let names: Vec<&str> = body["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for expected in ["Greeter", "Counter", "Signup"] {
        assert!(names.contains(&expected), "{expected} missing in {names:?}");
    }

    // Registering the same unchanged endpoint again is answered with the existing deployment.
    let again = register(&files, &endpoint.uri, false);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], id);

    let counter = http_get(files.admin, "/services/Counter").expect("GET service");
    assert_eq!(counter.status, 200);
    assert_eq!(counter.json()["ty"], "VirtualObject");
    assert_eq!(counter.json()["deployment_id"], id);
    let missing = http_get(files.admin, "/services/Nope").expect("GET service");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");

    let (status, stderr) = terminate(node);
    assert!(status.success(), "{stderr}");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let listed = http_get(files.admin, "/deployments")
        .expect("GET deployments")
        .json();
    assert_eq!(listed["deployments"][0]["id"], id, "{listed}");
    assert!(from_the_sdk(&listed["deployments"][0]), "{listed}");
    let detail = http_get(files.admin, &format!("/deployments/{id}")).expect("GET deployment");
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(from_the_sdk(&detail.json()), "{}", detail.body);
    terminate(node);
}

#[test]
fn changing_a_live_service_type_is_refused_unless_forced() {
    let anchor = Endpoint::start(ANCHOR);
    let conflicting = Endpoint::start(COUNTER_AS_SERVICE);
    let files = NodeFiles::new(1, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    assert_eq!(register(&files, &anchor.uri, false).status, 201);

    let refused = register(&files, &conflicting.uri, false);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("Counter"),
        "{}",
        refused.body
    );
    let counter = http_get(files.admin, "/services/Counter")
        .expect("GET")
        .json();
    assert_eq!(
        counter["ty"], "VirtualObject",
        "a refused registration changes nothing"
    );

    let forced = register(&files, &conflicting.uri, true);
    assert_eq!(forced.status, 201, "{}", forced.body);
    let forced_id = forced.json()["id"].as_str().expect("id").to_string();
    let counter = http_get(files.admin, "/services/Counter")
        .expect("GET")
        .json();
    assert_eq!(counter["ty"], "Service");

    // It now serves Counter's newest revision: removing it needs force, then Counter falls back.
    let path = format!("/deployments/{forced_id}");
    assert_eq!(
        http_request(files.admin, "DELETE", &path)
            .expect("DELETE")
            .status,
        409
    );
    let removed =
        http_request(files.admin, "DELETE", &format!("{path}?force=true")).expect("DELETE");
    assert_eq!(removed.status, 202, "{}", removed.body);
    let counter = http_get(files.admin, "/services/Counter")
        .expect("GET")
        .json();
    assert_eq!(counter["ty"], "VirtualObject", "{counter}");
    terminate(node);
}

#[test]
fn bad_registrations_are_refused_with_json_errors() {
    let files = NodeFiles::new(1, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let cases = [
        (json!({"uri": "http://127.0.0.1:1"}), "discovery_failed"),
        (json!({"uri": "ftp://127.0.0.1:9080"}), "invalid_uri"),
        (json!({"url": "http://127.0.0.1:9080"}), "invalid_body"),
    ];
    for (body, code) in cases {
        let response = http_json(files.admin, "POST", "/deployments", &body).expect("POST");
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert_eq!(response.json()["code"], code, "{body}");
    }
    let listed = http_get(files.admin, "/deployments").expect("GET").json();
    assert_eq!(listed["deployments"], json!([]), "nothing was registered");
    let bad_id = http_get(files.admin, "/deployments/not-an-id").expect("GET");
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    terminate(node);
}

/// Clients that read `GET /version` address the API under `/v4`: the same routes and answers.
#[test]
fn the_api_is_served_under_its_version_prefix_too() {
    let endpoint = Endpoint::start(ANCHOR);
    let files = NodeFiles::new(1, "");
    let mut node = files.serve();
    wait_healthy(files.admin, &mut node);
    let version = http_get(files.admin, "/version").expect("GET /version");
    assert_eq!(version.status, 200, "{}", version.body);
    let version = version.json();
    assert_eq!(version["max_admin_api_version"], 4);
    assert_eq!(
        version["ingress_endpoint"],
        format!("http://{}/", files.ingress)
    );
    let body = json!({"uri": endpoint.uri});
    let created = http_json(files.admin, "POST", "/v4/deployments", &body).expect("POST");
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("dp_1") && id.len() == 26, "{id}");
    let plain = http_get(files.admin, "/services").expect("GET").json();
    let prefixed = http_get(files.admin, "/v4/services").expect("GET").json();
    assert_eq!(plain, prefixed);
    let described = http_get(files.admin, &format!("/v4/deployments/{id}")).expect("GET");
    assert_eq!(described.status, 200, "{}", described.body);
    assert_eq!(
        http_get(files.admin, "/v4/health").expect("GET").status,
        200
    );
    terminate(node);
}
