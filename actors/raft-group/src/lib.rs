//! What every replicated group of a node shares — the partitions and the metadata log: how it
//! starts (the preferred replica initializes it on first boot, the others after a grace period
//! if nobody reached them; a sole voter elects itself at once), how its role is observed, and
//! how the cluster transport reaches it.
//!
//! Actors drive groups through this crate; it holds no actor and no state of its own.

use holdfast_cluster::{GroupId, GroupNetwork, RaftService, Transport};
use holdfast_types::NodeId;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Raft, RaftMetrics, RaftTypeConfig, ServerState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The exit status of a process that stopped because its storage failed.
pub const STORAGE_FAILED_EXIT: i32 = 75;

/// Stops the process because a group's storage failed. After a failed commit or fsync the state
/// on disk is uncertain (Linux may even report later fsyncs of the same file as successful), so
/// retrying in-process is unsafe; a restart recovers from the log, which is the ground truth.
pub fn fail_stop(group: &str, what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(group, what, %error, "storage failed; stopping the process so that a restart recovers from the log");
    eprintln!("holdfast: {group}: storage failed ({what}): {error}; exiting");
    std::process::exit(STORAGE_FAILED_EXIT)
}

/// Where a group this node runs a replica of is published for the transport's listener.
pub type Serving = Arc<watch::Sender<Option<Arc<dyn RaftService>>>>;

/// How one group is replicated and reached: what a node needs to start its replica.
#[derive(Clone)]
pub struct Replication {
    /// This node's id.
    pub node: NodeId,
    /// The group.
    pub group: GroupId,
    /// The group's initial voters (its replicas) and their node-to-node addresses.
    pub voters: BTreeMap<u64, BasicNode>,
    /// Nodes that follow the group without voting (the metadata log on nodes past its voters),
    /// added by its leader.
    pub learners: BTreeMap<u64, BasicNode>,
    /// The group's preferred replica: it initializes the group at once on first boot (the other
    /// voters do so only if nobody reached them within `bootstrap_grace`, which is safe because
    /// every voter initializes with the same membership), and leadership is handed back to it
    /// when it is up and caught up, so leaders stay spread over the nodes.
    pub preferred: NodeId,
    /// How long a voter that is not preferred waits for the group to reach it on first boot.
    pub bootstrap_grace: Duration,
    /// Consensus timing and snapshot policy.
    pub raft: Arc<openraft::Config>,
    /// The node's client to its peers.
    pub transport: Transport,
    /// Where the running group is published for the node's listener.
    pub serving: Serving,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("node", &self.node)
            .field("group", &self.group)
            .field("voters", &self.voters)
            .field("preferred", &self.preferred)
            .finish_non_exhaustive()
    }
}

impl Replication {
    /// A group whose only voter is `node`, with no peers to reach: for tests of one replica.
    /// Must be called inside a tokio runtime (the transport's connections would run on it).
    pub fn sole(node: NodeId, group: GroupId, raft: Arc<openraft::Config>) -> Self {
        let identity = holdfast_cluster::Identity {
            cluster: "test".into(),
            fingerprint: String::new(),
            node: node.0,
        };
        let transport = Transport::new(
            identity,
            BTreeMap::new(),
            holdfast_cluster::Settings::default(),
            tokio::runtime::Handle::current(),
        );
        Self {
            node,
            group,
            voters: BTreeMap::from([(node.0, BasicNode::new(""))]),
            learners: BTreeMap::new(),
            preferred: node,
            bootstrap_grace: Duration::ZERO,
            raft,
            transport,
            serving: Arc::new(watch::channel(None).0),
        }
    }

    /// Takes the group off the listener: peers' messages are answered "not running" until the
    /// group is published again.
    pub fn withdraw(&self) {
        self.serving.send_replace(None);
    }
}

/// A group's role and positions as last observed in its raft metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Role {
    /// The node currently leading the group, if known.
    pub leader: Option<u64>,
    /// Whether this node leads the group.
    pub is_leader: bool,
    /// The current term.
    pub term: u64,
    /// Index of the last applied entry.
    pub applied: u64,
    /// Index of the last entry in the local log.
    pub last_log: u64,
    /// Index of the last entry removed from the local log (covered by a snapshot).
    pub purged: Option<u64>,
}

impl Role {
    /// Reads the role out of a metrics snapshot.
    pub fn of(metrics: &RaftMetrics<u64, BasicNode>) -> Self {
        Self {
            leader: metrics.current_leader,
            is_leader: metrics.state == ServerState::Leader,
            term: metrics.current_term,
            applied: metrics.last_applied.map_or(0, |id| id.index),
            purged: metrics.purged.map(|id| id.index),
            last_log: metrics.last_log_index.unwrap_or(0),
        }
    }

    /// The other node that leads the group, when it is known and not this one.
    pub fn other_leader(&self) -> Option<NodeId> {
        self.leader.filter(|_| !self.is_leader).map(NodeId)
    }
}

