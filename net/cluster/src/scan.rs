//! Remote scans: SQL on a node that holds no replica of a partition asks a node that does to
//! scan it and streams the rows back.
//!
//! ```text
//!   Transport::scan(partition, replicas, request)          Listener ── ScanService::scan
//!     POST /v1/scan/p<n> on the bulk lane, body: request ──►  refused: 404/503 before any frame
//!       (the next replica is tried)                            (not hosted, unreadable request)
//!     ◄── 200, then frames: KEEPALIVE* (CHUNK KEEPALIVE*)* (END | FAILED)
//! ```
//!
//! The bulk lane, so a large scan never delays raft heartbeats. Memory stays bounded on both
//! sides: the server pulls the next chunk from its scan only once HTTP/2 flow control took the
//! previous one, and the caller gives window back as it reads frames, which it does only as
//! fast as the query consumes them; each chunk is at most `max_message_bytes`. While a chunk
//! is slow to come (read barrier, slow disk) the server sends keepalives, so either side gives
//! up after `scan_idle_timeout` without a frame, not after a fixed time for the whole scan. A
//! body that ends without END (connection lost, peer gone) is an error, never a short answer.
//!
//! Frames: one tag byte; CHUNK and FAILED are followed by a big-endian u32 length and that many
//! bytes (the chunk, opaque here; the failure's reason in UTF-8).

use crate::client::{CallError, ReadError, SendFailure, read_body, send_granted, send_request};
use crate::server::answer;
use crate::wire::{Lane, Settings, scan_path};
use crate::{Transport, client::Conn};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use h2::server::SendResponse;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// Frame tags of a scan's answer body.
mod tag {
    pub(super) const KEEPALIVE: u8 = 0;
    pub(super) const CHUNK: u8 = 1;
    pub(super) const END: u8 = 2;
    pub(super) const FAILED: u8 = 3;
}

/// Bytes in front of a CHUNK's or FAILED's payload: the tag and the length.
const HEADER: usize = 5;

/// The chunks of one scan as the serving node produces them, in order; the stream ends after
/// the last one (an `Err` ends the scan as failed).
pub type ScanChunks = BoxStream<'static, Result<Bytes, String>>;

/// Serves scans of partitions this node hosts (registered on the [`crate::Listener`]).
pub trait ScanService: Send + Sync + 'static {
    /// Starts scanning `partition` as `request` (the caller's encoded request) asks; refused
    /// with a reason when this node does not host the partition or cannot read the request.
    fn scan(&self, partition: u32, request: Bytes) -> Result<ScanChunks, String>;
}

/// Why a remote scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The call to the peer failed: unreachable, refused, silent past the idle timeout,
    /// connection lost mid-scan, a frame above the limit or not following the protocol.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The peer ran the scan and it failed there.
    #[error("node {peer} failed the scan: {reason}")]
    Failed {
        /// The peer that ran it.
        peer: u64,
        /// Its reason.
        reason: String,
    },
    /// No replica could start the scan; each one's failure, in the order tried.
    #[error("{}", unanswered(*partition, tried))]
    Unanswered {
        /// The partition.
        partition: u32,
        /// Why each replica did not serve it.
        tried: Vec<ScanError>,
    },
}

fn unanswered(partition: u32, tried: &[ScanError]) -> String {
    if tried.is_empty() {
        return format!("no other node holds a replica of partition {partition}");
    }
    let reasons: Vec<String> = tried.iter().map(ToString::to_string).collect();
    format!(
        "no replica of partition {partition} answered: {}",
        reasons.join("; ")
    )
}

/// One frame of a scan's answer, keepalives aside.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Chunk(Bytes),
    End,
    Failed(String),
}

