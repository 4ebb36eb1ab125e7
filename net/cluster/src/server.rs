//! The listening side: accepts peers' connections, checks each connection's hello and hands raft
//! messages to the group they are for.

use crate::client::{ReadError, read_body};
use crate::raft::{RaftService, SnapshotStream};
use crate::scan::ScanService;
use crate::wire::{
    GroupId, HELLO_PATH, Hello, Identity, RaftRpc, Settings, forward_route, scan_route,
    snapshot_stream_route, stream_answer,
};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use h2::server::SendResponse;
use holdfast_types::codec;
use http::StatusCode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, warn};

/// A running group as its actor publishes it (`None` while it is not running).
pub type Published = watch::Receiver<Option<Arc<dyn RaftService>>>;

/// The groups this node serves, each published by the actor that runs it (`None` while it is
/// not running, e.g. between a crash and its restart).
#[derive(Clone, Default)]
pub struct Groups {
    table: Arc<BTreeMap<GroupId, Published>>,
}

impl Groups {
    /// A table of the groups this node hosts.
    pub fn new(groups: impl IntoIterator<Item = (GroupId, Published)>) -> Self {
        Self {
            table: Arc::new(groups.into_iter().collect()),
        }
    }

    fn get(&self, group: GroupId) -> Result<Arc<dyn RaftService>, (StatusCode, String)> {
        let Some(published) = self.table.get(&group) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("this node holds no replica of {group}"),
            ));
        };
        published.borrow().clone().ok_or_else(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{group} is not running on this node"),
            )
        })
    }
}

/// Answers requests that other nodes forward to a group this node may lead (a partition, or the
/// metadata log): the body is the caller's encoded request, the answer its encoded result (a
/// refusal included).
pub trait ForwardService: Send + Sync + 'static {
    /// Delivers one forwarded request to `group` on this node.
    fn serve(&self, group: GroupId, body: Bytes) -> BoxFuture<'static, Vec<u8>>;
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The node's cluster address could not be bound.
    #[error("cannot listen for peers on {address} (key `cluster.nodes` of node {node}): {reason}")]
    Bind {
        address: SocketAddr,
        node: u64,
        /// Why, shown in the message itself (so it is not repeated as a cause).
        reason: std::io::Error,
    },
}

/// The node's listener for its peers.
pub struct Listener {
    listener: std::net::TcpListener,
    identity: Identity,
    settings: Settings,
    groups: Groups,
    forwarded: Option<Arc<dyn ForwardService>>,
    scans: Option<Arc<dyn ScanService>>,
    /// Which data dir each peer stands for; `None` checks nothing.
    incarnations: Option<Arc<crate::Incarnations>>,
}

