//! The cluster's members and where each group's replicas live.
//!
//! A cluster starts with the nodes of its configuration (`[[cluster.nodes]]`, the same on every
//! node); operators add and remove nodes at runtime, which the metadata log records as
//! [`RegistryCommand::AddNode`] and [`RegistryCommand::RemoveNode`]. [`Members`] is that record:
//! until the first change it is empty and the configured nodes are the members.
//!
//! # Rules
//! - An id is never reused: a removed node's id stays recorded as removed, and adding it again is
//!   refused (a wiped or replaced machine joins under a new id).
//! - An address never changes in place: adding a member's id with another address is refused.
//! - Two members never share an address.
//! - Removing a node that would leave fewer members than the replication factor is refused.
//!
//! [`Placement`] turns the members into replica sets: a pure function, so every node computes the
//! same placement from the same log.
//!
//! [`RegistryCommand::AddNode`]: crate::RegistryCommand::AddNode
//! [`RegistryCommand::RemoveNode`]: crate::RegistryCommand::RemoveNode

use crate::{Applied, Refusal, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most voters of the metadata log; further nodes follow it as learners.
pub const METADATA_VOTERS: usize = 5;

/// Whether a recorded node belongs to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// A member: it holds replicas and serves requests.
    Active,
    /// Removed for good: its replicas moved elsewhere and its id may not come back.
    Removed,
}

/// One node as the metadata log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its node-to-node address.
    pub address: String,
    /// Member or removed.
    pub state: NodeState,
}

/// Every node the cluster ever had, once its membership first changed (empty before: then the
/// configured nodes are the members).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    nodes: BTreeMap<u64, NodeRecord>,
}

impl Members {
    /// Every recorded node, removed ones included, by id.
    pub fn records(&self) -> &BTreeMap<u64, NodeRecord> {
        &self.nodes
    }

    /// The members as recorded, or `initial` while nothing is recorded.
    fn effective(&self, initial: &[(u64, String)]) -> BTreeMap<u64, NodeRecord> {
        if self.nodes.is_empty() {
            initial
                .iter()
                .map(|(id, address)| {
                    let state = NodeState::Active;
                    let address = address.clone();
                    (*id, NodeRecord { address, state })
                })
                .collect()
        } else {
            self.nodes.clone()
        }
    }

    /// Whether adding node `id` at `address` is allowed, and whether it is a member already.
    fn plan_add(&self, id: u64, address: &str, initial: &[(u64, String)]) -> Result<bool, Refusal> {
        if id == 0 || address.is_empty() {
            return Err(Refusal::InvalidNode(format!(
                "a node needs an id >= 1 and an address, got id {id} at '{address}'"
            )));
        }
        let nodes = self.effective(initial);
        match nodes.get(&id) {
            Some(record) if record.state == NodeState::Removed => {
                return Err(Refusal::NodeRemoved(id));
            }
            Some(record) if record.address != address => {
                return Err(Refusal::AddressInPlace {
                    id,
                    address: record.address.clone(),
                });
            }
            Some(_) => return Ok(true),
            None => {}
        }
        let taken = nodes
            .iter()
            .find(|(_, r)| r.state == NodeState::Active && r.address == address);
        if let Some((other, _)) = taken {
            return Err(Refusal::AddressTaken {
                address: address.to_owned(),
                by: *other,
            });
        }
        Ok(false)
    }

    /// Whether node `id` may be removed, and whether it is removed already.
    fn plan_remove(
        &self,
        id: u64,
        initial: &[(u64, String)],
        replication_factor: u32,
    ) -> Result<bool, Refusal> {
        let nodes = self.effective(initial);
        match nodes.get(&id) {
            None => Err(Refusal::UnknownNode(id)),
            Some(record) if record.state == NodeState::Removed => Ok(true),
            Some(_) => {
                let remaining = nodes
                    .iter()
                    .filter(|(n, r)| **n != id && r.state == NodeState::Active)
                    .count();
                if remaining < replication_factor.max(1) as usize {
                    Err(Refusal::TooFewNodes {
                        remaining,
                        replication_factor,
                    })
                } else {
                    Ok(false)
                }
            }
        }
    }
}

impl Registry {
    /// The cluster's recorded members (empty until its membership first changed).
    pub fn members(&self) -> &Members {
        &self.members
    }

    pub(crate) fn plan_add_node(
        &self,
        id: u64,
        address: &str,
        initial: &[(u64, String)],
    ) -> Result<bool, Refusal> {
        self.members.plan_add(id, address, initial)
    }

    pub(crate) fn commit_add_node(
        &mut self,
        id: u64,
        address: &str,
        initial: &[(u64, String)],
        already: bool,
    ) -> Applied {
        if already {
            return Applied::NodeAlreadyMember(id);
        }
        let mut nodes = self.members.effective(initial);
        nodes.insert(
            id,
            NodeRecord {
                address: address.to_owned(),
                state: NodeState::Active,
            },
        );
        self.members.nodes = nodes;
        Applied::NodeAdded(id)
    }

