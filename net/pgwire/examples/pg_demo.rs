//! Serves the test fixture tables on a local port, for trying clients by
//! hand: `cargo run -p holdfast-pgwire --example pg_demo -- 55432`, then
//! `psql -h 127.0.0.1 -p 55432 -U me -d holdfast`.

#[path = "../tests/common/mod.rs"]
mod common;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(55432);
    let server = holdfast_pgwire::PgServer::bind(
        ("127.0.0.1", port),
        std::sync::Arc::new(common::fixture_context),
        common::default_limits(),
    )
    .await?;
    println!("listening on {}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await?;
    Ok(())
}