impl Listener {
    /// Binds `address` at once, so that a taken address fails the node's start; serving
    /// begins with [`Listener::serve`] on the runtime that drives the connections.
    pub fn bind(
        address: SocketAddr,
        identity: Identity,
        settings: Settings,
        groups: Groups,
    ) -> Result<Self, ServeError> {
        let bind_error = |reason| ServeError::Bind {
            address,
            node: identity.node,
            reason,
        };
        let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(Self {
            listener,
            identity,
            settings,
            groups,
            forwarded: None,
            scans: None,
            incarnations: None,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves these groups instead of the ones given at bind time.
    pub fn with_groups(mut self, groups: Groups) -> Self {
        self.groups = groups;
        self
    }

    /// Refuses peers that come back with another data dir than the one `book` knows them by.
    pub fn with_incarnations(mut self, book: Arc<crate::Incarnations>) -> Self {
        self.incarnations = Some(book);
        self
    }

    /// Answers forwarded requests with `service`.
    pub fn with_forwarded(mut self, service: Arc<dyn ForwardService>) -> Self {
        self.forwarded = Some(service);
        self
    }

    /// Answers remote scans of this node's partitions with `service`.
    pub fn with_scans(mut self, service: Arc<dyn ScanService>) -> Self {
        self.scans = Some(service);
        self
    }

    /// Accepts connections until the runtime stops.
    pub async fn serve(self) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(e) => {
                error!(error = %e, "cannot serve peers");
                return;
            }
        };
        let shared = Arc::new(Shared {
            identity: self.identity,
            settings: self.settings,
            groups: self.groups,
            forwarded: self.forwarded,
            scans: self.scans,
            incarnations: self.incarnations,
        });
        loop {
            match listener.accept().await {
                Ok((tcp, from)) => {
                    tokio::spawn(connection(tcp, from, shared.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "cannot accept a peer connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// What every connection of the listener needs.
struct Shared {
    identity: Identity,
    settings: Settings,
    groups: Groups,
    forwarded: Option<Arc<dyn ForwardService>>,
    scans: Option<Arc<dyn ScanService>>,
    incarnations: Option<Arc<crate::Incarnations>>,
}

/// Accepts one peer connection: the TLS handshake first when the transport has TLS (a peer
/// without a certificate of the cluster's CA is refused here, with a log line naming it).
async fn connection(tcp: TcpStream, from: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = shared.settings.tls.clone() else {
        return serve_peer(tcp, from, shared).await;
    };
    let accept = holdfast_tls::TlsAcceptor::from(tls.server).accept(tcp);
    match tokio::time::timeout(shared.settings.connect_timeout, accept).await {
        Ok(Ok(stream)) => serve_peer(stream, from, shared).await,
        Ok(Err(e)) if holdfast_tls::refused_by_peer(&e) => warn!(
            %from,
            error = %e,
            "a peer aborted the TLS handshake: it does not accept this node's certificate (is \
             `cluster.tls_cert_file` issued by the cluster's CA?)"
        ),
        Ok(Err(e)) => warn!(
            %from,
            error = %e,
            "refused a peer connection: TLS handshake failed (is its certificate issued by the \
             cluster's CA, `cluster.tls_ca_file`?)"
        ),
        Err(_) => debug!(%from, "peer TLS handshake timed out"),
    }
}

/// Serves one peer connection: nothing but a hello is answered until a hello was accepted.
async fn serve_peer<T>(io: T, from: SocketAddr, shared: Arc<Shared>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let settings = &shared.settings;
    let handshake = h2::server::Builder::new()
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(256 * 1024)
        .max_concurrent_streams(1024)
        .handshake::<_, Bytes>(io);
    let mut conn = match tokio::time::timeout(settings.connect_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            debug!(%from, error = %e, "peer HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            debug!(%from, "peer HTTP/2 handshake timed out");
            return;
        }
    };
    // The peer's node id once its hello was accepted.
    let peer: Arc<OnceLock<u64>> = Arc::new(OnceLock::new());
    while let Some(stream) = conn.accept().await {
        let (request, respond) = match stream {
            Ok(stream) => stream,
            Err(e) => {
                debug!(%from, error = %e, "peer connection ended");
                return;
            }
        };
        let path = request.uri().path().to_owned();
        let body = request.into_body();
        // Streams are served on tasks of their own: reading a body needs this loop to keep
        // driving the connection. A peer sends nothing else before its hello was answered.
        if path == HELLO_PATH {
            let (shared, peer) = (shared.clone(), peer.clone());
            tokio::spawn(async move { hello(body, respond, &shared, &peer, from).await });
            continue;
        }
        let Some(&peer_id) = peer.get() else {
            answer(
                respond,
                StatusCode::FORBIDDEN,
                "no accepted hello on this connection".into(),
            );
            continue;
        };
        if let Some(group) = snapshot_stream_route(&path) {
            let shared = shared.clone();
            tokio::spawn(async move {
                snapshot_stream(group, body, respond, &shared, peer_id).await;
            });
            continue;
        }
        if let Some(partition) = scan_route(&path) {
            let (service, settings) = (shared.scans.clone(), shared.settings.clone());
            tokio::spawn(async move {
                crate::scan::serve(partition, body, respond, service, &settings, peer_id).await;
            });
            continue;
        }
        let shared = shared.clone();
        let mut respond = respond;
        tokio::spawn(async move {
            let limit = shared.settings.max_message_bytes;
            let served = async {
                match forward_route(&path) {
                    Some(group) => forwarded(group, body, &shared, limit).await,
                    None => route(&path, body, &shared.groups, limit).await,
                }
            };
            // A caller that gave up (its client went away, its deadline passed) resets the
            // stream: the work is dropped with it, so a forwarded wait leaves no waiter behind.
            let (status, body) = tokio::select! {
                answer = served => answer,
                _ = futures::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                    debug!(peer = peer_id, %path, "peer gave up on its request");
                    return;
                }
            };
            if status != StatusCode::OK {
                debug!(peer = peer_id, %path, %status, "peer request refused");
            }
            answer(respond, status, body);
        });
    }
}

/// Checks a hello and remembers the peer when it is accepted.
async fn hello(
    body: h2::RecvStream,
    respond: SendResponse<Bytes>,
    shared: &Shared,
    peer: &OnceLock<u64>,
    from: SocketAddr,
) {
    let identity = &shared.identity;
    let hello = match read_body(body, shared.settings.max_message_bytes).await {
        Ok(bytes) => codec::decode::<Hello>(&bytes).map_err(|e| e.to_string()),
        Err(_) => Err("unreadable hello".to_owned()),
    };
    match hello {
        Ok(hello) => match hello.refusal(identity).map(Err).unwrap_or_else(|| {
            shared
                .incarnations
                .as_ref()
                .map_or(Ok(()), |book| book.admit(hello.from, &hello.incarnation))
        }) {
            Ok(()) => {
                let _ = peer.set(hello.from);
                debug!(peer = hello.from, %from, "peer connected");
                // The answer carries this node's incarnation for the caller's own check.
                let own = shared
                    .incarnations
                    .as_ref()
                    .map(|book| book.own().to_owned());
                answer(respond, StatusCode::OK, own.unwrap_or_default().into());
            }
            Err(reason) => {
                error!(%from, %reason, "refused a connection from another cluster or node");
                answer(respond, StatusCode::FORBIDDEN, reason.into());
            }
        },
        Err(reason) => {
            warn!(%from, %reason, "refused a malformed hello");
            answer(respond, StatusCode::BAD_REQUEST, reason.into());
        }
    }
}

/// Runs one raft message through its group.
async fn route(
    path: &str,
    body: h2::RecvStream,
    groups: &Groups,
    limit: usize,
) -> (StatusCode, Bytes) {
    let Some((group, rpc)) = RaftRpc::route(path) else {
        return (StatusCode::NOT_FOUND, format!("no route {path}").into());
    };
    let service = match groups.get(group) {
        Ok(service) => service,
        Err((status, message)) => return (status, message.into()),
    };
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("message above {limit} bytes").into(),
            );
        }
        Err(ReadError::Stream(e)) => return (StatusCode::BAD_REQUEST, e.to_string().into()),
    };
    match service.serve(rpc, body).await {
        Ok(answer) => (StatusCode::OK, answer.into()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string().into()),
    }
}

/// Receives a snapshot streamed in one request (see [`crate::raft`]): the group spools it and
/// installs it; meanwhile the answer's headers go out and a keepalive byte every quarter of the
/// idle timeout, so the sender waits out a long install without waiting out a dead peer.
async fn snapshot_stream(
    group: GroupId,
    body: h2::RecvStream,
    mut respond: SendResponse<Bytes>,
    shared: &Shared,
    peer: u64,
) {
    let service = match shared.groups.get(group) {
        Ok(service) => service,
        Err((status, message)) => {
            debug!(peer, %group, %status, "refused a snapshot stream");
            answer(respond, status, message.into());
            return;
        }
    };
    let idle = shared.settings.snapshot_idle_timeout;
    let (installing, mut install_began) = oneshot::channel();
    let mut receiving = service.receive_snapshot(SnapshotStream::new(body, idle, installing));
    let received = tokio::select! {
        result = &mut receiving => Some(result),
        Ok(()) = &mut install_began => None,
        _ = futures::future::poll_fn(|cx| respond.poll_reset(cx)) => {
            debug!(peer, %group, "peer abandoned its snapshot stream");
            return;
        }
    };
    match received {
        Some(Err(e)) => {
            warn!(peer, %group, error = %e, "a streamed snapshot was not received");
            answer(respond, e.status(), e.to_string().into());
        }
        // Answered before the install, e.g. a stale leader's vote.
        Some(Ok(answered)) => {
            let mut body = BytesMut::with_capacity(1 + answered.len());
            body.extend_from_slice(&[stream_answer::ANSWERED]);
            body.extend_from_slice(&answered);
            answer(respond, StatusCode::OK, body.freeze());
        }
        None => {
            let Ok(response) = http::Response::builder().status(StatusCode::OK).body(()) else {
                return;
            };
            let mut stream = match respond.send_response(response, false) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    debug!(peer, %group, error = %e, "cannot answer a snapshot stream");
                    None
                }
            };
            let every = (idle / 4).max(std::time::Duration::from_millis(50));
            let mut keepalive =
                tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // The install runs to its end even if the sender went away: openraft has it.
            let result = loop {
                tokio::select! {
                    result = &mut receiving => break result,
                    _ = keepalive.tick() => {
                        if let Some(sending) = &mut stream {
                            let alive = Bytes::from_static(&[stream_answer::KEEPALIVE]);
                            if sending.send_data(alive, false).is_err() {
                                stream = None;
                            }
                        }
                    }
                }
            };
            let mut body = BytesMut::new();
            match &result {
                Ok(answered) => {
                    body.extend_from_slice(&[stream_answer::ANSWERED]);
                    body.extend_from_slice(answered);
                }
                Err(e) => {
                    warn!(peer, %group, error = %e, "a streamed snapshot was not installed");
                    body.extend_from_slice(&[stream_answer::FAILED]);
                    body.extend_from_slice(e.to_string().as_bytes());
                }
            }
            if let Some(mut sending) = stream {
                let _ = sending.send_data(body.freeze(), true);
            }
        }
    }
}

/// Hands a forwarded request to this node's forward service.
async fn forwarded(
    group: GroupId,
    body: h2::RecvStream,
    shared: &Shared,
    limit: usize,
) -> (StatusCode, Bytes) {
    let Some(service) = &shared.forwarded else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node does not serve forwarded requests yet".into(),
        );
    };
    match read_body(body, limit).await {
        Ok(body) => (StatusCode::OK, service.serve(group, body).await.into()),
        Err(ReadError::TooLarge) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("message above {limit} bytes").into(),
        ),
        Err(ReadError::Stream(e)) => (StatusCode::BAD_REQUEST, e.to_string().into()),
    }
}

/// Answers a request whole: `status` and `body`.
pub(crate) fn answer(mut respond: SendResponse<Bytes>, status: StatusCode, body: Bytes) {
    let response = http::Response::builder().status(status).body(());
    let Ok(response) = response else {
        return;
    };
    if let Ok(mut stream) = respond.send_response(response, false) {
        let _ = stream.send_data(body, true);
    }
}
