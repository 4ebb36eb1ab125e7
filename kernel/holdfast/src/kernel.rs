//! Boots a node: opens the data dir, starts one supervised [`PartitionActor`] per partition on
//! the partitions arbiter, the metadata log on its own, and stops them in order on shutdown.
//!
//! ```text
//!   actix System (main thread) ── admin HTTP server (own worker thread)
//!        │
//!        ├── Arbiter "metadata" ── Supervisor ─► MetadataActor ─► metadata raft group + redb
//!        └── Arbiter "partitions" ── Supervisor ─► PartitionActor 0..N ─► openraft groups + redb,
//!                                                  attempts and their endpoint connections,
//!                                                  shuffles and timer wheels
//!   blocking threads: redb reads (long journals of attempts starting, lookups, control,
//!   awakeables), fsyncs, flushes, snapshots
//! ```

use crate::cluster::Cluster;
use crate::datadir::{self, DataDir};
use actix::{Addr, Arbiter, Supervisor};
use holdfast_cluster::{GroupId, Groups};
use holdfast_config::Config;
use holdfast_endpoint::{ClientConfig, ConnectionHome, EndpointClient};
use holdfast_invocation::Timeouts;
use holdfast_metadata::MetadataActor;
use holdfast_partition::{
    GetStatus, PartitionActor, PartitionStatus, Router, Settings, Shutdown, UseRouter,
};
use holdfast_raft_group::Replication;
use holdfast_raft_store::{StateMachine, WeakStateMachine};
use holdfast_schema::{Placement, Registry};
use holdfast_types::{NodeId, PartitionId};
use openraft::{BasicNode, SnapshotPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long shutdown waits for partitions to finish their in-flight commits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The data directory is unusable or was created with other fixed settings.
    #[error(transparent)]
    DataDir(#[from] Box<datadir::Error>),
    /// The metadata log's stored registry cannot be read.
    #[error("cannot recover the registry of deployments: {0}")]
    Metadata(String),
    /// The consensus settings derived from the configuration are invalid.
    #[error("invalid raft settings (keys under `log`): {0}")]
    Raft(#[from] Box<openraft::ConfigError>),
    /// The peers this node knows by their data dirs cannot be read.
    #[error("cannot read the node's peers file: {0}")]
    Peers(String),
    /// The node cannot take its place in the cluster (e.g. its cluster address is taken).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::Error),
    /// The request-signing key cannot be read or created.
    #[error(transparent)]
    SigningKey(#[from] crate::keys::Error),
    /// A TLS certificate, key or CA file does not load.
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
}

/// What a protocol frame adds around the one message it carries (entry fields, encoding).
const FRAMING_BYTES: usize = 64 * 1024;

/// The attempt timeouts and the state machine's settings from the `[invocation]` section. The
/// state machine's part must be the same on every replica, which holds because it comes from the
/// cluster configuration that every node is given alike (like `[cluster]`).
pub fn invocation_settings(
    invocation: &holdfast_config::Invocation,
) -> (Timeouts, holdfast_fsm::Config) {
    let timeouts = Timeouts {
        inactivity: Duration::from_millis(invocation.inactivity_timeout_ms),
        abort: Duration::from_millis(invocation.abort_timeout_ms),
    };
    let fsm = holdfast_fsm::Config {
        retry: retry_policy(invocation),
        ..holdfast_fsm::Config::default()
    };
    (timeouts, fsm)
}

/// The node's retry policy: the `[invocation]` retry keys; exhausted invocations are paused.
pub fn retry_policy(invocation: &holdfast_config::Invocation) -> holdfast_types::RetryPolicy {
    holdfast_types::RetryPolicy {
        initial_interval_ms: invocation.retry_initial_interval_ms,
        factor: invocation.retry_factor,
        max_interval_ms: invocation.retry_max_interval_ms,
        max_attempts: invocation.retry_max_attempts,
        on_max_attempts: holdfast_types::OnMaxAttempts::Pause,
    }
}

/// What the node's configuration gives attempts of handlers that declare nothing (for views).
pub fn attempt_defaults(
    invocation: &holdfast_config::Invocation,
) -> holdfast_schema::AttemptPolicy {
    holdfast_schema::AttemptPolicy {
        retry: retry_policy(invocation),
        inactivity_timeout: holdfast_schema::Millis(invocation.inactivity_timeout_ms),
        abort_timeout: holdfast_schema::Millis(invocation.abort_timeout_ms),
    }
}

/// The node's view of its partitions' replicas, for `sys_cluster`.
pub struct NodeReplicas {
    node: NodeId,
    partitions: Vec<Addr<PartitionActor>>,
}

impl holdfast_introspection::ClusterSource for NodeReplicas {
    fn replicas(
        &self,
    ) -> futures::future::BoxFuture<'static, Vec<holdfast_introspection::ReplicaRow>> {
        let node = self.node;
        let asks: Vec<_> = self.partitions.iter().map(|a| a.send(GetStatus)).collect();
        Box::pin(async move {
            let statuses = futures::future::join_all(asks).await;
            statuses
                .into_iter()
                .filter_map(Result::ok)
                .flat_map(|status| {
                    status
                        .replica_progress(node)
                        .into_iter()
                        .map(move |replica| holdfast_introspection::ReplicaRow {
                            partition: status.partition.0,
                            node: replica.node.0,
                            leader: status.leader.map(|l| l.0),
                            term: status.term.0,
                            applied_index: replica.applied_index,
                            lag: replica.lag,
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
    }
}

/// A running node's partitions.
/// The partition stores this node has open, as each partition actor publishes them.
#[derive(Debug)]
pub struct NodeStores {
    partitions: Vec<(PartitionId, watch::Receiver<Option<WeakStateMachine>>)>,
    count: u32,
    /// Reaches the leaders for read indexes (follower reads), and knows each partition's replicas.
    router: Router,
    /// Reaches the replicas of partitions not open here (remote scans).
    transport: holdfast_cluster::Transport,
    /// This node.
    node: NodeId,
}

impl holdfast_introspection::PartitionStores for NodeStores {
    /// The open stores, upgraded for the duration of a query.
    fn stores(&self) -> Vec<(PartitionId, StateMachine)> {
        self.partitions
            .iter()
            .filter_map(|(id, store)| Some((*id, store.borrow().as_ref()?.upgrade()?)))
            .collect()
    }

    fn partition_count(&self) -> u32 {
        self.count
    }

    /// Follower reads: a read index from each partition's leader, then this replica's apply.
    fn read_barrier(
        &self,
        partitions: Vec<PartitionId>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let router = self.router.clone();
        Box::pin(async move {
            router
                .read_barrier(partitions)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Scans the partition on its replicas, in placement order (the preferred replica, where
    /// leadership returns, first), skipping this node: its store is not open.
    fn remote_scan(
        &self,
        partition: PartitionId,
        request: Vec<u8>,
    ) -> holdfast_introspection::RemoteRows {
        use futures::{StreamExt, TryStreamExt};
        let (transport, node) = (self.transport.clone(), self.node.0);
        let mut replicas = self.router.replicas_of(partition);
        replicas.retain(|replica| *replica != node);
        // The leader first: it answers without a read barrier.
        if let Some(leader) = self.router.leader_hint(partition) {
            replicas.sort_by_key(|replica| *replica != leader);
        }
        let opened = async move { transport.scan(partition.0, &replicas, request).await };
        futures::stream::once(opened)
            .map_ok(holdfast_cluster::ScanReply::into_stream)
            .try_flatten()
            .map_err(|e| e.to_string())
            .boxed()
    }
}

pub struct Kernel {
    stores: Arc<NodeStores>,
    node: NodeId,
    partitions: Vec<(PartitionId, Addr<PartitionActor>)>,
    metadata: Addr<MetadataActor>,
    registry: watch::Receiver<Arc<Registry>>,
    endpoints: EndpointClient,
    /// The metadata log's thread and the partitions' threads.
    arbiters: Vec<Arbiter>,
    /// The transport to the other nodes and its runtime.
    cluster: Cluster,
    /// The way to every partition's leader, wherever it runs.
    router: Router,
    placement: Arc<Placement>,
    raft_log: holdfast_raft_store::SharedLog,
    /// The listeners' certificates (the transport's and the endpoints' are in use already).
    tls: crate::tls::NodeTls,
    _data_dir: DataDir,
}

impl Kernel {
    /// Opens the data dir and starts every partition actor. Must run inside an actix System.
    pub fn boot(config: &Config, spans: holdfast_otlp::SpanSink) -> Result<Self, BootError> {
        let tls = crate::tls::NodeTls::load(config)?;
        let data_dir = DataDir::open(
            &config.node.data_dir,
            config.node.id,
            &config.cluster.identity(),
        )
        .map_err(Box::new)?;
        // One raft-log file for every group of the node (old per-group logs are moved into it).
        let raft_log = data_dir
            .open_raft_log(config.storage.log_cache_bytes)
            .map_err(Box::new)?;
        let election = config.log.election_timeout_ms;
        let raft = Arc::new(
            openraft::Config {
                cluster_name: config.cluster.name.clone(),
                election_timeout_min: election,
                election_timeout_max: election * 2,
                heartbeat_interval: config.log.heartbeat_interval_ms,
                // A snapshot chunk may wait behind a follower's fsync on a busy machine.
                install_snapshot_timeout: election.saturating_mul(4),
                snapshot_max_chunk_size: 1 << 20,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(config.log.snapshot_interval),
                max_in_snapshot_log_to_keep: config.log.snapshot_interval / 2,
                ..Default::default()
            }
            .validate()
            .map_err(Box::new)?,
        );
        let incarnations = holdfast_cluster::Incarnations::load(
            data_dir.incarnation().to_owned(),
            data_dir.peers_file(),
        )
        .map_err(|e| BootError::Peers(e.to_string()))?;
        let mut cluster = Cluster::start(config, Arc::new(incarnations), tls.peers.clone())?;
        let replication = |group: GroupId, voters: Vec<u64>, learners: Vec<u64>| {
            let nodes = |ids: &[u64]| -> std::collections::BTreeMap<u64, BasicNode> {
                ids.iter()
                    .filter_map(|id| Some((*id, BasicNode::new(cluster.addresses.get(id)?))))
                    .collect()
            };
            let (serving, published) = watch::channel(None);
            let replication = Replication {
                node: NodeId(config.node.id),
                group,
                preferred: NodeId(voters.first().copied().unwrap_or(config.node.id)),
                voters: nodes(&voters),
                learners: nodes(&learners),
                // A few election timeouts: the preferred replica has initialized by then
                // unless it is down.
                bootstrap_grace: Duration::from_millis(election.saturating_mul(3)),
                raft: raft.clone(),
                transport: cluster.transport.clone(),
                serving: Arc::new(serving),
            };
            (replication, (group, published))
        };
        let placement = Arc::new(Placement {
            initial: config
                .cluster
                .nodes
                .iter()
                .map(|m| (m.id, m.address.to_string()))
                .collect(),
            replication_factor: config.cluster.replication_factor,
            partitions: config.cluster.partitions,
        });
        let node_ids: Vec<u64> = config.cluster.nodes.iter().map(|m| m.id).collect();
        let mut served = Vec::new();
        // The metadata log has a thread of its own. Partitions are spread over a few threads, one
        // per core by default: a thread per partition on a 2-core machine cost a third of the
        // invocation throughput and raised timer lateness from 9 ms to 300 ms, from cross-thread
        // wake-ups; one thread for all of them left a fifth of the two cores idle under load
        // (docs/benchmarks.md). Each thread drives its own connections to the endpoints. What
        // attempts replay, the records lookups, control requests and awakeables check, the timer
        // wheel's pages, the status counts, fsyncs and flushes are read and written on blocking
        // threads.
        let arbiter = Arbiter::new();
        let partitions_arbiters: Vec<Arbiter> = (0..partition_threads(config))
            .map(|i| {
                let thread = Arbiter::new();
                thread.spawn(async move { name_this_thread(&format!("holdfast-part-{i}")) });
                thread
            })
            .collect();
        // The registry is recovered before anything serves requests: an empty one would refuse
        // calls to registered services until the metadata log caught up.
        let recovered = holdfast_metadata_store::recover(&data_dir.metadata())
            .map_err(|e| BootError::Metadata(e.to_string()))?;
        let (published, registry) = watch::channel(Arc::new(recovered));
        let metadata = {
            let voters = holdfast_schema::members::metadata_voters(&node_ids);
            let learners = node_ids
                .iter()
                .copied()
                .filter(|id| !voters.contains(id))
                .collect();
            let (replication, group) = replication(GroupId::Metadata, voters, learners);
            served.push(group);
            let settings = holdfast_metadata::Settings {
                dir: data_dir.metadata(),
                log: raft_log.clone(),
                replication,
                published,
                placement: placement.clone(),
            };
            Supervisor::start_in_arbiter(&arbiter.handle(), move |_| MetadataActor::new(settings))
        };
        let limit = config.invocation.max_message_bytes;
        // Every request to a service endpoint is signed with the node's key (Restate's identity v1).
        let signer = crate::keys::load(config)?;
        tracing::info!(
            public_key = signer.public_key(),
            "signing requests to service endpoints"
        );
        let signer = Arc::new(signer);
        // One client per partitions' thread: attempts run there and their connections live there
        // too, so a frame is written and read without a hop to another thread.
        let homed: Vec<EndpointClient> = partitions_arbiters
            .iter()
            .map(|thread| {
                let thread = thread.handle();
                EndpointClient::new(ClientConfig {
                    // One message plus its framing: larger frames are refused before they are
                    // buffered.
                    max_frame_len: u32::try_from(limit + FRAMING_BYTES).unwrap_or(u32::MAX),
                    signer: Some(signer.clone()),
                    tls: tls.endpoints.clone(),
                    home: Some(ConnectionHome::new(move |task| thread.spawn(task))),
                    ..ClientConfig::default()
                })
            })
            .collect();
        // Discovery and the admin's requests use the first thread's client.
        let endpoints = homed[0].clone();
        let (timeouts, mut fsm) = invocation_settings(&config.invocation);
        fsm.tracing = spans.enabled();
        let mut stores = Vec::new();
        // An actor per partition on every node: it runs a replica where the placement puts one
        // (the configured nodes' first replicas, a copy on disk, or a replica moved here after a
        // membership change) and idles elsewhere, ready to take one.
        let partitions: Vec<(PartitionId, Addr<PartitionActor>)> = (0..config.cluster.partitions)
            .map(|n| {
                let replicas = placement.initial_replicas(n);
                let (published, store) = watch::channel(None);
                stores.push((PartitionId(n), store));
                let (replication, group) = replication(GroupId::Partition(n), replicas, Vec::new());
                served.push(group);
                let settings = Settings {
                    partition: PartitionId(n),
                    dir: data_dir.partition(n),
                    log: raft_log.clone(),
                    state_cache_bytes: config.storage.state_cache_bytes,
                    replication,
                    max_batch_commands: config.log.max_batch_commands,
                    max_batch_bytes: config.log.max_batch_bytes,
                    max_queued: config.log.max_batch_commands.saturating_mul(64),
                    // A few election timeouts: long enough for a busy disk, short enough that a
                    // leader cut off from its quorum answers instead of hanging.
                    proposal_deadline: Duration::from_millis(election.saturating_mul(2 * 5)),
                    max_message_bytes: limit,
                    max_concurrent_attempts: config.invocation.max_concurrent_attempts,
                    flush_interval: Duration::from_secs(1),
                    registry: registry.clone(),
                    endpoints: homed[n as usize % homed.len()].clone(),
                    timeouts,
                    fsm,
                    published: Arc::new(published),
                    spans: spans.clone(),
                    placement: placement.clone(),
                };
                let thread = &partitions_arbiters[n as usize % partitions_arbiters.len()];
                let addr = Supervisor::start_in_arbiter(&thread.handle(), move |_| {
                    PartitionActor::new(settings)
                });
                (PartitionId(n), addr)
            })
            .collect();
        let placed = |registry: &Registry| -> Vec<Vec<u64>> {
            (0..placement.partitions)
                .map(|n| placement.partition_replicas(n, registry))
                .collect()
        };
        let router = Router::new(
            NodeId(config.node.id),
            &partitions,
            placed(&registry.borrow()),
            cluster.transport.clone(),
            // As long as a proposal may take: a leader election fits in it several times.
            Duration::from_millis(election.saturating_mul(2 * 5)),
        );
        let stores = Arc::new(NodeStores {
            partitions: stores,
            count: config.cluster.partitions,
            router: router.clone(),
            transport: cluster.transport.clone(),
            node: NodeId(config.node.id),
        });
        let scans = holdfast_introspection::ScanServer::new(stores.clone(), registry.clone());
        cluster.listen(Groups::new(served), router.clone(), metadata.clone(), scans);
        cluster.follow_members(registry.clone(), placement.clone(), router.clone());
        for (_, partition) in &partitions {
            partition.do_send(UseRouter(router.clone()));
        }
        Ok(Self {
            stores,
            endpoints,
            node: NodeId(config.node.id),
            partitions,
            metadata,
            registry,
            arbiters: std::iter::once(arbiter)
                .chain(partitions_arbiters)
                .collect(),
            router,
            cluster,
            placement,
            raft_log,
            tls,
            _data_dir: data_dir,
        })
    }

    /// The node's TLS configurations, for its listeners.
    pub fn tls(&self) -> &crate::tls::NodeTls {
        &self.tls
    }

    /// The node's raft-log file, shared by every group.
    pub fn raft_log(&self) -> &holdfast_raft_store::SharedLog {
        &self.raft_log
    }

    /// The cluster's fixed shape, from which (with the registry's members) placement follows.
    pub fn placement(&self) -> Arc<Placement> {
        self.placement.clone()
    }

    /// The node's view of its partitions' replicas, for `sys_cluster`.
    pub fn replicas(&self) -> NodeReplicas {
        NodeReplicas {
            node: self.node,
            partitions: self.partitions.iter().map(|(_, a)| a.clone()).collect(),
        }
    }

    /// Read handles of this node's partition stores, for SQL introspection.
    pub fn stores(&self) -> Arc<NodeStores> {
        self.stores.clone()
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The node's client to its peers.
    pub fn transport(&self) -> &holdfast_cluster::Transport {
        &self.cluster.transport
    }

    /// Delivers requests to partition leaders, local or on other nodes.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The partition actors, in partition order.
    pub fn partitions(&self) -> &[(PartitionId, Addr<PartitionActor>)] {
        &self.partitions
    }

    /// Puts the configuration's `[[limits]]` into the registry (creating or replacing each by
    /// name), in the background: retried every second until the metadata log takes them, since
    /// it may have no leader yet. A limit the registry refuses is logged and left out.
    pub fn declare_limits(&self, limits: Vec<holdfast_types::Limit>) {
        let metadata = self.metadata.clone();
        let registry = self.registry();
        actix::spawn(async move {
            for limit in limits {
                loop {
                    if registry.borrow().limit(&limit.name) == Some(&limit) {
                        break;
                    }
                    let command = holdfast_schema::RegistryCommand::PutLimit {
                        limit: limit.clone(),
                        create: false,
                    };
                    match metadata
                        .send(holdfast_metadata::ChangeRegistry(command))
                        .await
                    {
                        Ok(Ok(Ok(_))) => break,
                        Ok(Ok(Err(refusal))) => {
                            tracing::warn!(limit = %limit.name, %refusal, "limit from the configuration refused");
                            break;
                        }
                        Ok(Err(_)) | Err(_) => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
    }

    /// The metadata log's actor, through which deployments are registered.
    pub fn metadata(&self) -> &Addr<MetadataActor> {
        &self.metadata
    }

    /// The newest applied registry of deployments and services, updated as the metadata log applies.
    pub fn registry(&self) -> watch::Receiver<Arc<Registry>> {
        self.registry.clone()
    }

    /// The client used to reach service endpoints (discovery and attempts share its connections).
    pub fn endpoints(&self) -> &EndpointClient {
        &self.endpoints
    }

    /// The status of every partition that answers.
    pub async fn statuses(&self) -> Vec<PartitionStatus> {
        let asks = self.partitions.iter().map(|(_, addr)| addr.send(GetStatus));
        futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }

    /// Waits until this node leads every partition and has applied its whole local log, i.e. the
    /// state after a restart has been fully recovered.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses().await;
            let ready = statuses.len() == self.partitions.len()
                && statuses
                    .iter()
                    .all(|s| s.leader == Some(self.node) && s.applied_index >= s.last_log_index);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "partitions not caught up after {timeout:?}: {:?}",
                    statuses
                        .iter()
                        .map(|s| (
                            s.partition.0,
                            s.leader,
                            s.applied_index.0,
                            s.last_log_index.0
                        ))
                        .collect::<Vec<_>>()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Finishes in-flight commits, flushes applied state and stops every raft group.
    pub async fn shutdown(mut self) {
        let stops = self.partitions.iter().map(|(_, addr)| addr.send(Shutdown));
        let stopping = async {
            futures::future::join_all(stops).await;
            let _ = self.metadata.send(holdfast_metadata::Shutdown).await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, stopping)
            .await
            .is_err()
        {
            tracing::warn!("partitions did not finish within {SHUTDOWN_GRACE:?}");
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        self.cluster.stop();
    }
}

/// How many threads the partitions run on: `node.partition_threads`, or one per core when it is
/// 0; at least one and never more than the node's partitions.
fn partition_threads(config: &Config) -> usize {
    let wanted = match config.node.partition_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n as usize,
    };
    wanted.clamp(1, config.cluster.partitions.max(1) as usize)
}

/// Names the calling thread (at most 15 bytes show), so `top -H` and `/proc/<pid>/task/*/comm`
/// tell the partitions' threads apart from the other runtimes'.
fn name_this_thread(name: &str) {
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(name) {
        // SAFETY: the name is a NUL-terminated string that outlives the call, and the thread
        // names itself.
        unsafe {
            libc::pthread_setname_np(libc::pthread_self(), name.as_ptr());
        }
    }
}
