//! The cluster's members: `GET /cluster` (nodes, and per partition its leader, term and
//! replicas as this node sees them: a node answers for the partitions it holds a replica of),
//! `POST /cluster/nodes` to add a node and `DELETE /cluster/nodes/{id}` to drain and remove one.

use crate::deployments::{metadata_error, refused};
use crate::{ApiError, Kernel, statuses};
use actix_web::{HttpResponse, web};
use holdfast_metadata::ChangeRegistry;
use holdfast_partition::{Answer, ReplicaProgress, Request};
use holdfast_schema::{Applied, Placement, RegistryCommand};
use holdfast_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `DELETE /cluster/nodes/{id}` waits for the node's replicas to move by default.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// The cluster as this node knows it.
#[derive(Clone)]
pub struct ClusterInfo {
    /// `[cluster] name`.
    pub name: String,
    /// The configured nodes, replication factor and partitions: with the registry's members,
    /// where every replica lives.
    pub placement: Arc<Placement>,
    /// The node's transport, which knows which peers it is connected to.
    pub transport: holdfast_cluster::Transport,
}

#[derive(Serialize)]
struct ClusterView {
    cluster: String,
    node: NodeId,
    nodes: Vec<MemberView>,
    /// Ids of nodes removed from the cluster (never reused).
    removed: Vec<NodeId>,
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
    let mut partitions: Vec<PartitionView> = (0..info.placement.partitions)
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
    let registry = kernel.registry.borrow().clone();
    let nodes = info
        .placement
        .nodes(&registry)
        .into_iter()
        .map(|(id, address)| MemberView {
            id: NodeId(id),
            address,
            alive: id == kernel.node.0 || info.transport.connected(id),
        })
        .collect();
    let removed = registry
        .members()
        .records()
        .iter()
        .filter(|(_, r)| r.state == holdfast_schema::NodeState::Removed)
        .map(|(id, _)| NodeId(*id))
        .collect();
    HttpResponse::Ok().json(ClusterView {
        cluster: info.name.clone(),
        node: kernel.node,
        nodes,
        removed,
        partitions,
    })
}

/// The body of `POST /cluster/nodes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewNode {
    id: u64,
    address: String,
}

#[derive(Serialize)]
struct NodeAnswer {
    id: NodeId,
    state: &'static str,
    /// For a removal: whether every partition's group had dropped the node when answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    drained: Option<bool>,
    /// For a removal still draining: the partitions whose group still counts the node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    draining: Vec<u32>,
}

/// Answers `POST /cluster/nodes`: records the node as a member; the partitions' leaders then
/// place replicas on it (learner, then voter) as soon as it runs. Started with `node.address`
/// and the cluster's configuration, the node waits to be added.
pub(crate) async fn add(
    kernel: web::Data<Kernel>,
    body: Result<web::Json<NewNode>, actix_web::Error>,
) -> HttpResponse {
    let node = match body {
        Ok(body) => body.into_inner(),
        Err(e) => {
            return HttpResponse::BadRequest().json(ApiError::new(
                "invalid_node",
                format!("expected {{\"id\": <node id>, \"address\": \"<ip>:<port>\"}}: {e}"),
            ));
        }
    };
    match node.address.parse::<SocketAddr>() {
        Ok(address) if !address.ip().is_unspecified() && address.port() != 0 => {}
        _ => {
            return HttpResponse::BadRequest().json(ApiError::new(
                "invalid_node",
                format!(
                    "address '{}' is not a specific IP and port its peers can dial",
                    node.address
                ),
            ));
        }
    }
    let command = RegistryCommand::AddNode {
        id: node.id,
        address: node.address,
        initial: kernel.cluster.placement.initial.clone(),
    };
    let applied = match change(&kernel, command).await {
        Ok(applied) => applied,
        Err(response) => return response,
    };
    let created = matches!(applied, Applied::NodeAdded(_));
    let answer = NodeAnswer {
        id: NodeId(node.id),
        state: "active",
        drained: None,
        draining: Vec::new(),
    };
    if created {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    }
}

/// `?wait_ms=` on `DELETE /cluster/nodes/{id}`.
#[derive(Deserialize)]
pub(crate) struct RemoveQuery {
    wait_ms: Option<u64>,
}

/// Answers `DELETE /cluster/nodes/{id}`: records the node as removed (its id is never reused),
/// then waits until every partition's group has moved its replica elsewhere (200), or answers
/// 202 with the partitions still draining when the wait ends (repeating the request waits
/// again).
pub(crate) async fn remove(
    kernel: web::Data<Kernel>,
    id: web::Path<String>,
    query: web::Query<RemoveQuery>,
) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else {
        return HttpResponse::BadRequest().json(ApiError::new(
            "invalid_node",
            format!("'{id}' is not a node id"),
        ));
    };
    let placement = &kernel.cluster.placement;
    let command = RegistryCommand::RemoveNode {
        id,
        initial: placement.initial.clone(),
        replication_factor: placement.replication_factor,
    };
    if let Err(response) = change(&kernel, command).await {
        return response;
    }
    let wait = query.wait_ms.map_or(DRAIN_WAIT, Duration::from_millis);
    let deadline = Instant::now() + wait;
    let mut draining: Vec<u32> = (0..placement.partitions).collect();
    loop {
        let asks = draining.iter().map(|partition| {
            let router = kernel.router.clone();
            let partition = PartitionId(*partition);
            async move {
                let answer = router.ask(partition, Request::Members).await;
                let held = !matches!(answer, Ok(Answer::Members(members)) if !members.contains(&NodeId(id)));
                (partition.0, held)
            }
        });
        draining = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter(|(_, held)| *held)
            .map(|(partition, _)| partition)
            .collect();
        if draining.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained = draining.is_empty();
    let answer = NodeAnswer {
        id: NodeId(id),
        state: "removed",
        drained: Some(drained),
        draining,
    };
    if drained {
        HttpResponse::Ok().json(answer)
    } else {
        HttpResponse::Accepted().json(answer)
    }
}

/// Checks and proposes a membership change through the metadata log.
async fn change(kernel: &Kernel, command: RegistryCommand) -> Result<Applied, HttpResponse> {
    if let Err(refusal) = kernel.registry.borrow().check(&command) {
        return Err(refused(&refusal));
    }
    match kernel.metadata.send(ChangeRegistry(command)).await {
        Ok(Ok(Ok(applied))) => Ok(applied),
        Ok(Ok(Err(refusal))) => Err(refused(&refusal)),
        Ok(Err(e)) => Err(metadata_error(e)),
        Err(e) => Err(metadata_error(holdfast_metadata::Error::Unavailable(
            e.to_string(),
        ))),
    }
}
