//! Raft over the transport: a group's network (the sending side, one per group) and the service
//! a running group offers to the listener (the receiving side).
//!
//! A snapshot travels as ONE streamed HTTP/2 request on the bulk lane
//! (`/v1/raft/<group>/snapshot-stream`), whatever the group's `SnapshotData` (a file for the
//! partitions, an in-memory cursor for the metadata log):
//!
//! ```text
//!   request body   header length u32 big-endian | codec(StreamHeader{vote, meta, size}) | size bytes
//!   answer body    KEEPALIVE* (one byte a while, during the install) | ANSWERED codec(Result<SnapshotResponse, Fatal>)
//!                                                                   | FAILED reason
//! ```
//! The sender honours flow control, gives up after the idle timeout without progress (not after
//! a deadline for the whole transfer) and resets the stream when openraft cancels; the receiver
//! spools into the group's own `begin_receiving_snapshot` sink, then calls
//! `Raft::install_full_snapshot`. The chunked `install_snapshot` route still answers peers of
//! the previous release.

use crate::client::{CallError, StreamFailure, Transport, Upload};
use crate::wire::{
    GroupId, Lane, MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_HEADER, RaftRpc, raft_path,
    snapshot_stream_path,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use holdfast_types::codec;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{
    BasicNode, OptionalSend, Raft, RaftTypeConfig, Snapshot, SnapshotMeta, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::SeekFrom;
use std::marker::PhantomData;
use std::time::{Duration, Instant};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// A running group as the listener sees it: raft messages in, encoded answers out.
pub trait RaftService: Send + Sync + 'static {
    /// Hands one decoded message to the group and encodes its answer (which may be the group's
    /// own refusal, e.g. a stale term).
    fn serve(&self, rpc: RaftRpc, body: Bytes)
    -> BoxFuture<'static, Result<Vec<u8>, codec::Error>>;

    /// Receives a snapshot streamed in one request, installs it and encodes the group's answer
    /// (`Result<SnapshotResponse, Fatal>`). A service that cannot take one refuses it.
    fn receive_snapshot(
        &self,
        stream: SnapshotStream,
    ) -> BoxFuture<'static, Result<Vec<u8>, SnapshotStreamError>> {
        drop(stream);
        Box::pin(async { Err(SnapshotStreamError::Unsupported) })
    }
}

/// What precedes a streamed snapshot's bytes.
#[derive(Debug, Serialize, Deserialize)]
struct StreamHeader {
    /// The sending leader's vote, checked by the receiver like any leader's message.
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, BasicNode>,
    /// How many bytes follow the header.
    size: u64,
}

/// A snapshot arriving as the body of one request: its header, then its bytes.
pub struct SnapshotStream {
    body: h2::RecvStream,
    idle: Duration,
    installing: Option<oneshot::Sender<()>>,
}

impl SnapshotStream {
    /// The body of a snapshot-stream request; `installing` fires once the whole snapshot was
    /// received and the install begins (the listener then starts its keepalives).
    pub(crate) fn new(
        body: h2::RecvStream,
        idle: Duration,
        installing: oneshot::Sender<()>,
    ) -> Self {
        Self {
            body,
            idle,
            installing: Some(installing),
        }
    }

    /// The next piece of the body (`None` at its end), within the idle timeout. Its window is
    /// given back with [`SnapshotStream::release`] once it is written, so a slow disk slows the
    /// sender down instead of filling memory.
    async fn next(&mut self) -> Result<Option<Bytes>, SnapshotStreamError> {
        match tokio::time::timeout(self.idle, self.body.data()).await {
            Err(_) => Err(SnapshotStreamError::Idle(self.idle)),
            Ok(None) => Ok(None),
            Ok(Some(chunk)) => chunk.map(Some).map_err(SnapshotStreamError::Stream),
        }
    }

    fn release(&mut self, bytes: usize) {
        let _ = self.body.flow_control().release_capacity(bytes);
    }

