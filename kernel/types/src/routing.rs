//! Maps keys to partitions. The mapping must never change for an existing data dir, so it uses a
//! fixed hash (FNV-1a, 64 bit) rather than the process-seeded std hasher.

use crate::{ObjectKey, PartitionId};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The partition that owns `object` among `partitions` partitions (at least one).
pub fn partition_of(object: &ObjectKey, partitions: u32) -> PartitionId {
    let hash = fnv1a(FNV_OFFSET, object.service.as_bytes());
    // A separator byte keeps ("ab","c") and ("a","bc") apart.
    let hash = fnv1a(fnv1a(hash, &[0xff]), object.key.as_bytes());
    let count = u64::from(partitions.max(1));
    PartitionId(u32::try_from(hash % count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_of_is_stable_across_releases() {
        // Pinned values: changing them would move existing keys to other partitions.
        assert_eq!(
            partition_of(&ObjectKey::new("Counter", "alice"), 8),
            PartitionId(PINNED_ALICE)
        );
        assert_eq!(
            partition_of(&ObjectKey::new("Counter", "bob"), 8),
            PartitionId(PINNED_BOB)
        );
    }

    #[test]
    fn partition_of_separates_service_from_key() {
        let a = partition_of(&ObjectKey::new("ab", "c"), 1 << 20);
        let b = partition_of(&ObjectKey::new("a", "bc"), 1 << 20);
        assert_ne!(a, b);
    }

    #[test]
    fn partition_of_spreads_keys_over_all_partitions() {
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            let p = partition_of(&ObjectKey::new("Counter", format!("k{i}")), 8);
            seen[p.0 as usize] += 1;
        }
        assert!(seen.iter().all(|n| (700..1300).contains(n)), "{seen:?}");
    }

    const PINNED_ALICE: u32 = 4;
    const PINNED_BOB: u32 = 7;
}
