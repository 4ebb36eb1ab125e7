//! The introspection tables over real partition stores: columns, values, the founding post's
//! queries, joins, pushdown (EXPLAIN and rows read), errors, limits and streaming.

mod common;

use common::{Cluster, Ids, PARTITIONS, SDK_VERSION, deployment_id, names, rows, s, scenario};
use futures::StreamExt;
use holdfast_introspection::{QueryEngine, QueryError, QueryLimits, QueryResult, render_table};
use holdfast_types::{Command, ObjectKey, routing};
use std::time::Duration;

async fn setup() -> (Cluster, Ids, QueryEngine) {
    let mut cluster = Cluster::new();
    let ids = scenario(&mut cluster).await;
    let engine = cluster.engine(QueryLimits::default());
    (cluster, ids, engine)
}

async fn query(engine: &QueryEngine, sql: &str) -> QueryResult {
    match engine.query(sql).await {
        Ok(result) => result,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The plan text of `sql`.
async fn explain(engine: &QueryEngine, sql: &str) -> String {
    let result = query(engine, &format!("EXPLAIN {sql}")).await;
    rows(&result)
        .into_iter()
        .flatten()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_listed_with_its_columns() {
    let (_cluster, _ids, engine) = setup().await;
    let tables = query(
        &engine,
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await;
    let tables: Vec<_> = rows(&tables).into_iter().flatten().flatten().collect();
    assert_eq!(
        tables,
        [
            "state",
            "sys_deployment",
            "sys_idempotency",
            "sys_inbox",
            "sys_invocation",
            "sys_invocation_status",
            "sys_journal",
            "sys_keyed_service_status",
            "sys_limit",
            "sys_promise",
            "sys_queue",
            "sys_schedule",
            "sys_schedule_run",
            "sys_service",
            "sys_status"
        ]
    );
    let columns = |table: &str| {
        let engine = engine.clone();
        let sql = format!(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
             WHERE table_name = '{table}' ORDER BY ordinal_position"
        );
        async move { rows(&query(&engine, &sql).await) }
    };
    let invocation = columns("sys_invocation").await;
    let invocation_names: Vec<_> = invocation
        .iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(
        invocation_names,
        [
            "partition_key",
            "id",
            "target",
            "target_service_name",
            "target_service_key",
            "target_handler_name",
            "target_service_ty",
            "status",
            "invoked_by",
            "invoked_by_service_name",
            "invoked_by_id",
            "pinned_deployment_id",
            "retry_count",
            "last_failure",
            "last_failure_error_code",
            "trace_id",
            "idempotency_key",
            "journal_size",
            "created_at",
            "modified_at",
            "completed_at",
            "scheduled_start_at",
            "completion_result",
            "completion_failure",
            "invoked_by_target",
            "last_attempt_deployment_id",
            "last_attempt_server",
            "next_retry_at",
            "last_start_at",
            "last_failure_related_entry_index",
            "last_failure_related_entry_name",
            "last_failure_related_entry_type"
        ]
    );
    let status = invocation
        .iter()
        .find(|r| r[0] == s("status"))
        .expect("status");
    assert_eq!(status[2], s("NO"));
    let created = invocation
        .iter()
        .find(|r| r[0] == s("created_at"))
        .expect("created_at");
    assert_eq!(created[1], s("Timestamp(ms, \"+00:00\")"));

    let names_of = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect()
    };
    assert_eq!(
        names_of(columns("sys_journal").await),
        [
            "partition_key",
            "id",
            "index",
            "entry_type",
            "name",
            "completed",
            "invoked_id",
            "invoked_target",
            "sleep_wakeup_at",
            "promise_name",
            "appended_at",
            "completion_result",
            "completion_failure"
        ]
    );
    assert_eq!(
        names_of(columns("state").await),
        [
            "partition_key",
            "service_name",
            "service_key",
            "key",
            "value_utf8",
            "value",
            "value_length",
            "service",
            "service_key_utf8",
            "key_length"
        ]
    );
    assert_eq!(
        names_of(columns("sys_inbox").await),
        [
            "partition_key",
            "service_name",
            "service_key",
            "id",
            "sequence_number",
            "created_at"
        ]
    );
    assert_eq!(
        names_of(columns("sys_keyed_service_status").await),
        [
            "partition_key",
            "service_name",
            "service_key",
            "invocation_id"
        ]
    );
    assert_eq!(
        names_of(columns("sys_idempotency").await),
        [
            "partition_key",
            "service_name",
            "service_key",
            "service_handler",
            "idempotency_key",
            "invocation_id"
        ]
    );
    assert_eq!(
        names_of(columns("sys_promise").await),
        [
            "partition_key",
            "service_name",
            "service_key",
            "key",
            "completed",
            "completion_success_value",
            "completion_success_value_utf8",
            "completion_failure"
        ]
    );
    assert_eq!(
        names_of(columns("sys_limit").await),
        [
            "name",
            "service_name",
            "handler_name",
            "key_prefix",
            "max_concurrency",
            "rate",
            "burst"
        ]
    );
    assert_eq!(
        names_of(columns("sys_queue").await),
        [
            "partition",
            "name",
            "running",
            "queued",
            "oldest_queued_at",
            "granted",
            "tokens"
        ]
    );
    assert_eq!(
        names_of(columns("sys_service").await),
        ["name", "revision", "public", "ty", "deployment_id"]
    );
    assert_eq!(
        names_of(columns("sys_deployment").await),
        [
            "id",
            "ty",
            "endpoint",
            "created_at",
            "min_service_protocol_version",
            "max_service_protocol_version",
            "services",
            "sdk_version"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_show_every_status_and_their_origin() {
    let (_cluster, ids, engine) = setup().await;
    let result = query(
        &engine,
        "SELECT id, target, target_service_ty, status, invoked_by, invoked_by_service_name, \
         invoked_by_id, idempotency_key, journal_size, retry_count, completion_result, \
         completion_failure, scheduled_start_at IS NOT NULL, completed_at IS NOT NULL, \
         created_at FROM sys_invocation",
    )
    .await;
    assert_eq!(result.num_rows(), 8);
    let all = rows(&result);
    let row = |id: holdfast_types::InvocationId| {
        all.iter()
            .find(|r| r[0] == Some(id.to_string()))
            .unwrap_or_else(|| panic!("no row for {id}"))
            .clone()
    };
    let n = |v: &str| s(v);

    let running = row(ids.running);
    assert_eq!(running[1], s("Counter/a/add"));
    assert_eq!(running[2], s("virtual_object"));
    assert_eq!(running[3], s("running"));
    assert_eq!(running[4], s("ingress"));
    assert_eq!(running[5], None);
    assert_eq!(running[8], n("2"));
    assert_eq!(running[9], n("1"));
    assert_eq!(running[14], s("2023-11-14T22:13:20Z"));

    assert_eq!(row(ids.inboxed)[3], s("pending"));
    assert_eq!(row(ids.inboxed)[9], n("0"));

    let suspended = row(ids.suspended);
    assert_eq!(suspended[1], s("Greeter/greet"));
    assert_eq!(suspended[2], s("service"));
    assert_eq!(suspended[3], s("suspended"));
    assert_eq!(suspended[7], s("idem-1"));
    assert_eq!(suspended[8], n("4"));

    let callee = row(ids.callee);
    assert_eq!(callee[1], s("Counter/b/add"));
    assert_eq!(callee[3], s("running"));
    assert_eq!(callee[4], s("service"));
    assert_eq!(callee[5], s("Greeter"));
    assert_eq!(callee[6], Some(ids.suspended.to_string()));

    let succeeded = row(ids.succeeded);
    assert_eq!(succeeded[3], s("completed"));
    assert_eq!(succeeded[10], s("success"));
    assert_eq!(succeeded[11], None);
    assert_eq!(succeeded[13], s("true"));

    let failed = row(ids.failed);
    assert_eq!(failed[3], s("completed"));
    assert_eq!(failed[10], s("failure"));
    assert_eq!(failed[11], s("[418] failed: x"));
    let last = query(
        &engine,
        &format!(
            "SELECT last_failure, last_failure_error_code FROM sys_invocation WHERE id = '{}'",
            ids.failed
        ),
    )
    .await;
    assert_eq!(rows(&last), vec![vec![s("failed: x"), s("418")]]);

    let scheduled = row(ids.scheduled);
    assert_eq!(scheduled[3], s("scheduled"));
    assert_eq!(scheduled[12], s("true"));
    assert_eq!(scheduled[13], s("false"));

    assert_eq!(row(ids.workflow)[2], s("workflow"));
    assert_eq!(row(ids.workflow)[1], s("Signup/w1/run"));

    let caller = query(
        &engine,
        &format!(
            "SELECT invoked_by_target, last_attempt_deployment_id IS NULL, next_retry_at \
             FROM sys_invocation WHERE id = '{}'",
            ids.callee
        ),
    )
    .await;
    assert_eq!(
        rows(&caller),
        vec![vec![s("Greeter/greet"), s("true"), None]]
    );

    // The server of the last attempt: the SDK of the pinned deployment, once an attempt ran.
    let servers = query(
        &engine,
        "SELECT id, pinned_deployment_id, last_attempt_deployment_id, last_attempt_server \
         FROM sys_invocation",
    )
    .await;
    let servers = rows(&servers);
    let server_of = |id: holdfast_types::InvocationId| {
        servers
            .iter()
            .find(|r| r[0] == Some(id.to_string()))
            .map(|r| r[1..].to_vec())
            .unwrap_or_else(|| panic!("no row for {id}"))
    };
    let pinned = Some(deployment_id().to_string());
    assert_eq!(
        server_of(ids.running),
        [pinned.clone(), pinned.clone(), s(SDK_VERSION)]
    );
    assert_eq!(server_of(ids.inboxed), [pinned, None, None]);
    assert_eq!(server_of(ids.succeeded), [None, None, None]);

    // The same rows with the lifecycle's own status names.
    let lifecycle = query(
        &engine,
        "SELECT id, status FROM sys_invocation_status ORDER BY id",
    )
    .await;
    let lifecycle = rows(&lifecycle);
    let status_of = |id: holdfast_types::InvocationId| {
        lifecycle
            .iter()
            .find(|r| r[0] == Some(id.to_string()))
            .map(|r| r[1].clone())
    };
    assert_eq!(lifecycle.len(), 8);
    assert_eq!(status_of(ids.inboxed), Some(s("inboxed")));
    assert_eq!(status_of(ids.running), Some(s("invoked")));
    assert_eq!(status_of(ids.suspended), Some(s("suspended")));
    assert_eq!(status_of(ids.succeeded), Some(s("completed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_founding_post_queries_run_verbatim() {
    let (_cluster, ids, engine) = setup().await;
    let status = query(
        &engine,
        "SELECT service, method, id, status, invoked_by_service, invoked_by_id FROM sys_status;",
    )
    .await;
    assert_eq!(
        names(&status),
        [
            "service",
            "method",
            "id",
            "status",
            "invoked_by_service",
            "invoked_by_id"
        ]
    );
    assert_eq!(status.num_rows(), 8);
    assert!(rows(&status).contains(&vec![
        s("Counter"),
        s("add"),
        Some(ids.callee.to_string()),
        s("running"),
        s("Greeter"),
        Some(ids.suspended.to_string()),
    ]));

    let state = query(
        &engine,
        "SELECT service, service_key_utf8, key, value_utf8 FROM state;",
    )
    .await;
    assert_eq!(
        names(&state),
        ["service", "service_key_utf8", "key", "value_utf8"]
    );
    let mut state = rows(&state);
    state.sort();
    assert_eq!(
        state,
        [
            vec![s("Counter"), s("a"), s("count"), s("7")],
            vec![s("Counter"), s("a"), s("raw"), None],
            vec![s("Counter"), s("b"), s("count"), s("3")],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_join_their_invocations() {
    let (_cluster, ids, engine) = setup().await;
    // A completable entry shows its result once it has one; the others show none.
    let results = query(
        &engine,
        &format!(
            "SELECT index, completion_result, completion_failure FROM sys_journal \
             WHERE id = '{}' ORDER BY index",
            ids.suspended
        ),
    )
    .await;
    assert_eq!(
        rows(&results),
        [
            vec![s("0"), None, None],
            vec![s("1"), s("success"), None],
            vec![s("2"), None, None],
            vec![s("3"), None, None],
        ]
    );
    let result = query(
        &engine,
        "SELECT i.status, j.index, j.entry_type, j.name, j.completed, j.invoked_id, \
         j.invoked_target, j.sleep_wakeup_at, j.promise_name \
         FROM sys_invocation i JOIN sys_journal j ON i.id = j.id \
         WHERE i.target_service_name IN ('Greeter', 'Signup') AND i.status <> 'completed' \
         ORDER BY i.target_service_name, i.status, j.index",
    )
    .await;
    let wake = "2023-11-14T22:13:25Z";
    assert_eq!(
        rows(&result),
        [
            vec![
                s("scheduled"),
                s("0"),
                s("Input"),
                None,
                s("true"),
                None,
                None,
                None,
                None
            ],
            vec![
                s("suspended"),
                s("0"),
                s("Input"),
                None,
                s("true"),
                None,
                None,
                None,
                None
            ],
            vec![
                s("suspended"),
                s("1"),
                s("Run"),
                s("step1"),
                s("true"),
                None,
                None,
                None,
                None
            ],
            vec![
                s("suspended"),
                s("2"),
                s("Call"),
                None,
                s("false"),
                Some(ids.callee.to_string()),
                s("Counter/b/add"),
                None,
                None
            ],
            vec![
                s("suspended"),
                s("3"),
                s("Sleep"),
                None,
                s("false"),
                None,
                None,
                s(wake),
                None
            ],
            vec![
                s("running"),
                s("0"),
                s("Input"),
                None,
                s("true"),
                None,
                None,
                None,
                None
            ],
            vec![
                s("running"),
                s("1"),
                s("CompletePromise"),
                s("confirmed"),
                s("true"),
                None,
                None,
                None,
                s("confirmed")
            ],
            vec![
                s("running"),
                s("2"),
                s("GetPromise"),
                s("other"),
                s("false"),
                None,
                None,
                None,
                s("other")
            ],
        ]
    );
    // The scheduled invocation starts a minute after it was accepted.
    let scheduled = query(
        &engine,
        &format!(
            "SELECT scheduled_start_at FROM sys_invocation WHERE id = '{}'",
            ids.scheduled
        ),
    )
    .await;
    assert_eq!(rows(&scheduled), [[s("2023-11-14T22:14:20Z")]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_tables_show_inbox_locks_idempotency_and_promises() {
    let (_cluster, ids, engine) = setup().await;
    let inbox = query(
        &engine,
        "SELECT service_name, service_key, id, sequence_number, created_at FROM sys_inbox",
    )
    .await;
    assert_eq!(
        rows(&inbox),
        [[
            s("Counter"),
            s("a"),
            Some(ids.inboxed.to_string()),
            s("0"),
            s("2023-11-14T22:13:20Z")
        ]]
    );
    let locks = query(
        &engine,
        "SELECT service_name, service_key, invocation_id FROM sys_keyed_service_status \
         ORDER BY service_name, service_key",
    )
    .await;
    assert_eq!(
        rows(&locks),
        [
            [s("Counter"), s("a"), Some(ids.running.to_string())],
            [s("Counter"), s("b"), Some(ids.callee.to_string())],
            [s("Signup"), s("w1"), Some(ids.workflow.to_string())],
        ]
    );
    let idempotency = query(&engine, "SELECT * FROM sys_idempotency").await;
    assert_eq!(
        rows(&idempotency),
        [[
            Some(ids.suspended.partition_key.to_string()),
            s("Greeter"),
            None,
            s("greet"),
            s("idem-1"),
            Some(ids.suspended.to_string())
        ]]
    );
    let promises = query(
        &engine,
        "SELECT service_name, service_key, key, completed, completion_success_value, \
         completion_success_value_utf8, completion_failure FROM sys_promise ORDER BY key",
    )
    .await;
    assert_eq!(
        rows(&promises),
        [
            [
                s("Signup"),
                s("w1"),
                s("confirmed"),
                s("true"),
                s("2279657322"),
                s("\"yes\""),
                None
            ],
            [
                s("Signup"),
                s("w1"),
                s("other"),
                s("false"),
                None,
                None,
                None
            ],
        ]
    );
    let state = query(
        &engine,
        "SELECT partition_key, value, value_length FROM state WHERE key = 'raw'",
    )
    .await;
    let pk = routing::partition_key("Counter", "a");
    assert_eq!(rows(&state), [[Some(pk.to_string()), s("ff00"), s("2")]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_tables_show_services_and_deployments() {
    let (_cluster, _ids, engine) = setup().await;
    let services = query(
        &engine,
        "SELECT name, revision, public, ty FROM sys_service ORDER BY name",
    )
    .await;
    assert_eq!(
        rows(&services),
        [
            [s("Counter"), s("1"), s("true"), s("virtual_object")],
            [s("Greeter"), s("1"), s("true"), s("service")],
            [s("Signup"), s("1"), s("true"), s("workflow")],
        ]
    );
    let deployments = query(
        &engine,
        "SELECT ty, endpoint, created_at, services, sdk_version FROM sys_deployment",
    )
    .await;
    assert_eq!(
        rows(&deployments),
        [[
            s("http"),
            s("http://localhost:9080/"),
            s("2023-11-14T22:13:20Z"),
            s("Counter,Greeter,Signup"),
            s(SDK_VERSION)
        ]]
    );
    let joined = query(
        &engine,
        "SELECT d.endpoint FROM sys_service s JOIN sys_deployment d ON s.deployment_id = d.id \
         WHERE s.name = 'Greeter'",
    )
    .await;
    assert_eq!(rows(&joined), [[s("http://localhost:9080/")]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_lookup_by_id_reads_one_partition_and_one_row() {
    let (_cluster, ids, engine) = setup().await;
    let partition = ids.succeeded.partition(PARTITIONS).0;
    let sql = format!(
        "SELECT id, status FROM sys_invocation WHERE id = '{}'",
        ids.succeeded
    );
    let plan = explain(&engine, &sql).await;
    assert!(
        plan.contains(&format!(
            "PartitionScan: table=sys_invocation, partitions=[{partition}], lookup=id"
        )),
        "{plan}"
    );
    let before = engine.rows_scanned();
    let result = query(&engine, &sql).await;
    assert_eq!(
        rows(&result),
        [[Some(ids.succeeded.to_string()), s("completed")]]
    );
    assert_eq!(engine.rows_scanned() - before, 1);

    // The journal of one invocation: only its entries.
    let before = engine.rows_scanned();
    let journal = query(
        &engine,
        &format!(
            "SELECT index FROM sys_journal WHERE id = '{}'",
            ids.suspended
        ),
    )
    .await;
    assert_eq!(journal.num_rows(), 4);
    assert_eq!(engine.rows_scanned() - before, 4);

    // Through the view, by the view's names.
    let plan = explain(
        &engine,
        &format!("SELECT * FROM sys_status WHERE id = '{}'", ids.succeeded),
    )
    .await;
    assert!(plan.contains("lookup=id"), "{plan}");

    // The inbox by id: the invocation's record, then its object's inbox.
    let before = engine.rows_scanned();
    let inbox = query(
        &engine,
        &format!(
            "SELECT sequence_number FROM sys_inbox WHERE id = '{}'",
            ids.inboxed
        ),
    )
    .await;
    assert_eq!(rows(&inbox), [[s("0")]]);
    assert_eq!(engine.rows_scanned() - before, 2);

    // An id that is no id matches nothing and reads nothing.
    let plan = explain(&engine, "SELECT * FROM sys_invocation WHERE id = 'nope'").await;
    assert!(plan.contains("partitions=[], lookup=empty"), "{plan}");
    let before = engine.rows_scanned();
    let none = query(&engine, "SELECT * FROM sys_invocation WHERE id = 'nope'").await;
    assert_eq!(none.num_rows(), 0);
    assert_eq!(engine.rows_scanned(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_filter_reads_one_partition_and_its_key_range() {
    let (mut cluster, _ids, engine) = setup().await;
    // Enough other objects that a full scan would show.
    for n in 0..50 {
        cluster
            .run(Command::SetState {
                object: ObjectKey::new("Counter", format!("k{n}")),
                name: "count".into(),
                value: b"0".to_vec(),
            })
            .await;
    }
    let partition = routing::partition_of(&ObjectKey::new("Counter", "a"), PARTITIONS).0;
    let sql =
        "SELECT key, value_utf8 FROM state WHERE service_name = 'Counter' AND service_key = 'a'";
    let plan = explain(&engine, sql).await;
    assert!(
        plan.contains(&format!(
            "PartitionScan: table=state, partitions=[{partition}], lookup=object"
        )),
        "{plan}"
    );
    let before = engine.rows_scanned();
    let mut result = rows(&query(&engine, sql).await);
    result.sort();
    assert_eq!(result, [[s("count"), s("7")], [s("raw"), None]]);
    assert_eq!(engine.rows_scanned() - before, 2);

    // The same through the founding post's column names.
    let plan = explain(
        &engine,
        "SELECT * FROM state WHERE service = 'Counter' AND service_key_utf8 = 'a'",
    )
    .await;
    assert!(plan.contains("lookup=object"), "{plan}");

    // Invocations of one object: its partition, and only its partition key's range.
    let plan = explain(
        &engine,
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Counter' \
         AND target_service_key = 'a'",
    )
    .await;
    assert!(
        plan.contains(&format!(
            "PartitionScan: table=sys_invocation, partitions=[{partition}], lookup=object"
        )),
        "{plan}"
    );
    let before = engine.rows_scanned();
    let invocations = query(
        &engine,
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Counter' \
         AND target_service_key = 'a'",
    )
    .await;
    assert_eq!(invocations.num_rows(), 2);
    assert_eq!(engine.rows_scanned() - before, 2);

    // A partition key: that partition only.
    let key = routing::partition_key("Counter", "a");
    let plan = explain(
        &engine,
        &format!("SELECT * FROM sys_invocation WHERE partition_key = {key}"),
    )
    .await;
    assert!(
        plan.contains(&format!("partitions=[{partition}], lookup=partition_key")),
        "{plan}"
    );
    let by_key = query(
        &engine,
        &format!("SELECT id FROM sys_invocation WHERE partition_key = {key}"),
    )
    .await;
    assert_eq!(by_key.num_rows(), 2);

    // Without a routing filter every partition is read.
    let plan = explain(&engine, "SELECT * FROM state WHERE key = 'count'").await;
    assert!(
        plan.contains("partitions=[0, 1, 2, 3], lookup=scan"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_statements_are_sql_errors_with_datafusions_message() {
    let (_cluster, _ids, engine) = setup().await;
    let sql_error = |result: Result<QueryResult, QueryError>| match result {
        Err(QueryError::Sql(message)) => message,
        other => panic!("expected an SQL error, got {other:?}"),
    };
    let syntax = sql_error(engine.query("SELEC 1").await);
    assert!(syntax.contains("SELEC"), "{syntax}");
    let unknown = sql_error(engine.query("SELECT * FROM sys_nope").await);
    assert!(
        unknown.contains("sys_nope") && unknown.contains("not found"),
        "{unknown}"
    );
    let column = sql_error(engine.query("SELECT nope FROM sys_invocation").await);
    assert!(column.contains("nope"), "{column}");
    let types = sql_error(engine.query("SELECT sum(status) FROM sys_invocation").await);
    assert!(types.contains("sum"), "{types}");
    let ddl = sql_error(engine.query("CREATE TABLE t (a INT)").await);
    assert!(ddl.to_lowercase().contains("ddl"), "{ddl}");
    assert!(QueryError::Sql(ddl).is_user_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rows_truncates_and_says_so() {
    let (cluster, _ids, _engine) = setup().await;
    let capped = cluster.engine(QueryLimits {
        max_rows: 5,
        ..QueryLimits::default()
    });
    let result = capped
        .query("SELECT * FROM sys_invocation")
        .await
        .expect("query");
    assert_eq!(result.num_rows(), 5);
    assert!(result.truncated);
    let exact = capped
        .query("SELECT * FROM sys_journal WHERE index = 0 LIMIT 5")
        .await
        .expect("query");
    assert_eq!(exact.num_rows(), 5);
    assert!(!exact.truncated);
    let text = render_table(&result);
    assert!(text.ends_with("(5 rows, truncated)\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_timeout_fails() {
    let (cluster, _ids, _engine) = setup().await;
    let hasty = cluster.engine(QueryLimits {
        statement_timeout: Duration::ZERO,
        ..QueryLimits::default()
    });
    // Far too much work to finish within one poll, however the runtime schedules it.
    let result = hasty
        .query(
            "SELECT count(*) FROM sys_invocation a, sys_journal b, state c, \
             generate_series(1, 100000000) d",
        )
        .await;
    assert_eq!(result.err(), Some(QueryError::Timeout(Duration::ZERO)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_render_as_psql_tables() {
    let (_cluster, _ids, engine) = setup().await;
    let result = query(
        &engine,
        "SELECT service_key, key, value_length FROM state WHERE value_utf8 IS NOT NULL \
         ORDER BY service_key",
    )
    .await;
    let expected = [
        " service_key |  key  | value_length",
        "-------------+-------+--------------",
        " a           | count |            1",
        " b           | count |            1",
        "(2 rows)",
        "",
    ]
    .join("\n");
    assert_eq!(render_table(&result), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_table_streams_in_small_batches() {
    const ROWS: usize = 200_000;
    let mut cluster = Cluster::new();
    let object = ObjectKey::new("Big", "one");
    let partition = routing::partition_of(&object, PARTITIONS);
    for chunk in 0..ROWS / 5_000 {
        let commands = (0..5_000)
            .map(|n| Command::SetState {
                object: object.clone(),
                name: format!("entry-{:07}", chunk * 5_000 + n),
                value: b"0123456789".to_vec(),
            })
            .collect();
        cluster.apply_batch(partition, commands).await;
    }
    let engine = cluster.engine(QueryLimits::default());
    let frame = engine
        .context()
        .sql("SELECT service_key, key, value_length FROM state")
        .await
        .expect("plan");
    let mut stream = frame.execute_stream().await.expect("execute");
    let (mut batches, mut total, mut largest) = (0, 0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("batch");
        batches += 1;
        total += batch.num_rows();
        largest = largest.max(batch.num_rows());
    }
    assert_eq!(total, ROWS);
    assert!(batches > 1, "{batches} batches");
    assert!(
        largest <= holdfast_introspection::BATCH_ROWS,
        "a batch of {largest} rows"
    );
    assert_eq!(engine.rows_scanned(), ROWS as u64);

    // A capped query stops reading early instead of scanning everything.
    let capped = cluster.engine(QueryLimits {
        max_rows: 10,
        ..QueryLimits::default()
    });
    let result = capped.query("SELECT key FROM state").await.expect("query");
    assert_eq!(result.num_rows(), 10);
    assert!(result.truncated);
    assert!(
        capped.rows_scanned() < ROWS as u64 / 10,
        "read {}",
        capped.rows_scanned()
    );
}
