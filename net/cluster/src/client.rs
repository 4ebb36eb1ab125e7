//! The client side: one HTTP/2 connection per (peer, lane), opened on first use with a hello,
//! kept alive with pings and reopened after a failure once a doubling backoff has passed.

use crate::wire::{
    HELLO_PATH, Hello, Identity, Lane, SNAPSHOT_CHUNK, Settings, VERSION, stream_answer,
};
use bytes::{Bytes, BytesMut};
use h2::SendStream;
use h2::client::SendRequest;
use holdfast_types::codec;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{debug, error, warn};

/// Receive window per stream and per connection: a snapshot chunk or a capped append fits.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made (or the peer is in its reconnect backoff): nothing was sent.
    #[error("node {peer} is unreachable: {reason}")]
    Unreachable { peer: u64, reason: String },
    /// The peer refused this node's hello: it belongs to another cluster or is another node.
    #[error("node {peer} refused the connection: {reason}")]
    Refused { peer: u64, reason: String },
    /// No answer within the call's deadline; the request may or may not have been acted on.
    #[error("node {peer} did not answer within {after:?}")]
    Timeout { peer: u64, after: Duration },
    /// The connection failed while the call was in flight.
    #[error("connection to node {peer} failed: {source}")]
    Connection { peer: u64, source: h2::Error },
    /// The connection ended while the call was in flight (closed, or silent past its ping
    /// timeout); the request may or may not have been acted on.
    #[error("the connection to node {peer} ended while the call was in flight")]
    Lost { peer: u64 },
    /// The peer answered with an error status (e.g. the group is not running there).
    #[error("node {peer} answered {status}: {message}")]
    Status {
        peer: u64,
        status: u16,
        message: String,
    },
    /// A message larger than the transport's limit.
    #[error("message to or from node {peer} exceeds {limit} bytes")]
    TooLarge { peer: u64, limit: usize },
    /// A body that does not decode.
    #[error("undecodable message from node {peer}: {source}")]
    Codec { peer: u64, source: codec::Error },
    /// A streamed transfer made no progress (no window granted, no byte answered) for this
    /// long; the stream was abandoned.
    #[error("no progress streaming to or from node {peer} for {after:?}")]
    Idle { peer: u64, after: Duration },
    /// An answer that does not follow the protocol of its route.
    #[error("malformed answer from node {peer}: {reason}")]
    Malformed { peer: u64, reason: String },
}

/// A request body streamed from a reader: `head`, then exactly `size` bytes of `body`.
pub(crate) struct Upload<'a, R: ?Sized> {
    pub(crate) path: &'a str,
    pub(crate) head: Bytes,
    pub(crate) body: &'a mut R,
    pub(crate) size: u64,
}

/// Why a streamed request ended without an answer.
#[derive(Debug)]
pub(crate) enum StreamFailure<X> {
    /// The caller's cancel future fired (with this); the stream was reset.
    Cancelled(X),
    /// The local body could not be read.
    Read(std::io::Error),
    /// The transport failed or the peer refused.
    Call(CallError),
}

/// What ended the sending half of a stream early.
pub(crate) enum SendFailure {
    Read(std::io::Error),
    Call(CallError),
}

impl CallError {
    /// Whether nothing reached the peer, so the call can be retried at no risk.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            CallError::Unreachable { .. } | CallError::Refused { .. }
        )
    }
}

/// A link, locked while it connects so that concurrent first calls share one connect.
type SharedLink = Arc<tokio::sync::Mutex<Link>>;

/// A connection believed to be alive.
#[derive(Clone)]
pub(crate) struct Conn {
    send: SendRequest<Bytes>,
    /// Set when the connection ended (closed, failed, or silent past its ping timeout); calls
    /// in flight on it then fail at once instead of waiting out their deadline.
    closed: Arc<watch::Sender<bool>>,
}