impl Transport {
    /// Scans `partition` on the first of `replicas` that serves it (best first: its leader
    /// answers without a read barrier). A replica that refuses, cannot be reached or fails
    /// before its first chunk is passed over; once rows flow, a failure ends the scan.
    pub async fn scan(
        &self,
        partition: u32,
        replicas: &[u64],
        request: Vec<u8>,
    ) -> Result<ScanReply, ScanError> {
        let request = Bytes::from(request);
        let mut tried = Vec::new();
        for &peer in replicas {
            match self.scan_on(peer, partition, request.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    debug!(peer, partition, error = %e, "a replica did not serve a scan");
                    tried.push(e);
                }
            }
        }
        Err(ScanError::Unanswered { partition, tried })
    }

    /// Starts the scan on `peer` and waits for its first chunk (or its end).
    async fn scan_on(
        &self,
        peer: u64,
        partition: u32,
        request: Bytes,
    ) -> Result<ScanReply, ScanError> {
        let settings = self.settings();
        let (idle, limit) = (settings.scan_idle_timeout, settings.max_message_bytes);
        if request.len() > limit {
            return Err(CallError::TooLarge { peer, limit }.into());
        }
        let path = scan_path(partition);
        let opening = async {
            let conn = self.connection(peer, Lane::Bulk).await?;
            let answered = tokio::select! {
                () = conn.until_closed() => Err(CallError::Lost { peer }),
                answer = async {
                    send_request(&conn, peer, &path, request)
                        .await?
                        .await
                        .map_err(|source| CallError::Connection { peer, source })
                } => answer,
            };
            if let Err(CallError::Connection { .. }) = &answered {
                conn.close();
            }
            answered.map(|response| (conn, response))
        };
        let (conn, response) = tokio::time::timeout(idle, opening)
            .await
            .unwrap_or(Err(CallError::Timeout { peer, after: idle }))?;
        let status = response.status();
        let body = response.into_body();
        if !status.is_success() {
            let message = match tokio::time::timeout(idle, read_body(body, limit)).await {
                Ok(Ok(body)) => String::from_utf8_lossy(&body).into_owned(),
                _ => String::new(),
            };
            return Err(CallError::Status {
                peer,
                status: status.as_u16(),
                message,
            }
            .into());
        }
        let mut reply = ScanReply {
            peer,
            conn,
            body,
            buffer: BytesMut::new(),
            idle,
            limit,
            first: None,
            done: false,
        };
        match reply.frame().await? {
            Frame::Chunk(chunk) => reply.first = Some(chunk),
            Frame::End => reply.done = true,
            Frame::Failed(reason) => return Err(ScanError::Failed { peer, reason }),
        }
        Ok(reply)
    }
}

/// A scan a peer is running for this node: its chunks as they arrive. Dropping it resets the
/// stream, which stops the peer's scan.
pub struct ScanReply {
    peer: u64,
    conn: Conn,
    body: h2::RecvStream,
    /// Received bytes not yet cut into frames: at most one frame and one DATA frame.
    buffer: BytesMut,
    idle: Duration,
    limit: usize,
    /// The chunk read while choosing this replica.
    first: Option<Bytes>,
    done: bool,
}

impl std::fmt::Debug for ScanReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanReply")
            .field("peer", &self.peer)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ScanReply {
    /// The node running the scan.
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// The next chunk; `None` once the peer ended the scan. After an error, `None` too.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ScanError> {
        if let Some(chunk) = self.first.take() {
            return Ok(Some(chunk));
        }
        if self.done {
            return Ok(None);
        }
        let frame = self.frame().await;
        if !matches!(frame, Ok(Frame::Chunk(_))) {
            self.done = true;
        }
        match frame? {
            Frame::Chunk(chunk) => Ok(Some(chunk)),
            Frame::End => Ok(None),
            Frame::Failed(reason) => Err(ScanError::Failed {
                peer: self.peer,
                reason,
            }),
        }
    }

    /// The chunks as a stream, ending after the last one or the first error.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, ScanError>> {
        futures::stream::unfold(self, |mut reply| async move {
            match reply.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), reply)),
                Ok(None) => None,
                Err(e) => Some((Err(e), reply)),
            }
        })
        .boxed()
    }

    /// Reads until a whole frame other than a keepalive is buffered.
    async fn frame(&mut self) -> Result<Frame, CallError> {
        let peer = self.peer;
        loop {
            if let Some(frame) = parse(&mut self.buffer, self.limit, peer)? {
                return Ok(frame);
            }
            let data = tokio::select! {
                () = self.conn.until_closed() => return Err(CallError::Lost { peer }),
                data = tokio::time::timeout(self.idle, self.body.data()) => data,
            };
            let data = match data {
                Err(_) => {
                    return Err(CallError::Idle {
                        peer,
                        after: self.idle,
                    });
                }
                Ok(None) => {
                    return Err(CallError::Malformed {
                        peer,
                        reason: "the scan's answer ended before the scan did".into(),
                    });
                }
                Ok(Some(data)) => data.map_err(|source| CallError::Connection { peer, source })?,
            };
            let _ = self.body.flow_control().release_capacity(data.len());
            self.buffer.extend_from_slice(&data);
        }
    }
}