/// Starts the raft group over its stores and publishes it to the listener: on first boot the
/// preferred replica initializes it at once and the other voters after the grace period unless
/// the group reached them first; after a restart a sole voter elects itself at once.
pub async fn start<C, LS, SM>(
    replication: &Replication,
    log: LS,
    state: SM,
) -> Result<Raft<C>, String>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
    LS: RaftLogStorage<C>,
    SM: RaftStateMachine<C>,
    AppendEntriesRequest<C>: Serialize + DeserializeOwned,
    InstallSnapshotRequest<C>: Serialize + DeserializeOwned,
{
    let node = replication.node.0;
    let network = GroupNetwork::<C>::new(replication.group, replication.transport.clone());
    let raft = Raft::new(node, replication.raft.clone(), network, log, state)
        .await
        .map_err(|e| e.to_string())?;
    replication
        .serving
        .send_replace(Some(Arc::new(raft.clone())));
    let voter = replication.voters.contains_key(&node);
    // A learner is reached by the leader adding it; it has nothing to initialize.
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        if voter && replication.preferred == replication.node {
            raft.initialize(replication.voters.clone())
                .await
                .map_err(|e| e.to_string())?;
        } else if voter {
            let (raft, voters) = (raft.clone(), replication.voters.clone());
            let (grace, group) = (replication.bootstrap_grace, replication.group);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if raft.is_initialized().await == Ok(false) {
                    tracing::info!(%group, "no replica reached this one on first boot; initializing the group");
                    if let Err(e) = raft.initialize(voters).await {
                        tracing::debug!(%group, error = %e, "initializing the group");
                    }
                }
            });
        }
    } else if sole_voter(&raft.metrics(), node) {
        // Nobody else can win this election, so there is no reason to wait out the timeout.
        raft.trigger().elect().await.map_err(|e| e.to_string())?;
    }
    Ok(raft)
}

/// At a clean stop of a group with no other member: a snapshot (for a partition, a checkpoint)
/// of everything applied, then the log purged up to it, so a stopped node keeps no log its state
/// already holds. A group with peers keeps its log: they may need it when they come back, and
/// sending a snapshot instead costs the whole state. Best effort: gives up after `within` per
/// step, and a node that skips it only keeps more log.
pub async fn checkpoint_and_purge<C>(raft: &Raft<C>, group: GroupId, within: Duration)
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    let (applied, purged, alone) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let members: Vec<u64> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        (
            metrics.last_applied,
            metrics.purged,
            members == [metrics.id],
        )
    };
    let Some(applied) = applied else {
        return;
    };
    if !alone || purged >= Some(applied) {
        return;
    }
    let wait = raft.wait(Some(within));
    let checkpointed = async {
        raft.trigger().snapshot().await.map_err(|e| e.to_string())?;
        wait.metrics(
            |m| m.snapshot >= Some(applied),
            "a checkpoint at the applied index",
        )
        .await
        .map_err(|e| e.to_string())?;
        raft.trigger()
            .purge_log(applied.index)
            .await
            .map_err(|e| e.to_string())?;
        wait.metrics(
            |m| m.purged >= Some(applied),
            "the log purged to the checkpoint",
        )
        .await
        .map_err(|e| e.to_string())
    };
    match checkpointed.await {
        Ok(_) => tracing::debug!(%group, index = applied.index, "checkpointed and purged the log"),
        Err(e) => tracing::info!(%group, error = %e, "the log was not purged at stop; it is kept"),
    }
}

fn sole_voter(metrics: &watch::Receiver<RaftMetrics<u64, BasicNode>>, node: u64) -> bool {
    let metrics = metrics.borrow();
    let voters: Vec<u64> = metrics.membership_config.voter_ids().collect();
    voters == [node]
}

/// The group's metrics as a stream, starting with the current value; an actor adds it with
/// `add_stream` so role changes arrive in its mailbox.
pub fn observe(
    rx: watch::Receiver<RaftMetrics<u64, BasicNode>>,
) -> impl futures::Stream<Item = RaftMetrics<u64, BasicNode>> {
    futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let metrics = rx.borrow_and_update().clone();
        Some((metrics, (rx, false)))
    })
}

/// What a group's membership should be: its voters and the nodes that only follow it, with the
/// node-to-node address of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedMembers {
    /// The voters.
    pub voters: std::collections::BTreeSet<u64>,
    /// Followers without a vote (the metadata log's members past its voters).
    pub learners: std::collections::BTreeSet<u64>,
    /// Where each member is reached.
    pub addresses: BTreeMap<u64, String>,
}

impl WantedMembers {
    /// Whether the group's current membership already is this.
    pub fn matches(&self, metrics: &RaftMetrics<u64, BasicNode>) -> bool {
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: std::collections::BTreeSet<u64> =
            membership.nodes().map(|(id, _)| *id).collect();
        let wanted: std::collections::BTreeSet<u64> =
            self.voters.union(&self.learners).copied().collect();
        membership.get_joint_config().len() == 1 && voters == self.voters && nodes == wanted
    }
}

