//! SQL introspection end to end: a real kernel holding invocations in several states (completed,
//! suspended on a sleep and on an awakeable, scheduled for later) and object state, queried
//! through the admin API's `POST /query`, `holdfast sql` and psql on the PostgreSQL-wire port.

use holdfast_e2e::{
    Kernel, NodeFiles, Response, ServiceProcess, free_port, holdfast_bin, http, poll, register,
};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const TIMERS: &str = "tests/e2e/fixtures/timer-services.mjs";
const JSON: (&str, &str) = ("content-type", "application/json");
const PATIENCE: Duration = Duration::from_secs(60);

struct Node {
    files: NodeFiles,
    _kernel: Kernel,
    _endpoint: ServiceProcess,
    /// A completed `Notes/n1/add`.
    completed: String,
    /// A `Sleeper/nap` suspended in an hour-long sleep.
    sleeping: String,
    /// A `Notes/later/add` scheduled an hour from now.
    scheduled: String,
}

fn post(address: SocketAddr, path: &str, body: &Value) -> Response {
    http(
        address,
        "POST",
        path,
        &[JSON, ("accept", "application/json")],
        &body.to_string(),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A kernel on 4 partitions with invocations in several states.
fn node() -> Node {
    let files = NodeFiles::new(4, "");
    let kernel = Kernel::start(&files, "warn");
    let endpoint = ServiceProcess::start(TIMERS, free_port(), &[]);
    register(files.admin, &endpoint.uri);
    let ingress = files.ingress;
    let added = post(ingress, "/Notes/n1/add", &json!("first"));
    assert_eq!(added.status, 200, "{}", added.body);
    post(ingress, "/Notes/n2/add", &json!("second"));
    let sleeping = post(ingress, "/Sleeper/nap/send", &json!({ "ms": 3_600_000 }));
    let scheduled = post(ingress, "/Notes/later/add/send?delay=1h", &json!("later"));
    let node = Node {
        completed: added.invocation_id(),
        sleeping: sleeping.invocation_id(),
        scheduled: scheduled.invocation_id(),
        files,
        _kernel: kernel,
        _endpoint: endpoint,
    };
    let sleeping = node.sleeping.clone();
    poll("the sleeper to suspend", PATIENCE, || {
        let rows = rows(
            &node,
            &format!("SELECT status FROM sys_invocation WHERE id = '{sleeping}'"),
        );
        (rows.first()?["status"] == "suspended").then_some(())
    });
    node
}

/// `POST /query` answering 200; its rows.
fn rows(node: &Node, query: &str) -> Vec<Value> {
    let response = post(node.files.admin, "/query", &json!({ "query": query }));
    assert_eq!(response.status, 200, "{query}: {}", response.body);
    response.json()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_admin_api_answers_sql_over_live_partition_stores() {
    let node = node();

    // The founding post's two queries, verbatim.
    let status = rows(
        &node,
        "SELECT service, method, id, status, invoked_by_service, invoked_by_id FROM sys_status;",
    );
    let find = |id: &str| status.iter().find(|r| r["id"] == id).cloned();
    let completed = find(&node.completed).expect("the completed invocation");
    assert_eq!(completed["service"], "Notes");
    assert_eq!(completed["method"], "add");
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["invoked_by_service"], Value::Null);
    assert_eq!(
        find(&node.sleeping).expect("sleeper")["status"],
        "suspended"
    );
    assert_eq!(
        find(&node.scheduled).expect("scheduled")["status"],
        "scheduled"
    );
    let keys: Vec<&str> = completed
        .as_object()
        .expect("row")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6, "{keys:?}");

    let state = rows(
        &node,
        "SELECT service, service_key_utf8, key, value_utf8 FROM state;",
    );
    let n1 = state
        .iter()
        .find(|r| r["service"] == "Notes" && r["service_key_utf8"] == "n1")
        .expect("Notes/n1 state");
    assert_eq!(n1["key"], "notes");
    assert!(
        n1["value_utf8"]
            .as_str()
            .is_some_and(|v| v.contains("first")),
        "{n1}"
    );

    // A join of invocations with their journals.
    let joined = rows(
        &node,
        &format!(
            "SELECT i.id, j.index, j.entry_type, j.name FROM sys_invocation i \
             JOIN sys_journal j ON i.id = j.id WHERE i.id = '{}' ORDER BY j.index",
            node.sleeping
        ),
    );
    let types: Vec<&str> = joined
        .iter()
        .filter_map(|r| r["entry_type"].as_str())
        .collect();
    assert_eq!(types, ["Input", "Run", "Sleep"], "{joined:?}");

    // A point lookup by id reads only the partition that owns the id.
    let plan = rows(
        &node,
        &format!(
            "EXPLAIN SELECT * FROM sys_invocation WHERE id = '{}'",
            node.sleeping
        ),
    );
    let text = plan
        .iter()
        .filter_map(|r| r["plan"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("lookup=id"), "{text}");
    let scanned = text
        .split("partitions=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("scanned partitions in the plan");
    assert_eq!(scanned.split(',').count(), 1, "{text}");

    // Bad input is a 400 with a JSON error, and the next query works.
    for bad in [
        "SELEC 1",
        "SELECT * FROM no_such_table",
        "SELECT id + 1 FROM sys_invocation",
    ] {
        let response = post(node.files.admin, "/query", &json!({ "query": bad }));
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
        assert_eq!(response.json()["code"], "invalid_query", "{bad}");
    }
    let missing = post(node.files.admin, "/query", &json!({ "sql": "SELECT 1" }));
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert_eq!(rows(&node, "SELECT 1 AS one"), vec![json!({ "one": 1 })]);
}

#[test]
fn holdfast_sql_prints_an_aligned_table() {
    let node = node();
    let output = Command::new(holdfast_bin())
        .args(["sql", "--admin", &node.files.admin.to_string()])
        .arg("SELECT service_name, service_key, key FROM state WHERE service_name = 'Notes' ORDER BY service_key")
        .output()
        .expect("run holdfast sql");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("service_name") && lines[0].contains("service_key"),
        "{text}"
    );
    assert!(
        lines[1].starts_with('-') && lines[1].contains("-+-"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("n1") && l.contains("notes")),
        "{text}"
    );
    assert_eq!(lines.last().map(|l| l.trim()), Some("(2 rows)"), "{text}");

    let failed = Command::new(holdfast_bin())
        .args([
            "sql",
            "--admin",
            &node.files.admin.to_string(),
            "SELECT * FROM nope",
        ])
        .output()
        .expect("run holdfast sql");
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
}

/// Runs psql on `node` with one `-c` per command in one session, errors not stopping it;
/// returns stdout and stderr.
fn psql(node: &Node, commands: &[&str], extra: &[&str]) -> (String, String) {
    let (_, out, err) = holdfast_e2e::psql(node.files.sql, commands, extra);
    (out, err)
}

#[test]
fn psql_lists_describes_and_queries_the_tables() {
    let node = node();
    let (out, err) = psql(&node, &["\\dt"], &[]);
    for table in [
        "sys_invocation",
        "sys_journal",
        "state",
        "sys_inbox",
        "sys_keyed_service_status",
        "sys_idempotency",
        "sys_promise",
        "sys_schedule",
        "sys_schedule_run",
        "sys_service",
        "sys_deployment",
        "sys_cluster",
    ] {
        assert!(out.contains(table), "\\dt lacks {table}:\n{out}{err}");
    }
    let (out, err) = psql(&node, &["\\d sys_invocation"], &[]);
    assert!(
        out.contains("Table \"public.sys_invocation\""),
        "{out}{err}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" status ") && l.contains("text") && l.contains("not null")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" created_at ") && l.contains("timestamp")),
        "{out}"
    );

    // The founding post's queries, a join, then bad SQL, an unknown table and a type error, each
    // followed by a query on the same session that still works.
    let (out, err) = psql(
        &node,
        &[
            "SELECT service, method, id, status, invoked_by_service, invoked_by_id FROM sys_status;",
            "SELECT service, service_key_utf8, key, value_utf8 FROM state;",
            &format!(
                "SELECT i.status, count(j.index) AS entries FROM sys_invocation i JOIN sys_journal j \
                 ON i.id = j.id WHERE i.id = '{}' GROUP BY i.status",
                node.sleeping
            ),
            "SELEC 1",
            "SELECT 'after syntax error' AS ok",
            "SELECT * FROM no_such_table",
            "SELECT 'after unknown table' AS ok",
            "SELECT id + 1 FROM sys_invocation",
            "SELECT 'after type error' AS ok",
        ],
        &[],
    );
    assert!(
        out.contains(&node.completed) && out.contains("completed"),
        "{out}{err}"
    );
    assert!(
        out.contains("suspended") && out.contains("scheduled"),
        "{out}"
    );
    assert!(out.contains("invoked_by_service"), "{out}");
    assert!(out.contains("value_utf8") && out.contains("first"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("suspended") && l.contains('3')),
        "{out}"
    );
    for after in [
        "after syntax error",
        "after unknown table",
        "after type error",
    ] {
        assert!(out.contains(after), "{after} missing:\n{out}\n{err}");
    }
    assert_eq!(err.matches("ERROR:").count(), 3, "{err}");
}

#[test]
fn a_driver_runs_a_parameterized_prepared_statement() {
    let node = node();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = format!(
            "host=127.0.0.1 port={} user=operator dbname=holdfast connect_timeout=10",
            node.files.sql.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        let statement = client
            .prepare("SELECT id, status, target_service_name FROM sys_invocation WHERE id = $1")
            .await
            .expect("prepare");
        for (id, status) in [
            (&node.completed, "completed"),
            (&node.scheduled, "scheduled"),
        ] {
            let rows = client.query(&statement, &[id]).await.expect("query");
            assert_eq!(rows.len(), 1);
            let got: String = rows[0].get("status");
            let service: String = rows[0].get("target_service_name");
            assert_eq!((got.as_str(), service.as_str()), (status, "Notes"));
        }
        let by_key = client
            .query(
                "SELECT key FROM state WHERE service_name = $1 AND service_key = $2",
                &[&"Notes", &"n2"],
            )
            .await
            .expect("query by key");
        assert_eq!(by_key.len(), 1);
        let failed = client.query("SELECT * FROM no_such_table", &[]).await;
        let code = failed
            .err()
            .and_then(|e| e.code().cloned())
            .expect("an error with a SQLSTATE");
        assert_eq!(code.code(), "42P01");
        let rows = client
            .query("SELECT 1::bigint AS one", &[])
            .await
            .expect("after error");
        assert_eq!(rows[0].get::<_, i64>("one"), 1);
    });
}
