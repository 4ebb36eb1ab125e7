//! Packed records: what the stores write for the records that make up most of their bytes —
//! raft log entries and the `invocations`, `journal`, `outbox` and `promises` rows.
//!
//! ```text
//!   plain   codec::FORMAT_V1 (0x01) | MessagePack with named fields      (holdfast_types::codec)
//!   packed  PACKED_V1 (0xF1)        | zstd frame of the plain bytes, compressed against the
//!                                     built-in dictionary 1 (content size in the frame header)
//! ```
//!
//! A record is written packed when that is smaller, which it is for all but tiny ones: the field
//! and variant names that make up most of a plain record are in the dictionary, so an invocation
//! record of ~500 bytes packs into ~110 and a journal item of ~70 into ~25. Reading accepts
//! either form, so records written before packing existed (and snapshot rows carrying them) stay
//! readable; a release without packing cannot read packed ones.
//!
//! Compression and decompression contexts are kept per thread; the prepared dictionaries are
//! shared by every thread.

mod dictionary;

use crate::Error;
use holdfast_types::codec;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::OnceLock;
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The first byte of a record packed against dictionary 1. It differs from every format version
/// byte of [`codec`], which count up from 1.
pub(crate) const PACKED_V1: u8 = 0xF1;
/// zstd level: the fastest. Records are small, and the dictionary, not the level, makes them
/// smaller (level 3 or 9 gains under 3% on these records, at several times the cost).
const LEVEL: i32 = 1;
/// Most bytes a packed record may unpack to: a bound against a corrupt frame header. Far above
/// any record the stores write (a raft entry holds at most a few batches of at most 16 MiB).
const MAX_UNPACKED: u64 = 1 << 30;
/// Records shorter than this are written plain: a zstd frame has ~8 bytes of header and the
/// dictionary cannot win them back.
const MIN_PACKED: usize = 24;

/// Why a packed record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// zstd failed to compress or decompress.
    #[error("zstd: {0}")]
    Zstd(#[source] std::io::Error),
    /// The frame header does not state its content size, or states one past 1 GiB.
    #[error("packed record of {0} bytes has no valid content size")]
    Size(usize),
    /// The frame unpacked to another size than its header states.
    #[error("packed record unpacked to {got} bytes, its header says {want}")]
    Length {
        /// The bytes it unpacked to.
        got: usize,
        /// The bytes its header states.
        want: u64,
    },
}

fn encoder() -> &'static EncoderDictionary<'static> {
    static ENCODER: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    ENCODER.get_or_init(|| EncoderDictionary::copy(dictionary::V1, LEVEL))
}

fn decoder() -> &'static DecoderDictionary<'static> {
    static DECODER: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    DECODER.get_or_init(|| DecoderDictionary::copy(dictionary::V1))
}

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `plain` packed behind [`PACKED_V1`], or `None` when packing would not make it smaller.
fn compress(plain: &[u8]) -> Result<Option<Vec<u8>>, PackError> {
    if plain.len() < MIN_PACKED {
        return Ok(None);
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            empty => empty
                .insert(Compressor::with_prepared_dictionary(encoder()).map_err(PackError::Zstd)?),
        };
        let frame = compressor.compress(plain).map_err(PackError::Zstd)?;
        if frame.len() + 1 >= plain.len() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(frame.len() + 1);
        out.push(PACKED_V1);
        out.extend_from_slice(&frame);
        Ok(Some(out))
    })
}

/// The plain bytes of a packed frame (`bytes` without its marker).
fn decompress(frame: &[u8]) -> Result<Vec<u8>, PackError> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_UNPACKED => size,
        _ => return Err(PackError::Size(frame.len())),
    };
    let capacity = usize::try_from(size).map_err(|_| PackError::Size(frame.len()))?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            empty => empty.insert(
                Decompressor::with_prepared_dictionary(decoder()).map_err(PackError::Zstd)?,
            ),
        };
        let plain = decompressor
            .decompress(frame, capacity)
            .map_err(PackError::Zstd)?;
        if plain.len() as u64 != size {
            return Err(PackError::Length {
                got: plain.len(),
                want: size,
            });
        }
        Ok(plain)
    })
}

/// `plain` (a [`codec`] record) as stored: packed when that is smaller, else as it is.
pub(crate) fn pack(plain: Vec<u8>) -> Result<Vec<u8>, Error> {
    Ok(compress(&plain)?.unwrap_or(plain))
}

/// `plain` as stored, borrowed when packing would not make it smaller.
pub(crate) fn pack_borrowed(plain: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    Ok(match compress(plain)? {
        Some(packed) => Cow::Owned(packed),
        None => Cow::Borrowed(plain),
    })
}

/// The [`codec`] bytes of a stored record, packed or plain.
pub(crate) fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    match stored.split_first() {
        Some((&PACKED_V1, frame)) => Ok(Cow::Owned(decompress(frame)?)),
        _ => Ok(Cow::Borrowed(stored)),
    }
}

