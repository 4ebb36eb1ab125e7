//! `GET /cluster`: the nodes of the cluster and, per partition, its leader, term and replicas as
//! this node sees them (a node answers for the partitions it holds a replica of).

use crate::{Kernel, statuses};
use actix_web::{HttpResponse, web};
use holdfast_partition::ReplicaProgress;
use holdfast_types::NodeId;
use serde::Serialize;

/// The cluster as this node knows it.
#[derive(Clone)]
pub struct ClusterInfo {
    /// `[cluster] name`.
    pub name: String,
    /// Every configured member: id and node-to-node address.
    pub nodes: Vec<(NodeId, String)>,
    /// How many partitions the cluster has.
    pub partitions: u32,
    /// The node's transport, which knows which peers it is connected to.
    pub transport: holdfast_cluster::Transport,
}

#[derive(Serialize)]
struct ClusterView {
    cluster: String,
    node: NodeId,
    nodes: Vec<MemberView>,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
struct MemberView {
    id: NodeId,
    address: String,
    /// This node, or a peer this node has an open connection to.
    alive: bool,
}

#[derive(Serialize)]
struct PartitionView {
    partition: u32,
    leader: Option<NodeId>,
    term: Option<u64>,
    /// The last entry this node purged from its log of the partition (a peer further behind
    /// catches up by snapshot).
    purged_index: Option<u64>,
    replicas: Vec<ReplicaProgress>,
}

/// Answers `GET /cluster`.
pub(crate) async fn view(kernel: web::Data<Kernel>) -> HttpResponse {
    let info = &kernel.cluster;
    let mut partitions: Vec<PartitionView> = (0..info.partitions)
        .map(|partition| PartitionView {
            partition,
            leader: None,
            term: None,
            purged_index: None,
            replicas: Vec::new(),
        })
        .collect();
    for (id, status) in statuses(&kernel).await {
        let (Some(status), Some(view)) = (status, partitions.get_mut(id.0 as usize)) else {
            continue;
        };
        view.leader = status.leader;
        view.term = Some(status.term.0);
        view.purged_index = status.purged_index.map(|index| index.0);
        view.replicas = status.replica_progress(kernel.node);
    }
    let nodes = info
        .nodes
        .iter()
        .map(|(id, address)| MemberView {
            id: *id,
            address: address.clone(),
            alive: *id == kernel.node || info.transport.connected(id.0),
        })
        .collect();
    HttpResponse::Ok().json(ClusterView {
        cluster: info.name.clone(),
        node: kernel.node,
        nodes,
        partitions,
    })
}
