//! Deployment identifiers: `dp_1` (the `1` is the text's version) followed by 22 base62 digits
//! in Restate's form (`0-9a-zA-Z`, the number byte-swapped), the one type every layer (the
//! registry, the log's pinned deployments, the admin API) uses. Logs and snapshots hold the text
//! of earlier releases (`dp_` and the 22 digits in `0-9A-Za-z`), which is still read.
//!
//! The digits encode a 128-bit seed chosen by whoever proposes the registration and recorded in the
//! log command, so every node derives the same id without any randomness in this crate.

use crate::base62::Alphabet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Prefix of every rendered deployment id.
pub const PREFIX: &str = "dp_";
/// Number of base62 digits after the prefix: enough for any `u128` (62^22 > 2^128).
const DIGITS: usize = 22;
/// The version character in front of the digits.
const VERSION: char = '1';

/// Names one registered deployment; in-flight invocations stay pinned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId(u128);

impl DeploymentId {
    /// Derives the id from the seed carried by a registration command; the same seed gives the same id.
    pub const fn from_seed(seed: u128) -> Self {
        Self(seed)
    }

    /// The seed this id was derived from.
    pub const fn seed(self) -> u128 {
        self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(PREFIX.len() + 1 + DIGITS);
        text.push_str(PREFIX);
        text.push(VERSION);
        crate::base62::Alphabet::Public.push(&mut text, self.0.swap_bytes(), DIGITS);
        f.write_str(&text)
    }
}

/// Why a string is not a deployment id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDeploymentIdError {
    /// The string does not start with `dp_`.
    #[error("deployment id must start with '{PREFIX}'")]
    Prefix,
    /// The part after the prefix is neither `1` and 22 digits nor (an earlier release's) 22 digits.
    #[error(
        "deployment id must have '{VERSION}' and {DIGITS} characters after '{PREFIX}', found {0} characters"
    )]
    Length(usize),
    /// A character outside `0-9A-Za-z`.
    #[error("deployment id contains {0:?}, which is not a base62 digit")]
    Digit(char),
    /// The digits name a number above the 128-bit range.
    #[error("deployment id is out of range")]
    Overflow,
}

impl FromStr for DeploymentId {
    type Err = ParseDeploymentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix(PREFIX)
            .ok_or(ParseDeploymentIdError::Prefix)?;
        let count = digits.chars().count();
        let (digits, alphabet) = match (count, digits.strip_prefix(VERSION)) {
            (23, Some(rest)) => (rest, Alphabet::Public),
            (DIGITS, _) => (digits, Alphabet::Stored),
            _ => return Err(ParseDeploymentIdError::Length(count)),
        };
        if let Some(c) = digits.chars().find(|c| alphabet.digit(*c).is_none()) {
            return Err(ParseDeploymentIdError::Digit(c));
        }
        let value = alphabet
            .parse(digits)
            .ok_or(ParseDeploymentIdError::Overflow)?;
        Ok(Self(match alphabet {
            Alphabet::Public => value.swap_bytes(),
            Alphabet::Stored => value,
        }))
    }
}

impl DeploymentId {
    /// The stored text: `dp_` and the 22 digits, as logs and snapshots have always held it.
    fn stored(self) -> String {
        let mut text = String::with_capacity(PREFIX.len() + DIGITS);
        text.push_str(PREFIX);
        Alphabet::Stored.push(&mut text, self.0, DIGITS);
        text
    }
}

/// Stored in the text of earlier releases ([`DeploymentId::stored`]), so the log and snapshots
/// do not change; APIs show [`fmt::Display`]'s.
impl Serialize for DeploymentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.stored())
    }
}

/// Serializes an id in its public text, for the views APIs answer with.
pub fn serialize_public<T: fmt::Display, S: Serializer>(
    id: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

impl<'de> Deserialize<'de> for DeploymentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_fixed_width_and_deterministic() {
        assert_eq!(
            DeploymentId::from_seed(0).to_string(),
            "dp_10000000000000000000000"
        );
        // Restate's form: the number byte-swapped, digits then lower then upper case.
        assert_eq!(
            DeploymentId::from_seed(61u128.swap_bytes()).to_string(),
            "dp_1000000000000000000000Z"
        );
        assert_eq!(
            DeploymentId::from_seed(62u128.swap_bytes()).to_string(),
            "dp_10000000000000000000010"
        );
        assert_eq!(
            DeploymentId::from_seed(u128::MAX).to_string(),
            "dp_17N42dgm5tFLK9N8MT7fHC7"
        );
        let seed = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321;
        assert_eq!(
            DeploymentId::from_seed(seed).to_string(),
            DeploymentId::from_seed(seed).to_string()
        );
    }

    #[test]
    fn the_text_of_earlier_releases_is_still_read() {
        // Stored text: no version, digits then upper then lower case, not swapped.
        let id = DeploymentId::from_seed(62);
        assert_eq!("dp_0000000000000000000010".parse::<DeploymentId>(), Ok(id));
        assert_eq!(
            "dp_000000000000000000000z".parse::<DeploymentId>(),
            Ok(DeploymentId::from_seed(61))
        );
        assert_eq!(id.stored(), "dp_0000000000000000000010");
        assert!(
            "dp_20000000000000000000010"
                .parse::<DeploymentId>()
                .is_err()
        );
        assert!(
            "dp_100000000000000000000100"
                .parse::<DeploymentId>()
                .is_err()
        );
    }

    #[test]
    fn parse_inverts_render() {
        for seed in [
            0,
            1,
            61,
            62,
            3843,
            u128::from(u64::MAX),
            u128::MAX - 1,
            u128::MAX,
        ] {
            let id = DeploymentId::from_seed(seed);
            assert_eq!(id.to_string().parse::<DeploymentId>(), Ok(id));
            assert_eq!(id.seed(), seed);
        }
    }

    #[test]
    fn parse_refuses_malformed_ids() {
        assert_eq!(
            "x".parse::<DeploymentId>(),
            Err(ParseDeploymentIdError::Prefix)
        );
        assert_eq!(
            "dp_abc".parse::<DeploymentId>(),
            Err(ParseDeploymentIdError::Length(3))
        );
        assert_eq!(
            "dp_000000000000000000000-".parse::<DeploymentId>(),
            Err(ParseDeploymentIdError::Digit('-'))
        );
        assert_eq!(
            "dp_zzzzzzzzzzzzzzzzzzzzzz".parse::<DeploymentId>(),
            Err(ParseDeploymentIdError::Overflow)
        );
        assert_eq!(
            "dp_00000000000000000000é0".parse::<DeploymentId>(),
            Err(ParseDeploymentIdError::Digit('é'))
        );
    }

    #[test]
    fn serde_uses_the_rendered_string() {
        let id = DeploymentId::from_seed(7);
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "\"dp_0000000000000000000007\"");
        assert_eq!(
            serde_json::from_str::<DeploymentId>(&json).expect("parse"),
            id
        );
        assert!(serde_json::from_str::<DeploymentId>("\"dp_nope\"").is_err());
    }
}
