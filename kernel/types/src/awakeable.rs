//! Awakeable ids: how a handler's `awakeable` entry is addressed from outside its invocation.
//!
//! An id names the invocation (and so its partition) and the entry, and carries a token: an HMAC
//! of the entry index under the invocation's *awakeable key*. The key is itself an HMAC of the
//! invocation's secret; the kernel keeps the secret and sends only the key to the handler's SDK
//! (in `start`), so the SDK can sign the ids of its own invocation's awakeables and nothing else.
//! Knowing an invocation id (it is returned to every caller) is therefore not enough to complete
//! one of its awakeables: ids cannot be forged or guessed.
//!
//! The secret also derives the secrets of the invocation's callees ([`derive_secret`]), which is
//! why it never leaves the kernel: an endpoint that learnt it could sign its callees' awakeables.
//!
//! Written `awk_` + hex(invocation id, 24 bytes) + hex(entry index, u32 big-endian) + hex(token,
//! 16 bytes), lower case: 92 characters.

use crate::{EntryIndex, InvocationId};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

type HmacSha256 = Hmac<Sha256>;

/// Length of a token in bytes.
pub const TOKEN_BYTES: usize = 16;

/// Length of an awakeable key in bytes (a full HMAC-SHA256 output).
pub const KEY_BYTES: usize = 32;

/// The key that signs an invocation's awakeable ids: the only thing derived from the secret that
/// the SDK ever sees (`start.awakeable_key`).
pub type AwakeableKey = [u8; KEY_BYTES];

/// The address of one awakeable entry, with its proof of origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AwakeableId {
    /// The invocation that created the awakeable.
    pub invocation: InvocationId,
    /// Its `awakeable` entry.
    pub index: EntryIndex,
    /// [`token`] of the invocation's awakeable key and `index`.
    pub token: [u8; TOKEN_BYTES],
}

impl AwakeableId {
    /// The id of awakeable entry `index` of `invocation`, whose secret is `secret`.
    pub fn new(invocation: InvocationId, index: EntryIndex, secret: u128) -> Self {
        Self::with_key(invocation, index, &awakeable_key(secret))
    }

    /// The id of awakeable entry `index` of `invocation`, whose awakeable key is `key` (what an
    /// SDK does with `start.awakeable_key`).
    pub fn with_key(invocation: InvocationId, index: EntryIndex, key: &AwakeableKey) -> Self {
        Self {
            invocation,
            index,
            token: token(key, index),
        }
    }

