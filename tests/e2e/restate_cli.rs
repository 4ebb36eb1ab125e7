//! Restate's own CLI (`restate` 1.7.12 from npm, installed in `tests/e2e/restate-cli` by
//! `make test`) pointed at a real kernel with `RESTATE_ADMIN_URL`: deployments, services,
//! invocations, state and sql, each command's output checked against what the kernel holds.

use holdfast_e2e::{
    Kernel, NodeFiles, ServiceProcess, free_port, http, http_json, poll, repo_root,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CONTROL: &str = "tests/e2e/fixtures/control-services.mjs";
const PATIENCE: Duration = Duration::from_secs(30);

/// The `restate` binary npm installed; `make test` installs it.
fn restate_bin() -> PathBuf {
    let bin = repo_root()
        .join("tests/e2e/restate-cli/node_modules/@restatedev/restate-linux-x64/bin/restate");
    assert!(
        bin.exists(),
        "{} missing: install it first (`cd tests/e2e/restate-cli && npm ci`, done by `make test`)",
        bin.display()
    );
    bin
}

/// A kernel, the control fixture's endpoint and a home of the CLI's own.
struct Node {
    files: NodeFiles,
    _kernel: Kernel,
    endpoint: ServiceProcess,
    home: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        let files = NodeFiles::new(4, "");
        let kernel = Kernel::start(&files, "warn");
        let endpoint = ServiceProcess::start(CONTROL, free_port(), &[]);
        Self {
            files,
            _kernel: kernel,
            endpoint,
            home: tempfile::tempdir().expect("a home for the CLI"),
        }
    }

    /// `restate <args>` against this node, never asking (stdin closed, `--yes` where needed).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(restate_bin())
            .args(args)
            .env("HOME", self.home.path())
            .env("RESTATE_CLI_CONFIG_HOME", self.home.path())
            .env("RESTATE_ADMIN_URL", format!("http://{}", self.files.admin))
            .env(
                "RESTATE_INGRESS_URL",
                format!("http://{}", self.files.ingress),
            )
            .env("NO_COLOR", "1")
            .env("COLUMNS", "300")
            .env_remove("RESTATE_ENVIRONMENT")
            .stdin(Stdio::null())
            .output()
            .expect("run restate")
    }

    /// The command's stdout and stderr together; it must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "restate {args:?} failed: {text}");
        text
    }

    /// The command's output; it must fail.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "restate {args:?} succeeded: {text}"
        );
        assert!(!text.contains("panicked"), "restate {args:?}: {text}");
        text
    }

    /// Rows of `sql` from the admin API, as JSON.
    fn rows(&self, sql: &str) -> Vec<Value> {
        let answer = http_json(self.files.admin, "POST", "/query", &json!({ "query": sql }))
            .expect("POST /query");
        assert_eq!(answer.status, 200, "{sql}: {}", answer.body);
        answer.json()["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The status of invocation `id` in `sys_invocation`, if it is there.
    fn status(&self, id: &str) -> Option<String> {
        self.rows(&format!(
            "SELECT status FROM sys_invocation WHERE id = '{id}'"
        ))
        .first()
        .and_then(|row| row["status"].as_str().map(str::to_owned))
    }

    /// Posts `body` to `path` on the ingress, answered `status`; the invocation id it names.
    fn post(&self, path: &str, body: &str, status: u16) -> String {
        let json = [("content-type", "application/json")];
        let answered = http(self.files.ingress, "POST", path, &json, body).expect("ingress");
        assert_eq!(answered.status, status, "{path}: {}", answered.body);
        answered.invocation_id()
    }
}

#[test]
fn restates_cli_works_against_holdfast() {
    let node = Node::start();
    let uri = node.endpoint.uri.clone();

    // Deployments: registered through the CLI's dry run and confirmation, listed, described.
    let registered = node.ok(&["deployments", "register", "--yes", &uri]);
    assert!(registered.contains("Deployment ID"), "{registered}");
    let deployments = http_json(node.files.admin, "GET", "/deployments", &Value::Null)
        .expect("GET /deployments")
        .json();
    let deployment = deployments["deployments"][0]["id"]
        .as_str()
        .expect("a deployment")
        .to_owned();
    assert!(registered.contains(&deployment), "{registered}");
    let again = node.ok(&["deployments", "register", "--yes", &uri]);
    assert!(
        again.contains("already exists") && again.contains(&deployment),
        "{again}"
    );
    let listed = node.ok(&["deployments", "list"]);
    assert!(
        listed.contains(&deployment) && listed.contains(&uri) && listed.contains("Worker"),
        "{listed}"
    );
    let described = node.ok(&["deployments", "describe", &deployment]);
    for expected in [deployment.as_str(), uri.as_str(), "Ledger", "nap", "steps"] {
        assert!(described.contains(expected), "{expected}: {described}");
    }

    // Services.
    let services = node.ok(&["services", "list"]);
    for expected in ["Ledger", "Worker", "Parent", "Slot", "virtual object"] {
        assert!(services.contains(expected), "{expected}: {services}");
    }
    let worker = node.ok(&["services", "describe", "Worker"]);
    // The CLI prints the serving deployment's "SDK Version".
    for expected in [
        "Worker",
        "nap",
        "steps",
        &deployment,
        "holdfast-sdk-typescript/",
    ] {
        assert!(worker.contains(expected), "{expected}: {worker}");
    }
    let unknown = node.fails(&["services", "describe", "Nope"]);
    assert!(unknown.contains("Nope"), "{unknown}");

    // Invocations: a handler that suspends on a long sleep, one holding an object's lock and
    // one queued behind it, and completed ones.
    let tag = "cli";
    let nap = node.post("/Worker/nap/send", &json!({ "tag": tag }).to_string(), 202);
    let holder = node.post("/Slot/k/hold/send", "600000", 202);
    let queued = node.post("/Slot/k/hold/send", "1", 202);
    node.post(&format!("/Ledger/{tag}/note"), "\"hello\"", 200);
    poll("the nap to suspend", PATIENCE, || {
        (node.status(&nap).as_deref() == Some("suspended")).then_some(())
    });
    poll("the hold to run", PATIENCE, || {
        (node.status(&holder).as_deref() == Some("running")).then_some(())
    });
    assert_eq!(node.status(&queued).as_deref(), Some("pending"));

    let status = node.ok(&["services", "status"]);
    for expected in [
        "Summary",
        "Worker",
        "nap",
        "Slot",
        "hold",
        "Active Keys",
        &holder,
    ] {
        assert!(status.contains(expected), "{expected}: {status}");
    }

    let listed = node.ok(&["invocations", "list"]);
    for id in [&nap, &holder, &queued] {
        assert!(listed.contains(id.as_str()), "{id}: {listed}");
    }
    let suspended = node.ok(&["invocations", "list", "--status", "suspended"]);
    assert!(suspended.contains(&nap), "{suspended}");
    assert!(!suspended.contains(&holder), "{suspended}");
    let pending = node.ok(&["invocations", "list", "--status", "pending"]);
    assert!(
        pending.contains(&queued) && !pending.contains(&nap),
        "{pending}"
    );

    let described = node.ok(&["invocations", "describe", &nap]);
    for expected in [
        "Worker/nap",
        "suspended",
        "Send Ledger/cli/note",
        "[PENDING] #2 Sleep until",
    ] {
        assert!(described.contains(expected), "{expected}: {described}");
    }
    let missing = node.fails(&[
        "invocations",
        "describe",
        "inv_1000000000000000000000000000000001",
    ]);
    assert!(missing.contains("not found"), "{missing}");

    // Cancel the nap: it runs its compensation and completes with a failure.
    let cancelled = node.ok(&["invocations", "cancel", "--yes", &nap]);
    assert!(cancelled.contains("Cancelled 1"), "{cancelled}");
    poll("the cancelled nap to complete", PATIENCE, || {
        (node.status(&nap).as_deref() == Some("completed")).then_some(())
    });
    let failed = node.rows(&format!(
        "SELECT completion_result FROM sys_invocation WHERE id = '{nap}'"
    ));
    assert_eq!(failed[0]["completion_result"], "failure", "{failed:?}");

    // Kill every hold on the object: the running one and the queued one.
    let killed = node.ok(&["invocations", "kill", "--yes", "Slot/k/hold"]);
    assert!(killed.contains("Killed 2"), "{killed}");
    for id in [&holder, &queued] {
        poll("the killed hold to complete", PATIENCE, || {
            (node.status(id).as_deref() == Some("completed")).then_some(())
        });
    }

    // Purge the cancelled nap: it is gone.
    let purged = node.ok(&["invocations", "purge", "--yes", &nap]);
    assert!(purged.contains("Purged 1"), "{purged}");
    poll("the purged nap to disappear", PATIENCE, || {
        node.status(&nap).is_none().then_some(())
    });
    let nothing = node.fails(&["invocations", "cancel", "--yes", &nap]);
    assert!(nothing.contains("No invocations found"), "{nothing}");

    // State: read, then cleared with the version the CLI computes from what it read.
    poll("the ledger to note the cancellation", PATIENCE, || {
        let state = node.ok(&["state", "get", "Ledger", tag]);
        state.contains("nap cancelled").then_some(())
    });
    let state = node.ok(&["state", "get", "Ledger", tag]);
    assert!(
        state.contains("notes") && state.contains("hello") && state.contains("napping"),
        "{state}"
    );
    let cleared = node.ok(&["state", "clear", "--yes", &format!("Ledger/{tag}")]);
    assert!(cleared.contains("Ledger/cli"), "{cleared}");
    poll("the ledger's state to be cleared", PATIENCE, || {
        node.rows(&format!(
            "SELECT key FROM state WHERE service_name = 'Ledger' AND service_key = '{tag}'"
        ))
        .is_empty()
        .then_some(())
    });
    let gone = node.fails(&["state", "clear", "--yes", &format!("Ledger/{tag}")]);
    assert!(gone.contains("No state found"), "{gone}");

    // SQL through the CLI, which reads the answer as an Arrow stream.
    let counted = node.ok(&[
        "sql",
        "SELECT target_handler_name AS handler, count(*) AS n FROM sys_invocation \
         WHERE target_service_name = 'Slot' GROUP BY target_handler_name",
    ]);
    assert!(
        counted.contains("HANDLER") && counted.contains("hold") && counted.contains('2'),
        "{counted}"
    );
    let json = node.ok(&[
        "sql",
        "--json",
        "SELECT id, status FROM sys_invocation WHERE target_service_name = 'Slot' ORDER BY id",
    ]);
    let start = json.find('[').expect("a JSON array");
    let end = json.rfind(']').expect("a JSON array");
    let rows: Vec<Value> = serde_json::from_str(&json[start..=end]).expect("JSON rows");
    let mut ids: Vec<_> = rows
        .iter()
        .map(|row| row["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![holder.clone(), queued.clone()];
    expected.sort();
    assert_eq!(ids, expected, "{json}");
    assert!(
        rows.iter().all(|row| row["status"] == "completed"),
        "{json}"
    );
    let bad = node.fails(&["sql", "SELECT nope FROM sys_invocation"]);
    assert!(bad.contains("nope"), "{bad}");
}
