//! The admin subcommands of the `holdfast` binary end to end: `deployments`, `services`,
//! `invocations` (list, describe, the five actions by id and in bulk), `state`, `sql`,
//! `cluster`, `schedules` and `limits`, run against a real kernel with the durable-time
//! fixture's services (`tests/e2e/fixtures/timer-services.mjs`), their `--json` output checked
//! against what the kernel holds and their tables for the expected rows.

use holdfast_e2e::{
    Kernel, NodeFiles, ServiceProcess, free_port, holdfast_bin, http, http_json, poll,
};
use holdfast_types::state_version;
use serde_json::{Value, json};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TIMERS: &str = "tests/e2e/fixtures/timer-services.mjs";
const CONTROL: &str = "tests/e2e/fixtures/control-services.mjs";
const PATIENCE: Duration = Duration::from_secs(30);
/// Well-formed, but no invocation has it.
const UNKNOWN_ID: &str = "inv_00000000000000010000000000000000000000000000002a";
/// An hour-long nap: the invocation suspends and stays.
const NAP: &str = r#"{"ms": 3600000}"#;

/// A kernel on 4 partitions and the timer fixture's endpoint (not yet registered).
struct Node {
    files: NodeFiles,
    _kernel: Kernel,
    endpoint: ServiceProcess,
}

impl Node {
    fn start() -> Self {
        let files = NodeFiles::new(4, "");
        let kernel = Kernel::start(&files, "warn");
        let endpoint = ServiceProcess::start(TIMERS, free_port(), &[]);
        Self {
            files,
            _kernel: kernel,
            endpoint,
        }
    }

    /// `holdfast <args> --admin-url http://…` with stdin closed (not a terminal) and wide
    /// tables.
    fn cli(&self, args: &[&str]) -> Output {
        cli_with(args, &[("HOLDFAST_ADMIN_URL", &self.admin_url())])
    }

    fn admin_url(&self) -> String {
        format!("http://{}", self.files.admin)
    }

    /// The command's stdout; it must succeed.
    fn text(&self, args: &[&str]) -> String {
        succeeded(args, &self.cli(args))
    }

    /// The command's `--json` output; it must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let args = [args, &["--json"]].concat();
        let text = self.text(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// The command's one-line error; it must fail with status 1.
    fn error(&self, args: &[&str]) -> String {
        failed(args, &self.cli(args))
    }

    /// Starts `path` through the ingress as a one-way send; its invocation id.
    fn send(&self, path: &str, body: &str) -> String {
        self.post(&format!("{path}/send"), body, 202)
    }

    /// Calls `path` through the ingress and waits for the result; its invocation id.
    fn call(&self, path: &str, body: &str) -> String {
        self.post(path, body, 200)
    }

    /// `POST path` to the ingress, answered `status`; the invocation id it names.
    fn post(&self, path: &str, body: &str, status: u16) -> String {
        let json = [("content-type", "application/json")];
        let answered = http(self.files.ingress, "POST", path, &json, body).expect("ingress");
        assert_eq!(answered.status, status, "{path}: {}", answered.body);
        answered.invocation_id()
    }

    /// The `invocations list` rows for `filters`.
    fn list(&self, filters: &[&str]) -> Vec<Value> {
        let args = [&["invocations", "list", "--limit", "1000"], filters].concat();
        self.json(&args).as_array().cloned().expect("an array")
    }
}

fn cli_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(holdfast_bin())
        .args(args)
        .env_remove("HOLDFAST_ADMIN_URL")
        .env_remove("HOLDFAST_ADMIN_TOKEN")
        .env("HOLDFAST_LOG", "warn")
        .env("COLUMNS", "400")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run holdfast")
}

fn succeeded(args: &[&str], output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn failed(args: &[&str], output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.starts_with("holdfast: "), "{stderr}");
    stderr
}