    /// Whether this id was made with the awakeable key of `secret`, or by an earlier release
    /// with the secret itself (both compared in constant time).
    pub fn is_signed_by(&self, secret: u128) -> bool {
        // Compares the token with the leading bytes of the HMAC in constant time.
        let current = hmac_of(&awakeable_key(secret), &self.index.0.to_be_bytes())
            .verify_truncated_left(&self.token)
            .is_ok();
        let legacy = legacy_token(secret, self.index)
            .iter()
            .zip(self.token.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        current | legacy
    }
}

fn hmac_of(key: &[u8], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac
}

/// The awakeable key of an invocation whose secret is `secret`:
/// HMAC-SHA256(key = secret as 16 bytes big-endian, message = "holdfast-awakeable-key").
///
/// One-way: the key reveals neither the secret nor, therefore, any callee's [`derive_secret`].
pub fn awakeable_key(secret: u128) -> AwakeableKey {
    hmac_of(&secret.to_be_bytes(), b"holdfast-awakeable-key")
        .finalize()
        .into_bytes()
        .into()
}

/// The token of awakeable entry `index` under an invocation's awakeable `key`: the first 16 bytes
/// of HMAC-SHA256(key, index as u32 big-endian).
pub fn token(key: &AwakeableKey, index: EntryIndex) -> [u8; TOKEN_BYTES] {
    let digest = hmac_of(key, &index.0.to_be_bytes()).finalize().into_bytes();
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(&digest[..TOKEN_BYTES]);
    out
}

/// The secret of the invocation started by entry `index` of an invocation whose secret is
/// `caller`: the first 16 bytes of SHA-256("holdfast-callee-secret" ‖ caller as 16 bytes
/// big-endian ‖ index as u32 big-endian). Deterministic, so every replica (and every release:
/// it decides state that old log entries replay into) derives the same, and unguessable without
/// `caller`, which only the kernel knows.
pub fn derive_secret(caller: u128, index: EntryIndex) -> u128 {
    let digest = Sha256::new()
        .chain_update(b"holdfast-callee-secret")
        .chain_update(caller.to_be_bytes())
        .chain_update(index.0.to_be_bytes())
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(out)
}

/// The token earlier releases gave awakeable entry `index`, signed with the secret itself (the
/// first 16 bytes of SHA-256("holdfast-awakeable" ‖ secret ‖ index)): ids handed out before an
/// upgrade must still complete their awakeables.
fn legacy_token(secret: u128, index: EntryIndex) -> [u8; TOKEN_BYTES] {
    let digest = Sha256::new()
        .chain_update(b"holdfast-awakeable")
        .chain_update(secret.to_be_bytes())
        .chain_update(index.0.to_be_bytes())
        .finalize();
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(&digest[..TOKEN_BYTES]);
    out
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

    #[test]
    fn tokens_are_hmacs_under_the_awakeable_key_and_old_ids_still_verify() {
        for (secret, index) in [(42u128, 5u32), (0, 0), (u128::MAX, u32::MAX)] {
            let id = AwakeableId::new(invocation(), EntryIndex(index), secret);
            assert_eq!(id.token, token(&awakeable_key(secret), EntryIndex(index)));
            assert_eq!(
                id,
                AwakeableId::with_key(invocation(), EntryIndex(index), &awakeable_key(secret))
            );
            assert_ne!(id.token, legacy_token(secret, EntryIndex(index)));
            // An id an earlier release handed out still completes its awakeable.
            let old = AwakeableId {
                token: legacy_token(secret, EntryIndex(index)),
                ..id
            };
            assert!(old.is_signed_by(secret));
            assert!(!old.is_signed_by(secret ^ 1));
        }
    }

    #[test]
    fn a_token_made_with_a_wrong_key_is_refused() {
        let secret = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff;
        let index = EntryIndex(3);
        let mut wrong = awakeable_key(secret);
        wrong[0] ^= 1;
        for key in [wrong, awakeable_key(secret ^ 1), [0u8; KEY_BYTES]] {
            let forged = AwakeableId::with_key(invocation(), index, &key);
            assert!(!forged.is_signed_by(secret));
        }
        // Nor is the secret itself usable as a key, nor an id whose token was cut short or flipped.
        let mut raw = [0u8; KEY_BYTES];
        raw[..16].copy_from_slice(&secret.to_be_bytes());
        assert!(!AwakeableId::with_key(invocation(), index, &raw).is_signed_by(secret));
        let mut flipped = AwakeableId::new(invocation(), index, secret);
        flipped.token[TOKEN_BYTES - 1] ^= 0x80;
        assert!(!flipped.is_signed_by(secret));
    }

    #[test]
    fn the_awakeable_key_is_not_the_secret_nor_a_callee_secret() {
        // The key is an HMAC output under the secret: one-way by construction. It is neither the
        // secret nor anything a callee's secret is derived from, so an endpoint that sees it cannot
        // compute `derive_secret` for the invocation's callees or sign their awakeables.
        for caller in [0u128, 1, 42, u128::MAX] {
            let key = awakeable_key(caller);
            assert_eq!(key, awakeable_key(caller), "deterministic");
            assert_ne!(key, awakeable_key(caller ^ 1));
            assert_ne!(key[..16], caller.to_be_bytes());
            for index in [EntryIndex(0), EntryIndex(1), EntryIndex(7)] {
                let callee = derive_secret(caller, index);
                assert_ne!(callee, caller);
                assert_ne!(key[..16], callee.to_be_bytes());
                assert_ne!(key[16..], callee.to_be_bytes());
                assert_ne!(awakeable_key(callee), key);
                // Treating the key (or either half) as a caller secret yields other callee secrets.
                let high = u128::from_be_bytes(key[..16].try_into().expect("16 bytes"));
                let low = u128::from_be_bytes(key[16..].try_into().expect("16 bytes"));
                assert_ne!(derive_secret(high, index), callee);
                assert_ne!(derive_secret(low, index), callee);
                // And a callee's awakeables are not signed by the caller's key.
                let made_by_caller_key = AwakeableId::with_key(invocation(), EntryIndex(1), &key);
                assert!(!made_by_caller_key.is_signed_by(callee));
            }
        }
    }
}