/// Cuts the next frame other than a keepalive off `buffer`; `None` until one is whole.
fn parse(buffer: &mut BytesMut, limit: usize, peer: u64) -> Result<Option<Frame>, CallError> {
    loop {
        let Some(&kind) = buffer.first() else {
            return Ok(None);
        };
        match kind {
            tag::KEEPALIVE => buffer.advance(1),
            tag::END => {
                buffer.advance(1);
                return Ok(Some(Frame::End));
            }
            tag::CHUNK | tag::FAILED => {
                if buffer.len() < HEADER {
                    return Ok(None);
                }
                let len = (&buffer[1..HEADER]).get_u32() as usize;
                if len > limit {
                    return Err(CallError::TooLarge { peer, limit });
                }
                if buffer.len() < HEADER + len {
                    buffer.reserve(HEADER + len - buffer.len());
                    return Ok(None);
                }
                buffer.advance(HEADER);
                let payload = buffer.split_to(len).freeze();
                return Ok(Some(if kind == tag::CHUNK {
                    Frame::Chunk(payload)
                } else {
                    Frame::Failed(String::from_utf8_lossy(&payload).into_owned())
                }));
            }
            other => {
                return Err(CallError::Malformed {
                    peer,
                    reason: format!("unknown scan frame {other}"),
                });
            }
        }
    }
}

/// The frame carrying `payload` under `kind` (CHUNK or FAILED): header, then payload.
fn framed(kind: u8, payload: Bytes) -> [Bytes; 2] {
    let mut header = BytesMut::with_capacity(HEADER);
    header.put_u8(kind);
    // Callers keep payloads within the transport's limit, far below 4 GiB.
    header.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    [header.freeze(), payload]
}

/// The FAILED frame for `reason`, cut to `limit` bytes.
fn failed(reason: &str, limit: usize) -> [Bytes; 2] {
    let mut end = reason.len().min(limit);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    framed(
        tag::FAILED,
        Bytes::copy_from_slice(&reason.as_bytes()[..end]),
    )
}