impl Conn {
    fn alive(&self) -> bool {
        !*self.closed.borrow()
    }

    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    pub(crate) async fn until_closed(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

/// One (peer, lane) link: its connection, or how long to wait before trying again.
#[derive(Default)]
struct Link {
    conn: Option<Conn>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Inner {
    identity: Identity,
    /// Where to dial each peer; nodes added at runtime are learned through [`Transport::add_peer`].
    peers: std::sync::RwLock<BTreeMap<u64, SocketAddr>>,
    settings: Settings,
    runtime: Handle,
    links: Mutex<HashMap<(u64, Lane), SharedLink>>,
    /// Which data dir each peer stands for (unset: nothing is checked).
    incarnations: std::sync::OnceLock<Arc<crate::Incarnations>>,
}

/// The node's client to its peers; clones share the connections.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node", &self.inner.identity.node)
            .field("peers", &self.inner.peers.read().map(|p| p.len()).ok())
            .finish()
    }
}

impl Transport {
    /// A client for `peers` (id → address to dial). Connections are driven on `runtime`, so they
    /// keep running whichever thread makes the calls.
    pub fn new(
        identity: Identity,
        peers: BTreeMap<u64, SocketAddr>,
        settings: Settings,
        runtime: Handle,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity,
                peers: std::sync::RwLock::new(peers),
                settings,
                runtime,
                links: Mutex::new(HashMap::new()),
                incarnations: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Learns where to dial `peer` (a node added to the cluster at runtime). A known peer keeps
    /// its address: addresses never change in place, and a test override must win.
    pub fn add_peer(&self, peer: u64, address: SocketAddr) {
        if peer == self.inner.identity.node {
            return;
        }
        let mut peers = self
            .inner
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        peers.entry(peer).or_insert(address);
    }

    /// Checks every peer's data dir incarnation against `book` (and presents this node's own);
    /// set once, before the first connection.
    pub fn check_incarnations(&self, book: Arc<crate::Incarnations>) {
        let _ = self.inner.incarnations.set(book);
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The transport's timeouts and bounds.
    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Whether the raft connection to `peer` is open now (what `GET /cluster` shows as alive).
    pub fn connected(&self, peer: u64) -> bool {
        let link = {
            let links = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            links.get(&(peer, Lane::Raft)).cloned()
        };
        link.is_some_and(|link| {
            link.try_lock()
                .is_ok_and(|link| link.conn.as_ref().is_some_and(Conn::alive))
        })
    }

    /// The pauses between attempts to reach an unreachable peer: doubling, capped.
    pub fn reconnect_pauses(&self) -> impl Iterator<Item = Duration> + Send + 'static {
        let settings = self.inner.settings.clone();
        (1u32..).map(move |n| settings.backoff_after(n))
    }

    /// Sends `body` to `path` on `peer` over `lane` and returns the answer's body, within `ttl`.
    pub async fn call(
        &self,
        peer: u64,
        lane: Lane,
        path: &str,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let limit = self.inner.settings.max_message_bytes;
        if body.len() > limit {
            return Err(CallError::TooLarge { peer, limit });
        }
        let started = Instant::now();
        let conn = match tokio::time::timeout(ttl, self.connection(peer, lane)).await {
            Ok(conn) => conn?,
            // Nothing was sent: like an unreachable peer (the connect goes on by itself).
            Err(_) => {
                return Err(CallError::Unreachable {
                    peer,
                    reason: format!("no connection within {ttl:?}"),
                });
            }
        };
        let left = ttl.saturating_sub(started.elapsed());
        let answer = tokio::time::timeout(left, exchange(&conn, peer, path, body.into(), limit))
            .await
            .unwrap_or(Err(CallError::Timeout { peer, after: ttl }));
        if let Err(CallError::Connection { .. }) = &answer {
            conn.close();
        }
        answer
    }

    /// Sends the upload to `peer` as ONE HTTP/2 request on `lane`, as fast as the peer's flow
    /// control grants window, and returns the answer (see [`stream_answer`]). There is no
    /// deadline for the whole transfer: it is abandoned after `snapshot_idle_timeout` without
    /// progress, or when `cancel` fires (the stream is then reset, so the peer drops what it
    /// received).
    pub(crate) async fn stream<R, X>(
        &self,
        peer: u64,
        lane: Lane,
        upload: Upload<'_, R>,
        mut cancel: Pin<&mut (impl Future<Output = X> + ?Sized)>,
    ) -> Result<Bytes, StreamFailure<X>>
    where
        R: AsyncRead + Unpin + Send + ?Sized,
    {
        let Upload {
            path,
            head,
            body,
            size,
        } = upload;
        let settings = &self.inner.settings;
        let (idle, limit) = (settings.snapshot_idle_timeout, settings.max_message_bytes);
        let call = StreamFailure::Call;
        let failed = |source| call(CallError::Connection { peer, source });
        let stalled = || call(CallError::Idle { peer, after: idle });
        let conn = tokio::select! {
            biased;
            closed = cancel.as_mut() => return Err(StreamFailure::Cancelled(closed)),
            conn = self.connection(peer, lane) => conn.map_err(call)?,
        };
        let request = http::Request::post(path).body(()).map_err(|e| {
            call(CallError::Malformed {
                peer,
                reason: format!("invalid request path {path:?}: {e}"),
            })
        })?;
        let mut ready = tokio::select! {
            biased;
            closed = cancel.as_mut() => return Err(StreamFailure::Cancelled(closed)),
            () = conn.until_closed() => return Err(call(CallError::Lost { peer })),
            ready = tokio::time::timeout(idle, conn.send.clone().ready()) => match ready {
                Ok(ready) => ready.map_err(failed)?,
                Err(_) => return Err(stalled()),
            },
        };
        let (response, mut send) = ready.send_request(request, false).map_err(|e| {
            conn.close();
            failed(e)
        })?;
        let mut response = std::pin::pin!(response);
        // The peer may answer before the body is through (a refusal, a stale leader's vote):
        // sending stops there.
        let sent = {
            let sending = send_body(&mut send, head, body, size, idle, peer);
            let mut sending = std::pin::pin!(sending);
            tokio::select! {
                biased;
                closed = cancel.as_mut() => Err(StreamFailure::Cancelled(closed)),
                () = conn.until_closed() => Err(call(CallError::Lost { peer })),
                answer = response.as_mut() => Ok(Some(answer)),
                sent = sending.as_mut() => match sent {
                    Ok(()) => Ok(None),
                    Err(SendFailure::Read(e)) => Err(StreamFailure::Read(e)),
                    Err(SendFailure::Call(e)) => Err(call(e)),
                },
            }
        };
        let answered = match sent {
            Ok(Some(answer)) => answer,
            Ok(None) => tokio::select! {
                biased;
                closed = cancel.as_mut() => {
                    send.send_reset(h2::Reason::CANCEL);
                    return Err(StreamFailure::Cancelled(closed));
                }
                () = conn.until_closed() => return Err(call(CallError::Lost { peer })),
                // The install that follows the transfer keeps the answer's body busy, not this.
                answer = tokio::time::timeout(idle, response.as_mut()) => {
                    answer.map_err(|_| stalled())?
                }
            },
            // A peer that answered and stopped reading resets the body: its answer says why.
            Err(StreamFailure::Call(
                e @ (CallError::Connection { .. } | CallError::Lost { .. }),
            )) => match tokio::time::timeout(idle, response.as_mut()).await {
                Ok(Ok(answer)) => Ok(answer),
                _ => return Err(call(e)),
            },
            Err(failure) => {
                send.send_reset(h2::Reason::CANCEL);
                return Err(failure);
            }
        };
        let response = answered.map_err(failed)?;
        let status = response.status();
        let mut answer = response.into_body();
        if !status.is_success() {
            let message = match tokio::time::timeout(idle, read_body(answer, limit)).await {
                Ok(Ok(body)) => String::from_utf8_lossy(&body).into_owned(),
                _ => String::new(),
            };
            return Err(call(CallError::Status {
                peer,
                status: status.as_u16(),
                message,
            }));
        }
        let mut marker = None;
        let mut out = BytesMut::new();
        loop {
            let chunk = tokio::select! {
                biased;
                closed = cancel.as_mut() => {
                    send.send_reset(h2::Reason::CANCEL);
                    return Err(StreamFailure::Cancelled(closed));
                }
                () = conn.until_closed() => return Err(call(CallError::Lost { peer })),
                chunk = tokio::time::timeout(idle, answer.data()) => match chunk {
                    Err(_) => return Err(stalled()),
                    Ok(None) => break,
                    Ok(Some(chunk)) => chunk.map_err(failed)?,
                },
            };
            let _ = answer.flow_control().release_capacity(chunk.len());
            let mut rest = &chunk[..];
            while marker.is_none() {
                let Some((&byte, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                if byte != stream_answer::KEEPALIVE {
                    marker = Some(byte);
                }
            }
            if out.len() + rest.len() > limit {
                return Err(call(CallError::TooLarge { peer, limit }));
            }
            out.extend_from_slice(rest);
        }
        match marker {
            Some(stream_answer::ANSWERED) => Ok(out.freeze()),
            Some(stream_answer::FAILED) => Err(call(CallError::Status {
                peer,
                status: status.as_u16(),
                message: String::from_utf8_lossy(&out).into_owned(),
            })),
            Some(other) => Err(call(CallError::Malformed {
                peer,
                reason: format!("unknown answer marker {other}"),
            })),
            None => Err(call(CallError::Lost { peer })),
        }
    }

    fn link(&self, peer: u64, lane: Lane) -> SharedLink {
        let mut links = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        links.entry((peer, lane)).or_default().clone()
    }

    /// The live connection of (peer, lane), connecting unless the link is backing off. A connect
    /// runs on a task of its own, so a caller that gives up (a raft deadline shorter than a
    /// connect) neither cancels it nor loses its outcome: the backoff is always recorded.
    pub(crate) async fn connection(&self, peer: u64, lane: Lane) -> Result<Conn, CallError> {
        let shared = self.link(peer, lane);
        if let Ok(link) = shared.try_lock()
            && let Some(conn) = link.conn.as_ref().filter(|conn| conn.alive())
        {
            return Ok(conn.clone());
        }
        let transport = self.clone();
        let connecting = self
            .inner
            .runtime
            .spawn(async move { transport.connect_link(&shared, peer, lane).await });
        connecting.await.unwrap_or_else(|e| {
            Err(CallError::Unreachable {
                peer,
                reason: e.to_string(),
            })
        })
    }

    async fn connect_link(
        &self,
        shared: &SharedLink,
        peer: u64,
        lane: Lane,
    ) -> Result<Conn, CallError> {
        let mut link = shared.lock().await;
        if let Some(conn) = &link.conn {
            if conn.alive() {
                return Ok(conn.clone());
            }
            debug!(peer, %lane, "connection to peer closed");
            link.conn = None;
        }
        if let Some(at) = link.retry_at
            && Instant::now() < at
        {
            return Err(CallError::Unreachable {
                peer,
                reason: "waiting before reconnecting".into(),
            });
        }
        match self.connect(peer, lane).await {
            Ok(conn) => {
                if link.failures > 0 {
                    debug!(peer, %lane, "reconnected to peer");
                }
                link.failures = 0;
                link.retry_at = None;
                link.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                link.failures = link.failures.saturating_add(1);
                link.retry_at =
                    Some(Instant::now() + self.inner.settings.backoff_after(link.failures));
                match &e {
                    CallError::Refused { .. } => {
                        error!(peer, %lane, error = %e, "peer refused this node")
                    }
                    _ if link.failures == 1 => {
                        warn!(peer, %lane, error = %e, "cannot connect to peer")
                    }
                    _ => {
                        debug!(peer, %lane, error = %e, failures = link.failures, "cannot connect to peer")
                    }
                }
                Err(e)
            }
        }
    }

    /// Connects, runs the HTTP/2 handshake and the hello, within the connect timeout.
    async fn connect(&self, peer: u64, lane: Lane) -> Result<Conn, CallError> {
        let known = self
            .inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .copied();
        let Some(address) = known else {
            return Err(CallError::Unreachable {
                peer,
                reason: "not a member of this cluster's configuration".into(),
            });
        };
        let settings = self.inner.settings.clone();
        let timeout = settings.connect_timeout;
        // The socket and the connection's driver live on the transport's runtime.
        let opened = self.inner.runtime.spawn(open(peer, address, settings));
        let conn = match tokio::time::timeout(timeout, opened).await {
            Ok(Ok(result)) => result?,
            Ok(Err(join)) => {
                return Err(CallError::Unreachable {
                    peer,
                    reason: join.to_string(),
                });
            }
            Err(_) => {
                return Err(CallError::Unreachable {
                    peer,
                    reason: format!("connect to {address} timed out after {timeout:?}"),
                });
            }
        };
        let me = &self.inner.identity;
        let hello = Hello {
            version: VERSION,
            cluster: me.cluster.clone(),
            fingerprint: me.fingerprint.clone(),
            from: me.node,
            to: peer,
            incarnation: self
                .inner
                .incarnations
                .get()
                .map(|book| book.own().to_owned())
                .unwrap_or_default(),
        };
        let body = codec::encode(&hello).map_err(|source| CallError::Codec { peer, source })?;
        let limit = self.inner.settings.max_message_bytes;
        let answer = tokio::time::timeout(
            timeout,
            exchange(&conn, peer, HELLO_PATH, body.into(), limit),
        )
        .await;
        match answer {
            Ok(Ok(theirs)) => {
                let theirs = String::from_utf8_lossy(&theirs);
                let admitted = self
                    .inner
                    .incarnations
                    .get()
                    .map_or(Ok(()), |book| book.admit(peer, &theirs));
                if let Err(reason) = admitted {
                    conn.close();
                    return Err(CallError::Refused { peer, reason });
                }
                debug!(peer, %lane, %address, "connected to peer");
                Ok(conn)
            }
            Ok(Err(CallError::Status { message, .. })) => {
                conn.close();
                Err(CallError::Refused {
                    peer,
                    reason: message,
                })
            }
            Ok(Err(e)) => {
                conn.close();
                Err(CallError::Unreachable {
                    peer,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                conn.close();
                Err(CallError::Unreachable {
                    peer,
                    reason: format!("no hello answer within {timeout:?}"),
                })
            }
        }
    }
}

/// Opens the TCP connection (with TLS when configured) and the HTTP/2 session, and spawns the
/// task that drives it and closes it when a ping goes unanswered.
async fn open(peer: u64, address: SocketAddr, settings: Settings) -> Result<Conn, CallError> {
    let unreachable = |reason: String| CallError::Unreachable { peer, reason };
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| unreachable(format!("connect to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = settings.tls.clone() else {
        return session(peer, address, tcp, settings).await;
    };
    let name = holdfast_tls::ServerName::from(address.ip());
    let stream = holdfast_tls::TlsConnector::from(tls.client)
        .connect(name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS handshake with {address}: {e}")))?;
    session(peer, address, stream, settings).await
}

/// The HTTP/2 session over an open byte stream, and its driving task.
async fn session<T>(
    peer: u64,
    address: SocketAddr,
    io: T,
    settings: Settings,
) -> Result<Conn, CallError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let unreachable = |reason: String| CallError::Unreachable { peer, reason };
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(256 * 1024)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| unreachable(format!("HTTP/2 handshake with {address}: {e}")))?;
    let closed = Arc::new(watch::channel(false).0);
    let flag = closed.clone();
    let pings = connection.ping_pong();
    tokio::spawn(async move {
        let keepalive = async {
            let Some(mut pings) = pings else {
                return futures::future::pending::<String>().await;
            };
            loop {
                tokio::time::sleep(settings.ping_interval).await;
                match tokio::time::timeout(settings.ping_timeout, pings.ping(h2::Ping::opaque()))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Err(_) => return format!("no ping answer within {:?}", settings.ping_timeout),
                }
            }
        };
        tokio::select! {
            ended = &mut connection => match ended {
                Ok(()) => debug!(peer, "connection to peer closed"),
                Err(e) => debug!(peer, error = %e, "connection to peer ended"),
            },
            reason = keepalive => warn!(peer, %reason, "closing the connection to peer"),
        }
        flag.send_replace(true);
    });
    Ok(Conn { send, closed })
}

/// One request and its answer on an open connection.
async fn exchange(
    conn: &Conn,
    peer: u64,
    path: &str,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, CallError> {
    tokio::select! {
        answer = request(conn, peer, path, body, limit) => answer,
        () = conn.until_closed() => Err(CallError::Lost { peer }),
    }
}

async fn request(
    conn: &Conn,
    peer: u64,
    path: &str,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, CallError> {
    let failed = |source| CallError::Connection { peer, source };
    let response = send_request(conn, peer, path, body)
        .await?
        .await
        .map_err(failed)?;
    let status = response.status();
    let body = read_body(response.into_body(), limit)
        .await
        .map_err(|e| match e {
            ReadError::Stream(source) => CallError::Connection { peer, source },
            ReadError::TooLarge => CallError::TooLarge { peer, limit },
        })?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(CallError::Status {
            peer,
            status: status.as_u16(),
            message: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Sends one request with `body` whole and returns its pending answer (whose body the caller
/// reads as it needs: whole, or frame by frame).
pub(crate) async fn send_request(
    conn: &Conn,
    peer: u64,
    path: &str,
    body: Bytes,
) -> Result<h2::client::ResponseFuture, CallError> {
    let failed = |source| CallError::Connection { peer, source };
    let request = http::Request::post(path)
        .body(())
        .map_err(|e| CallError::Status {
            peer,
            status: 0,
            message: format!("invalid request path {path:?}: {e}"),
        })?;
    let mut send = conn.send.clone().ready().await.map_err(failed)?;
    let (response, mut stream) = send.send_request(request, false).map_err(failed)?;
    stream.send_data(body, true).map_err(failed)?;
    Ok(response)
}

/// Sends `head`, then `size` bytes of `body` in chunks of [`SNAPSHOT_CHUNK`], each only as
/// far as the peer granted window, and ends the stream.
async fn send_body<R>(
    send: &mut SendStream<Bytes>,
    head: Bytes,
    body: &mut R,
    size: u64,
    idle: Duration,
    peer: u64,
) -> Result<(), SendFailure>
where
    R: AsyncRead + Unpin + ?Sized,
{
    send_granted(send, head, idle, peer).await?;
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).map_or(SNAPSHOT_CHUNK, |left| left.min(SNAPSHOT_CHUNK));
        let mut chunk = vec![0u8; want];
        match tokio::time::timeout(idle, body.read_exact(&mut chunk)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(SendFailure::Read(e)),
            Err(_) => {
                return Err(SendFailure::Call(CallError::Idle { peer, after: idle }));
            }
        }
        left -= want as u64;
        send_granted(send, Bytes::from(chunk), idle, peer).await?;
    }
    send.send_data(Bytes::new(), true)
        .map_err(|source| SendFailure::Call(CallError::Connection { peer, source }))
}

/// Hands `data` to the stream piece by piece as flow control grants capacity, so that at most
/// the peer's window is ever buffered.
pub(crate) async fn send_granted(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    idle: Duration,
    peer: u64,
) -> Result<(), SendFailure> {
    let failed = |source| SendFailure::Call(CallError::Connection { peer, source });
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = loop {
            let granted = send.capacity();
            if granted > 0 {
                break granted;
            }
            let capacity = futures::future::poll_fn(|cx| send.poll_capacity(cx));
            match tokio::time::timeout(idle, capacity).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(failed(e)),
                Ok(None) => return Err(SendFailure::Call(CallError::Lost { peer })),
                Err(_) => return Err(SendFailure::Call(CallError::Idle { peer, after: idle })),
            }
        };
        let part = data.split_to(granted.min(data.len()));
        send.send_data(part, false).map_err(failed)?;
    }
    Ok(())
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    Stream(h2::Error),
    TooLarge,
}

/// Reads a whole body of at most `limit` bytes, giving the window back as it goes.
pub(crate) async fn read_body(mut body: h2::RecvStream, limit: usize) -> Result<Bytes, ReadError> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(ReadError::Stream)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::RaftService;
    use crate::server::{Groups, Listener};
    use crate::wire::{GroupId, RaftRpc, raft_path};
    use futures::future::BoxFuture;
    use tokio::sync::watch;

    /// Answers every message with its own body reversed.
    struct Mirror;

    impl RaftService for Mirror {
        fn serve(
            &self,
            _rpc: RaftRpc,
            body: Bytes,
        ) -> BoxFuture<'static, Result<Vec<u8>, codec::Error>> {
            Box::pin(async move { Ok(body.iter().rev().copied().collect()) })
        }
    }

    fn identity(node: u64, cluster: &str) -> Identity {
        Identity {
            cluster: cluster.into(),
            fingerprint: "fp".into(),
            node,
        }
    }

    /// Starts node 2's listener serving partition 0 and returns its address and the sender
    /// that publishes (or withdraws) the group.
    async fn listener(cluster: &str) -> (SocketAddr, watch::Sender<Option<Arc<dyn RaftService>>>) {
        let (publish, published) = watch::channel(None);
        let groups = Groups::new([(GroupId::Partition(0), published)]);
        let bound = Listener::bind(
            "127.0.0.1:0".parse().expect("address"),
            identity(2, cluster),
            Settings::default(),
            groups,
        )
        .expect("bind");
        let address = bound.local_addr().expect("local address");
        tokio::spawn(bound.serve());
        (address, publish)
    }

    fn client(cluster: &str, peers: &[(u64, SocketAddr)]) -> Transport {
        Transport::new(
            identity(1, cluster),
            peers.iter().copied().collect(),
            Settings::default(),
            Handle::current(),
        )
    }

    const TTL: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_message_reaches_the_group_once_it_runs() {
        let (address, publish) = listener("c").await;
        let transport = client("c", &[(2, address)]);
        let path = raft_path(GroupId::Partition(0), RaftRpc::Append);
        let early = transport.call(2, Lane::Raft, &path, vec![1], TTL).await;
        assert!(
            matches!(early, Err(CallError::Status { status: 503, .. })),
            "{early:?}"
        );
        publish.send_replace(Some(Arc::new(Mirror)));
        let answer = transport
            .call(2, Lane::Raft, &path, vec![1, 2, 3], TTL)
            .await;
        assert_eq!(answer.expect("answer").as_ref(), [3, 2, 1]);
        let unknown = raft_path(GroupId::Partition(7), RaftRpc::Vote);
        let missing = transport.call(2, Lane::Raft, &unknown, vec![], TTL).await;
        assert!(
            matches!(missing, Err(CallError::Status { status: 404, .. })),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn a_node_of_another_cluster_is_refused() {
        let (address, publish) = listener("c").await;
        publish.send_replace(Some(Arc::new(Mirror)));
        let stranger = client("other", &[(2, address)]);
        let path = raft_path(GroupId::Partition(0), RaftRpc::Vote);
        let refused = stranger.call(2, Lane::Raft, &path, vec![1], TTL).await;
        match refused {
            Err(CallError::Refused { reason, .. }) => {
                assert!(reason.contains("cluster.name"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Dialing node 2's address while meaning node 3 is refused too.
        let lost = client("c", &[(3, address)]);
        let refused = lost.call(3, Lane::Raft, &path, vec![1], TTL).await;
        assert!(
            matches!(refused, Err(CallError::Refused { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_retried_after_a_backoff() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = free.local_addr().expect("address");
        drop(free);
        let transport = client("c", &[(2, address)]);
        let path = raft_path(GroupId::Partition(0), RaftRpc::Vote);
        let first = transport.call(2, Lane::Raft, &path, vec![], TTL).await;
        assert!(
            matches!(first, Err(CallError::Unreachable { .. })),
            "{first:?}"
        );
        // Within the backoff nothing is dialed; the error says so.
        match transport.call(2, Lane::Raft, &path, vec![], TTL).await {
            Err(CallError::Unreachable { reason, .. }) => {
                assert!(reason.contains("waiting"), "{reason}")
            }
            other => panic!("expected the backoff, got {other:?}"),
        }
        // A listener appears at that address: after the backoff the call goes through.
        let (publish, published) = watch::channel(Some(Arc::new(Mirror) as Arc<dyn RaftService>));
        let bound = Listener::bind(
            address,
            identity(2, "c"),
            Settings::default(),
            Groups::new([(GroupId::Partition(0), published)]),
        )
        .expect("bind");
        tokio::spawn(bound.serve());
        tokio::time::sleep(Duration::from_millis(120)).await;
        let answer = transport.call(2, Lane::Raft, &path, vec![7], TTL).await;
        assert_eq!(answer.expect("answer").as_ref(), [7]);
        drop(publish);
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_before_sending() {
        let transport = Transport::new(
            identity(1, "c"),
            BTreeMap::new(),
            Settings {
                max_message_bytes: 8,
                ..Settings::default()
            },
            Handle::current(),
        );
        let sent = transport
            .call(2, Lane::Bulk, "/v1/raft/p0/snapshot", vec![0; 9], TTL)
            .await;
        assert!(matches!(sent, Err(CallError::TooLarge { .. })), "{sent:?}");
    }
}
