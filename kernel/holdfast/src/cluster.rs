//! The node's place in its cluster: the transport to its peers (driven on a runtime of its own,
//! so raft traffic never waits behind the partitions' thread) and the listener they reach it on.

use actix::Addr;
use bytes::Bytes;
use futures::future::BoxFuture;
use holdfast_cluster::{ForwardService, GroupId, ScanChunks, ScanService};
use holdfast_cluster::{Groups, Identity, Incarnations, Listener, ServeError, Settings, Transport};
use holdfast_config::Config;
use holdfast_introspection::ScanServer;
use holdfast_metadata::{ChangeRegistryHere, ForwardedAnswer, MetadataActor};
use holdfast_partition::Router;
use holdfast_schema::{Placement, Registry};
use holdfast_types::PartitionId;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// Worker threads of the transport's runtime: connections are cheap, two keep a slow peer from
/// stalling the others.
const TRANSPORT_THREADS: usize = 2;

/// Why the node cannot take its place in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's own cluster address cannot be listened on.
    #[error(transparent)]
    Listen(#[from] ServeError),
    /// The transport's runtime cannot be created.
    #[error("cannot start the cluster transport: {0}")]
    Runtime(std::io::Error),
}

/// The transport, its runtime and (until [`Cluster::listen`]) the bound listener.
pub struct Cluster {
    runtime: Option<Runtime>,
    /// The client every group of this node reaches its peers with.
    pub transport: Transport,
    /// Each member's configured node-to-node address (raft's record of its members).
    pub addresses: BTreeMap<u64, String>,
    listener: Option<Listener>,
}

impl Cluster {
    /// Binds the node's cluster address and prepares the transport to every other member
    /// (dialled at its configured address, or a test override).
    pub fn start(
        config: &Config,
        incarnations: Arc<Incarnations>,
        tls: Option<holdfast_cluster::PeerTls>,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(TRANSPORT_THREADS)
            .thread_name("holdfast-cluster")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let identity = Identity {
            cluster: config.cluster.name.clone(),
            fingerprint: config.cluster.identity().fingerprint(),
            node: config.node.id,
        };
        let addresses: BTreeMap<u64, String> = config
            .cluster
            .nodes
            .iter()
            .map(|m| (m.id, m.address.to_string()))
            .collect();
        let mut dial: BTreeMap<_, _> = config
            .cluster
            .nodes
            .iter()
            .filter(|m| m.id != config.node.id)
            .map(|m| (m.id, m.address))
            .collect();
        for (peer, address) in holdfast_cluster::dial_overrides_from_env() {
            tracing::warn!(peer, %address, "dialling a peer at a test override address");
            dial.insert(peer, address);
        }
        let settings = Settings {
            tls,
            ..Settings::default()
        };
        let own = Some(config.member().address).filter(|a| a.port() != 0);
        let listener = match own {
            Some(address) => {
                match Listener::bind(
                    address,
                    identity.clone(),
                    settings.clone(),
                    Groups::default(),
                ) {
                    Ok(listener) => Some(listener.with_incarnations(incarnations.clone())),
                    Err(e) => {
                        // Dropping a runtime blocks, which the caller's async context forbids.
                        runtime.shutdown_background();
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        let transport = Transport::new(identity, dial, settings, runtime.handle().clone());
        transport.check_incarnations(incarnations);
        Ok(Self {
            runtime: Some(runtime),
            transport,
            addresses,
            listener,
        })
    }

    /// Starts answering peers: raft messages for `groups` (this node's replicas), requests
    /// forwarded to the leaders this node may be (partitions through `router`, the metadata log
    /// through `metadata`) and scans of its partitions through `scans`.
    pub fn listen(
        &mut self,
        groups: Groups,
        router: Router,
        metadata: Addr<MetadataActor>,
        scans: ScanServer,
    ) {
        if let (Some(listener), Some(runtime)) = (self.listener.take(), &self.runtime) {
            let node = self.transport.identity().node;
            let scans = Scans {
                server: scans,
                router: router.clone(),
                node,
            };
            let forwarded = Forwarded { router, metadata };
            let listener = listener
                .with_groups(groups)
                .with_forwarded(std::sync::Arc::new(forwarded))
                .with_scans(Arc::new(scans));
            runtime.spawn(listener.serve());
        }
    }

    /// Keeps the transport and the router in step with the cluster's members as the metadata log
    /// records them: nodes added at runtime become dialable, and requests go to where each
    /// partition's replicas now are.
    pub fn follow_members(
        &self,
        mut registry: watch::Receiver<Arc<Registry>>,
        placement: Arc<Placement>,
        router: Router,
    ) {
        let Some(runtime) = &self.runtime else { return };
        let transport = self.transport.clone();
        runtime.spawn(async move {
            loop {
                let current = registry.borrow_and_update().clone();
                for (id, address) in placement.nodes(&current) {
                    match address.parse() {
                        Ok(address) => transport.add_peer(id, address),
                        Err(e) => tracing::warn!(node = id, %address, error = %e, "a member's address cannot be dialled"),
                    }
                }
                router.place(
                    (0..placement.partitions)
                        .map(|n| placement.partition_replicas(n, &current))
                        .collect(),
                );
                if registry.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Stops the transport: open connections close, the listener stops accepting.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Delivers what peers forward to this node's groups: partition requests to the partition actors,
/// registry changes to the metadata log's actor.
struct Forwarded {
    router: Router,
    metadata: Addr<MetadataActor>,
}

impl ForwardService for Forwarded {
    fn serve(&self, group: GroupId, body: Bytes) -> BoxFuture<'static, Vec<u8>> {
        match group {
            GroupId::Partition(partition) => {
                let router = self.router.clone();
                Box::pin(async move { router.answer_forwarded(partition, body).await })
            }
            GroupId::Metadata => {
                let metadata = self.metadata.clone();
                Box::pin(async move {
                    let unavailable = |message: String| {
                        ForwardedAnswer::Failed(holdfast_metadata::Error::Unavailable(message))
                    };
                    let answer = match holdfast_types::codec::decode(&body) {
                        Ok(command) => metadata
                            .send(ChangeRegistryHere(command))
                            .await
                            .unwrap_or_else(|e| unavailable(e.to_string())),
                        Err(e) => unavailable(format!("undecodable registry change: {e}")),
                    };
                    holdfast_types::codec::encode(&answer).unwrap_or_default()
                })
            }
        }
    }
}

/// Runs the scans peers ask for (SQL on nodes without a replica) over this node's partitions.
struct Scans {
    server: ScanServer,
    router: Router,
    node: u64,
}

impl ScanService for Scans {
    /// Refused unless the placement puts a replica here and its store is open.
    fn scan(&self, partition: u32, request: Bytes) -> Result<ScanChunks, String> {
        let partition = PartitionId(partition);
        if !self.router.replicas_of(partition).contains(&self.node) {
            return Err(format!(
                "node {} holds no replica of partition {partition}",
                self.node
            ));
        }
        self.server
            .serve(partition, &request)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
