//! External waiting end to end: awakeables completed from outside with curl-style HTTP and from
//! another handler, rejected, completed twice, and addressed with forged or malformed ids; the
//! signup workflow waiting on a durable promise resolved by a shared handler, run once per key,
//! attached to before and after it ends, surviving a kernel crash, and purged after its retention.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, http, http_get, poll, register,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TIMERS: &str = "tests/e2e/fixtures/timer-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
const PATIENCE: Duration = Duration::from_secs(60);

fn node() -> (NodeFiles, Kernel, ServiceProcess) {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(TIMERS, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    (files, kernel, endpoint)
}

fn post(ingress: SocketAddr, path: &str, body: &Value) -> Response {
    http(ingress, "POST", path, &[JSON], &body.to_string())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn ok(ingress: SocketAddr, path: &str, body: &Value) -> Value {
    let response = post(ingress, path, body);
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

fn get(ingress: SocketAddr, path: &str) -> Response {
    http_get(ingress, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Starts `Waiter/{key}/wait` and returns its invocation id and the awakeable id it published.
fn waiting(ingress: SocketAddr, key: &str) -> (String, String) {
    let sent = post(ingress, &format!("/Waiter/{key}/wait/send"), &json!(null));
    assert_eq!(sent.status, 202, "{}", sent.body);
    let awakeable = poll("the awakeable id", PATIENCE, || {
        let id = ok(ingress, &format!("/Waiter/{key}/id"), &json!(null));
        id.as_str().map(str::to_string)
    });
    (sent.invocation_id(), awakeable)
}

fn complete(
    ingress: SocketAddr,
    awakeable: &str,
    action: &str,
    content_type: &str,
    body: &str,
) -> Response {
    http(
        ingress,
        "POST",
        &format!("/restate/awakeables/{awakeable}/{action}"),
        &[("content-type", content_type)],
        body,
    )
    .expect("complete awakeable")
}

fn attach(ingress: SocketAddr, id: &str) -> Response {
    get(ingress, &format!("/restate/invocation/{id}/attach"))
}

#[test]
fn awakeables_are_completed_from_outside_and_from_handlers_once() {
    let (files, _kernel, _endpoint) = node();
    let ingress = files.ingress;

    // Resolved from outside, then resolved again: both accepted, the first value wins.
    let (id, awakeable) = waiting(ingress, "a1");
    assert!(
        awakeable.starts_with("awk_") && awakeable.len() == 92,
        "{awakeable}"
    );
    let first = complete(
        ingress,
        &awakeable,
        "resolve",
        "application/json",
        r#"{"ok":true}"#,
    );
    assert_eq!((first.status, first.body.as_str()), (202, ""));
    let again = complete(
        ingress,
        &awakeable,
        "resolve",
        "application/json",
        r#"{"ok":"again"}"#,
    );
    assert_eq!(again.status, 202, "{}", again.body);
    let done = attach(ingress, &id);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json(), json!(r#"resolved with {"ok":true}"#));
    // Its invocation completed: a late resolution or rejection (a webhook retrying) is accepted
    // and ignored, as Restate answers it, and changes nothing.
    let late = complete(ingress, &awakeable, "resolve", "application/json", "1");
    assert_eq!((late.status, late.body.as_str()), (202, ""));
    let late = complete(ingress, &awakeable, "reject", "text/plain", "too late");
    assert_eq!(late.status, 202, "{}", late.body);
    assert_eq!(
        attach(ingress, &id).json(),
        json!(r#"resolved with {"ok":true}"#)
    );
    // A forged token for that completed invocation is still unknown.
    let forged = format!("{}{}", &awakeable[..awakeable.len() - 32], "0".repeat(32));
    let refused = complete(ingress, &forged, "resolve", "application/json", "1");
    assert_eq!(refused.status, 404, "{}", refused.body);

    // Rejected from outside: the handler fails with the reason.
    let (id, awakeable) = waiting(ingress, "a2");
    let rejected = complete(ingress, &awakeable, "reject", "text/plain", "nope");
    assert_eq!(rejected.status, 202, "{}", rejected.body);
    let failed = attach(ingress, &id);
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(failed.json()["message"], "nope");

    // Resolved by another handler.
    let (id, awakeable) = waiting(ingress, "a3");
    assert_eq!(
        ok(
            ingress,
            "/Resolver/resolve",
            &json!({ "id": awakeable, "value": [1, 2] })
        ),
        json!("resolved")
    );
    assert_eq!(attach(ingress, &id).json(), json!("resolved with [1,2]"));

    // Rejected by another handler.
    let (id, awakeable) = waiting(ingress, "a4");
    ok(
        ingress,
        "/Resolver/reject",
        &json!({ "id": awakeable, "reason": "declined" }),
    );
    let failed = attach(ingress, &id);
    assert_eq!(failed.status, 500, "{}", failed.body);
    assert_eq!(failed.json()["message"], "declined");

    // A forged id (right invocation and entry, wrong token) and an unknown one are 404; a
    // malformed one is 400. None of them completes anything.
    let (id, awakeable) = waiting(ingress, "a5");
    let forged = format!("{}{}", &awakeable[..awakeable.len() - 32], "0".repeat(32));
    let refused = complete(ingress, &forged, "resolve", "application/json", "1");
    assert_eq!(refused.status, 404, "{}", refused.body);
    assert_eq!(refused.json()["message"], "awakeable not found");
    let unknown = format!("awk_{}", "1".repeat(88));
    assert_eq!(
        complete(ingress, &unknown, "resolve", "application/json", "1").status,
        404
    );
    let malformed = complete(ingress, "sign_1notreal", "resolve", "application/json", "1");
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert!(
        malformed.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad awakeable id"))
    );
    // A handler completing a forged id changes nothing either.
    ok(
        ingress,
        "/Resolver/resolve",
        &json!({ "id": forged, "value": "forged" }),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get(ingress, &format!("/restate/invocation/{id}/output")).status,
        470
    );
    complete(
        ingress,
        &awakeable,
        "resolve",
        "application/json",
        r#""real""#,
    );
    assert_eq!(
        attach(ingress, &id).json(),
        json!(r#"resolved with "real""#)
    );
}

#[test]
fn the_signup_workflow_runs_once_and_waits_on_its_promise() {
    let (files, mut kernel, endpoint) = node();
    let ingress = files.ingress;

    // Before any run.
    assert_eq!(
        get(ingress, "/restate/workflow/Signup/w1/output").status,
        404
    );
    // Submitted twice while it runs: one run, one id.
    let first = post(ingress, "/Signup/w1/run/send", &json!("a@b.c"));
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.json()["status"], "Accepted");
    let again = post(ingress, "/Signup/w1/run/send", &json!("other@b.c"));
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["status"], "PreviouslyAccepted");
    assert_eq!(again.invocation_id(), first.invocation_id());
    poll("the run to wait", PATIENCE, || {
        (ok(ingress, "/Signup/w1/status", &json!(null)) == json!("waiting")).then_some(())
    });
    let early = get(ingress, "/restate/workflow/Signup/w1/output");
    assert_eq!(early.status, 470, "{}", early.body);
    assert_eq!(ok(ingress, "/Signup/w1/peek", &json!(null)), Value::Null);

    // The promise survives a kernel crash, and attach waits across it.
    kernel.kill9();
    kernel.restart();
    let waiter = std::thread::spawn(move || attach_workflow(ingress, "w1"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ok(ingress, "/Signup/w1/confirm", &json!("yes")),
        json!("ok")
    );
    let attached = waiter.join().expect("attach");
    assert_eq!(attached.status, 200, "{}", attached.body);
    assert_eq!(attached.json(), json!("signed up a@b.c (confirmed: yes)"));
    assert_eq!(attached.invocation_id(), first.invocation_id());
    let output = get(ingress, "/restate/workflow/Signup/w1/output");
    assert_eq!(output.json(), json!("signed up a@b.c (confirmed: yes)"));
    assert_eq!(ok(ingress, "/Signup/w1/peek", &json!(null)), json!("yes"));
    assert_eq!(endpoint.log.count("signup done w1"), 1);

    // After completion: another run is refused, and so is a second completion of the promise.
    let rerun = post(ingress, "/Signup/w1/run", &json!("a@b.c"));
    assert_eq!(rerun.status, 409, "{}", rerun.body);
    assert_eq!(
        rerun.json()["message"],
        "the workflow method was already invoked"
    );
    assert_eq!(rerun.invocation_id(), first.invocation_id());
    assert_eq!(
        post(ingress, "/Signup/w1/run/send", &json!("x")).status,
        409
    );
    let twice = post(ingress, "/Signup/w1/confirm", &json!("again"));
    assert_eq!(twice.status, 409, "{}", twice.body);
    assert_eq!(twice.json()["message"], "promise was already completed");

    // A promise resolved before the run exists is kept for it.
    assert_eq!(
        ok(ingress, "/Signup/w2/confirm", &json!("early")),
        json!("ok")
    );
    assert_eq!(
        ok(ingress, "/Signup/w2/run", &json!("e@x")),
        json!("signed up e@x (confirmed: early)")
    );
}

fn attach_workflow(ingress: SocketAddr, key: &str) -> Response {
    get(ingress, &format!("/restate/workflow/Signup/{key}/attach"))
}

#[test]
fn a_finished_workflow_is_purged_after_its_retention() {
    let (files, _kernel, _endpoint) = node();
    let ingress = files.ingress;
    let patched = http(
        files.admin,
        "PATCH",
        "/services/Signup",
        &[JSON],
        r#"{"workflow_completion_retention": "2s"}"#,
    )
    .expect("patch service");
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["workflow_completion_retention"], "2s");
    let bad = http(
        files.admin,
        "PATCH",
        "/services/Signup",
        &[JSON],
        r#"{"workflow_completion_retention": "soon"}"#,
    )
    .expect("patch service");
    assert_eq!(bad.status, 400, "{}", bad.body);

    let run = post(ingress, "/Signup/w9/run/send", &json!("r@x"));
    assert_eq!(run.status, 202, "{}", run.body);
    poll("the run to wait", PATIENCE, || {
        (ok(ingress, "/Signup/w9/status", &json!(null)) == json!("waiting")).then_some(())
    });
    ok(ingress, "/Signup/w9/confirm", &json!("yes"));
    let done = attach_workflow(ingress, "w9");
    assert_eq!(done.status, 200, "{}", done.body);
    let finished = Instant::now();
    assert_eq!(
        ok(ingress, "/Signup/w9/status", &json!(null)),
        json!("done")
    );

    // Retained for 2 s, then the run, its state and its promise are gone.
    poll("the workflow to be purged", PATIENCE, || {
        (get(ingress, "/restate/workflow/Signup/w9/output").status == 404).then_some(())
    });
    assert!(
        finished.elapsed() >= Duration::from_millis(1500),
        "purged early"
    );
    assert_eq!(
        ok(ingress, "/Signup/w9/status", &json!(null)),
        json!("unknown")
    );
    assert_eq!(ok(ingress, "/Signup/w9/peek", &json!(null)), Value::Null);
    // The key is free again: a new run starts.
    let rerun = post(ingress, "/Signup/w9/run/send", &json!("r2@x"));
    assert_eq!(rerun.status, 202, "{}", rerun.body);
    assert_eq!(rerun.json()["status"], "Accepted");
}

#[test]
fn idempotent_results_are_purged_after_their_retention() {
    let (files, _kernel, _endpoint) = node();
    let ingress = files.ingress;
    let patched = http(
        files.admin,
        "PATCH",
        "/services/Notes",
        &[JSON],
        r#"{"idempotency_retention": "1s"}"#,
    )
    .expect("patch service");
    assert_eq!(patched.status, 200, "{}", patched.body);
    let add = || {
        http(
            ingress,
            "POST",
            "/Notes/r1/add",
            &[JSON, ("idempotency-key", "once")],
            r#""note""#,
        )
        .expect("add")
    };

    // Within the retention a repeat gets the stored result; the handler ran once.
    let first = add();
    assert_eq!(
        (first.status, first.json()),
        (200, json!(1)),
        "{}",
        first.body
    );
    let repeat = add();
    assert_eq!(repeat.json(), json!(1));
    assert_eq!(repeat.invocation_id(), first.invocation_id());
    let stored = "/restate/invocation/Notes/r1/add/once/output";
    assert_eq!(get(ingress, stored).status, 200);

    // Afterwards the result and the key are gone from the store: the key runs the handler again.
    poll("the idempotent result to be purged", PATIENCE, || {
        (get(ingress, stored).status == 404).then_some(())
    });
    let by_id = get(
        ingress,
        &format!("/restate/invocation/{}/output", first.invocation_id()),
    );
    assert_eq!(by_id.status, 404, "{}", by_id.body);
    assert_eq!(add().json(), json!(2));
}