fn strings<'a>(values: impl IntoIterator<Item = &'a Value>, field: &str) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|v| v[field].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_admin_command_shows_what_the_kernel_has() {
    let node = Node::start();
    let uri = node.endpoint.uri.clone();

    // Deployments.
    let registered = node.json(&["deployments", "register", &uri]);
    let deployment = registered["id"].as_str().expect("deployment id").to_owned();
    assert!(
        strings(registered["services"].as_array().expect("services"), "name")
            .contains(&"Sleeper".to_owned()),
        "{registered}"
    );
    let again = node.text(&["deployments", "register", &uri]);
    assert!(
        again.starts_with(&format!("already registered {deployment}")),
        "{again}"
    );
    let listed = node.json(&["deployments", "list"]);
    assert_eq!(
        listed["deployments"][0]["id"],
        deployment.as_str(),
        "{listed}"
    );
    let table = node.text(&["deployments", "list"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&deployment) && table.contains(&uri) && table.contains("Notes@1"),
        "{table}"
    );
    let described = node.json(&["deployments", "describe", &deployment]);
    assert_eq!(described["uri"], uri.as_str(), "{described}");
    let text = node.text(&["deployments", "describe", &deployment]);
    assert!(
        text.contains("Waiter") && text.contains("VirtualObject"),
        "{text}"
    );

    // Services.
    let services = node.json(&["services", "list"]);
    let names = strings(services["services"].as_array().expect("services"), "name");
    for name in ["Notes", "Sleeper", "Signup", "Waiter"] {
        assert!(names.contains(&name.to_owned()), "{names:?}");
    }
    let table = node.text(&["services", "list"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(table.contains("add, later, list"), "{table}");
    let notes = node.json(&["services", "describe", "Notes"]);
    assert_eq!(notes["ty"], "VirtualObject");
    assert_eq!(
        strings(notes["handlers"].as_array().expect("handlers"), "name"),
        ["add", "later", "list"]
    );
    let text = node.text(&["services", "describe", "Notes"]);
    for expected in [
        "idempotency retention",
        "retry policy",
        "HANDLER",
        "Exclusive",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let changed = node.json(&[
        "services",
        "config",
        "Notes",
        "--idempotency-retention",
        "2h",
        "--journal-retention",
        "30m",
    ]);
    assert_eq!(changed["idempotency_retention"], "2h", "{changed}");
    assert_eq!(changed["journal_retention"], "30m", "{changed}");
    let reread = node.json(&["services", "describe", "Notes"]);
    assert_eq!(reread["idempotency_retention"], "2h", "{reread}");
    let text = node.text(&["services", "config", "Notes", "--abort-timeout", "2m"]);
    assert!(
        text.contains("abort timeout") && text.contains("2m"),
        "{text}"
    );
    let nothing = node.error(&["services", "config", "Notes"]);
    assert!(nothing.contains("nothing to change"), "{nothing}");
    let bad = node.error(&["services", "config", "Notes", "--abort-timeout", "soon"]);
    assert!(
        bad.contains("abort_timeout") && bad.contains("soon"),
        "{bad}"
    );

    // Invocations: a completed one with state, then a sleeping one.
    let added = node.call("/Notes/n1/add", r#""first""#);
    let sleeping = node.send("/Sleeper/nap", NAP);
    poll("the sleeper to suspend", PATIENCE, || {
        let rows = node.list(&["--handler", "nap", "--status", "suspended"]);
        (rows.len() == 1).then_some(())
    });
    let all = node.list(&[]);
    assert_eq!(
        strings(&all, "id"),
        [sleeping.as_str(), added.as_str()],
        "newest first"
    );
    assert_eq!(all[1]["status"], "completed");
    assert_eq!(all[1]["target"], "Notes/n1/add");
    assert_eq!(
        strings(&node.list(&["--service", "Notes"]), "id"),
        [added.as_str()]
    );
    assert_eq!(
        strings(&node.list(&["--key", "n1"]), "id"),
        [added.as_str()]
    );
    assert_eq!(
        strings(&node.list(&["--status", "completed"]), "id"),
        [added.as_str()]
    );
    assert_eq!(node.list(&["--newer-than", "1h"]).len(), 2);
    assert!(node.list(&["--older-than", "1h"]).is_empty());
    let one = node.json(&["invocations", "list", "--limit", "1"]);
    assert_eq!(
        strings(one.as_array().expect("rows"), "id"),
        [sleeping.as_str()]
    );
    // A filter value is a literal, whatever it holds.
    assert!(node.list(&["--service", "x' OR '1'='1"]).is_empty());
    let table = node.text(&["invocations", "list"]);
    assert!(table.starts_with("ID "), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(&sleeping))
        .expect("sleeper row");
    assert!(
        row.contains("Sleeper/nap") && row.contains("suspended"),
        "{table}"
    );
    let narrow = cli_with(
        &["invocations", "list", "--admin-url", &node.admin_url()],
        &[("COLUMNS", "100")],
    );
    let narrow = succeeded(&[], &narrow);
    assert!(narrow.lines().all(|l| l.chars().count() <= 100), "{narrow}");
    assert!(narrow.contains('…'), "{narrow}");

    // The journal of a known handler: Input, the `started` run, the sleep.
    let described = node.json(&["invocations", "describe", &sleeping]);
    assert_eq!(described["invocation"]["target"], "Sleeper/nap");
    assert_eq!(described["invocation"]["status"], "suspended");
    let journal = described["journal"].as_array().expect("journal");
    assert_eq!(strings(journal, "entry_type"), ["Input", "Run", "Sleep"]);
    assert_eq!(journal[1]["name"], "started");
    assert_eq!(journal[1]["completed"], true);
    assert_eq!(journal[2]["completed"], false);
    // Every entry the handler wrote carries the time it was appended, in order.
    let times = strings(&journal[1..], "appended_at");
    assert_eq!(times.len(), 2, "{journal:?}");
    assert!(
        described["invocation"]["created_at"].as_str() <= Some(times[0].as_str())
            && times[0] <= times[1],
        "{described}"
    );
    let text = node.text(&["invocations", "describe", &sleeping]);
    for expected in [
        "target",
        "Sleeper/nap",
        "journal (3 entries)",
        "started",
        "until ",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let done = node.json(&["invocations", "describe", &added]);
    assert_eq!(done["invocation"]["completion_result"], "success");
    assert_eq!(
        strings(done["journal"].as_array().expect("journal"), "entry_type"),
        ["Input", "GetState", "Run", "SetState", "Output"]
    );
    // Entries that complete show their result; the others none.
    assert_eq!(
        done["journal"]
            .as_array()
            .expect("journal")
            .iter()
            .map(|e| e["completion_result"].clone())
            .collect::<Vec<_>>(),
        [
            Value::Null,
            json!("success"),
            json!("success"),
            Value::Null,
            Value::Null
        ],
        "{done}"
    );

    // State.
    let state = node.json(&["state", "get", "Notes", "n1"]);
    assert_eq!(state["entries"][0]["key"], "notes", "{state}");
    assert_eq!(state["entries"][0]["value"][0]["note"], "first", "{state}");
    let text = node.text(&["state", "get", "Notes", "n1"]);
    assert!(
        text.contains("notes") && text.contains(r#""note":"first""#),
        "{text}"
    );
    let empty = node.text(&["state", "get", "Notes", "nobody"]);
    assert_eq!(empty, "no state for Notes/nobody\n");

    // SQL and the cluster.
    let rows = node.json(&[
        "sql",
        "SELECT id, status FROM sys_invocation ORDER BY created_at",
    ]);
    assert_eq!(
        rows,
        json!([{"id": added, "status": "completed"}, {"id": sleeping, "status": "suspended"}])
    );
    let table = node.text(&["sql", "SELECT count(*) AS n FROM sys_invocation"]);
    assert!(table.contains(" n \n") || table.contains(" n\n"), "{table}");
    let cluster = node.json(&["cluster", "status"]);
    assert_eq!(cluster["nodes"][0]["id"], 1, "{cluster}");
    let text = node.text(&["cluster", "status"]);
    assert!(text.starts_with("cluster "), "{text}");

    // The five actions by id.
    let paused = node.text(&["invocations", "pause", &sleeping]);
    assert_eq!(paused, format!("paused {sleeping}\n"));
    poll("the pause", PATIENCE, || {
        (node.list(&["--status", "paused"]).len() == 1).then_some(())
    });
    let again = node.text(&["invocations", "pause", &sleeping]);
    assert_eq!(again, format!("{sleeping} was already paused\n"));
    let resumed = node.json(&["invocations", "resume", &sleeping, "--deployment", "latest"]);
    assert_eq!(
        resumed,
        json!({"id": sleeping, "action": "resume", "status": 200})
    );
    let killed = node.text(&["invocations", "kill", &sleeping]);
    assert_eq!(killed, format!("killed {sleeping}\n"));
    poll("the kill", PATIENCE, || {
        (node.list(&["--status", "completed"]).len() == 2).then_some(())
    });
    let refused = node.error(&["invocations", "cancel", &sleeping]);
    assert!(refused.contains("already completed"), "{refused}");
    assert_eq!(
        node.text(&["invocations", "purge", &sleeping]),
        format!("purged {sleeping}\n")
    );

    // Errors: one line, status 1.
    let gone = node.error(&["invocations", "describe", &sleeping]);
    assert!(
        gone.contains(&format!("no invocation {sleeping}")),
        "{gone}"
    );
    let unknown = node.error(&["invocations", "describe", UNKNOWN_ID]);
    assert!(unknown.contains("no invocation"), "{unknown}");
    let malformed = node.error(&["invocations", "describe", "inv_x' OR 1=1"]);
    assert!(malformed.contains("is not an invocation id"), "{malformed}");
    let unknown = node.error(&["invocations", "kill", UNKNOWN_ID]);
    assert!(unknown.contains("invocation not found"), "{unknown}");
    let both = node.error(&["invocations", "kill", UNKNOWN_ID, "--service", "Notes"]);
    assert!(both.contains("not both"), "{both}");
    let neither = node.error(&["invocations", "kill"]);
    assert!(
        neither.contains("give an invocation id, or filters"),
        "{neither}"
    );
    for args in [
        &["services", "describe", "Nope"][..],
        &["services", "config", "Nope", "--public", "false"],
        &["state", "get", "Nope", "k"],
        &["state", "set", "Nope", "k", "n", "1"],
        &["state", "clear", "Nope", "k"],
    ] {
        let missing = node.error(args);
        assert!(
            missing.contains("Nope") && missing.contains("not found"),
            "{args:?}: {missing}"
        );
    }
    let malformed = node.error(&["sql", "SELEC 1"]);
    assert!(malformed.contains("SELEC"), "{malformed}");
    let missing = node.error(&["deployments", "describe", "dp_nope"]);
    assert!(missing.contains("dp_nope"), "{missing}");

    // A second deployment serving services of its own: removing it is refused while they use
    // it, unless forced.
    let other = ServiceProcess::start(CONTROL, free_port(), &[]);
    let second = node.json(&["deployments", "register", &other.uri]);
    let second = second["id"].as_str().expect("id").to_owned();
    let in_use = node.error(&["deployments", "remove", &second]);
    assert!(in_use.contains("Worker"), "{in_use}");
    let removed = node.json(&["deployments", "remove", &second, "--force"]);
    assert_eq!(removed, json!({"id": second, "removed": true}));
    let listed = node.json(&["deployments", "list"]);
    assert_eq!(
        strings(listed["deployments"].as_array().expect("list"), "id"),
        [deployment]
    );

    // Editing state (last: the reads through the ingress add invocations): `state set` keeps the other entries, and sends the version of the state
    // it read; the next handler reads what it set.
    let first = node.json(&["state", "set", "Notes", "n1", "tag", r#""blue""#]);
    assert_eq!(
        (&first["action"], &first["name"], &first["attempts"]),
        (&json!("set"), &json!("tag"), &json!(1)),
        "{first}"
    );
    let second = node.json(&[
        "state",
        "set",
        "Notes",
        "n1",
        "notes",
        r#"[{"note": "edited"}]"#,
    ]);
    assert_eq!(second["based_on"], first["version"], "{second}");
    let edited = [
        ("notes", &br#"[{"note":"edited"}]"#[..]),
        ("tag", &br#""blue""#[..]),
    ];
    assert_eq!(second["version"], state_version(edited), "{second}");
    let listed = http(node.files.ingress, "POST", "/Notes/n1/list", &[], "").expect("ingress");
    assert_eq!(
        listed.json(),
        json!([{"note": "edited"}]),
        "{}",
        listed.body
    );
    let state = node.json(&["state", "get", "Notes", "n1"]);
    let entries = state["entries"].as_array().expect("entries");
    assert_eq!(strings(entries, "key"), ["notes", "tag"], "{state}");
    assert_eq!(state["entries"][1]["value"], "blue", "{state}");

    // An edit based on a state that has changed since is refused (409) and changes nothing;
    // one based on the current state applies.
    let post_state = |version: &Value, new_state: Value| {
        let body = json!({ "version": version, "object_key": "n1", "new_state": new_state });
        http_json(node.files.admin, "POST", "/services/Notes/state", &body).expect("POST state")
    };
    let stale = state_version([("tag", &br#""blue""#[..])]);
    for old in [json!(stale), first["version"].clone()] {
        let refused = post_state(&old, json!({ "x": [49] }));
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(
            refused.json(),
            json!({
                "code": "state_version_mismatch",
                "message": format!(
                    "the state of Notes/n1 changed since version {} was read; read it again",
                    old.as_str().expect("a version")
                ),
            })
        );
        assert_eq!(node.json(&["state", "get", "Notes", "n1"]), state);
    }
    let same = json!({ "notes": br#"[{"note":"edited"}]"#, "tag": br#""blue""# });
    assert_eq!(post_state(&second["version"], same).status, 202);
    assert_eq!(node.json(&["state", "get", "Notes", "n1"]), state);

    // `state clear` removes one entry, or all of them.
    let cleared = node.text(&["state", "clear", "Notes", "n1", "tag"]);
    assert_eq!(cleared, "cleared tag of Notes/n1\n");
    let state = node.json(&["state", "get", "Notes", "n1"]);
    assert_eq!(
        strings(state["entries"].as_array().expect("entries"), "key"),
        ["notes"]
    );
    let cleared = node.json(&["state", "clear", "Notes", "n1"]);
    assert_eq!(cleared["action"], "clear_all", "{cleared}");
    assert_eq!(
        cleared["version"],
        state_version(Vec::<(&str, &[u8])>::new()),
        "{cleared}"
    );
    assert_eq!(
        node.text(&["state", "get", "Notes", "n1"]),
        "no state for Notes/n1\n"
    );
    let listed = http(node.files.ingress, "POST", "/Notes/n1/list", &[], "").expect("ingress");
    assert_eq!(listed.json(), json!([]), "{}", listed.body);
    let forced = node.json(&["state", "set", "Notes", "n1", "tag", "1", "--force"]);
    assert_eq!(forced["based_on"], Value::Null, "{forced}");
    let not_json = node.error(&["state", "set", "Notes", "n1", "tag", "blue"]);
    assert!(not_json.contains("not JSON"), "{not_json}");
}

#[test]
fn the_admin_api_is_found_by_url_address_or_configuration() {
    let node = Node::start();
    let url = node.admin_url();
    let admin = node.files.admin.to_string();
    let config = node.files.config.to_str().expect("utf-8").to_owned();
    let query = ["sql", "SELECT 1 AS one", "--json"];
    let one = |output: Output| succeeded(&query, &output).trim().to_owned();
    // --admin-url wins over --admin, and the environment's URL over --config.
    let unused = format!("127.0.0.1:{}", free_port());
    let flags = [&query[..], &["--admin-url", &url, "--admin", &unused]].concat();
    assert_eq!(one(cli_with(&flags, &[])), r#"[{"one":1}]"#);
    let flags = [&query[..], &["--config", "/nonexistent.toml"]].concat();
    assert_eq!(
        one(cli_with(&flags, &[("HOLDFAST_ADMIN_URL", &url)])),
        r#"[{"one":1}]"#
    );
    assert_eq!(
        one(cli_with(&[&query[..], &["--admin", &admin]].concat(), &[])),
        r#"[{"one":1}]"#
    );
    assert_eq!(
        one(cli_with(
            &[&query[..], &["--config", &config]].concat(),
            &[]
        )),
        r#"[{"one":1}]"#
    );

    // Nothing listening: a clear message naming the URL.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let args = ["services", "list", "--admin-url", &closed];
    let refused = failed(&args, &cli_with(&args, &[]));
    assert!(
        refused.contains(&format!(
            "cannot reach the admin API at {closed}: connection refused"
        )),
        "{refused}"
    );
    let args = ["services", "list", "--admin-url", "ftp://x"];
    let output = cli_with(&args, &[]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected http:// or https://"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bulk_cancel_applies_to_every_matching_invocation() {
    let node = Node::start();
    node.text(&["deployments", "register", &node.endpoint.uri]);
    let bystander = node.call("/Notes/n1/add", r#""keep""#);
    let naps: Vec<String> = (0..50).map(|_| node.send("/Sleeper/nap", NAP)).collect();
    let filter = ["--service", "Sleeper", "--handler", "nap"];

    // Without a terminal to ask on, --yes is required; nothing is cancelled.
    let args = [&["invocations", "cancel"], &filter[..]].concat();
    let refused = node.error(&args);
    assert!(
        refused.contains("cancel the 50 matching invocation(s)") && refused.contains("pass --yes"),
        "{refused}"
    );
    assert!(
        node.list(&[&filter[..], &["--status", "completed"]].concat())
            .is_empty(),
        "nothing cancelled yet"
    );

    let summary = node.json(&[&args[..], &["--yes"]].concat());
    assert_eq!(
        summary,
        json!({"action": "cancel", "matched": 50, "done": 50, "skipped": {}, "failed": []})
    );
    let cancelled = poll("all 50 to end cancelled", PATIENCE, || {
        let done = node.list(&[&filter[..], &["--status", "completed"]].concat());
        (done.len() == 50).then_some(done)
    });
    let mut ids = strings(&cancelled, "id");
    ids.sort();
    let mut expected = naps.clone();
    expected.sort();
    assert_eq!(ids, expected);
    for row in &cancelled {
        assert_eq!(row["completion_failure"], "[409] cancelled", "{row}");
    }
    let untouched = node.json(&["invocations", "describe", &bystander]);
    assert_eq!(untouched["invocation"]["completion_result"], "success");

    // Again: every match is already completed, so each is skipped with the API's reason.
    let text = node.text(&[&args[..], &["--yes"]].concat());
    assert_eq!(
        text,
        "cancelled 0 of 50; skipped 50 invocation_completed; failed 0\n"
    );
    // No match: nothing to ask.
    let none = node.json(&["invocations", "kill", "--service", "Tick"]);
    assert_eq!(none["matched"], 0, "{none}");
}

#[test]
fn the_admin_api_over_https_with_a_token() {
    let certs = tempfile::tempdir().expect("tempdir");
    let issued = Command::new(holdfast_bin())
        .args(["tls", "issue", "--dir"])
        .arg(certs.path())
        .args([
            "--name",
            "node",
            "--host",
            "127.0.0.1",
            "--host",
            "localhost",
        ])
        .output()
        .expect("holdfast tls issue");
    succeeded(&["tls", "issue"], &issued);
    let files = NodeFiles::new(2, "");
    let admin = format!(
        "[admin]\ntls_cert_file = {:?}\ntls_key_file = {:?}\nauth_tokens = [\"s3cret\"]\n",
        certs.path().join("node.pem"),
        certs.path().join("node-key.pem")
    );
    let text = std::fs::read_to_string(&files.config).expect("read config");
    std::fs::write(&files.config, text.replacen("[admin]\n", &admin, 1)).expect("write config");
    let _node = files.serve();
    let ca = certs.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let by_ip = format!("https://{}", files.admin);
    let by_name = format!("https://localhost:{}", files.admin.port());
    let args = ["services", "list", "--json", "--ca-file", ca];
    let run = |url: &str, token: &str| {
        let flags = [&args[..], &["--admin-url", url]].concat();
        cli_with(&flags, &[("HOLDFAST_ADMIN_TOKEN", token)])
    };
    poll("the admin API over HTTPS", PATIENCE, || {
        run(&by_ip, "s3cret").status.success().then_some(())
    });
    for url in [&by_ip, &by_name] {
        let listed = succeeded(&args, &run(url, "s3cret"));
        assert_eq!(listed, "{\"services\":[]}\n");
    }
    let refused = failed(&args, &run(&by_ip, ""));
    assert!(
        refused.contains("401") && refused.contains("needs a token"),
        "{refused}"
    );
    let refused = failed(&args, &run(&by_ip, "wrong"));
    assert!(refused.contains("the token is not accepted"), "{refused}");
}

#[test]
fn schedules_are_created_listed_paused_resumed_and_deleted() {
    let node = Node::start();
    node.text(&["deployments", "register", &node.endpoint.uri]);
    let created = node.json(&[
        "schedules",
        "create",
        "notes-daily",
        "--service",
        "Notes",
        "--handler",
        "add",
        "--key",
        "daily",
        "--input",
        r#""a note""#,
        "--cron",
        "0 6 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--catch-up",
        "latest",
    ]);
    assert_eq!(created["name"], "notes-daily", "{created}");
    assert_eq!(created["timezone"], "Asia/Tokyo");
    assert_eq!(created["catch_up"], "latest");
    // 06:00 in Tokyo is 21:00 UTC the day before.
    let next = created["next_fire_at"].as_str().unwrap_or_default();
    assert!(next.ends_with("T21:00:00.000Z"), "{next}");

    let table = node.text(&["schedules", "list"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("Notes/daily/add") && table.contains("0 6 * * * (Asia/Tokyo)"),
        "{table}"
    );
    let text = node.text(&["schedules", "describe", "notes-daily"]);
    for expected in ["next tick", "latest", "\"a note\"", "overlap"] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let paused = node.json(&["schedules", "pause", "notes-daily"]);
    assert_eq!(paused["paused"], true);
    assert!(paused.get("next_fire_at").is_none(), "{paused}");
    let resumed = node.json(&["schedules", "resume", "notes-daily"]);
    assert_eq!(resumed["paused"], false);

    let error = node.error(&[
        "schedules",
        "create",
        "bad",
        "--service",
        "Notes",
        "--handler",
        "add",
        "--key",
        "k",
        "--cron",
        "0 25 * * *",
    ]);
    assert!(error.contains("hour field `25`"), "{error}");
    let error = node.error(&["schedules", "describe", "nope"]);
    assert!(error.contains("schedule 'nope' not found"), "{error}");

    let deleted = node.text(&["schedules", "delete", "notes-daily"]);
    assert_eq!(deleted, "schedule notes-daily deleted\n");
    assert_eq!(node.text(&["schedules", "list"]), "no schedules\n");
}

#[test]
fn limits_are_created_listed_updated_and_deleted() {
    let node = Node::start();
    let created = node.json(&[
        "limits",
        "create",
        "notes-writes",
        "--service",
        "Notes",
        "--handler",
        "add",
        "--key-prefix",
        "daily",
        "--max-concurrency",
        "2",
        "--rate",
        "10/s",
        "--burst",
        "4",
    ]);
    assert_eq!(created["name"], "notes-writes", "{created}");
    assert_eq!(created["handler"], "add");
    assert_eq!(created["key_prefix"], "daily");
    assert_eq!(created["max_concurrency"], 2);
    assert_eq!(
        (&created["rate"], &created["burst"]),
        (&json!("10/s"), &json!(4))
    );

    let table = node.text(&["limits", "list"]);
    assert!(table.starts_with("NAME "), "{table}");
    for header in [
        "MAX CONCURRENCY",
        "RATE",
        "RUNNING",
        "QUEUED",
        "OLDEST WAIT",
    ] {
        assert!(table.contains(header), "{header}: {table}");
    }
    let row = table
        .lines()
        .find(|line| line.starts_with("notes-writes "))
        .unwrap_or_else(|| panic!("no row: {table}"));
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "notes-writes",
            "Notes",
            "add",
            "daily",
            "2",
            "10/s (burst 4)",
            "0",
            "0",
            "-"
        ],
        "{table}"
    );
    // `--json` carries the queue joined from sys_queue: nothing waits on a new limit.
    let listed = node.json(&["limits", "list"]);
    let queue = &listed["limits"][0]["queue"];
    assert_eq!(
        (&queue["running"], &queue["queued"]),
        (&json!(0), &json!(0)),
        "{listed}"
    );

    let updated = node.json(&[
        "limits",
        "update",
        "notes-writes",
        "--max-concurrency",
        "5",
        "--no-rate",
    ]);
    assert_eq!(updated["max_concurrency"], 5, "{updated}");
    assert!(
        updated.get("rate").is_none(),
        "the rate was cleared: {updated}"
    );
    assert_eq!(
        updated["handler"], "add",
        "untouched fields stay: {updated}"
    );
    let text = node.text(&["limits", "describe", "notes-writes"]);
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name}: {text}"))
            .to_owned()
    };
    assert_eq!(field("max concurrency"), "5", "{text}");
    assert_eq!(field("rate"), "-", "{text}");
    assert_eq!(field("running"), "0 of 5", "{text}");
    assert_eq!(field("queued"), "0", "{text}");

    let error = node.error(&[
        "limits",
        "create",
        "bad",
        "--service",
        "Notes",
        "--rate",
        "fast",
    ]);
    assert!(
        error.contains(r#"rate "fast""#) && error.contains("50/s"),
        "{error}"
    );
    let error = node.error(&["limits", "update", "notes-writes", "--no-max-concurrency"]);
    assert!(error.contains("max_concurrency, rate, or both"), "{error}");
    let error = node.error(&[
        "limits",
        "create",
        "notes-writes",
        "--service",
        "Notes",
        "--max-concurrency",
        "1",
    ]);
    assert!(error.contains("exists"), "{error}");
    let error = node.error(&["limits", "update", "nope", "--max-concurrency", "1"]);
    assert!(error.contains("limit 'nope' not found"), "{error}");

    let deleted = node.text(&["limits", "delete", "notes-writes"]);
    assert_eq!(deleted, "limit notes-writes deleted\n");
    assert_eq!(node.text(&["limits", "list"]), "no limits\n");
    let error = node.error(&["limits", "describe", "notes-writes"]);
    assert!(error.contains("limit 'notes-writes' not found"), "{error}");
}
