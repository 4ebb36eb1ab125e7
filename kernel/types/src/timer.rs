//! Durable timers: what fires, and when. A timer lives in its partition's store under the key
//! [`TimerKey::to_bytes`], which sorts by fire time, so the timer wheel reads the nearest ones with
//! one range scan. Firing is the command [`crate::Command::FireTimer`], so every replica sees a
//! timer fire exactly once, at the same position in the log.

use crate::{EntryIndex, Epoch, InvocationId};
use serde::{Deserialize, Serialize};

/// What happens when a timer fires. Append-only like [`crate::Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Timer {
    /// Completes the `sleep` entry `index` of invocation `id` with `{}`.
    Sleep { id: InvocationId, index: EntryIndex },
    /// Starts the scheduled invocation `id` (a delayed send).
    Start { id: InvocationId },
    /// Removes the completed invocation `id` whose retention ended (with its workflow's state
    /// and promises if it was a workflow run).
    Purge { id: InvocationId },
    /// Starts the next attempt of invocation `id` after failed attempt `epoch`, if it is still
    /// backing off from that attempt: the retry's due time is in the log, so any leader honours
    /// the remaining backoff.
    Retry { id: InvocationId, epoch: Epoch },
}

impl Timer {
    /// The invocation the timer acts on.
    pub fn invocation(&self) -> InvocationId {
        match self {
            Timer::Sleep { id, .. }
            | Timer::Start { id }
            | Timer::Purge { id }
            | Timer::Retry { id, .. } => *id,
        }
    }
}

/// A timer and its fire time: the unique identity of one pending timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    /// When it fires, in Unix milliseconds (the proposer's clock that registered it, plus the
    /// requested duration).
    pub fire_at_ms: u64,
    /// What it does.
    pub timer: Timer,
}

const SLEEP: u8 = 1;
const START: u8 = 2;
const PURGE: u8 = 3;
const RETRY: u8 = 4;

impl TimerKey {
    /// Length of [`TimerKey::to_bytes`]: fire time, kind, invocation id, entry index.
    pub const BYTES: usize = 8 + 1 + InvocationId::BYTES + 4;

    /// A timer firing at `fire_at_ms`.
    pub fn new(fire_at_ms: u64, timer: Timer) -> Self {
        Self { fire_at_ms, timer }
    }

    /// The storage key: fire time (u64 big-endian) first so keys sort by fire time, then the
    /// kind, the invocation id and the entry index of a sleep or the epoch of a retry (else zero);
    /// ordered like `Self`.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let (kind, id, index) = match self.timer {
            Timer::Sleep { id, index } => (SLEEP, id, index.0),
            Timer::Start { id } => (START, id, 0),
            Timer::Purge { id } => (PURGE, id, 0),
            Timer::Retry { id, epoch } => (RETRY, id, epoch.0),
        };
        let mut out = [0u8; Self::BYTES];
        out[..8].copy_from_slice(&self.fire_at_ms.to_be_bytes());
        out[8] = kind;
        out[9..9 + InvocationId::BYTES].copy_from_slice(&id.to_bytes());
        out[9 + InvocationId::BYTES..].copy_from_slice(&index.to_be_bytes());
        out
    }

    /// Reads the form written by [`TimerKey::to_bytes`]; `None` if it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let fire_at_ms = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let id = InvocationId::from_bytes(&bytes[9..9 + InvocationId::BYTES])?;
        let index = u32::from_be_bytes(bytes[9 + InvocationId::BYTES..].try_into().ok()?);
        let timer = match (bytes[8], index) {
            (SLEEP, index) => Timer::Sleep {
                id,
                index: EntryIndex(index),
            },
            (START, 0) => Timer::Start { id },
            (PURGE, 0) => Timer::Purge { id },
            (RETRY, epoch) => Timer::Retry {
                id,
                epoch: Epoch(epoch),
            },
            _ => return None,
        };
        Some(Self { fire_at_ms, timer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> InvocationId {
        InvocationId {
            partition_key: 7,
            nonce: n,
        }
    }

    #[test]
    fn bytes_round_trip_every_kind() {
        for timer in [
            Timer::Sleep {
                id: id(1),
                index: EntryIndex(3),
            },
            Timer::Start { id: id(2) },
            Timer::Purge { id: id(3) },
            Timer::Retry {
                id: id(4),
                epoch: Epoch(2),
            },
        ] {
            let key = TimerKey::new(1_700_000_000_000, timer);
            assert_eq!(TimerKey::from_bytes(&key.to_bytes()), Some(key));
        }
    }

    #[test]
    fn bytes_sort_by_fire_time_first() {
        let early = TimerKey::new(10, Timer::Purge { id: id(9) });
        let late = TimerKey::new(
            11,
            Timer::Sleep {
                id: id(1),
                index: EntryIndex(1),
            },
        );
        assert!(early.to_bytes() < late.to_bytes());
        assert!(early < late);
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert_eq!(TimerKey::from_bytes(&[0; 5]), None);
        let mut bytes = TimerKey::new(1, Timer::Start { id: id(1) }).to_bytes();
        bytes[8] = 9;
        assert_eq!(TimerKey::from_bytes(&bytes), None);
    }
}
