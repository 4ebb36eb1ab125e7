//! The endpoint as tokio-postgres sees it: simple and extended protocol,
//! parameters, binary results, errors, limits and concurrency.

mod common;

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use holdfast_pgwire::PgLimits;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// Connects and drives the connection in a task; notices are forwarded to
/// the returned channel.
async fn connect(addr: std::net::SocketAddr) -> (Client, mpsc::UnboundedReceiver<String>) {
    let config = format!(
        "host={} port={} user=tester dbname=holdfast",
        addr.ip(),
        addr.port()
    );
    let (client, mut connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect");
    let (notices, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notice(notice)) => {
                    let _ = notices.send(notice.message().to_owned());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, received)
}

fn rows_of(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn tags_of(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// A `date` read as days since 2000-01-01 (no chrono in the test build).
struct PgDate(i32);

impl<'a> FromSql<'a> for PgDate {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 4] = raw.try_into()?;
        Ok(PgDate(i32::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_returns_text_rows() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let messages = client
        .simple_query(
            "SELECT id, retry_count, completed, created_at, tags FROM sys_invocation ORDER BY id",
        )
        .await
        .expect("query");
    assert_eq!(
        rows_of(&messages),
        vec![
            vec![
                Some("inv_1".to_owned()),
                Some("0".to_owned()),
                Some("t".to_owned()),
                Some("2023-11-14 22:13:20.123+00".to_owned()),
                Some("{a,\"b c\"}".to_owned()),
            ],
            vec![
                Some("inv_2".to_owned()),
                Some("3".to_owned()),
                Some("f".to_owned()),
                Some("2023-11-14 22:13:21+00".to_owned()),
                None,
            ],
            vec![
                Some("inv_3".to_owned()),
                Some("1".to_owned()),
                None,
                None,
                Some("{x}".to_owned()),
            ],
        ]
    );
    assert_eq!(tags_of(&messages), vec![3]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_have_postgres_types_and_binary_values() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let statement = client
        .prepare("SELECT * FROM sys_invocation ORDER BY id")
        .await
        .expect("prepare");
    let types: Vec<(String, Type)> = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    let expected = [
        ("id", Type::TEXT),
        ("target", Type::TEXT),
        ("status", Type::TEXT),
        ("retry_count", Type::INT4),
        ("attempt", Type::INT2),
        ("priority", Type::INT2),
        ("journal_len", Type::INT8),
        ("partition", Type::INT8),
        ("bytes", Type::INT8),
        ("score", Type::FLOAT8),
        ("ratio", Type::FLOAT4),
        ("completed", Type::BOOL),
        ("created_at", Type::TIMESTAMPTZ),
        ("day", Type::DATE),
        ("payload", Type::BYTEA),
        ("tags", Type::TEXT),
    ];
    let expected: Vec<(String, Type)> = expected
        .iter()
        .map(|(n, t)| ((*n).to_owned(), t.clone()))
        .collect();
    assert_eq!(types, expected);

    // tokio-postgres asks for binary results.
    let rows = client.query(&statement, &[]).await.expect("query");
    assert_eq!(rows.len(), 3);
    let first = &rows[0];
    assert_eq!(first.get::<_, String>("id"), "inv_1");
    assert_eq!(first.get::<_, i32>("retry_count"), 0);
    assert_eq!(first.get::<_, i16>("attempt"), 1);
    assert_eq!(first.get::<_, i16>("priority"), -1);
    assert_eq!(first.get::<_, i64>("journal_len"), 10);
    assert_eq!(first.get::<_, i64>("bytes"), 5);
    assert_eq!(first.get::<_, f64>("score"), 1.5);
    assert_eq!(first.get::<_, f32>("ratio"), 0.5);
    assert!(first.get::<_, bool>("completed"));
    assert_eq!(
        first.get::<_, SystemTime>("created_at"),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    );
    // 2023-11-14 is 8718 days after 2000-01-01.
    assert_eq!(first.get::<_, PgDate>("day").0, 8718);
    assert_eq!(first.get::<_, Vec<u8>>("payload"), vec![1, 2]);
    assert_eq!(first.get::<_, String>("tags"), "{a,\"b c\"}");
    let second = &rows[1];
    assert_eq!(second.get::<_, Option<String>>("target"), None);
    assert_eq!(second.get::<_, i64>("partition"), 4_000_000_000);
    assert_eq!(second.get::<_, i64>("journal_len"), 20_000_000_000);
    assert_eq!(second.get::<_, Option<Vec<u8>>>("payload"), None);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_take_int_and_text_parameters() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let statement = client
        .prepare(
            "SELECT id FROM sys_invocation WHERE retry_count >= $1 AND status <> $2 ORDER BY id",
        )
        .await
        .expect("prepare");
    assert_eq!(statement.params(), &[Type::INT4, Type::TEXT]);
    let ids = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let rows = client
        .query(&statement, &[&0i32, &"suspended"])
        .await
        .expect("execute");
    assert_eq!(ids(rows), vec!["inv_1", "inv_2"]);
    // The same statement, executed again with other values.
    let rows = client
        .query(&statement, &[&1i32, &"running"])
        .await
        .expect("execute again");
    assert_eq!(ids(rows), vec!["inv_3"]);

    // Bigint, float, bool and bytea parameters.
    let rows = client
        .query(
            "SELECT id FROM sys_invocation WHERE journal_len = $1 OR score < $2 OR completed = $3 ORDER BY id",
            &[&20_000_000_000i64, &0.0f64, &true],
        )
        .await
        .expect("typed params");
    assert_eq!(ids(rows), vec!["inv_1", "inv_2"]);
    let rows = client
        .query(
            "SELECT key FROM state WHERE value = $1",
            &[&b"bob".to_vec()],
        )
        .await
        .expect("bytea param");
    assert_eq!(ids(rows), vec!["owner"]);

    // Parameters whose type cannot be inferred are text.
    let row = client
        .query_one("SELECT $1 AS echo", &[&"hello"])
        .await
        .expect("untyped param");
    assert_eq!(row.get::<_, String>("echo"), "hello");

    // Timestamps as parameters.
    let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
    let rows = client
        .query(
            "SELECT id FROM sys_invocation WHERE created_at > $1",
            &[&since],
        )
        .await
        .expect("timestamp param");
    assert_eq!(ids(rows), vec!["inv_2"]);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_statements_in_one_simple_query() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let messages = client
        .simple_query("SELECT 1 AS one; SET application_name = 'tests'; SELECT count(*) FROM state; SHOW application_name")
        .await
        .expect("batch");
    assert_eq!(
        rows_of(&messages),
        vec![
            vec![Some("1".to_owned())],
            vec![Some("3".to_owned())],
            vec![Some("tests".to_owned())],
        ]
    );
    // SELECT 1, SET, SELECT 1, SHOW
    assert_eq!(tags_of(&messages).len(), 4);
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT; SET extra_float_digits = 3; ROLLBACK")
        .await
        .expect("transaction commands");
    server.shutdown().await.expect("shutdown");
}

async fn expect_error(client: &Client, sql: &str, state: &SqlState) {
    let simple = client
        .simple_query(sql)
        .await
        .expect_err("simple query must fail");
    assert_eq!(simple.code(), Some(state), "{sql}: {simple:?}");
    let extended = client
        .query(sql, &[])
        .await
        .expect_err("prepared query must fail");
    assert_eq!(extended.code(), Some(state), "{sql}: {extended:?}");
    // The session is still usable, in both protocols.
    let row = client
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("after error");
    assert_eq!(row.get::<_, i64>(0), 42);
    let messages = client
        .simple_query("SELECT 'ok'")
        .await
        .expect("after error");
    assert_eq!(rows_of(&messages), vec![vec![Some("ok".to_owned())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstates_and_leave_the_session_usable() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    expect_error(&client, "SELEC id FROM state", &SqlState::SYNTAX_ERROR).await;
    expect_error(
        &client,
        "SELECT * FROM no_such_table",
        &SqlState::UNDEFINED_TABLE,
    )
    .await;
    expect_error(
        &client,
        "SELECT no_such_column FROM state",
        &SqlState::UNDEFINED_COLUMN,
    )
    .await;
    expect_error(
        &client,
        "SELECT 'abc'::int",
        &SqlState::INVALID_TEXT_REPRESENTATION,
    )
    .await;
    expect_error(&client, "SELECT true + 1", &SqlState::DATATYPE_MISMATCH).await;
    expect_error(
        &client,
        "DELETE FROM state",
        &SqlState::READ_ONLY_SQL_TRANSACTION,
    )
    .await;

    let err = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .expect_err("unknown table");
    let db = err.as_db_error().expect("server error");
    assert_eq!(db.message(), "relation \"no_such_table\" does not exist");

    // An error stops the rest of a multi-statement string; a syntax error
    // anywhere stops all of it.
    let err = client
        .simple_query("SELECT 1; SELECT * FROM nope; SELECT 3")
        .await
        .expect_err("second statement fails");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE));
    let err = client
        .simple_query("SELECT 1; SELEC 2")
        .await
        .expect_err("syntax error");
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));

    // Placeholders need the extended protocol.
    let err = client
        .simple_query("SELECT $1")
        .await
        .expect_err("no parameters");
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_PARAMETER));

    // A bad parameter value.
    let err = client
        .query("SELECT $1::int + 1", &[&"x"])
        .await
        .expect_err("wrong parameter type");
    assert!(err.code().is_some(), "{err:?}");
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .expect("usable")
            .len(),
        1
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_slow_queries() {
    let server = common::start(PgLimits {
        statement_timeout: Duration::from_millis(100),
        max_rows: 100,
        ..PgLimits::default()
    })
    .await;
    let (client, _) = connect(server.local_addr()).await;
    let slow = "SELECT max(a.value + b.value) FROM generate_series(1, 100000000) a, generate_series(1, 100000000) b";
    let started = std::time::Instant::now();
    let err = client.simple_query(slow).await.expect_err("times out");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = client.query(slow, &[]).await.expect_err("times out");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    let row = client.query_one("SELECT 7", &[]).await.expect("usable");
    assert_eq!(row.get::<_, i64>(0), 7);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_fires_while_the_join_produces_rows() {
    // Past the build phase of the cross join the work is all in one operator
    // that emits batch after batch; the timeout must still fire.
    let server = common::start(PgLimits {
        statement_timeout: Duration::from_secs(20),
        max_rows: 100,
        ..PgLimits::default()
    })
    .await;
    let (client, _) = connect(server.local_addr()).await;
    client
        .simple_query("SET statement_timeout = 1500")
        .await
        .expect("set");
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT max(a.value + b.value) FROM generate_series(1, 1000) a, generate_series(1, 1000000000) b")
        .await
        .expect_err("times out");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_stop_the_running_query() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await
    });
    let err = client
        .simple_query("SELECT max(a.value + b.value) FROM generate_series(1, 100000000) a, generate_series(1, 100000000) b")
        .await
        .expect_err("canceled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err:?}");
    canceller.await.expect("join").expect("cancel sent");
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .expect("usable")
            .len(),
        1
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_limit_truncates_with_a_notice() {
    let server = common::start(PgLimits {
        statement_timeout: Duration::from_secs(20),
        max_rows: 2,
        ..PgLimits::default()
    })
    .await;
    let (client, mut notices) = connect(server.local_addr()).await;
    let messages = client
        .simple_query("SELECT id FROM sys_invocation ORDER BY id")
        .await
        .expect("query");
    assert_eq!(rows_of(&messages).len(), 2);
    assert_eq!(tags_of(&messages), vec![2]);
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("notice in time")
        .expect("notice");
    assert!(notice.contains("truncated to 2 rows"), "{notice}");

    let rows = client
        .query("SELECT * FROM generate_series(1, 100000)", &[])
        .await
        .expect("extended query");
    assert_eq!(rows.len(), 2);
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("notice in time")
        .expect("notice");
    assert!(notice.contains("truncated"), "{notice}");
    // Results within the limit come back without a notice.
    let rows = client.query("SELECT 1", &[]).await.expect("small");
    assert_eq!(rows.len(), 1);
    assert!(notices.try_recv().is_err());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_connections() {
    let server = common::start(common::default_limits()).await;
    let addr = server.local_addr();
    let mut tasks = Vec::new();
    for i in 0..20i32 {
        tasks.push(tokio::spawn(async move {
            let (client, _) = connect(addr).await;
            let retry = i % 4;
            let rows = client
                .query(
                    "SELECT count(*) FROM sys_invocation WHERE retry_count >= $1",
                    &[&retry],
                )
                .await
                .expect("query");
            let expected = match retry {
                0 => 3,
                1 => 2,
                2 | 3 => 1,
                _ => 0,
            };
            assert_eq!(rows[0].get::<_, i64>(0), expected);
            client
                .simple_query(&format!("SET application_name = 'c{i}'"))
                .await
                .expect("set");
            let shown = client
                .simple_query("SHOW application_name")
                .await
                .expect("show");
            assert_eq!(rows_of(&shown), vec![vec![Some(format!("c{i}"))]]);
        }));
    }
    for task in tasks {
        task.await.expect("connection task");
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lookups_used_by_drivers_and_tools() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    // JDBC/DBeaver resolve type oids.
    let row = client
        .query_one(
            "SELECT typname, typlen FROM pg_catalog.pg_type WHERE oid = $1",
            &[&23i32],
        )
        .await
        .expect("pg_type by oid");
    assert_eq!(row.get::<_, String>(0), "int4");
    assert_eq!(row.get::<_, i16>(1), 4);
    let rows = client
        .query(
            "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE n.nspname = 'public' AND c.relname = 'state' ORDER BY a.attnum",
            &[],
        )
        .await
        .expect("columns");
    let described: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(1), r.get::<_, String>(2)))
        .collect();
    assert_eq!(
        described,
        vec![
            ("service".to_owned(), "text".to_owned()),
            ("key".to_owned(), "text".to_owned()),
            ("value".to_owned(), "bytea".to_owned()),
            ("value_utf8".to_owned(), "text".to_owned()),
        ]
    );
    let row = client
        .query_one(
            "SELECT version(), current_schema(), current_database(), current_user, \
             current_setting('server_version_num'), 'state'::regclass::oid = \
             (SELECT oid FROM pg_class WHERE relname = 'state')",
            &[],
        )
        .await
        .expect("session functions");
    assert!(row.get::<_, String>(0).starts_with("PostgreSQL 15"));
    assert_eq!(row.get::<_, String>(1), "public");
    assert_eq!(row.get::<_, String>(2), "holdfast");
    assert_eq!(row.get::<_, String>(3), "tester");
    assert_eq!(row.get::<_, String>(4), "150000");
    assert!(row.get::<_, bool>(5));
    let tables = client
        .simple_query(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .await
        .expect("information_schema");
    assert_eq!(
        rows_of(&tables),
        vec![
            vec![Some("state".to_owned())],
            vec![Some("sys_invocation".to_owned())]
        ]
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions_of_other_types() {
    let server = common::start(common::default_limits()).await;
    let (client, _) = connect(server.local_addr()).await;
    let sql = "SELECT NULL AS n, CAST(1.50 AS DECIMAL(10,2)) AS d, INTERVAL '1 day 2 hours' AS i, \
               DATE '2024-02-29' AS dt, 1e20::double AS f, 'a'::bytea AS b, \
               arrow_cast(7, 'UInt8') AS u8, arrow_cast(60000, 'UInt16') AS u16";
    let messages = client.simple_query(sql).await.expect("simple");
    assert_eq!(
        rows_of(&messages),
        vec![vec![
            None,
            Some("1.50".to_owned()),
            Some("1 day 02:00:00".to_owned()),
            Some("2024-02-29".to_owned()),
            Some("1e+20".to_owned()),
            Some("\\x61".to_owned()),
            Some("7".to_owned()),
            Some("60000".to_owned()),
        ]]
    );
    let statement = client.prepare(sql).await.expect("prepare");
    let types: Vec<Type> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(
        types,
        vec![
            Type::TEXT,
            Type::NUMERIC,
            Type::INTERVAL,
            Type::DATE,
            Type::FLOAT8,
            Type::BYTEA,
            Type::INT2,
            Type::INT4
        ]
    );
    let row = client.query_one(&statement, &[]).await.expect("binary");
    assert_eq!(row.get::<_, Option<String>>("n"), None);
    assert_eq!(row.get::<_, i16>("u8"), 7);
    assert_eq!(row.get::<_, i32>("u16"), 60000);
    // A UInt64 above i64::MAX cannot be sent as int8.
    let err = client
        .simple_query("SELECT arrow_cast(18446744073709551615, 'UInt64')")
        .await
        .expect_err("out of range");
    assert_eq!(err.code(), Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_the_listener() {
    let server = common::start(common::default_limits()).await;
    let addr = server.local_addr();
    let (client, _) = connect(addr).await;
    assert_eq!(
        client.query_one("SELECT 1", &[]).await.expect("up").len(),
        1
    );
    server.shutdown().await.expect("shutdown");
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    let config = format!(
        "host={} port={} user=x dbname=holdfast",
        addr.ip(),
        addr.port()
    );
    assert!(tokio_postgres::connect(&config, NoTls).await.is_err());
}
