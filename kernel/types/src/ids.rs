//! Identifier newtypes. Each one names what it counts so that a partition id can never be passed
//! where a log index is expected.

use crate::routing;
use crate::{ObjectKey, Target};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

pub use holdfast_protocol::EntryIndex;

/// A kernel process in the cluster, as numbered in the cluster configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// One shard of the key space, owning its own replicated log and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

/// A position in a partition's log; the first entry has index 1.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

/// A leadership term of a partition's consensus group.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// The attempt number of an invocation, from 1; results of any other attempt are fenced off.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The epoch of an invocation's first attempt.
    pub const FIRST: Epoch = Epoch(1);

    /// The epoch of the attempt after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0.saturating_add(1))
    }
}

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_inner!(NodeId, PartitionId, LogIndex, Term, Epoch);

/// Names one invocation across the cluster: `partition_key` routes it, `nonce` makes it unique.
///
/// Written `inv_` + 16 hex digits of the partition key + 32 hex digits of the nonce, lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InvocationId {
    /// Routing hash: for a keyed target the hash of (service, key), so all invocations of one
    /// object land on the object's partition.
    pub partition_key: u64,
    /// Distinguishes invocations with the same partition key.
    pub nonce: u128,
}

impl InvocationId {
    /// Length of the binary form used in storage keys.
    pub const BYTES: usize = 24;

    /// An invocation of `target` whose uniqueness comes from `nonce`, drawn by the proposer
    /// (the state machine never draws randomness).
    pub fn new(target: &Target, nonce: u128) -> Self {
        let partition_key = match &target.key {
            Some(key) => routing::partition_key(&target.service, key),
            // Unkeyed targets spread over partitions by their nonce.
            None => nonce as u64,
        };
        Self {
            partition_key,
            nonce,
        }
    }

    /// The one invocation of `target` for `idempotency_key`: every request with the same target
    /// and key gets the same id, on any node.
    pub fn idempotent(target: &Target, idempotency_key: &str) -> Self {
        let mut parts: Vec<&[u8]> = vec![
            b"idempotent",
            target.service.as_bytes(),
            target.handler.as_bytes(),
        ];
        if let Some(key) = &target.key {
            parts.push(key.as_bytes());
        }
        parts.push(idempotency_key.as_bytes());
        Self::new(target, routing::hash128(&parts))
    }

    /// The one run of workflow `target` for its key: every submission of the workflow's run
    /// handler for the same key, from the ingress or from a handler, gets this id.
    pub fn workflow(target: &Target) -> Self {
        let key = target.key.as_deref().unwrap_or_default();
        Self::new(
            target,
            routing::hash128(&[b"workflow", target.service.as_bytes(), key.as_bytes()]),
        )
    }

    /// The callee invoked by journal entry `entry` of invocation `caller`: deterministic, so that
    /// every replica and every replay derives the same id.
    pub fn derived(target: &Target, caller: InvocationId, entry: EntryIndex) -> Self {
        let caller = caller.to_bytes();
        let entry = entry.0.to_be_bytes();
        Self::new(
            target,
            routing::hash128(&[b"derived", &caller, &entry, target.service.as_bytes()]),
        )
    }

    /// Like [`InvocationId::derived`], except that an unkeyed callee takes the caller's partition
    /// key: it runs on the caller's partition, so the call and its result stay there.
    pub fn derived_near(target: &Target, caller: InvocationId, entry: EntryIndex) -> Self {
        let mut id = Self::derived(target, caller, entry);
        if target.key.is_none() {
            id.partition_key = caller.partition_key;
        }
        id
    }

    /// The partition owning this invocation among `partitions` partitions (at least one); agrees
    /// with [`routing::partition_of`] for keyed targets.
    pub fn partition(&self, partitions: u32) -> crate::PartitionId {
        routing::partition_for_key(self.partition_key, partitions)
    }

