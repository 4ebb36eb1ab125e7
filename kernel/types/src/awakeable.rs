//! Awakeable ids: how a handler's `awakeable` entry is addressed from outside its invocation.
//!
//! An id names the invocation (and so its partition) and the entry, and carries a token derived
//! from the invocation's secret, which only the kernel and the handler's SDK know. Knowing an
//! invocation id (it is returned to every caller) is therefore not enough to complete one of its
//! awakeables: ids cannot be forged or guessed.
//!
//! Written `awk_` + hex(invocation id, 24 bytes) + hex(entry index, u32 big-endian) + hex(token,
//! 16 bytes), lower case: 92 characters.

use crate::{EntryIndex, InvocationId};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Length of a token in bytes.
pub const TOKEN_BYTES: usize = 16;

/// The address of one awakeable entry, with its proof of origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AwakeableId {
    /// The invocation that created the awakeable.
    pub invocation: InvocationId,
    /// Its `awakeable` entry.
    pub index: EntryIndex,
    /// [`token`] of the invocation's secret and `index`.
    pub token: [u8; TOKEN_BYTES],
}

impl AwakeableId {
    /// The id of awakeable entry `index` of `invocation`, whose secret is `secret`.
    pub fn new(invocation: InvocationId, index: EntryIndex, secret: u128) -> Self {
        Self {
            invocation,
            index,
            token: token(secret, index),
        }
    }

    /// Whether this id was made with `secret` (compared in constant time).
    pub fn is_signed_by(&self, secret: u128) -> bool {
        let expected = token(secret, self.index);
        expected
            .iter()
            .zip(self.token.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The token of awakeable entry `index` under an invocation's `secret`: the first 16 bytes of
/// SHA-256("holdfast-awakeable" ‖ secret as 16 bytes big-endian ‖ index as u32 big-endian).
pub fn token(secret: u128, index: EntryIndex) -> [u8; TOKEN_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"holdfast-awakeable");
    hasher.update(secret.to_be_bytes());
    hasher.update(index.0.to_be_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(&digest[..TOKEN_BYTES]);
    out
}

/// The secret of the invocation started by entry `index` of an invocation whose secret is
/// `caller`: deterministic, so every replica derives the same, and unguessable without `caller`.
pub fn derive_secret(caller: u128, index: EntryIndex) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(b"holdfast-callee-secret");
    hasher.update(caller.to_be_bytes());
    hasher.update(index.0.to_be_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(out)
}

const PREFIX: &str = "awk_";
const HEX_LEN: usize = 2 * (InvocationId::BYTES + 4 + TOKEN_BYTES);

impl fmt::Display for AwakeableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        let index = self.index.0.to_be_bytes();
        let id = self.invocation.to_bytes();
        for byte in id.iter().chain(index.iter()).chain(self.token.iter()) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a string is not an awakeable id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad awakeable id '{0}': expected awk_ followed by {HEX_LEN} lower-case hex digits")]
pub struct ParseAwakeableIdError(pub String);

impl FromStr for AwakeableId {
    type Err = ParseAwakeableIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseAwakeableIdError(text.chars().take(120).collect());
        let hex = text.strip_prefix(PREFIX).ok_or_else(bad)?;
        if hex.len() != HEX_LEN
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut bytes = [0u8; HEX_LEN / 2];
        for (i, out) in bytes.iter_mut().enumerate() {
            *out = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let (id, rest) = bytes.split_at(InvocationId::BYTES);
        let (index, token) = rest.split_at(4);
        Ok(Self {
            invocation: InvocationId::from_bytes(id).ok_or_else(bad)?,
            index: EntryIndex(u32::from_be_bytes(index.try_into().map_err(|_| bad())?)),
            token: token.try_into().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation() -> InvocationId {
        InvocationId {
            partition_key: 0x0123_4567_89ab_cdef,
            nonce: 0xfeed,
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        let id = AwakeableId::new(invocation(), EntryIndex(5), 42);
        let text = id.to_string();
        assert!(text.starts_with("awk_0123456789abcdef"));
        assert_eq!(text.len(), 4 + HEX_LEN);
        assert_eq!(text.parse::<AwakeableId>(), Ok(id));
    }

    #[test]
    fn only_the_right_secret_signs_an_id() {
        let id = AwakeableId::new(invocation(), EntryIndex(5), 42);
        assert!(id.is_signed_by(42));
        assert!(!id.is_signed_by(43));
        let moved = AwakeableId {
            index: EntryIndex(6),
            ..id
        };
        assert!(!moved.is_signed_by(42));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = AwakeableId::new(invocation(), EntryIndex(1), 7).to_string();
        for bad in [
            "",
            "awk_",
            "sign_1notreal",
            &good[..good.len() - 1],
            &good.replace("awk_", "awk-"),
            &good.to_uppercase(),
            &format!("{good}0"),
        ] {
            assert!(bad.parse::<AwakeableId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_secrets_differ_per_entry_and_caller() {
        assert_ne!(
            derive_secret(1, EntryIndex(1)),
            derive_secret(1, EntryIndex(2))
        );
        assert_ne!(
            derive_secret(1, EntryIndex(1)),
            derive_secret(2, EntryIndex(1))
        );
        assert_eq!(
            derive_secret(1, EntryIndex(1)),
            derive_secret(1, EntryIndex(1))
        );
    }
}
