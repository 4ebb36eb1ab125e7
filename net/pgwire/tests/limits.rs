//! The listener's limits (connection cap, startup and idle timeouts, message size) and the
//! statement limits added with them (result bytes, the `SET` allowlist).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use holdfast_pgwire::PgLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The startup message of protocol 3.0 for user `raw`.
fn startup() -> Vec<u8> {
    let mut body = 196_608_i32.to_be_bytes().to_vec();
    for s in ["user", "raw", "database", "holdfast"] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = i32::try_from(body.len() + 4)
        .expect("len")
        .to_be_bytes()
        .to_vec();
    message.extend_from_slice(&body);
    message
}

/// Reads backend messages until ReadyForQuery or the end of the stream; the kinds, and the
/// SQLSTATE of the first ErrorResponse.
async fn read_until_ready(socket: &mut TcpStream) -> (Vec<u8>, Option<String>) {
    let mut kinds = Vec::new();
    let mut sqlstate = None;
    loop {
        let mut header = [0u8; 5];
        if socket.read_exact(&mut header).await.is_err() {
            return (kinds, sqlstate);
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0u8; usize::try_from(len).expect("len") - 4];
        socket.read_exact(&mut body).await.expect("body");
        kinds.push(header[0]);
        if header[0] == b'E' && sqlstate.is_none() {
            sqlstate = body
                .split(|b| *b == 0)
                .find(|f| f.first() == Some(&b'C'))
                .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
        }
        if header[0] == b'Z' {
            return (kinds, sqlstate);
        }
    }
}

/// A connection that has completed its startup.
async fn started(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(&startup()).await.expect("startup");
    let (kinds, error) = read_until_ready(&mut socket).await;
    assert_eq!(kinds.last(), Some(&b'Z'), "{kinds:?} {error:?}");
    socket
}

/// Whether the server closes `socket` within `within` (reading nothing but an optional error).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(within, socket.read_to_end(&mut rest)).await,
        Ok(Ok(_))
    )
}

async fn query(socket: &mut TcpStream, sql: &str) -> (Vec<u8>, Option<String>) {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    let mut message = vec![b'Q'];
    message.extend_from_slice(&i32::try_from(body.len() + 4).expect("len").to_be_bytes());
    message.extend_from_slice(&body);
    socket.write_all(&message).await.expect("query");
    read_until_ready(socket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_53300() {
    let server = common::start(PgLimits {
        max_connections: 2,
        ..common::default_limits()
    })
    .await;
    let addr = server.local_addr();
    let mut first = started(addr).await;
    let _second = started(addr).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third.write_all(&startup()).await.expect("startup");
    let (kinds, error) = read_until_ready(&mut third).await;
    assert_eq!(kinds, vec![b'E'], "{kinds:?}");
    assert_eq!(error.as_deref(), Some("53300"));
    assert!(closed_within(&mut third, Duration::from_secs(5)).await);
    // The admitted ones still work; once one leaves, its slot is free again.
    assert_eq!(query(&mut first, "SELECT 1").await.1, None);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.write_all(&startup()).await.expect("startup");
        let (kinds, error) = read_until_ready(&mut socket).await;
        if error.is_none() && kinds.last() == Some(&b'Z') {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_connection_with_54000() {
    let server = common::start(PgLimits {
        max_message_bytes: 1024,
        ..common::default_limits()
    })
    .await;
    let mut socket = started(server.local_addr()).await;
    let small = format!("SELECT '{}' AS s", "x".repeat(500));
    let (_, error) = query(&mut socket, &small).await;
    assert_eq!(error, None);
    // Only the header of the large message is sent: it is refused before its body arrives.
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(64_i32 << 20).to_be_bytes());
    socket.write_all(&header).await.expect("header");
    let (kinds, error) = read_until_ready(&mut socket).await;
    assert_eq!(kinds, vec![b'E'], "{kinds:?}");
    assert_eq!(error.as_deref(), Some("54000"));
    assert!(closed_within(&mut socket, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_startup_is_closed_after_the_startup_timeout() {
    let server = common::start(PgLimits {
        startup_timeout: Duration::from_millis(200),
        ..common::default_limits()
    })
    .await;
    let mut silent = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let began = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(began.elapsed() >= Duration::from_millis(150));
    // A prompt client is not affected, however long it then stays.
    let mut prompt = started(server.local_addr()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(query(&mut prompt, "SELECT 1").await.1, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_with_57p05() {
    let server = common::start(PgLimits {
        idle_timeout: Duration::from_millis(300),
        ..common::default_limits()
    })
    .await;
    let mut socket = started(server.local_addr()).await;
    // Activity keeps it open.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(query(&mut socket, "SELECT 1").await.1, None);
    }
    let (kinds, error) = read_until_ready(&mut socket).await;
    assert_eq!(kinds, vec![b'E'], "{kinds:?}");
    assert_eq!(error.as_deref(), Some("57P05"));
}

async fn client(addr: SocketAddr) -> tokio_postgres::Client {
    let config = format!(
        "host={} port={} user=tester dbname=holdfast",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_is_limited_to_harmless_parameters() {
    let server = common::start(common::default_limits()).await;
    let client = client(server.local_addr()).await;
    client
        .batch_execute("SET application_name = 'limits'; SET extra_float_digits = 3; SET TIME ZONE 'UTC'; SET statement_timeout = 1000")
        .await
        .expect("allowed settings");
    for refused in [
        "SET datafusion.execution.batch_size = 100000000",
        "SET datafusion.execution.target_partitions = 64",
        "SET work_mem = '64GB'",
        "SET max_rows = 100000000",
    ] {
        let error = client.batch_execute(refused).await.expect_err(refused);
        let code = error.code().map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{refused}: {error}");
    }
    let rows = client
        .simple_query("SHOW datafusion.execution.batch_size")
        .await
        .expect("show");
    let value = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    assert_ne!(value.as_deref(), Some("100000000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_stop_at_the_byte_cap() {
    let server = common::start(PgLimits {
        max_result_bytes: 1000,
        max_rows: 0,
        ..common::default_limits()
    })
    .await;
    let client = client(server.local_addr()).await;
    let messages = client
        .simple_query("SELECT value FROM generate_series(1, 10000)")
        .await
        .expect("query");
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert!(rows > 0 && rows < 1000, "{rows} rows");
}