    /// Big-endian binary form (partition key, then nonce), ordered like the ids themselves.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.partition_key.to_be_bytes());
        out[8..].copy_from_slice(&self.nonce.to_be_bytes());
        out
    }

    /// Reads the form written by [`InvocationId::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (key, nonce) = bytes.split_first_chunk::<8>()?;
        let nonce: [u8; 16] = nonce.try_into().ok()?;
        Some(Self {
            partition_key: u64::from_be_bytes(*key),
            nonce: u128::from_be_bytes(nonce),
        })
    }
}

impl ObjectKey {
    /// The routing hash of this object, shared by all its invocations.
    pub fn partition_key(&self) -> u64 {
        routing::partition_key(&self.service, &self.key)
    }
}

/// Digits of the partition key in the public text (62^11 > 2^64).
const KEY_DIGITS: usize = 11;
/// Digits of the nonce in the public text (62^22 > 2^128).
const NONCE_DIGITS: usize = 22;

impl InvocationId {
    /// The wire text: `inv_` and 48 lower-case hex digits (partition key, then nonce), what the
    /// log, the snapshots and the service protocol's `start` carry. Users see [`Display`]'s.
    ///
    /// [`Display`]: fmt::Display
    pub fn hex(&self) -> String {
        format!("inv_{:016x}{:032x}", self.partition_key, self.nonce)
    }
}

/// The public text, the one every API shows, in Restate's form so its tools read it: `inv_1`
/// (the `1` is the text's version), then the partition key in 11 and the nonce in 22 base62
/// digits (`0-9a-zA-Z`), each number written byte-swapped (the value whose little-endian bytes
/// are its big-endian ones).
impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = crate::base62::Alphabet::Public;
        let mut text = String::with_capacity(5 + KEY_DIGITS + NONCE_DIGITS);
        text.push_str("inv_1");
        public.push(
            &mut text,
            u128::from(self.partition_key.swap_bytes()),
            KEY_DIGITS,
        );
        public.push(&mut text, self.nonce.swap_bytes(), NONCE_DIGITS);
        f.write_str(&text)
    }
}

/// Why a string is not an invocation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid invocation id {0:?}: expected inv_1 followed by 33 base62 digits (or inv_ followed by \
     48 lower-case hex digits)"
)]
pub struct ParseIdError(pub String);

impl FromStr for InvocationId {
    type Err = ParseIdError;

    /// Reads the public text and the wire text alike.
    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let invalid = || ParseIdError(s.to_owned());
        let rest = s.strip_prefix("inv_").ok_or_else(invalid)?;
        if let Some(digits) = rest
            .strip_prefix('1')
            .filter(|d| d.len() == KEY_DIGITS + NONCE_DIGITS)
        {
            let public = crate::base62::Alphabet::Public;
            let (key, nonce) = digits.split_at(KEY_DIGITS);
            let key = public.parse(key).ok_or_else(invalid)?;
            return Ok(Self {
                partition_key: u64::try_from(key).map_err(|_| invalid())?.swap_bytes(),
                nonce: public.parse(nonce).ok_or_else(invalid)?.swap_bytes(),
            });
        }
        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if rest.len() != 48 || !rest.bytes().all(lower_hex) {
            return Err(invalid());
        }
        let (key, nonce) = rest.split_at(16);
        Ok(Self {
            partition_key: u64::from_str_radix(key, 16).map_err(|_| invalid())?,
            nonce: u128::from_str_radix(nonce, 16).map_err(|_| invalid())?,
        })
    }
}

