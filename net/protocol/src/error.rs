//! Codec errors: every way bytes from a peer can be unacceptable, none of them a panic.

use thiserror::Error as ThisError;

/// Why a frame or message could not be decoded or encoded.
///
/// A decoding error means the peer broke the protocol: the attempt is aborted and retried, never
/// continued on a guess. [`Error::kind`] gives the stable name the shared test vectors use.
#[derive(Debug, ThisError)]
pub enum Error {
    /// The header announces a body longer than the decoder accepts; nothing was allocated for it.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// Body length announced by the header.
        len: u32,
        /// Limit configured on the decoder.
        max: u32,
    },
    /// The header carries a type code this protocol version does not define.
    #[error("unknown message type {0:#06x}")]
    UnknownType(u16),
    /// The header sets flag bits that are reserved (must be zero).
    #[error("reserved flag bits set: {0:#06x}")]
    ReservedFlags(u16),
    /// The input ended inside a frame.
    #[error("input ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
    /// The body is not the MessagePack map this message type requires.
    #[error("invalid {ty} body: {reason}")]
    InvalidBody {
        /// Name of the message type whose body was malformed.
        ty: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A message could not be serialized (only possible for a value over the frame limit).
    #[error("cannot encode {ty}: {reason}")]
    Encode {
        /// Name of the message type being encoded.
        ty: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    /// Stable snake_case name of the error, shared with the TypeScript codec and the test vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::FrameTooLong { .. } => "frame_too_long",
            Error::UnknownType(_) => "unknown_type",
            Error::ReservedFlags(_) => "reserved_flags",
            Error::Truncated(_) => "truncated",
            Error::InvalidBody { .. } => "invalid_body",
            Error::Encode { .. } => "encode",
        }
    }
}