    pub(crate) fn plan_remove_node(
        &self,
        id: u64,
        initial: &[(u64, String)],
        replication_factor: u32,
    ) -> Result<bool, Refusal> {
        self.members.plan_remove(id, initial, replication_factor)
    }

    pub(crate) fn commit_remove_node(&mut self, id: u64, initial: &[(u64, String)]) -> Applied {
        let mut nodes = self.members.effective(initial);
        if let Some(record) = nodes.get_mut(&id) {
            record.state = NodeState::Removed;
        }
        self.members.nodes = nodes;
        Applied::NodeRemoved(id)
    }
}

/// The cluster's fixed shape, from the configuration every node shares: enough to compute where
/// each group's replicas live from the registry's [`Members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The configured nodes (`[[cluster.nodes]]`): id and node-to-node address.
    pub initial: Vec<(u64, String)>,
    /// Replicas per partition.
    pub replication_factor: u32,
    /// Number of partitions.
    pub partitions: u32,
}

impl Placement {
    /// One node (id 1) holding every one of `partitions` partitions: for tests of one replica.
    pub fn single(partitions: u32) -> Self {
        Self {
            initial: vec![(1, String::new())],
            replication_factor: 1,
            partitions,
        }
    }

    /// The members and their addresses: the recorded active nodes, or the configured ones.
    pub fn nodes(&self, registry: &Registry) -> BTreeMap<u64, String> {
        registry
            .members
            .effective(&self.initial)
            .into_iter()
            .filter(|(_, r)| r.state == NodeState::Active)
            .map(|(id, r)| (id, r.address))
            .collect()
    }

    /// Whether `node` was removed from the cluster.
    pub fn removed(&self, registry: &Registry, node: u64) -> bool {
        registry
            .members
            .nodes
            .get(&node)
            .is_some_and(|r| r.state == NodeState::Removed)
    }

    /// Partition `partition`'s replicas among the current members, preferred first.
    pub fn partition_replicas(&self, partition: u32, registry: &Registry) -> Vec<u64> {
        let nodes: Vec<u64> = self.nodes(registry).into_keys().collect();
        partition_replicas(partition, &nodes, self.replication_factor)
    }

    /// Partition `partition`'s replicas among the configured nodes: the group's first voters.
    pub fn initial_replicas(&self, partition: u32) -> Vec<u64> {
        let nodes: Vec<u64> = self.initial.iter().map(|(id, _)| *id).collect();
        partition_replicas(partition, &nodes, self.replication_factor)
    }

    /// The metadata log's voters among the current members.
    pub fn metadata_voters(&self, registry: &Registry) -> Vec<u64> {
        let nodes: Vec<u64> = self.nodes(registry).into_keys().collect();
        metadata_voters(&nodes)
    }
}

/// The replicas of partition `partition`, preferred replica first: `replication_factor`
/// consecutive nodes of the id-sorted list, starting at `partition mod N`, so replicas and
/// preferred leaders spread evenly.
pub fn partition_replicas(partition: u32, nodes: &[u64], replication_factor: u32) -> Vec<u64> {
    let sorted = sorted(nodes);
    if sorted.is_empty() {
        return Vec::new();
    }
    let count = (replication_factor as usize).clamp(1, sorted.len());
    let start = partition as usize % sorted.len();
    (0..count)
        .map(|k| sorted[(start + k) % sorted.len()])
        .collect()
}

/// The metadata log's voters, preferred first: the lowest ids, at most [`METADATA_VOTERS`].
pub fn metadata_voters(nodes: &[u64]) -> Vec<u64> {
    let mut sorted = sorted(nodes);
    sorted.truncate(METADATA_VOTERS);
    sorted
}