/// Moves a group this node leads to `wanted`, the safe way: new members join as learners and
/// catch up (within `catch_up` each) before one joint change makes the voters `wanted.voters`;
/// then nodes that are neither voters nor wanted learners are removed. Addresses of existing
/// members are never changed. Returns an error to retry on a later round, also as soon as this
/// node no longer leads (see [`while_leading`]).
pub async fn change_members<C>(
    raft: &Raft<C>,
    wanted: &WantedMembers,
    catch_up: Duration,
) -> Result<(), String>
where
    C: RaftTypeConfig<
            NodeId = u64,
            Node = BasicNode,
            Responder = openraft::impls::OneshotResponder<C>,
        >,
{
    while_leading(
        raft.metrics(),
        change_members_as_leader(raft, wanted, catch_up),
    )
    .await
}

/// The steps of [`change_members`], each awaited until openraft answers it.
async fn change_members_as_leader<C>(
    raft: &Raft<C>,
    wanted: &WantedMembers,
    catch_up: Duration,
) -> Result<(), String>
where
    C: RaftTypeConfig<
            NodeId = u64,
            Node = BasicNode,
            Responder = openraft::impls::OneshotResponder<C>,
        >,
{
    let current = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let known: std::collections::BTreeSet<u64> = current.nodes().map(|(id, _)| *id).collect();
    for id in wanted.voters.iter().chain(&wanted.learners) {
        if known.contains(id) {
            continue;
        }
        let Some(address) = wanted.addresses.get(id) else {
            return Err(format!("no address known for node {id}"));
        };
        let voter = wanted.voters.contains(id);
        // A future voter must hold the log before it counts toward a quorum.
        let added = tokio::time::timeout(
            catch_up,
            raft.add_learner(*id, BasicNode::new(address), voter),
        )
        .await
        .map_err(|_| format!("node {id} did not catch up within {catch_up:?}"))?;
        added.map_err(|e| format!("adding node {id}: {e}"))?;
        tracing::info!(node = id, voter, "added a node to the group as a learner");
    }
    let voters: std::collections::BTreeSet<u64> = current.voter_ids().collect();
    if voters != wanted.voters {
        raft.change_membership(wanted.voters.clone(), false)
            .await
            .map_err(|e| format!("changing the voters to {:?}: {e}", wanted.voters))?;
        tracing::info!(voters = ?wanted.voters, "changed the group's voters");
    }
    let now = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let extra: std::collections::BTreeSet<u64> = now
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| !wanted.voters.contains(id) && !wanted.learners.contains(id))
        .collect();
    if !extra.is_empty() {
        raft.change_membership(openraft::ChangeMembers::RemoveNodes(extra.clone()), false)
            .await
            .map_err(|e| format!("removing nodes {extra:?}: {e}"))?;
        tracing::info!(nodes = ?extra, "removed nodes from the group");
    }
    Ok(())
}

/// Runs `change` only while the group's metrics say this node leads. openraft answers what a
/// leader proposed once that node applies or truncates the entry; a leader deposed meanwhile and
/// then removed by the change it started (or cut off) does neither, and would wait forever.
async fn while_leading<T>(
    mut metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    change: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    // Also over when the metrics' sender is gone: the group stopped.
    let deposed = async move {
        let _ = metrics.wait_for(|m| m.state != ServerState::Leader).await;
    };
    tokio::select! {
        biased;
        done = change => done,
        () = deposed => Err("this node no longer leads the group; its new leader makes the change".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(state: ServerState) -> RaftMetrics<u64, BasicNode> {
        RaftMetrics {
            state,
            ..RaftMetrics::new_initial(1)
        }
    }

    #[tokio::test]
    async fn a_change_is_abandoned_once_its_leader_is_deposed() {
        let (metrics, watched) = watch::channel(leading(ServerState::Leader));
        let change = tokio::spawn(while_leading(
            watched,
            std::future::pending::<Result<(), String>>(),
        ));
        tokio::task::yield_now().await;
        assert!(!change.is_finished(), "abandoned while still leading");
        metrics.send_replace(leading(ServerState::Follower));
        let outcome = tokio::time::timeout(Duration::from_secs(5), change)
            .await
            .expect("the change still waits after the leader was deposed")
            .expect("task");
        assert!(outcome.unwrap_err().contains("no longer leads"));
    }

    #[tokio::test]
    async fn a_change_that_completes_while_leading_returns_its_outcome() {
        let (_metrics, watched) = watch::channel(leading(ServerState::Leader));
        assert_eq!(while_leading(watched, async { Ok(7) }).await, Ok(7));
        let (_metrics, watched) = watch::channel(leading(ServerState::Leader));
        let failed = while_leading(watched, async { Err::<(), _>("refused".to_owned()) }).await;
        assert_eq!(failed, Err("refused".to_owned()));
    }

    #[tokio::test]
    async fn a_change_is_not_started_without_leadership_or_metrics() {
        let (_metrics, watched) = watch::channel(leading(ServerState::Candidate));
        let outcome = while_leading(watched, std::future::pending::<Result<(), String>>()).await;
        assert!(outcome.is_err());
        let (metrics, watched) = watch::channel(leading(ServerState::Leader));
        drop(metrics);
        let outcome = while_leading(watched, std::future::pending::<Result<(), String>>()).await;
        assert!(outcome.is_err(), "a stopped group's change must not wait");
    }
}
