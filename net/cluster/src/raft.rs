//! Raft over the transport: a group's network (the sending side, one per group) and the service
//! a running group offers to the listener (the receiving side).

use crate::client::{CallError, Transport};
use crate::wire::{GroupId, Lane, RaftRpc, raft_path};
use bytes::Bytes;
use futures::future::BoxFuture;
use holdfast_types::codec;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// A running group as the listener sees it: raft messages in, encoded answers out.
pub trait RaftService: Send + Sync + 'static {
    /// Hands one decoded message to the group and encodes its answer (which may be the group's
    /// own refusal, e.g. a stale term).
    fn serve(&self, rpc: RaftRpc, body: Bytes)
    -> BoxFuture<'static, Result<Vec<u8>, codec::Error>>;
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
                RaftRpc::Snapshot => {
                    let request: InstallSnapshotRequest<C> = codec::decode(&body)?;
                    codec::encode(&raft.install_snapshot(request).await)
                }
            }
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

    /// Retries an unreachable peer soon at first and then less often, up to once a second.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.transport.reconnect_pauses())
    }
}