fn sorted(nodes: &[u64]) -> Vec<u64> {
    let mut sorted = nodes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegistryCommand;

    fn initial() -> Vec<(u64, String)> {
        (1..=3).map(|n| (n, format!("127.0.0.{n}:5122"))).collect()
    }

    fn placement() -> Placement {
        Placement {
            initial: initial(),
            replication_factor: 3,
            partitions: 4,
        }
    }

    fn add(id: u64, address: &str) -> RegistryCommand {
        RegistryCommand::AddNode {
            id,
            address: address.into(),
            initial: initial(),
        }
    }

    fn remove(id: u64) -> RegistryCommand {
        RegistryCommand::RemoveNode {
            id,
            initial: initial(),
            replication_factor: 3,
        }
    }

    #[test]
    fn a_single_node_holds_everything() {
        for p in 0..8 {
            assert_eq!(partition_replicas(p, &[1], 1), [1]);
        }
        assert_eq!(metadata_voters(&[1]), [1]);
    }

    #[test]
    fn replicas_and_preferred_leaders_spread_evenly() {
        let nodes = [3, 1, 2];
        let mut replicas = BTreeMap::<u64, usize>::new();
        let mut preferred = BTreeMap::<u64, usize>::new();
        for p in 0..12 {
            let set = partition_replicas(p, &nodes, 2);
            assert_eq!(set.len(), 2);
            assert_ne!(set[0], set[1]);
            *preferred.entry(set[0]).or_default() += 1;
            for node in set {
                *replicas.entry(node).or_default() += 1;
            }
        }
        assert_eq!(replicas, BTreeMap::from([(1, 8), (2, 8), (3, 8)]));
        assert_eq!(preferred, BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
    }

    #[test]
    fn the_file_order_does_not_matter_and_the_factor_is_capped() {
        assert_eq!(
            partition_replicas(4, &[2, 3, 1], 3),
            partition_replicas(4, &[1, 2, 3], 3)
        );
        assert_eq!(partition_replicas(1, &[1, 2, 3], 3), [2, 3, 1]);
        assert_eq!(partition_replicas(0, &[1, 2], 5), [1, 2]);
        assert_eq!(partition_replicas(0, &[], 3), Vec::<u64>::new());
    }

    #[test]
    fn the_metadata_log_has_at_most_five_voters() {
        assert_eq!(metadata_voters(&[7, 6, 5, 4, 3, 2, 1]), [1, 2, 3, 4, 5]);
    }

    #[test]
    fn until_the_first_change_the_configured_nodes_are_the_members() {
        let registry = Registry::new();
        let placement = placement();
        assert_eq!(placement.nodes(&registry).len(), 3);
        assert_eq!(placement.partition_replicas(1, &registry), [2, 3, 1]);
        assert_eq!(placement.initial_replicas(1), [2, 3, 1]);
        assert!(registry.members().records().is_empty());
    }

    #[test]
    fn an_added_node_takes_replicas_and_a_removed_one_gives_them_up() {
        let mut registry = Registry::new();
        let placement = placement();
        assert_eq!(
            registry.apply(&add(4, "127.0.0.4:5122")),
            Ok(Applied::NodeAdded(4))
        );
        assert_eq!(placement.nodes(&registry).len(), 4);
        let holding_4 = (0..4)
            .filter(|p| placement.partition_replicas(*p, &registry).contains(&4))
            .count();
        assert_eq!(holding_4, 3, "three of four partitions move a replica to 4");
        assert_eq!(placement.metadata_voters(&registry), [1, 2, 3, 4]);
        assert_eq!(registry.apply(&remove(2)), Ok(Applied::NodeRemoved(2)));
        assert!(placement.removed(&registry, 2));
        for p in 0..4 {
            let replicas = placement.partition_replicas(p, &registry);
            assert!(!replicas.contains(&2), "{replicas:?}");
            assert_eq!(replicas.len(), 3);
        }
        assert_eq!(placement.metadata_voters(&registry), [1, 3, 4]);
        // Removing again answers the same; the id can never come back.
        assert_eq!(registry.apply(&remove(2)), Ok(Applied::NodeRemoved(2)));
        assert_eq!(
            registry.apply(&add(2, "127.0.0.2:5122")),
            Err(Refusal::NodeRemoved(2))
        );
    }

    #[test]
    fn addresses_never_change_in_place_nor_are_shared() {
        let mut registry = Registry::new();
        assert_eq!(
            registry.apply(&add(3, "127.0.0.9:5122")),
            Err(Refusal::AddressInPlace {
                id: 3,
                address: "127.0.0.3:5122".into()
            })
        );
        assert_eq!(
            registry.apply(&add(5, "127.0.0.3:5122")),
            Err(Refusal::AddressTaken {
                address: "127.0.0.3:5122".into(),
                by: 3
            })
        );
        assert_eq!(
            registry.apply(&add(3, "127.0.0.3:5122")),
            Ok(Applied::NodeAlreadyMember(3))
        );
        assert!(
            registry.members().records().is_empty(),
            "nothing was recorded"
        );
        assert!(matches!(
            registry.apply(&add(0, "127.0.0.7:1")),
            Err(Refusal::InvalidNode(_))
        ));
    }

    #[test]
    fn removing_below_the_replication_factor_or_an_unknown_node_is_refused() {
        let mut registry = Registry::new();
        assert_eq!(
            registry.apply(&remove(3)),
            Err(Refusal::TooFewNodes {
                remaining: 2,
                replication_factor: 3
            })
        );
        assert_eq!(registry.apply(&remove(9)), Err(Refusal::UnknownNode(9)));
        assert_eq!(registry.check(&remove(9)), Err(Refusal::UnknownNode(9)));
    }
}