/// Serves one scan a peer asked for (see the module docs).
pub(crate) async fn serve(
    partition: u32,
    body: h2::RecvStream,
    mut respond: SendResponse<Bytes>,
    service: Option<Arc<dyn ScanService>>,
    settings: &Settings,
    peer: u64,
) {
    let (idle, limit) = (settings.scan_idle_timeout, settings.max_message_bytes);
    let Some(service) = service else {
        let message = "this node does not serve scans yet";
        answer(respond, StatusCode::SERVICE_UNAVAILABLE, message.into());
        return;
    };
    let request = match tokio::time::timeout(idle, read_body(body, limit)).await {
        Ok(Ok(request)) => request,
        Ok(Err(ReadError::TooLarge)) => {
            let message = format!("message above {limit} bytes");
            answer(respond, StatusCode::PAYLOAD_TOO_LARGE, message.into());
            return;
        }
        Ok(Err(ReadError::Stream(e))) => {
            answer(respond, StatusCode::BAD_REQUEST, e.to_string().into());
            return;
        }
        Err(_) => {
            let message = format!("no request within {idle:?}");
            answer(respond, StatusCode::REQUEST_TIMEOUT, message.into());
            return;
        }
    };
    let mut chunks = match service.scan(partition, request) {
        Ok(chunks) => chunks,
        Err(reason) => {
            debug!(peer, partition, %reason, "refused a scan");
            answer(respond, StatusCode::NOT_FOUND, reason.into());
            return;
        }
    };
    let Ok(response) = http::Response::builder().status(StatusCode::OK).body(()) else {
        return;
    };
    let mut send = match respond.send_response(response, false) {
        Ok(send) => send,
        Err(e) => {
            debug!(peer, partition, error = %e, "cannot answer a scan");
            return;
        }
    };
    let every = (idle / 4).max(Duration::from_millis(50));
    loop {
        let next = tokio::select! {
            _ = futures::future::poll_fn(|cx| send.poll_reset(cx)) => {
                debug!(peer, partition, "peer abandoned its scan");
                return;
            }
            next = tokio::time::timeout(every, chunks.next()) => next,
        };
        let (frame, last): (Vec<Bytes>, bool) = match next {
            Err(_) => (vec![Bytes::from_static(&[tag::KEEPALIVE])], false),
            Ok(Some(Ok(chunk))) if chunk.len() > limit => {
                let reason = format!(
                    "a chunk of {} bytes exceeds the transport's limit of {limit}",
                    chunk.len()
                );
                (failed(&reason, limit).to_vec(), true)
            }
            Ok(Some(Ok(chunk))) => (framed(tag::CHUNK, chunk).to_vec(), false),
            Ok(Some(Err(reason))) => (failed(&reason, limit).to_vec(), true),
            Ok(None) => (vec![Bytes::from_static(&[tag::END])], true),
        };
        for part in frame {
            if let Err(failure) = send_granted(&mut send, part, idle, peer).await {
                let error = match failure {
                    SendFailure::Call(e) => e.to_string(),
                    SendFailure::Read(e) => e.to_string(),
                };
                debug!(peer, partition, %error, "a scan's answer was not taken");
                return;
            }
        }
        if last {
            let _ = send.send_data(Bytes::new(), true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Groups, Listener};
    use crate::wire::Identity;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use tokio::runtime::Handle;

    #[test]
    fn frames_parse_across_any_split_and_skip_keepalives() {
        let mut wire = BytesMut::new();
        wire.put_u8(tag::KEEPALIVE);
        for part in framed(tag::CHUNK, Bytes::from_static(b"rows")) {
            wire.extend_from_slice(&part);
        }
        wire.put_u8(tag::KEEPALIVE);
        for part in failed("broke", 1024) {
            wire.extend_from_slice(&part);
        }
        wire.put_u8(tag::END);
        let expected = [
            Frame::Chunk(Bytes::from_static(b"rows")),
            Frame::Failed("broke".into()),
            Frame::End,
        ];
        // Fed one byte at a time, the frames come out whole and in order.
        let mut buffer = BytesMut::new();
        let mut seen = Vec::new();
        for byte in wire.iter() {
            buffer.put_u8(*byte);
            while let Some(frame) = parse(&mut buffer, 1024, 2).expect("valid") {
                seen.push(frame);
            }
        }
        assert_eq!(seen, expected);
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut buffer = BytesMut::new();
        for part in framed(tag::CHUNK, Bytes::from_static(b"0123456789")) {
            buffer.extend_from_slice(&part);
        }
        assert!(matches!(
            parse(&mut buffer, 4, 2),
            Err(CallError::TooLarge { limit: 4, .. })
        ));
        let mut buffer = BytesMut::from(&[9u8][..]);
        assert!(matches!(
            parse(&mut buffer, 4, 2),
            Err(CallError::Malformed { .. })
        ));
        // A reason is cut at a character boundary.
        let [_, cut] = failed("é", 1);
        assert!(cut.is_empty());
    }

    /// Serves partition 0 only: the request's bytes back as `count` chunks, each after
    /// `delay`, then ends (or fails with `end`); counts the chunks taken from it.
    #[derive(Default)]
    struct Echo {
        count: usize,
        /// The scan fails after its chunks with this reason.
        end: Option<String>,
        delay: Duration,
        pulled: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Echo {
        fn chunks(count: usize) -> Self {
            Self {
                count,
                ..Self::default()
            }
        }
    }

    impl ScanService for Echo {
        fn scan(&self, partition: u32, request: Bytes) -> Result<ScanChunks, String> {
            if partition != 0 {
                return Err(format!(
                    "this node holds no replica of partition {partition}"
                ));
            }
            let chunks = std::iter::repeat_n(Ok(request), self.count);
            let end = self.end.clone().map(Err);
            let (delay, pulled) = (self.delay, self.pulled.clone());
            let paced = futures::stream::iter(chunks.chain(end)).then(move |chunk| {
                let pulled = pulled.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    chunk
                }
            });
            Ok(paced.boxed())
        }
    }

    fn identity(node: u64) -> Identity {
        Identity {
            cluster: "c".into(),
            fingerprint: "fp".into(),
            node,
        }
    }

    fn server(service: Echo, settings: Settings) -> SocketAddr {
        let bound = Listener::bind(
            "127.0.0.1:0".parse().expect("address"),
            identity(2),
            settings,
            Groups::default(),
        )
        .expect("bind")
        .with_scans(Arc::new(service));
        let address = bound.local_addr().expect("address");
        tokio::spawn(bound.serve());
        address
    }

    fn client(peers: &[(u64, SocketAddr)], settings: Settings) -> Transport {
        Transport::new(
            identity(1),
            peers.iter().copied().collect::<BTreeMap<_, _>>(),
            settings,
            Handle::current(),
        )
    }

    async fn collect(reply: ScanReply) -> Result<Vec<Bytes>, String> {
        let items: Vec<_> = reply.into_stream().collect().await;
        items
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_scan_streams_every_chunk_then_ends() {
        let address = server(Echo::chunks(40), Settings::default());
        let transport = client(&[(2, address)], Settings::default());
        let big = vec![7u8; 300_000];
        let reply = transport.scan(0, &[2], big.clone()).await.expect("scan");
        assert_eq!(reply.peer(), 2);
        let chunks = collect(reply).await.expect("chunks");
        assert_eq!(chunks.len(), 40);
        assert!(chunks.iter().all(|c| c.as_ref() == big.as_slice()));
        // An empty scan ends at once.
        let address = server(Echo::chunks(0), Settings::default());
        let transport = client(&[(2, address)], Settings::default());
        let reply = transport.scan(0, &[2], vec![1]).await.expect("scan");
        assert_eq!(collect(reply).await, Ok(Vec::new()));
    }

    #[tokio::test]
    async fn a_failure_after_rows_fails_the_scan_and_before_them_tries_the_next_replica() {
        let failing = Echo {
            end: Some("disk on fire".into()),
            ..Echo::chunks(2)
        };
        let address = server(failing, Settings::default());
        let transport = client(&[(2, address)], Settings::default());
        let reply = transport.scan(0, &[2], vec![1]).await.expect("scan");
        let failure = collect(reply).await.expect_err("failed");
        assert!(failure.contains("disk on fire"), "{failure}");

        // Node 3 is down and node 2 does not host partition 1: the error names both.
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let down = free.local_addr().expect("address");
        drop(free);
        let transport = client(&[(2, address), (3, down)], Settings::default());
        let refused = transport
            .scan(1, &[3, 2], vec![1])
            .await
            .expect_err("unserved");
        let text = refused.to_string();
        assert!(text.contains("partition 1"), "{text}");
        assert!(text.contains("node 3 is unreachable"), "{text}");
        assert!(text.contains("no replica of partition 1"), "{text}");
        // Partition 0: node 3 is passed over, node 2 serves it.
        let reply = transport.scan(0, &[3, 2], vec![5]).await.expect("scan");
        assert_eq!(reply.peer(), 2);
        let none = transport
            .scan(0, &[], vec![5])
            .await
            .expect_err("no replica");
        assert!(none.to_string().contains("no other node"), "{none}");
    }

    #[tokio::test]
    async fn a_slow_scan_is_kept_alive_and_a_slow_reader_holds_the_scan_back() {
        // Each chunk takes three idle timeouts to come: keepalives carry the scan through.
        let settings = Settings {
            scan_idle_timeout: Duration::from_millis(200),
            ..Settings::default()
        };
        let slow = Echo {
            delay: Duration::from_millis(600),
            ..Echo::chunks(2)
        };
        let address = server(slow, settings.clone());
        let transport = client(&[(2, address)], settings);
        let reply = transport.scan(0, &[2], vec![1]).await.expect("scan");
        assert_eq!(collect(reply).await.map(|c| c.len()), Ok(2));

        // A reader that stops reading: the server takes only about a stream window's worth of
        // 256 KiB chunks from its scan, not all 1,000.
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let many = Echo {
            pulled: pulled.clone(),
            ..Echo::chunks(1000)
        };
        let address = server(many, Settings::default());
        let transport = client(&[(2, address)], Settings::default());
        let mut reply = transport
            .scan(0, &[2], vec![3; 256 << 10])
            .await
            .expect("scan");
        assert!(reply.next().await.expect("a chunk").is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let taken = pulled.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            taken < 100,
            "the server took {taken} chunks ahead of its reader"
        );
        // Dropping the reply stops the scan.
        drop(reply);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = pulled.load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pulled.load(std::sync::atomic::Ordering::Relaxed), after);
    }
}
