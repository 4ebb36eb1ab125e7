//! Invocation control end to end: `PATCH /invocations/{id}/cancel|kill|purge|pause|resume` on the
//! admin API of the real binary, against handlers running in a real Node endpoint
//! (`tests/e2e/fixtures/control-services.mjs`, which notes what each handler observed in a
//! `Ledger` object the tests read through the ingress).

use holdfast_e2e::{
    Endpoint, NodeFiles, Response, http, http_get, http_json, terminate, wait_healthy,
};
use holdfast_types::state_version;
use serde_json::{Value, json};
use std::net::SocketAddr;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SERVICES: &str = "tests/e2e/fixtures/control-services.mjs";
/// Well-formed, but no invocation has it.
const UNKNOWN_ID: &str = "inv_00000000000000010000000000000000000000000000002a";

/// A node with the control fixture's services registered.
struct Node {
    files: NodeFiles,
    child: holdfast_e2e::Served,
    _endpoint: Endpoint,
}

impl Node {
    fn start() -> Self {
        let endpoint = Endpoint::start(SERVICES);
        let files = NodeFiles::new(4, "");
        let mut child = files.serve();
        wait_healthy(files.admin, &mut child);
        let registered = http_json(
            files.admin,
            "POST",
            "/deployments",
            &json!({"uri": endpoint.uri}),
        )
        .expect("register");
        assert_eq!(registered.status, 201, "{}", registered.body);
        Self {
            files,
            child,
            _endpoint: endpoint,
        }
    }

    fn ingress(&self) -> SocketAddr {
        self.files.ingress
    }

    /// `PATCH /invocations/{id}/{action}` (the action may carry a query).
    fn control(&self, id: &str, action: &str) -> Response {
        http(
            self.files.admin,
            "PATCH",
            &format!("/invocations/{id}/{action}"),
            &[],
            "",
        )
        .expect("PATCH")
    }

    /// Starts `path` as a one-way send and returns the invocation id.
    fn send(&self, path: &str, body: &Value) -> String {
        let accepted = post(self.ingress(), &format!("{path}/send"), &body.to_string());
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        accepted.json()["invocationId"]
            .as_str()
            .expect("invocation id")
            .to_string()
    }

    /// A caller waiting for the invocation's result on another thread.
    fn attach(&self, id: &str) -> JoinHandle<Response> {
        let (ingress, path) = (self.ingress(), format!("/restate/invocation/{id}/attach"));
        std::thread::spawn(move || http_get(ingress, &path).expect("attach"))
    }

    fn output(&self, id: &str) -> Response {
        http_get(self.ingress(), &format!("/restate/invocation/{id}/output")).expect("output")
    }

    /// The notes handlers wrote under `tag`.
    fn notes(&self, tag: &str) -> Vec<String> {
        let read = post(self.ingress(), &format!("/Ledger/{tag}/read"), "");
        assert_eq!(read.status, 200, "{}", read.body);
        serde_json::from_value(read.json()).expect("a list of notes")
    }

