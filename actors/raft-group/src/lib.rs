//! What every replicated group of a node shares — the partitions and the metadata log: how it
//! starts (initialize on first boot, elect at once when it is the sole voter), how its role is
//! observed, and its network.
//!
//! Actors drive groups through this crate; it holds no actor and no state of its own.

mod network;

pub use network::{Network, PeerClient};

use holdfast_types::NodeId;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Raft, RaftMetrics, RaftNetworkFactory, RaftTypeConfig, ServerState};
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// The cluster-facing settings every group of this node is started with.
#[derive(Debug, Clone)]
pub struct Membership {
    /// This node's id.
    pub node: NodeId,
    /// The initial voters and their node-to-node addresses.
    pub members: BTreeMap<u64, BasicNode>,
    /// Whether this node initializes a group whose store is empty (exactly one node does).
    pub bootstrap: bool,
    /// Consensus timing and snapshot policy.
    pub raft: Arc<openraft::Config>,
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
}

impl Role {
    /// Reads the role out of a metrics snapshot.
    pub fn of(metrics: &RaftMetrics<u64, BasicNode>) -> Self {
        Self {
            leader: metrics.current_leader,
            is_leader: metrics.state == ServerState::Leader,
            term: metrics.current_term,
            applied: metrics.last_applied.map_or(0, |id| id.index),
            last_log: metrics.last_log_index.unwrap_or(0),
        }
    }

    /// The other node that leads the group, when it is known and not this one.
    pub fn other_leader(&self) -> Option<NodeId> {
        self.leader.filter(|_| !self.is_leader).map(NodeId)
    }
}

/// Starts the raft group over its stores: initializes it on first boot (bootstrap node only) and,
/// after a restart, elects at once when this node is the sole voter.
pub async fn start<C, LS, SM, N>(
    membership: &Membership,
    network: N,
    log: LS,
    state: SM,
) -> Result<Raft<C>, String>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
    LS: RaftLogStorage<C>,
    SM: RaftStateMachine<C>,
    N: RaftNetworkFactory<C>,
{
    let node = membership.node.0;
    let raft = Raft::new(node, membership.raft.clone(), network, log, state)
        .await
        .map_err(|e| e.to_string())?;
    if !raft.is_initialized().await.map_err(|e| e.to_string())? {
        if membership.bootstrap {
            raft.initialize(membership.members.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
    } else if sole_voter(&raft.metrics(), node) {
        // Nobody else can win this election, so there is no reason to wait out the timeout.
        raft.trigger().elect().await.map_err(|e| e.to_string())?;
    }
    Ok(raft)
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
