//! Awakeable ids: `awk_` + base64url(invocation id, unpadded) + `_` + entry index in decimal.
//!
//! The SDK hands the id to user code, which passes it to whoever completes the awakeable; the
//! kernel parses it back to find the invocation and the entry to complete.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::message::EntryIndex;

const PREFIX: &str = "awk_";

/// The invocation and entry an awakeable id points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwakeableId {
    /// Invocation that created the awakeable.
    pub invocation_id: String,
    /// Its `awakeable` entry.
    pub entry: EntryIndex,
}

impl AwakeableId {
    /// Parses an id; `None` if it is not one this protocol produces.
    pub fn parse(id: &str) -> Option<Self> {
        let rest = id.strip_prefix(PREFIX)?;
        let (encoded, digits) = rest.rsplit_once('_')?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let entry = EntryIndex(digits.parse().ok()?);
        let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        let invocation_id = String::from_utf8(raw).ok()?;
        Some(AwakeableId {
            invocation_id,
            entry,
        })
    }
}

impl std::fmt::Display for AwakeableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}_{}",
            URL_SAFE_NO_PAD.encode(&self.invocation_id),
            self.entry.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_even_when_base64_contains_the_separator() {
        for inv in ["inv_1a2b3c", "\u{ff}\u{fe}?>", ""] {
            let id = AwakeableId {
                invocation_id: inv.to_owned(),
                entry: EntryIndex(42),
            };
            assert_eq!(AwakeableId::parse(&id.to_string()), Some(id));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "awk_",
            "sign_abc_1",
            "awk_aW52_",
            "awk_aW52_01",
            "awk_aW52_x",
            "awk_!!_1",
            "awk_aW52_99999999999",
        ] {
            assert_eq!(AwakeableId::parse(bad), None, "{bad}");
        }
    }
}
