//! One shared HTTP/2 connection per endpoint authority: every attempt to an endpoint is a stream on
//! the same connection, and a connection found dead is replaced on next use. `https://` endpoints
//! get TLS with ALPN `h2`, their certificate verified against the client's trust roots.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use h2::client::{ResponseFuture, SendRequest};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::Error;
use crate::target::{Authority, Target};

/// Receive window advertised per stream: bounds what an endpoint may send ahead of the reader.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Receive window advertised for the whole connection, shared by all its streams.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// A live (or presumed live) connection to one authority.
#[derive(Clone)]
struct Conn {
    /// Distinguishes successive connections to the same authority.
    id: u64,
    send: SendRequest<Bytes>,
    /// Cleared by the driver task when the connection ends.
    alive: Arc<AtomicBool>,
}

/// The slot of one authority; the async lock makes concurrent first uses share one connect.
type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// The connections of a client, keyed by authority.
pub(crate) struct Pool {
    connect_timeout: Duration,
    slots: Mutex<HashMap<Authority, Slot>>,
    opened: AtomicU64,
    /// TLS for `https://` endpoints: the configured one, or on first use the system's roots.
    tls: OnceLock<Result<holdfast_tls::TlsConnector, String>>,
    /// Where connections are made and driven; `None`: on the runtime of their first use.
    home: Option<ConnectionHome>,
}

/// The runtime that makes and drives the pool's connections, given as a function that spawns a
/// task on it (false: it has stopped). A socket is served by the runtime it was made on, so
/// attempts running on that runtime's thread reach their connection without waking another.
#[derive(Clone)]
pub struct ConnectionHome(Arc<dyn Fn(BoxedTask) -> bool + Send + Sync>);

/// A task handed to a [`ConnectionHome`].
pub type BoxedTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl ConnectionHome {
    /// A home that runs each task with `spawn`.
    pub fn new(spawn: impl Fn(BoxedTask) -> bool + Send + Sync + 'static) -> Self {
        ConnectionHome(Arc::new(spawn))
    }
}

impl std::fmt::Debug for ConnectionHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionHome")
    }
}

impl Pool {
    /// An empty pool whose connects give up after `connect_timeout`; `tls` verifies `https://`
    /// endpoints (`None`: the system's roots, loaded when first needed).
    pub(crate) fn new(
        connect_timeout: Duration,
        tls: Option<Arc<holdfast_tls::ClientConfig>>,
        home: Option<ConnectionHome>,
    ) -> Self {
        let configured = OnceLock::new();
        if let Some(config) = tls {
            let _ = configured.set(Ok(holdfast_tls::TlsConnector::from(config)));
        }
        Pool {
            connect_timeout,
            slots: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
            tls: configured,
            home,
        }
    }

    fn connector(&self) -> Result<&holdfast_tls::TlsConnector, String> {
        let connector = self.tls.get_or_init(|| {
            let trust = holdfast_tls::Trust::System { extra: None };
            holdfast_tls::client_config(trust, None, &[holdfast_tls::ALPN_H2])
                .map(|config| holdfast_tls::TlsConnector::from(Arc::new(config)))
                .map_err(|e| e.to_string())
        });
        connector.as_ref().map_err(Clone::clone)
    }

    /// How many connections were established since the pool was created.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends a request on the target's connection, connecting (or reconnecting once) as needed.
    pub(crate) async fn send(
        &self,
        target: &Target,
        request: Request<()>,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), Error> {
        let authority = target.authority();
        loop {
            let (conn, fresh) = self.acquire(authority).await?;
            let result = match conn.send.clone().ready().await {
                Ok(mut send) => send.send_request(request.clone(), end_of_stream),
                Err(e) => Err(e),
            };
            match result {
                Ok(sent) => return Ok(sent),
                Err(e) => {
                    self.invalidate(authority, conn.id).await;
                    // A cached connection may have died unnoticed: retry once on a new one. A
                    // connection made just now failing is the endpoint's answer.
                    if fresh {
                        return Err(Error::Transport {
                            endpoint: target.name().to_owned(),
                            source: e,
                        });
                    }
                    debug!(endpoint = %authority, error = %e, "cached HTTP/2 connection unusable, reconnecting");
                }
            }
        }
    }