/// Encodes `value` with the log codec and packs it (the stores encode, then pack when the
/// record reaches disk).
#[cfg(test)]
pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    pack(codec::encode(value)?)
}

/// Decodes a record written by [`encode`] (or plain, by [`codec::encode`]).
pub(crate) fn decode<T: DeserializeOwned>(stored: &[u8]) -> Result<T, Error> {
    Ok(codec::decode(&unpack(stored)?)?)
}

/// The record in `stored`, if a row was found.
pub(crate) fn decode_found<T: DeserializeOwned>(stored: Option<&[u8]>) -> Result<Option<T>, Error> {
    stored.map(decode).transpose()
}

/// `len` pseudo-random bytes from `seed` (xorshift): data no compressor can shrink, for tests.
#[cfg(test)]
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_fsm::state::{Invocation, JournalItem, Status};
    use holdfast_protocol::message::{Entry, Input, Output};
    use holdfast_protocol::{Outcome, Payload};
    use holdfast_types::{HandlerKind, Source, Target};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// FNV-1a (64 bits) of `bytes`.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn completed(service: &str, output: &[u8]) -> Invocation {
        let target = Target::new(service, "greet", None);
        Invocation {
            status: Status::Completed {
                outcome: Outcome::Value(Payload::from(output)),
                expires_at_ms: 1_796_375_329_957,
            },
            target,
            kind: HandlerKind::Shared,
            source: Source::Ingress,
            response: true,
            callers: Vec::new(),
            headers: Vec::new(),
            idempotency_key: None,
            retention_ms: 86_400_000,
            created_at_ms: 1_796_288_929_881,
            journal_len: 2,
            attempts: 1,
            retries: 0,
            deployment: None,
            output: Some(holdfast_protocol::EntryIndex(1)),
            cancel_pending: false,
            retry: None,
            secret: 28_063_471_211_742_719_662_230_035_082_839_317_205,
            last_failure: None,
            trace: None,
            limits: Vec::new(),
            permits: 0,
        }
    }

    /// Packed records are compressed against these exact bytes: they must never change.
    #[test]
    fn dictionary_1_is_frozen() {
        assert_eq!(dictionary::V1.len(), 15_442);
        assert_eq!(fnv(dictionary::V1), 0x961e_cb06_f106_c8a3);
    }

    #[test]
    fn records_round_trip_and_shrink() -> TestResult {
        let record = completed("Greeter", b"\"Hello bench\"");
        let plain = codec::encode(&record)?;
        let stored = encode(&record)?;
        assert_eq!(stored[0], PACKED_V1);
        assert!(
            stored.len() * 3 < plain.len(),
            "{} packed, {} plain",
            stored.len(),
            plain.len()
        );
        assert_eq!(decode::<Invocation>(&stored)?, record);
        assert_eq!(unpack(&stored)?.as_ref(), plain.as_slice());

        let items = [
            JournalItem::new(Entry::Input(Input {
                value: Payload::from(&b"\"bench\""[..]),
            })),
            JournalItem::new(Entry::Output(Output {
                result: Outcome::Value(Payload::from(&b"\"Hello bench\""[..])),
            })),
        ];
        for item in items {
            let stored = encode(&item)?;
            assert!(stored.len() < codec::encode(&item)?.len());
            assert_eq!(decode::<JournalItem>(&stored)?, item);
        }
        Ok(())
    }

    /// Records written before packing existed are read as they are.
    #[test]
    fn plain_records_stay_readable() -> TestResult {
        let record = completed("Counter", b"7");
        let plain = codec::encode(&record)?;
        assert_eq!(decode::<Invocation>(&plain)?, record);
        assert!(matches!(unpack(&plain)?, Cow::Borrowed(_)));
        Ok(())
    }

    /// Tiny and incompressible records are stored plain: packing never makes a record larger.
    #[test]
    fn what_packing_cannot_shrink_is_stored_plain() -> TestResult {
        let tiny = codec::encode(&7u64)?;
        assert_eq!(pack(tiny.clone())?, tiny);
        // 4 KiB of pseudo-random bytes: nothing for zstd to find.
        let noise = noise(0x2545_f491_4f6c_dd1d, 4096);
        let plain = codec::encode(&serde_bytes::ByteBuf::from(noise))?;
        assert_eq!(pack(plain.clone())?, plain);
        Ok(())
    }

    #[test]
    fn a_damaged_packed_record_is_an_error_not_a_panic() -> TestResult {
        let stored = encode(&completed("Greeter", b"\"Hello\""))?;
        // Cut short, its header damaged, or only the marker: every one is refused.
        let short = &stored[..stored.len() / 2];
        let mut header = stored.clone();
        header[1] ^= 0xFF;
        for bad in [short, header.as_slice(), &stored[..1]] {
            let result = decode::<Invocation>(bad);
            assert!(matches!(result, Err(Error::Pack(_))), "{result:?}");
        }
        Ok(())
    }
}
