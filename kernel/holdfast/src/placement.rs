//! Where each group's replicas live: a pure function of the cluster configuration, so every node
//! computes the same placement without asking anyone.

/// Most voters of the metadata log; further nodes would only slow its commits.
pub const METADATA_VOTERS: usize = 5;

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
    use std::collections::BTreeMap;

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
        assert_eq!(metadata_voters(&[2, 1, 3]), [1, 2, 3]);
    }
}
