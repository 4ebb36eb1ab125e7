//! Frames: an 8-byte big-endian header (type `u16`, flags `u16`, body length `u32`) and a body.
//!
//! The [`Decoder`] validates a header before it waits for the body, so a hostile length is refused
//! without allocating, and it never panics on any input.

use bytes::{Buf, BufMut, BytesMut};

use crate::Error;
use crate::message::{Message, MessageType};

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;

/// Default limit on a frame body: large enough for any state value, small enough to bound memory.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// Frame flag bits; every bit but [`Flags::ACK`] is reserved and must be zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u16);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// The sender needs an `entry_ack` once this entry or run result is durable.
    pub const ACK: Flags = Flags(0x0001);

    /// Parses header flags, refusing reserved bits.
    pub fn from_bits(bits: u16) -> Result<Self, Error> {
        if bits & !Self::ACK.0 != 0 {
            return Err(Error::ReservedFlags(bits));
        }
        Ok(Flags(bits))
    }

    /// The raw bits for the header.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// A decoded frame: its flags and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header flags.
    pub flags: Flags,
    /// The message carried by the body.
    pub message: Message,
}

impl Frame {
    /// A frame without flags.
    pub fn new(message: Message) -> Self {
        Frame {
            flags: Flags::NONE,
            message,
        }
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), Error> {
        let ty = self.message.message_type();
        let body = self.message.encode_body()?;
        let len = u32::try_from(body.len()).map_err(|_| Error::Encode {
            ty: ty.name(),
            reason: "body longer than u32::MAX".to_owned(),
        })?;
        dst.reserve(HEADER_LEN + body.len());
        dst.put_u16(ty.code());
        dst.put_u16(self.flags.bits());
        dst.put_u32(len);
        dst.put_slice(&body);
        Ok(())
    }

    /// The encoded frame as a fresh buffer.
    pub fn to_bytes(&self) -> Result<BytesMut, Error> {
        let mut dst = BytesMut::new();
        self.encode(&mut dst)?;
        Ok(dst)
    }
}

/// Incremental frame decoder with a hard limit on body length.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_frame_len: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    /// A decoder refusing bodies longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: u32) -> Self {
        Decoder { max_frame_len }
    }

    /// Takes one complete frame off the front of `src`, or returns `Ok(None)` if more bytes are needed.
    ///
    /// On error the input is unusable: the stream has no resynchronisation point.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let code = u16::from_be_bytes([header[0], header[1]]);
        let bits = u16::from_be_bytes([header[2], header[3]]);
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        // Type and flags first: a header that names no message is garbage, whatever length it
        // claims; only a well-formed header with too long a body is a message above the limit.
        let ty = MessageType::from_code(code).ok_or(Error::UnknownType(code))?;
        let flags = Flags::from_bits(bits)?;
        if len > self.max_frame_len {
            return Err(Error::FrameTooLong {
                len,
                max: self.max_frame_len,
            });
        }
        // `len` is bounded by `max_frame_len`, itself a u32, so this cannot overflow usize on 32+ bits.
        let total = HEADER_LEN + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(len as usize);
        let message = Message::decode_body(ty, &body)?;
        Ok(Some(Frame { flags, message }))
    }

    /// Checks that the input ended on a frame boundary.
    pub fn finish(&self, src: &BytesMut) -> Result<(), Error> {
        if src.is_empty() {
            Ok(())
        } else {
            Err(Error::Truncated(src.len()))
        }
    }

    /// Decodes a buffer that must hold whole frames only (a request/response body).
    pub fn decode_all(&self, bytes: &[u8]) -> Result<Vec<Frame>, Error> {
        let mut src = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = self.decode(&mut src)? {
            frames.push(frame);
        }
        self.finish(&src)?;
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{EntryAck, EntryIndex};

    #[test]
    fn decode_waits_for_the_whole_frame_split_at_every_byte() {
        let frame = Frame::new(Message::EntryAck(EntryAck {
            entry: EntryIndex(300),
        }));
        let bytes = frame.to_bytes().expect("encodable");
        for split in 0..bytes.len() {
            let decoder = Decoder::default();
            let mut src = BytesMut::from(&bytes[..split]);
            assert_eq!(decoder.decode(&mut src).expect("valid prefix"), None);
            src.extend_from_slice(&bytes[split..]);
            assert_eq!(
                decoder.decode(&mut src).expect("valid frame"),
                Some(frame.clone())
            );
            assert!(src.is_empty());
        }
    }

    #[test]
    fn huge_length_is_refused_before_any_allocation() {
        let decoder = Decoder::default();
        let mut src = BytesMut::from(&[0x00, 0x06, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff][..]);
        let err = decoder.decode(&mut src).expect_err("over the limit");
        assert!(matches!(err, Error::FrameTooLong { len: u32::MAX, .. }));
        assert!(src.capacity() < 1024);
    }
}
