//! The PostgreSQL wire protocol in front of DataFusion, so that psql,
//! drivers (tokio-postgres, psycopg, JDBC) and GUI tools can query Holdfast's
//! introspection tables.
//!
//! * Simple and extended query protocols (prepared statements with `$n`
//!   parameters in text or binary format, text or binary results).
//! * Read-only: only queries (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`) run;
//!   `SET` (of allowlisted parameters), `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`
//!   and similar session commands are accepted; writes fail with SQLSTATE
//!   25006.
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
//! * One DataFusion session per connection, a statement timeout (57014),
//!   a row limit and a result byte limit (a NOTICE tells the client the
//!   result was truncated); `SET` only changes a short allowlist of harmless
//!   session parameters (others fail with 42501).
//! * Listener limits ([`PgLimits`]): a connection cap (over it, FATAL 53300
//!   "too many connections"), a startup timeout, an idle timeout (FATAL
//!   57P05) and a maximum frontend message size (FATAL 54000, refused at the
//!   message's length word, before its body is buffered).
//! * Authentication: with a password ([`PgServer::bind_with_password`]),
//!   every connection must present it over SCRAM-SHA-256 (any user name;
//!   a wrong password gets FATAL 28P01); without one every user is
//!   accepted, and a listener bound beyond loopback says so in a warning.
//!   No TLS: bind to a loopback or private address.

mod auth;
mod catalog;
mod conn;
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
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, RandomPidSecretKeyGenerator};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use auth::PgPassword;
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

/// Over the connection cap, at most this many connections are being refused
/// (read their startup, answered 53300) at once; more are closed at once.
const REFUSING_AT_ONCE: usize = 64;

/// Limits applied to every statement and connection, protecting the node
/// from expensive ad-hoc queries and from clients that hold resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgLimits {
    /// A statement running longer is cancelled with SQLSTATE 57014; zero
    /// disables the timeout. A session may lower it with
    /// `SET statement_timeout`, never raise it.
    pub statement_timeout: Duration,
    /// Results stop after this many rows and the client gets a NOTICE; zero
    /// disables the limit.
    pub max_rows: usize,
    /// Results stop before the row that takes the encoded rows past this
    /// many bytes and the client gets a NOTICE; zero disables the limit.
    pub max_result_bytes: usize,
    /// Connections served at once; more are answered FATAL 53300 "too many
    /// connections" and closed. Zero: no cap.
    pub max_connections: usize,
    /// A connection that has not completed its startup after this long is
    /// closed.
    pub startup_timeout: Duration,
    /// A connection waiting this long for the client's next message is
    /// closed (FATAL 57P05); zero disables the timeout.
    pub idle_timeout: Duration,
    /// Largest frontend message (length word included) read; a larger one is
    /// answered FATAL 54000 and the connection closed before its body is
    /// buffered. Zero: pgwire's own limits only.
    pub max_message_bytes: usize,
}

impl Default for PgLimits {
    /// 30 s statements, 100 000 rows, 64 MiB results, 64 connections, 10 s
    /// startup, 10 min idle, 1 MiB messages.
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_result_bytes: 64 << 20,
            max_connections: 64,
            startup_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_message_bytes: 1 << 20,
        }
    }
}

/// Who may connect: the password clients must present and the certificate the listener
/// serves TLS with. The default accepts everyone over plain TCP.
#[derive(Clone, Default)]
pub struct PgSecurity {
    /// With a password, every connection must present it (SCRAM-SHA-256).
    pub password: Option<PgPassword>,
    /// With a TLS configuration, connections must negotiate TLS (`sslmode=require`); plaintext
    /// startups are refused with SQLSTATE 28000.
    pub tls: Option<Arc<holdfast_tls::ServerConfig>>,
}