    /// Reads until `buffer` holds at least `len` bytes.
    async fn fill(&mut self, buffer: &mut BytesMut, len: usize) -> Result<(), SnapshotStreamError> {
        while buffer.len() < len {
            let Some(chunk) = self.next().await? else {
                return Err(SnapshotStreamError::Header(
                    "the stream ended inside the header".into(),
                ));
            };
            self.release(chunk.len());
            buffer.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn installing(&mut self) {
        if let Some(installing) = self.installing.take() {
            let _ = installing.send(());
        }
    }
}

/// Why a streamed snapshot was not installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotStreamError {
    /// The group does not take streamed snapshots.
    #[error("this group does not take streamed snapshots")]
    Unsupported,
    /// The stream failed: the sender reset it (it gave up) or the connection ended.
    #[error("the snapshot stream failed: {0}")]
    Stream(h2::Error),
    /// Nothing arrived for this long.
    #[error("no snapshot bytes for {0:?}")]
    Idle(Duration),
    /// The header is missing, too large or undecodable.
    #[error("malformed snapshot header: {0}")]
    Header(String),
    /// The snapshot is larger than this node accepts.
    #[error("a snapshot of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    /// The body's length differs from what its header announced.
    #[error("the snapshot stream announced {announced} bytes and carried {carried}")]
    Length { announced: u64, carried: u64 },
    /// The group's storage could not take the snapshot's bytes.
    #[error("cannot store the received snapshot: {0}")]
    Storage(String),
    /// The answer could not be encoded.
    #[error("cannot encode the answer: {0}")]
    Encode(#[from] codec::Error),
}

impl SnapshotStreamError {
    /// The HTTP status of a refusal sent before the install began.
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            SnapshotStreamError::Unsupported => http::StatusCode::NOT_FOUND,
            SnapshotStreamError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            SnapshotStreamError::Storage(_) | SnapshotStreamError::Encode(_) => {
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

impl<C> RaftService for Raft<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
    AppendEntriesRequest<C>: DeserializeOwned,
    InstallSnapshotRequest<C>: DeserializeOwned,
{
    fn serve(
        &self,
        rpc: RaftRpc,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Vec<u8>, codec::Error>> {
        let raft = self.clone();
        Box::pin(async move {
            match rpc {
                RaftRpc::Append => {
                    let request: AppendEntriesRequest<C> = codec::decode(&body)?;
                    codec::encode(&raft.append_entries(request).await)
                }
                RaftRpc::Vote => {
                    let request: VoteRequest<u64> = codec::decode(&body)?;
                    codec::encode(&raft.vote(request).await)
                }
                // Chunks from a peer of the previous release, which sends no streams.
                RaftRpc::Snapshot => {
                    let request: InstallSnapshotRequest<C> = codec::decode(&body)?;
                    codec::encode(&raft.install_snapshot(request).await)
                }
            }
        })
    }

    fn receive_snapshot(
        &self,
        mut stream: SnapshotStream,
    ) -> BoxFuture<'static, Result<Vec<u8>, SnapshotStreamError>> {
        let raft = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut buffer = BytesMut::new();
            stream.fill(&mut buffer, 4).await?;
            let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            if len > MAX_SNAPSHOT_HEADER {
                return Err(SnapshotStreamError::Header(format!(
                    "{len} bytes, above the limit of {MAX_SNAPSHOT_HEADER}"
                )));
            }
            stream.fill(&mut buffer, 4 + len).await?;
            let rest = buffer.split_off(4 + len).freeze();
            let header: StreamHeader = codec::decode(&buffer[4..])
                .map_err(|e| SnapshotStreamError::Header(e.to_string()))?;
            if header.size > MAX_SNAPSHOT_BYTES {
                return Err(SnapshotStreamError::TooLarge {
                    size: header.size,
                    limit: MAX_SNAPSHOT_BYTES,
                });
            }
            // A leader behind this node's vote is answered before anything is written (openraft
            // checks again when installing).
            let vote = raft.metrics().borrow().vote;
            if !matches!(
                header.vote.partial_cmp(&vote),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ) {
                let refused: Result<SnapshotResponse<u64>, Fatal<u64>> =
                    Ok(SnapshotResponse::new(vote));
                return Ok(codec::encode(&refused)?);
            }
            let storage = |e: &dyn std::fmt::Display| SnapshotStreamError::Storage(e.to_string());
            let mut data = raft
                .begin_receiving_snapshot()
                .await
                .map_err(|e| storage(&e))?;
            let mut carried = 0u64;
            let mut chunk = Some(rest);
            while let Some(bytes) = chunk {
                carried += bytes.len() as u64;
                if carried > header.size {
                    return Err(SnapshotStreamError::Length {
                        announced: header.size,
                        carried,
                    });
                }
                data.write_all(&bytes).await.map_err(|e| storage(&e))?;
                stream.release(bytes.len());
                chunk = stream.next().await?;
            }
            if carried != header.size {
                return Err(SnapshotStreamError::Length {
                    announced: header.size,
                    carried,
                });
            }
            data.shutdown().await.map_err(|e| storage(&e))?;
            data.seek(SeekFrom::Start(0))
                .await
                .map_err(|e| storage(&e))?;
            let received_in = started.elapsed();
            stream.installing();
            let snapshot_id = header.meta.snapshot_id.clone();
            let answer = raft
                .install_full_snapshot(
                    header.vote,
                    Snapshot {
                        meta: header.meta,
                        snapshot: data,
                    },
                )
                .await;
            tracing::info!(
                snapshot = %snapshot_id,
                bytes = carried,
                received_ms = received_in.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                ok = answer.is_ok(),
                "received a streamed snapshot"
            );
            Ok(codec::encode(&answer)?)
        })
    }
}

/// The network of one group: creates a [`GroupPeer`] per peer, all sharing the node's
/// connections.
pub struct GroupNetwork<C> {
    group: GroupId,
    transport: Transport,
    config: PhantomData<fn() -> C>,
}

impl<C> GroupNetwork<C> {
    /// The network of `group` over the node's `transport`.
    pub fn new(group: GroupId, transport: Transport) -> Self {
        Self {
            group,
            transport,
            config: PhantomData,
        }
    }
}

/// One group's link to one peer.
pub struct GroupPeer<C> {
    group: GroupId,
    target: u64,
    transport: Transport,
    config: PhantomData<fn() -> C>,
}

impl<C> RaftNetworkFactory<C> for GroupNetwork<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
    AppendEntriesRequest<C>: Serialize,
    InstallSnapshotRequest<C>: Serialize,
{
    type Network = GroupPeer<C>;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> GroupPeer<C> {
        GroupPeer {
            group: self.group,
            target,
            transport: self.transport.clone(),
            config: PhantomData,
        }
    }
}

impl<C> GroupPeer<C> {
    /// Sends one message and decodes the group's answer, mapping transport failures to what
    /// openraft expects: unreachable (it backs off) or a network error (it retries).
    async fn call<Req, Resp, E>(
        &self,
        lane: Lane,
        rpc: RaftRpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let path = raft_path(self.group, rpc);
        let answer = self
            .transport
            .call(self.target, lane, &path, body, option.hard_ttl())
            .await;
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(e @ (CallError::Unreachable { .. } | CallError::Refused { .. })) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            // The group is not running there yet (or any more): like an unreachable node.
            Err(e @ CallError::Status { status: 503, .. }) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let answer: Result<Resp, RaftError<u64, E>> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl<C> RaftNetwork<C> for GroupPeer<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
    AppendEntriesRequest<C>: Serialize,
    InstallSnapshotRequest<C>: Serialize,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Lane::Raft, RaftRpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Lane::Bulk, RaftRpc::Snapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(Lane::Raft, RaftRpc::Vote, &rpc, &option).await
    }

    /// Streams the snapshot as one request on the bulk lane (see the module documentation).
    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<C>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<C, Fatal<u64>>> {
        let Snapshot {
            meta,
            snapshot: mut data,
        } = snapshot;
        let signature = meta.signature();
        let unreadable = |e: std::io::Error| {
            StreamingError::StorageError(
                StorageIOError::read_snapshot(Some(signature.clone()), &e).into(),
            )
        };
        let size = data.seek(SeekFrom::End(0)).await.map_err(unreadable)?;
        data.seek(SeekFrom::Start(0)).await.map_err(unreadable)?;
        let snapshot_id = meta.snapshot_id.clone();
        let header = StreamHeader { vote, meta, size };
        let header = codec::encode(&header).map_err(|e| NetworkError::new(&e))?;
        let mut head = BytesMut::with_capacity(4 + header.len());
        head.put_u32(u32::try_from(header.len()).unwrap_or(u32::MAX));
        head.extend_from_slice(&header);
        let path = snapshot_stream_path(self.group);
        let started = Instant::now();
        let cancel = std::pin::pin!(cancel);
        let upload = Upload {
            path: &path,
            head: head.freeze(),
            body: &mut *data,
            size,
        };
        let streamed = self
            .transport
            .stream(self.target, Lane::Bulk, upload, cancel)
            .await;
        let bytes = match streamed {
            Ok(bytes) => bytes,
            Err(StreamFailure::Cancelled(closed)) => return Err(StreamingError::Closed(closed)),
            Err(StreamFailure::Read(e)) => return Err(unreadable(e)),
            Err(StreamFailure::Call(e)) => {
                tracing::info!(group = %self.group, peer = self.target, snapshot = %snapshot_id, error = %e, "streaming a snapshot failed");
                return Err(match e {
                    CallError::Unreachable { .. }
                    | CallError::Refused { .. }
                    | CallError::Status { status: 503, .. } => Unreachable::new(&e).into(),
                    CallError::Idle { after, .. } => Timeout {
                        action: RPCTypes::InstallSnapshot,
                        id: self.transport.identity().node,
                        target: self.target,
                        timeout: after,
                    }
                    .into(),
                    _ => NetworkError::new(&e).into(),
                });
            }
        };
        let answer: Result<SnapshotResponse<u64>, Fatal<u64>> =
            codec::decode(&bytes).map_err(|e| NetworkError::new(&e))?;
        tracing::info!(
            group = %self.group,
            peer = self.target,
            snapshot = %snapshot_id,
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "streamed a snapshot"
        );
        answer.map_err(|fatal| RemoteError::new(self.target, fatal).into())
    }

    /// Retries an unreachable peer soon at first and then less often, up to once a second.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.transport.reconnect_pauses())
    }
}