/// Stored and sent in its wire text ([`InvocationId::hex`]), unchanged across releases.
impl Serialize for InvocationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for InvocationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::partition_of;

    fn counter(key: &str) -> Target {
        Target::new("Counter", "add", Some(key.to_owned()))
    }

    #[test]
    fn invocation_id_text_round_trips() {
        let id = InvocationId {
            partition_key: 0x0123_4567_89ab_cdef,
            nonce: 0xfedc_ba98_7654_3210_0011_2233_4455_6677,
        };
        let wire = id.hex();
        assert_eq!(wire, "inv_0123456789abcdeffedcba98765432100011223344556677");
        assert_eq!(wire.parse::<InvocationId>(), Ok(id));
        let public = id.to_string();
        assert!(
            public.starts_with("inv_1") && public.len() == 38,
            "{public}"
        );
        assert_eq!(public.parse::<InvocationId>(), Ok(id));
        assert_eq!(InvocationId::from_bytes(&id.to_bytes()), Some(id));
        for extreme in [
            InvocationId {
                partition_key: 0,
                nonce: 0,
            },
            InvocationId {
                partition_key: u64::MAX,
                nonce: u128::MAX,
            },
        ] {
            assert_eq!(extreme.to_string().parse::<InvocationId>(), Ok(extreme));
        }
    }

    #[test]
    fn invocation_id_parse_refuses_malformed_text() {
        for bad in [
            "",
            "inv_",
            "inv_0123",
            "INV_0123456789abcdeffedcba98765432100011223344556677",
            "inv_0123456789ABCDEFfedcba98765432100011223344556677",
            "inv_0123456789abcdeffedcba9876543210001122334455667g",
            "inv_0123456789abcdeffedcba98765432100011223344556677a",
            "inv_+123456789abcdeffedcba98765432100011223344556677",
        ] {
            assert!(bad.parse::<InvocationId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn invocation_id_partition_agrees_with_object_routing() {
        for key in ["alice", "bob", "carol", ""] {
            let id = InvocationId::new(&counter(key), 7);
            let object = ObjectKey::new("Counter", key);
            for partitions in [1, 3, 8, 64] {
                assert_eq!(id.partition(partitions), partition_of(&object, partitions));
            }
        }
    }

    #[test]
    fn idempotent_id_depends_only_on_target_and_key() {
        let a = InvocationId::idempotent(&counter("alice"), "req-1");
        assert_eq!(a, InvocationId::idempotent(&counter("alice"), "req-1"));
        assert_ne!(a, InvocationId::idempotent(&counter("alice"), "req-2"));
        assert_ne!(a, InvocationId::idempotent(&counter("bob"), "req-1"));
        let other_handler = Target::new("Counter", "get", Some("alice".to_owned()));
        assert_ne!(a, InvocationId::idempotent(&other_handler, "req-1"));
        assert_eq!(
            a.partition_key,
            ObjectKey::new("Counter", "alice").partition_key()
        );
    }

    /// Pinned: ids derived by replicas of older releases must stay the same.
    #[test]
    fn idempotent_id_is_stable_across_releases() {
        let id = InvocationId::idempotent(&Target::new("Greeter", "greet", None), "k");
        assert_eq!(id.hex(), PINNED_IDEMPOTENT);
    }

    #[test]
    fn derived_ids_differ_per_entry() {
        let caller = InvocationId::new(&counter("a"), 1);
        let target = Target::new("Greeter", "greet", None);
        let one = InvocationId::derived(&target, caller, EntryIndex(1));
        assert_eq!(one, InvocationId::derived(&target, caller, EntryIndex(1)));
        assert_ne!(one, InvocationId::derived(&target, caller, EntryIndex(2)));
    }

    #[test]
    fn invocation_id_serde_is_its_text() {
        let id = InvocationId::new(&counter("a"), 42);
        let bytes = rmp_serde::to_vec(&id).expect("encode");
        assert_eq!(&bytes[2..], id.hex().as_bytes());
        assert_eq!(
            rmp_serde::from_slice::<InvocationId>(&bytes).expect("decode"),
            id
        );
    }

    const PINNED_IDEMPOTENT: &str = "inv_f3faf0011b023ac9a4627e5953f91718f3faf0011b023ac9";
}