impl std::fmt::Debug for PgSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSecurity")
            .field("password", &self.password.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PgLimits {
    fn connection(&self, tls: Option<holdfast_tls::TlsAcceptor>) -> conn::ConnLimits {
        conn::ConnLimits {
            tls,
            startup_timeout: self.startup_timeout,
            idle_timeout: (!self.idle_timeout.is_zero()).then_some(self.idle_timeout),
            max_message_bytes: match self.max_message_bytes {
                0 => usize::MAX,
                n => n,
            },
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
    /// Binds `addr` and starts serving in a background task, open to everyone over plain TCP.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        sessions: Arc<dyn SessionFactory>,
        limits: PgLimits,
    ) -> Result<Self, PgServerError> {
        Self::bind_secured(addr, sessions, limits, PgSecurity::default()).await
    }

    /// Binds `addr` and starts serving in a background task under `security`.
    pub async fn bind_secured(
        addr: impl ToSocketAddrs,
        sessions: Arc<dyn SessionFactory>,
        limits: PgLimits,
        security: PgSecurity,
    ) -> Result<Self, PgServerError> {
        let listener = TcpListener::bind(addr).await.map_err(PgServerError::Bind)?;
        Self::start(listener, sessions, limits, security)
    }

    /// Starts serving an already bound listener in a background task under `security`.
    pub fn start(
        listener: TcpListener,
        sessions: Arc<dyn SessionFactory>,
        limits: PgLimits,
        security: PgSecurity,
    ) -> Result<Self, PgServerError> {
        let local_addr = listener.local_addr().map_err(PgServerError::Bind)?;
        let scram = security.password.as_ref().map(auth::Scram::new);
        if scram.is_none() && !local_addr.ip().is_loopback() {
            tracing::warn!(
                %local_addr,
                "the sql listener is bound to a non-loopback address without a password: \
                 anyone who reaches it can read every state; set `sql.password` or \
                 `sql.password_file` (docs/security.md)"
            );
        }
        let tls = security.tls.map(holdfast_tls::TlsAcceptor::from);
        let (stop, stopped) = watch::channel(false);
        tracing::info!(
            %local_addr,
            authentication = if scram.is_some() { "scram-sha-256" } else { "none" },
            tls = tls.is_some(),
            "PostgreSQL endpoint listening"
        );
        let task = tokio::spawn(accept_loop(listener, sessions, limits, scram, tls, stopped));
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
    accept_loop(listener, sessions, limits, None, None, stopped).await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    sessions: Arc<dyn SessionFactory>,
    limits: PgLimits,
    scram: Option<auth::Scram>,
    tls: Option<holdfast_tls::TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        manager: Arc::new(ConnectionManager::new()),
        pids: RandomPidSecretKeyGenerator::default(),
        scram,
    });
    let mut connections = JoinSet::new();
    let cap = match limits.max_connections {
        0 => Semaphore::MAX_PERMITS,
        n => n.min(Semaphore::MAX_PERMITS),
    };
    let slots = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let conn_limits = limits.connection(tls.clone());
    loop {
        tokio::select! {
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let session = Arc::new(Session::new(sessions.context(), limits));
                        let handlers = ConnectionHandlers::new(session, Arc::clone(&shared));
                        let conn_limits = conn_limits.clone();
                        connections.spawn(async move {
                            let _slot = slot;
                            if let Err(e) = conn::serve(socket, handlers, conn_limits).await {
                                tracing::debug!(%peer, error = %e, "pgwire connection ended with an error");
                            }
                        });
                    }
                    Err(_) => {
                        tracing::debug!(%peer, cap, "refusing a pgwire connection over the cap");
                        let Ok(turn) = Arc::clone(&refusing).try_acquire_owned() else {
                            drop(socket);
                            continue;
                        };
                        let cancel = Arc::new(DefaultCancelHandler::new(Arc::clone(&shared.manager)));
                        let timeout = limits.startup_timeout.min(Duration::from_secs(5));
                        let tls = tls.clone();
                        connections.spawn(async move {
                            let _turn = turn;
                            conn::refuse(socket, cap, cancel, timeout, tls).await;
                        });
                    }
                },
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
