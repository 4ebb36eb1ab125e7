//! Password authentication: with a password set, SCRAM-SHA-256 admits the right password
//! and refuses a wrong or missing one with 28P01; without one, everyone is admitted.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use holdfast_pgwire::{PgPassword, PgSecurity, PgServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const PASSWORD: &str = "correct horse battery staple";

async fn start(password: Option<&str>) -> PgServer {
    let security = PgSecurity {
        password: password.map(PgPassword::new),
        tls: None,
    };
    PgServer::bind_secured(
        "127.0.0.1:0",
        Arc::new(common::fixture_context),
        common::default_limits(),
        security,
    )
    .await
    .expect("bind")
}

async fn connect(
    addr: SocketAddr,
    password: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(addr.port())
        .user("reader")
        .dbname("holdfast");
    if let Some(password) = password {
        config.password(password);
    }
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn one(client: &Client) -> String {
    let rows = client.simple_query("SELECT 1 AS one").await.expect("query");
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test]
async fn the_right_password_is_admitted() {
    let server = start(Some(PASSWORD)).await;
    let client = connect(server.local_addr(), Some(PASSWORD))
        .await
        .expect("the right password is admitted");
    assert_eq!(one(&client).await, "1");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_28p01() {
    let server = start(Some(PASSWORD)).await;
    let Err(err) = connect(server.local_addr(), Some("wrong")).await else {
        panic!("a wrong password is refused");
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
    // The listener keeps serving after a refusal.
    let client = connect(server.local_addr(), Some(PASSWORD))
        .await
        .expect("admitted after a refusal");
    assert_eq!(one(&client).await, "1");
}

#[tokio::test]
async fn no_password_from_the_client_is_refused() {
    let server = start(Some(PASSWORD)).await;
    let Err(err) = connect(server.local_addr(), None).await else {
        panic!("a client without a password is refused");
    };
    // The server asks for SCRAM; tokio-postgres, holding no password, gives up.
    assert!(format!("{err:?}").contains("password missing"), "{err:?}");
}

#[tokio::test]
async fn without_a_password_everyone_is_admitted() {
    let server = start(None).await;
    let client = connect(server.local_addr(), None)
        .await
        .expect("admitted without a password");
    assert_eq!(one(&client).await, "1");
    let client = connect(server.local_addr(), Some("anything"))
        .await
        .expect("a password nobody asked for is ignored");
    assert_eq!(one(&client).await, "1");
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let shown = format!("{:?}", PgPassword::new(PASSWORD));
    assert!(!shown.contains(PASSWORD), "{shown}");
}

/// A listener with a certificate speaks TLS only: a client that does not ask for it is refused
/// with 28000 and a message saying how to connect.
#[tokio::test]
async fn a_tls_listener_refuses_plaintext_clients() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("holdfast-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca = holdfast_tls::issue::Authority::generate("Test CA")?;
    let issued = ca.issue(&["127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("sql.pem"), dir.join("sql-key.pem"));
    std::fs::write(&cert, issued.cert_pem)?;
    std::fs::write(&key, issued.key_pem)?;
    let identity = holdfast_tls::Identity::load(&cert, &key)?;
    let tls = holdfast_tls::server_config(identity, &[holdfast_tls::ALPN_POSTGRES], None)?;
    let server = PgServer::bind_secured(
        "127.0.0.1:0",
        Arc::new(common::fixture_context),
        common::default_limits(),
        PgSecurity {
            password: None,
            tls: Some(Arc::new(tls)),
        },
    )
    .await?;
    let err = connect(server.local_addr(), None)
        .await
        .err()
        .ok_or("a plaintext client was admitted")?;
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("sslmode=require")),
        "{message:?}"
    );
    Ok(())
}