    fn slot(&self, authority: &Authority) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(authority.clone()).or_default().clone()
    }

    /// The live connection of `authority`, and whether it was made by this call.
    async fn acquire(&self, authority: &Authority) -> Result<(Conn, bool), Error> {
        let slot = self.slot(authority);
        let mut current = slot.lock().await;
        if let Some(conn) = current.as_ref() {
            if conn.alive.load(Ordering::Acquire) {
                return Ok((conn.clone(), false));
            }
            debug!(endpoint = %authority, "HTTP/2 connection closed, reconnecting");
        }
        *current = None;
        let conn = self.connect(authority).await?;
        *current = Some(conn.clone());
        Ok((conn, true))
    }

    /// Forgets connection `id` of `authority` if it is still the current one.
    async fn invalidate(&self, authority: &Authority, id: u64) {
        let slot = self.slot(authority);
        let mut current = slot.lock().await;
        if current.as_ref().is_some_and(|conn| conn.id == id) {
            *current = None;
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Conn, Error> {
        let endpoint = authority.to_string();
        let connector = if authority.is_secure() {
            let connector = self.connector().map_err(|reason| Error::Tls {
                endpoint: endpoint.clone(),
                reason,
            })?;
            Some(connector.clone())
        } else {
            None
        };
        let handshake = handshake(authority.clone(), connector, self.connect_timeout);
        let (send, alive) = match &self.home {
            None => handshake.await?,
            Some(home) => {
                let (made, result) = oneshot::channel();
                let stopped = || Error::Connect {
                    endpoint: endpoint.clone(),
                    source: std::io::Error::other(
                        "the thread that drives endpoint connections has stopped",
                    ),
                };
                if !(home.0)(Box::pin(async move {
                    let _ = made.send(handshake.await);
                })) {
                    return Err(stopped());
                }
                result.await.map_err(|_| stopped())??
            }
        };
        let id = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        debug!(endpoint = %authority, id, "HTTP/2 connection established");
        Ok(Conn { id, send, alive })
    }
}

/// Connects to `authority` (TCP, TLS with `connector` for `https://`, the HTTP/2 preface) within
/// `timeout`, on whichever runtime polls it: the socket and the driver stay on that runtime.
async fn handshake(
    authority: Authority,
    connector: Option<holdfast_tls::TlsConnector>,
    timeout: Duration,
) -> Result<(SendRequest<Bytes>, Arc<AtomicBool>), Error> {
    let endpoint = authority.to_string();
    let connect = async {
        let tcp = TcpStream::connect((authority.connect_host(), authority.port()))
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.clone(),
                source,
            })?;
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(endpoint = %authority, error = %e, "cannot disable Nagle's algorithm");
        }
        let Some(connector) = connector else {
            return establish(tcp, &endpoint).await;
        };
        let tls_error = |reason: String| Error::Tls {
            endpoint: endpoint.clone(),
            reason,
        };
        let name = holdfast_tls::server_name(authority.connect_host())
            .map_err(|e| tls_error(e.to_string()))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(e.to_string()))?;
        if tls.get_ref().1.alpn_protocol() != Some(holdfast_tls::ALPN_H2) {
            return Err(tls_error(
                "the endpoint does not offer HTTP/2 (ALPN h2) over TLS".to_owned(),
            ));
        }
        establish(tls, &endpoint).await
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| Error::ConnectTimeout {
            endpoint: endpoint.clone(),
            timeout,
        })?
}

/// Runs the HTTP/2 handshake over `io` and spawns the connection's driver; the flag turns false
/// when the connection ends.
async fn establish<T>(io: T, endpoint: &str) -> Result<(SendRequest<Bytes>, Arc<AtomicBool>), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|source| Error::Transport {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    let endpoint = endpoint.to_owned();
    tokio::spawn(async move {
        match connection.await {
            Ok(()) => debug!(%endpoint, "HTTP/2 connection closed"),
            Err(e) if e.is_io() => warn!(%endpoint, error = %e, "HTTP/2 connection lost"),
            Err(e) => debug!(%endpoint, error = %e, "HTTP/2 connection ended"),
        }
        flag.store(false, Ordering::Release);
    });
    Ok((send, alive))
}
