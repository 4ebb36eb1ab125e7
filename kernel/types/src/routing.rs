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

/// The routing hash of the object (service, key): the partition key of all its invocations.
pub fn partition_key(service: &str, key: &str) -> u64 {
    let hash = fnv1a(FNV_OFFSET, service.as_bytes());
    // A separator byte keeps ("ab","c") and ("a","bc") apart.
    fnv1a(fnv1a(hash, &[0xff]), key.as_bytes())
}

/// The partition key of schedule `name`: the partition that fires it and records its ticks.
/// Hashed under a name no service can have (a control character), like an object key.
pub fn schedule_partition_key(name: &str) -> u64 {
    partition_key("\u{1}schedules", name)
}

/// The partition key of limit `name`: its home, which queues and grants its permits.
pub fn limit_partition_key(name: &str) -> u64 {
    partition_key("\u{1}limits", name)
}

/// The partition owning `partition_key` among `partitions` partitions (at least one).
pub fn partition_for_key(partition_key: u64, partitions: u32) -> PartitionId {
    let count = u64::from(partitions.max(1));
    PartitionId(u32::try_from(partition_key % count).unwrap_or(0))
}

/// The partition that owns `object` among `partitions` partitions (at least one).
pub fn partition_of(object: &ObjectKey, partitions: u32) -> PartitionId {
    partition_for_key(partition_key(&object.service, &object.key), partitions)
}

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// A fixed 128-bit hash (FNV-1a) of length-prefixed parts, for ids that every replica must
/// derive alike; not a cryptographic hash.
pub fn hash128(parts: &[&[u8]]) -> u128 {
    let mut hash = FNV128_OFFSET;
    for part in parts {
        let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
        for byte in len.to_be_bytes().iter().chain(part.iter()) {
            hash ^= u128::from(*byte);
            hash = hash.wrapping_mul(FNV128_PRIME);
        }
    }
    hash
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
