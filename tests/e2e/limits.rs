//! One message-size limit end to end (`[invocation] max_message_bytes`, 16 MiB less framing by
//! default): the real `holdfast` binary and a real Node endpoint
//! (`tests/e2e/fixtures/limits-services.mjs`).
//!
//! - A 20 MiB request body, or awakeable value, is refused with 413 and a JSON error.
//! - An object holding 20 values of 1 MiB (more than one frame) keeps serving reads and writes:
//!   its state above a quarter of the limit is not sent with `start` but read entry by entry.
//! - A handler writing a 17 MiB state value fails terminally, once, with a message naming the
//!   limit, instead of retrying until paused.

use holdfast_e2e::{Kernel, NodeFiles, ServiceProcess, free_port, http, register};
use serde_json::{Value, json};
use std::net::SocketAddr;

const FIXTURE: &str = "tests/e2e/fixtures/limits-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
const MIB: usize = 1 << 20;

fn call(ingress: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let response = http(ingress, "POST", path, &[JSON], &body.to_string())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let json = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

#[test]
fn bodies_above_the_limit_are_refused_with_413() {
    let files = NodeFiles::new(1, "");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let huge = format!("\"{}\"", "y".repeat(20 * MIB));
    for path in [
        "/Big/a/put",
        "/Big/a/put/send",
        "/restate/awakeables/awk_0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000/resolve",
    ] {
        let response = http(files.ingress, "POST", path, &[JSON], &huge).expect(path);
        assert_eq!(response.status, 413, "{path}: {}", response.body);
        let error = response.json();
        assert_eq!(error["code"], 413, "{path}: {error}");
        assert!(error["message"].is_string(), "{path}: {error}");
    }
    // Nothing reached the handler.
    assert_eq!(endpoint.log.count("attempt put"), 0);
}

#[test]
fn an_object_with_more_state_than_one_frame_keeps_serving() {
    let files = NodeFiles::new(2, "");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    for n in 0..20 {
        let (status, body) = call(
            files.ingress,
            "/Big/heavy/put",
            &json!({ "name": format!("v{n}"), "size": MIB }),
        );
        assert_eq!((status, body), (200, json!(MIB)), "put v{n}");
    }
    for n in [0, 7, 19] {
        let (status, body) = call(files.ingress, "/Big/heavy/size", &json!(format!("v{n}")));
        assert_eq!((status, body), (200, json!(MIB)), "size of v{n}");
    }
    let (status, body) = call(files.ingress, "/Big/heavy/count", &Value::Null);
    assert_eq!((status, body), (200, json!(20)));
    // Writing goes on too, with all 20 MiB already there.
    let (status, body) = call(
        files.ingress,
        "/Big/heavy/put",
        &json!({ "name": "v20", "size": 1000 }),
    );
    assert_eq!((status, body), (200, json!(1000)));
    let (status, body) = call(files.ingress, "/Big/heavy/count", &Value::Null);
    assert_eq!((status, body), (200, json!(21)));
}

#[test]
fn a_state_value_above_the_limit_fails_the_invocation_once_and_terminally() {
    let files = NodeFiles::new(1, "");
    let _kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(FIXTURE, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let (status, body) = call(
        files.ingress,
        "/Big/over/put",
        &json!({ "name": "huge", "size": 17 * MIB }),
    );
    assert_eq!(status, 413, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("max_message_bytes"),
        "the failure does not name the limit: {body}"
    );
    assert_eq!(
        endpoint.log.count("attempt put"),
        1,
        "{}",
        endpoint.log.text()
    );
    // The object still serves, without the value.
    let (status, body) = call(files.ingress, "/Big/over/size", &json!("huge"));
    assert_eq!((status, body), (200, json!(0)));
}
