//! The Holdfast service protocol: the messages the kernel and a service endpoint exchange during an
//! invocation, and the frame codec that carries them (specified in `docs/protocol.md`).
//!
//! ```text
//!  kernel                                          endpoint (SDK)
//!    | -- start, journal entries (replay) ----------> |
//!    | <--------------- new entries, run results ---- |
//!    | -- completions, entry acks ------------------> |
//!    | <------- suspension | output + end | error --- |
//! ```
//!
//! Every message travels in a frame: an 8-byte big-endian header (type `u16`, flags `u16`, body length
//! `u32`) and a canonical MessagePack body. The TypeScript SDK implements the same codec; both are held
//! byte-compatible by the shared vectors in `tests/protocol-vectors/`.
//!
//! # Layout
//! - [`message`]: the message and journal entry types, with their wire encoding.
//! - [`frame`]: the frame header, the encoder and the bounded incremental decoder.
//! - [`manifest`]: the discovery manifest an endpoint serves at `GET /discover`.
//! - [`Error`]: everything that can be wrong with bytes received from a peer.

pub mod frame;
pub mod manifest;
pub mod message;

mod error;

pub use error::Error;
pub use frame::{DEFAULT_MAX_FRAME_LEN, Decoder, Flags, Frame, HEADER_LEN};
pub use message::{Entry, EntryIndex, Failure, Message, MessageType, Outcome, Payload};

/// Content type of an invocation request and response body (a sequence of frames).
pub const INVOCATION_CONTENT_TYPE: &str = "application/vnd.holdfast.invocation.v1";
/// Request header choosing the protocol mode of an invocation (`stream` or `request-response`).
pub const MODE_HEADER: &str = "x-holdfast-mode";
/// The protocol version this crate implements.
pub const PROTOCOL_VERSION: u32 = 1;
