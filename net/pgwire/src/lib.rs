//! The PostgreSQL wire protocol in front of DataFusion, so that psql,
//! drivers (tokio-postgres, psycopg, JDBC) and GUI tools can query Holdfast's
//! introspection tables.
//!
//! * Simple and extended query protocols (prepared statements with `$n`
//!   parameters in text or binary format, text or binary results).
//! * Read-only: only queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`) run;
//!   `SET`, `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK` and similar session commands
//!   are accepted; writes fail with SQLSTATE 25006.
//! * A `pg_catalog` subset (`pg_namespace`, `pg_class`, `pg_attribute`,
//!   `pg_type`, `pg_database`, `pg_settings`, `pg_proc`, `pg_roles`,
//!   `pg_tables`, … and empty `pg_index`, `pg_constraint`, …) built from the
//!   session's catalog, DataFusion's `information_schema`, and the PostgreSQL
//!   functions clients call (`version()`, `current_schema()`, `format_type`,
//!   `pg_table_is_visible`, `pg_get_userbyid`, `current_setting`, …).
//! * Client catalog queries are rewritten into something DataFusion plans
//!   (`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, `pg_catalog.f()`,
//!   correlated scalar subqueries, …); psql's `\d name` column query is
//!   answered directly. psql 15's `\dt`, `\d`, `\d name`, `\d+ name`,
//!   `\l`, `\dn`, `\du`, `\dv`, `\di`, `\df`, `\dT` work, as do JDBC's
//!   `DatabaseMetaData` table, column, schema and key lookups.
//! * One DataFusion session per connection, a statement timeout (57014) and
//!   a row limit (a NOTICE tells the client the result was truncated).
//! * No authentication (every user is accepted) and no TLS: bind to a
//!   loopback or private address.

mod catalog;
mod encode;
mod error;
mod handler;
mod params;
mod psql;
mod session;
mod sql;
mod udf;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use pgwire::api::{ConnectionManager, RandomPidSecretKeyGenerator};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use error::PgServerError;

use handler::{ConnectionHandlers, Shared};
use session::Session;

/// Supplies each new connection with its own DataFusion context, with the
/// user tables registered; the endpoint adds `pg_catalog` on top without
/// modifying the supplied catalogs.
pub trait SessionFactory: Send + Sync {
    /// A fresh context for one connection.
    fn context(&self) -> SessionContext;
}

impl<F> SessionFactory for F
where
    F: Fn() -> SessionContext + Send + Sync,
{
    fn context(&self) -> SessionContext {
        self()
    }
}

/// Limits applied to every statement, protecting the node from expensive
/// ad-hoc queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgLimits {
    /// A statement running longer is cancelled with SQLSTATE 57014; zero
    /// disables the timeout. A session may lower it with
    /// `SET statement_timeout`, never raise it.
    pub statement_timeout: Duration,
    /// Results stop after this many rows and the client gets a NOTICE; zero
    /// disables the limit.
    pub max_rows: usize,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

/// A running endpoint; dropping it (or [`PgServer::shutdown`]) stops
/// accepting connections and closes the open ones.
#[derive(Debug)]
pub struct PgServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PgServer {
    /// Binds `addr` and starts serving in a background task.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        sessions: Arc<dyn SessionFactory>,
        limits: PgLimits,
    ) -> Result<Self, PgServerError> {
        let listener = TcpListener::bind(addr).await.map_err(PgServerError::Bind)?;
        Self::start(listener, sessions, limits)
    }

    /// Starts serving an already bound listener in a background task.
    pub fn start(
        listener: TcpListener,
        sessions: Arc<dyn SessionFactory>,
        limits: PgLimits,
    ) -> Result<Self, PgServerError> {
        let local_addr = listener.local_addr().map_err(PgServerError::Bind)?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, sessions, limits, stopped));
        tracing::info!(%local_addr, "PostgreSQL endpoint listening");
        Ok(Self {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The address the endpoint listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes all connections and waits for the accept
    /// loop to finish.
    pub async fn shutdown(mut self) -> Result<(), PgServerError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task.await.map_err(PgServerError::Task),
            None => Ok(()),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves `listener` until the task is dropped; each connection runs in its
/// own task with its own session.
pub async fn serve(
    listener: TcpListener,
    sessions: Arc<dyn SessionFactory>,
    limits: PgLimits,
) -> Result<(), PgServerError> {
    let (_stop, stopped) = watch::channel(false);
    accept_loop(listener, sessions, limits, stopped).await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    sessions: Arc<dyn SessionFactory>,
    limits: PgLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        manager: Arc::new(ConnectionManager::new()),
        pids: RandomPidSecretKeyGenerator::default(),
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let session = Arc::new(Session::new(sessions.context(), limits));
                    let handlers = ConnectionHandlers::new(session, Arc::clone(&shared));
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "pgwire connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}
