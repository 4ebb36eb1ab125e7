//! The log encoding: one format-version byte followed by MessagePack with named fields, so new
//! optional fields can be added without a new version.

use serde::{Serialize, de::DeserializeOwned};

/// The format version written in front of every encoded log record.
pub const FORMAT_V1: u8 = 1;

/// Why a log record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The record is empty, so it has no version byte.
    #[error("empty log record")]
    Empty,
    /// The record was written by a newer release that this one cannot read.
    #[error("unsupported log format version {0} (this release reads version {FORMAT_V1})")]
    UnsupportedVersion(u8),
    /// The MessagePack body does not match the expected type.
    #[error("malformed log record: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The value could not be serialised (e.g. a map with non-string keys).
    #[error("cannot encode log record: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes `value` behind the current format version byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_V1);
    rmp_serde::encode::write_named(&mut out, value)?;
    Ok(out)
}

/// Decodes a record written by [`encode`], refusing unknown format versions.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        None => Err(Error::Empty),
        Some((&FORMAT_V1, body)) => Ok(rmp_serde::from_slice(body)?),
        Some((&version, _)) => Err(Error::UnsupportedVersion(version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, ObjectKey};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn set_state() -> Command {
        Command::SetState {
            object: ObjectKey::new("C", "k"),
            name: "n".into(),
            value: vec![1, 2],
        }
    }

    #[test]
    fn commands_round_trip() {
        let commands = vec![
            set_state(),
            Command::ClearState {
                object: ObjectKey::new("C", "k"),
                name: "n".into(),
            },
            Command::ClearAllState {
                object: ObjectKey::new("C", "k"),
            },
        ];
        for command in commands {
            let bytes = encode(&command).expect("encode");
            assert_eq!(decode::<Command>(&bytes).expect("decode"), command);
        }
    }

    /// Golden bytes: if this changes, existing logs can no longer be read.
    #[test]
    fn set_state_encoding_is_pinned() {
        let bytes = encode(&set_state()).expect("encode");
        assert_eq!(hex(&bytes), GOLDEN_SET_STATE);
    }

    #[test]
    fn decode_refuses_unknown_version_and_garbage() {
        assert!(matches!(decode::<Command>(&[]), Err(Error::Empty)));
        assert!(matches!(
            decode::<Command>(&[9, 0]),
            Err(Error::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode::<Command>(&[FORMAT_V1, 0xc1]),
            Err(Error::Decode(_))
        ));
    }

    const GOLDEN_SET_STATE: &str = "0181a8536574537461746583a66f626a65637482a773657276696365a143a36b6579a16ba46e616d65a16ea576616c7565c4020102";
}