    /// Waits until the notes under `tag` satisfy `done`, and returns them.
    fn wait_notes(&self, tag: &str, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let notes = self.notes(tag);
            if done(&notes) {
                return notes;
            }
            assert!(Instant::now() < deadline, "no {what} in {notes:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(self) {
        terminate(self.child);
    }
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

fn has(note: &str) -> impl Fn(&[String]) -> bool + '_ {
    move |notes| notes.iter().any(|n| n == note)
}

fn compensated(notes: &[String]) -> Option<u32> {
    notes
        .iter()
        .find_map(|n| n.strip_prefix("compensated after ")?.parse().ok())
}

/// Asserts an empty success answer with `status`.
fn assert_done(response: &Response, status: u16) {
    assert_eq!(response.status, status, "{}", response.body);
    assert!(response.body.is_empty(), "{}", response.body);
}

/// Asserts an error answer with `status` and the JSON body `{code, message}`.
fn assert_error(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    let body = response.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// Asserts the result a caller got is the failure `code` with `message`.
fn assert_failed(response: &Response, code: u16, message: &str) {
    assert_eq!(response.status, code, "{}", response.body);
    assert_eq!(response.json()["message"], message, "{}", response.body);
}

#[test]
fn cancel_of_a_running_handler_reaches_it_at_its_next_await() {
    let node = Node::start();
    let id = node.send(
        "/Worker/steps",
        &json!({"tag": "c", "steps": 5, "delayMs": 1000}),
    );
    node.wait_notes("c", "start", has("started"));
    let caller = node.attach(&id);
    assert_done(&node.control(&id, "cancel"), 202);
    let answer = caller.join().expect("caller");
    assert_failed(&answer, 409, "cancelled");
    // The handler caught the cancellation mid-way and compensated before failing with it.
    let notes = node.wait_notes("c", "compensation", |n| compensated(n).is_some());
    assert!(compensated(&notes) < Some(5), "{notes:?}");
    assert!(
        !notes.iter().any(|n| n.starts_with("finished")),
        "{notes:?}"
    );
    assert_failed(&node.output(&id), 409, "cancelled");
    assert_error(&node.control(&id, "cancel"), 409, "invocation_completed");
    node.stop();
}

#[test]
fn cancel_propagates_to_the_callee_of_a_suspended_caller() {
    let node = Node::start();
    let id = node.send(
        "/Parent/delegate",
        &json!({"tag": "p", "steps": 5, "delayMs": 1000}),
    );
    // The callee runs; the parent, blocked on the call, suspends after 200 ms.
    node.wait_notes("p", "callee start", has("started"));
    std::thread::sleep(Duration::from_millis(500));
    assert_done(&node.control(&id, "cancel"), 202);
    assert_failed(&node.attach(&id).join().expect("caller"), 409, "cancelled");
    let notes = node.wait_notes("p", "both cancellations", |n| {
        has("parent cancelled")(n) && compensated(n).is_some()
    });
    assert!(compensated(&notes) < Some(5), "{notes:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let notes = node.notes("p");
    assert!(
        !notes.iter().any(|n| n.starts_with("finished")),
        "{notes:?}"
    );
    node.stop();
}

#[test]
fn cancel_of_a_suspended_sleep_resumes_the_handler_with_the_cancellation() {
    let node = Node::start();
    let id = node.send("/Worker/nap", &json!({"tag": "n"}));
    node.wait_notes("n", "nap", has("napping"));
    std::thread::sleep(Duration::from_millis(500));
    assert_done(&node.control(&id, "cancel"), 202);
    assert_failed(&node.attach(&id).join().expect("caller"), 409, "cancelled");
    node.wait_notes("n", "nap cancellation", has("nap cancelled"));
    node.stop();
}

#[test]
fn kill_stops_at_once_without_compensation_and_callers_get_an_error() {
    let node = Node::start();
    let id = node.send(
        "/Worker/steps",
        &json!({"tag": "k", "steps": 3, "delayMs": 1000}),
    );
    node.wait_notes("k", "start", has("started"));
    let caller = node.attach(&id);
    let asked = Instant::now();
    assert_done(&node.control(&id, "kill"), 200);
    let answer = caller.join().expect("caller");
    assert_failed(&answer, 409, "killed");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    // Long enough for every step to have finished had the handler not been stopped.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(node.notes("k"), vec!["started".to_string()]);
    assert_error(&node.control(&id, "kill"), 409, "invocation_completed");
    node.stop();
}

#[test]
fn kill_of_a_caller_kills_its_callee() {
    let node = Node::start();
    let id = node.send(
        "/Parent/delegate",
        &json!({"tag": "kp", "steps": 3, "delayMs": 1000}),
    );
    node.wait_notes("kp", "callee start", has("started"));
    assert_done(&node.control(&id, "kill"), 200);
    assert_failed(&node.attach(&id).join().expect("caller"), 409, "killed");
    std::thread::sleep(Duration::from_millis(3500));
    // Both started (their notes may arrive in either order); neither went further.
    let mut notes = node.notes("kp");
    notes.sort();
    assert_eq!(notes, vec!["parent started", "started"]);
    node.stop();
}

#[test]
fn purge_forgets_a_completed_invocation_and_is_refused_for_a_running_one() {
    let node = Node::start();
    let done = node.send("/Worker/steps", &json!({"tag": "u1", "steps": 1}));
    let result = node.attach(&done).join().expect("caller");
    assert_eq!(result.status, 200, "{}", result.body);
    assert_eq!(result.json(), json!(1));
    assert_done(&node.control(&done, "purge"), 200);
    let output = node.output(&done);
    assert_eq!(output.status, 404, "{}", output.body);
    assert_error(&node.control(&done, "purge"), 404, "invocation_not_found");

    let running = node.send(
        "/Worker/steps",
        &json!({"tag": "u2", "steps": 2, "delayMs": 700}),
    );
    node.wait_notes("u2", "start", has("started"));
    assert_error(
        &node.control(&running, "purge"),
        409,
        "invocation_not_completed",
    );
    // The refusal wrote nothing: the invocation runs to completion and can be purged then.
    let result = node.attach(&running).join().expect("caller");
    assert_eq!(result.json(), json!(2));
    assert_done(&node.control(&running, "purge"), 200);
    node.stop();
}

#[test]
fn pause_fences_the_attempt_and_resume_on_the_latest_deployment_completes_it() {
    let node = Node::start();
    let id = node.send(
        "/Worker/steps",
        &json!({"tag": "z", "steps": 3, "delayMs": 700}),
    );
    node.wait_notes("z", "start", has("started"));
    let caller = node.attach(&id);
    assert_done(&node.control(&id, "pause"), 202);
    assert_done(&node.control(&id, "pause"), 200);
    // Paused: long past the time the steps need, nothing finishes and the caller still waits.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(node.output(&id).status, 470);
    assert!(!caller.is_finished());
    assert!(
        !node.notes("z").iter().any(|n| n.starts_with("finished")),
        "{:?}",
        node.notes("z")
    );
    assert_done(&node.control(&id, "resume?deployment=latest"), 200);
    let answer = caller.join().expect("caller");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!(3));
    node.wait_notes("z", "finish", has("finished 3"));
    assert_error(&node.control(&id, "resume"), 409, "invocation_completed");
    assert_error(&node.control(&id, "pause"), 409, "invocation_completed");
    node.stop();
}

#[test]
fn malformed_ids_unknown_ids_and_unknown_actions_are_refused() {
    let node = Node::start();
    for action in ["cancel", "kill", "purge", "pause", "resume"] {
        assert_error(
            &node.control("inv_doesnotexist", action),
            400,
            "invalid_invocation_id",
        );
        assert_error(
            &node.control(UNKNOWN_ID, action),
            404,
            "invocation_not_found",
        );
    }
    assert_error(&node.control(UNKNOWN_ID, "explode"), 404, "not_found");
    let get = http_get(
        node.files.admin,
        &format!("/invocations/{UNKNOWN_ID}/cancel"),
    )
    .expect("GET");
    assert_eq!(get.status, 404, "{}", get.body);
    assert_error(
        &node.control(UNKNOWN_ID, "resume?deployment=newest"),
        400,
        "invalid_deployment",
    );
    node.stop();
}

#[test]
fn the_state_of_an_invocation_decides_which_requests_it_accepts() {
    let node = Node::start();
    // A holds Slot/s's lock; B waits in its inbox behind it.
    let holder = node.send("/Slot/s/hold", &json!(30_000));
    std::thread::sleep(Duration::from_millis(300));
    let queued = node.send("/Slot/s/hold", &json!(10));
    assert_error(
        &node.control(&queued, "pause"),
        409,
        "invocation_not_started",
    );
    assert_error(
        &node.control(&queued, "resume"),
        409,
        "invocation_not_started",
    );
    assert_error(
        &node.control(&queued, "purge"),
        409,
        "invocation_not_completed",
    );
    // Cancelling an inboxed invocation completes it at once.
    assert_done(&node.control(&queued, "cancel"), 202);
    assert_failed(&node.output(&queued), 409, "cancelled");

    // A running attempt keeps its deployment; resuming it without one changes nothing.
    assert_error(
        &node.control(&holder, "resume?deployment=latest"),
        409,
        "invocation_running",
    );
    assert_done(&node.control(&holder, "resume"), 200);
    assert_done(&node.control(&holder, "pause"), 202);
    let unknown_deployment = format!("resume?deployment=dp_{}", "0".repeat(22));
    assert_error(
        &node.control(&holder, &unknown_deployment),
        400,
        "deployment_not_found",
    );
    assert_error(
        &node.control(&holder, "resume?deployment=bogus"),
        400,
        "invalid_deployment",
    );
    // Still paused after the refused requests: kill ends it for its callers.
    assert_eq!(node.output(&holder).status, 470);
    assert_done(&node.control(&holder, "kill"), 200);
    assert_failed(&node.output(&holder), 409, "killed");
    for action in ["cancel", "kill", "pause", "resume"] {
        assert_error(&node.control(&holder, action), 409, "invocation_completed");
    }
    assert_done(&node.control(&holder, "purge"), 200);
    node.stop();
}

/// `POST /services/{service}/state`: the whole state of a key, replaced by an operator.
fn edit_state(node: &Node, service: &str, key: &str, state: &Value) -> Response {
    edit_state_at(node, service, key, state, Value::Null)
}

/// [`edit_state`] based on the state with `version` (`null`: forced).
fn edit_state_at(node: &Node, service: &str, key: &str, state: &Value, version: Value) -> Response {
    let new_state: serde_json::Map<String, Value> = state
        .as_object()
        .expect("an object of entries")
        .iter()
        .map(|(name, value)| (name.clone(), json!(value.to_string().into_bytes())))
        .collect();
    let body = json!({ "version": version, "object_key": key, "new_state": new_state });
    http_json(
        node.files.admin,
        "POST",
        &format!("/services/{service}/state"),
        &body,
    )
    .expect("POST state")
}

#[test]
fn operators_replace_an_objects_state_but_never_under_a_running_handler() {
    let node = Node::start();
    post(node.ingress(), "/Ledger/s1/note", "\"first\"");
    assert_eq!(node.notes("s1"), ["first"]);

    // Replaced whole, then read by the next handler.
    let edited = edit_state(&node, "Ledger", "s1", &json!({ "notes": ["edited"] }));
    assert_eq!((edited.status, edited.body.as_str()), (202, ""));
    assert_eq!(node.notes("s1"), ["edited"]);
    post(node.ingress(), "/Ledger/s1/note", "\"after\"");
    assert_eq!(node.notes("s1"), ["edited", "after"]);
    // An empty state clears the key.
    assert_eq!(edit_state(&node, "Ledger", "s1", &json!({})).status, 202);
    assert!(node.notes("s1").is_empty());

    // With a version, the edit applies only to the state that version was computed from.
    let empty = json!(state_version(Vec::<(&str, &[u8])>::new()));
    let edit = |notes: Value, version: &Value| {
        edit_state_at(
            &node,
            "Ledger",
            "s1",
            &json!({ "notes": notes }),
            version.clone(),
        )
    };
    assert_eq!(edit(json!(["v1"]), &empty).status, 202);
    assert_eq!(node.notes("s1"), ["v1"]);
    let stale = edit(json!(["v2"]), &empty);
    assert_error(&stale, 409, "state_version_mismatch");
    assert_eq!(node.notes("s1"), ["v1"]);
    let current = json!(state_version([("notes", &br#"["v1"]"#[..])]));
    assert_eq!(edit(json!(["v2"]), &current).status, 202);
    assert_eq!(node.notes("s1"), ["v2"]);

    // While a handler holds the key's lock the edit is refused, and nothing changes.
    let holding = node.send("/Slot/busy/hold", &json!(1500));
    std::thread::sleep(Duration::from_millis(300));
    let refused = edit_state(&node, "Slot", "busy", &json!({ "x": 1 }));
    assert_error(&refused, 409, "object_locked");
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains(&holding)),
        "{}",
        refused.body
    );
    assert_eq!(node.attach(&holding).join().expect("attach").status, 200);
    assert_eq!(
        edit_state(&node, "Slot", "busy", &json!({ "x": 1 })).status,
        202
    );

    // Bad targets are refused before anything is proposed.
    assert_error(
        &edit_state(&node, "Nope", "k", &json!({})),
        404,
        "service_not_found",
    );
    assert_error(
        &edit_state(&node, "Worker", "k", &json!({})),
        400,
        "service_has_no_state",
    );
    let malformed = http_json(
        node.files.admin,
        "POST",
        "/services/Ledger/state",
        &json!({ "object_key": "k", "new_state": { "n": "not bytes" } }),
    )
    .expect("POST state");
    assert_error(&malformed, 400, "invalid_body");
    node.stop();
}
