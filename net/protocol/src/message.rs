//! Message and journal entry types, and their MessagePack bodies.
//!
//! Bodies are maps with snake_case keys in sorted order, optional fields omitted when absent: the
//! canonical form both SDK and kernel produce, so equal messages are equal bytes. Structs therefore
//! declare their fields in alphabetical order (the vectors test catches any slip).

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Position of an entry in an invocation's journal; the input entry is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryIndex(pub u32);

/// Opaque bytes as produced by a handler's serde (JSON by default); always MessagePack `bin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(pub Bytes);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BinVisitor;
        impl Visitor<'_> for BinVisitor {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("MessagePack binary")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Bytes::from(v)))
            }
        }
        deserializer.deserialize_bytes(BinVisitor)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload(Bytes::copy_from_slice(bytes))
    }
}

/// A terminal failure: what a `TerminalError` carries, with an HTTP-like code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Error code (the handler's `errorCode`, 409 for cancellation, 500 by default).
    pub code: u16,
    /// Human-readable message, passed through to the caller.
    pub message: String,
}

/// The result of a completable entry, of a run, of the handler, or of an awakeable/promise completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOutcome", into = "RawOutcome")]
pub enum Outcome {
    /// Completed without a value: a fired timer, an absent state key, an accepted promise resolution.
    Void,
    /// Completed with a value.
    Value(Payload),
    /// Completed with a terminal failure.
    Failure(Failure),
    /// The list of state keys (only for `state_keys`).
    Keys(Vec<String>),
}

/// Wire form of [`Outcome`]: a map with at most one of its fields set.
#[derive(Clone, Default, Serialize, Deserialize)]
struct RawOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Payload>,
}

impl TryFrom<RawOutcome> for Outcome {
    type Error = String;
    fn try_from(raw: RawOutcome) -> Result<Self, String> {
        match (raw.failure, raw.keys, raw.value) {
            (None, None, None) => Ok(Outcome::Void),
            (None, None, Some(v)) => Ok(Outcome::Value(v)),
            (Some(f), None, None) => Ok(Outcome::Failure(f)),
            (None, Some(k), None) => Ok(Outcome::Keys(k)),
            _ => Err("an outcome holds at most one of value, failure, keys".to_owned()),
        }
    }
}

impl From<Outcome> for RawOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Void => RawOutcome::default(),
            Outcome::Value(v) => RawOutcome {
                value: Some(v),
                ..RawOutcome::default()
            },
            Outcome::Failure(f) => RawOutcome {
                failure: Some(f),
                ..RawOutcome::default()
            },
            Outcome::Keys(k) => RawOutcome {
                keys: Some(k),
                ..RawOutcome::default()
            },
        }
    }
}

/// Length of `start.awakeable_key` in bytes (an HMAC-SHA256 output).
pub const AWAKEABLE_KEY_BYTES: usize = 32;

/// Decodes `start.awakeable_key`, refusing any length but [`AWAKEABLE_KEY_BYTES`].
fn awakeable_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
    let key = Payload::deserialize(deserializer)?;
    if key.0.len() != AWAKEABLE_KEY_BYTES {
        return Err(de::Error::invalid_length(
            key.0.len(),
            &"an awakeable key of 32 bytes",
        ));
    }
    Ok(key)
}

/// HTTP-style headers in order; a name may repeat.
pub type Headers = Vec<(String, String)>;

/// Opens an attempt: who is invoked, how far its journal goes, and the object's eager state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// Attempt number of this invocation, from 1; fences results of older attempts.
    pub attempt: u32,
    /// The invocation's awakeable key, exactly [`AWAKEABLE_KEY_BYTES`] bytes: the SDK signs the
    /// ids of the invocation's awakeables with it, so that those ids cannot be forged. The kernel
    /// derives it one-way from the invocation's secret, which itself never leaves the kernel.
    #[serde(deserialize_with = "awakeable_key")]
    pub awakeable_key: Payload,
    /// Headers of the original request, visible to the handler.
    pub headers: Headers,
    /// Invocation id (`inv_` + 48 hex digits): seeds the SDK's deterministic random source and
    /// is embedded in the ids of the invocation's awakeables.
    pub id: String,
    /// Object or workflow key; absent for stateless services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Number of journal entries that follow (at least 1: the input entry).
    pub known_entries: u32,
    /// Consecutive attempts just before this one that ended in a retryable error on `retry_entry`.
    pub retry_count: u32,
    /// Milliseconds since the first of those failed attempts (0 when `retry_count` is 0).
    pub retry_elapsed_ms: u64,
    /// The entry those failures were related to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_entry: Option<EntryIndex>,
    /// Eager snapshot of the object's state, sorted by key.
    pub state: Vec<(String, Payload)>,
    /// Whether `state` holds every key (a missing key is then known to be absent).
    pub state_complete: bool,
}

/// Result of a completable entry (kernel to SDK), or a run result proposed by the SDK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The entry being completed.
    pub entry: EntryIndex,
    /// Its result.
    pub result: Outcome,
}

/// The kernel has made an entry (or a proposed run result) durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryAck {
    /// The entry now durable; every entry before it is durable too.
    pub entry: EntryIndex,
}

/// The SDK stops the attempt until one of the listed entries completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// Entries the handler is blocked on; any one completing is reason to resume.
    pub waiting_on: Vec<EntryIndex>,
}

/// The attempt failed without an output; the kernel retries it or fails the invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// 500 for a handler error, 570 for a journal mismatch, 571 for a protocol violation.
    pub code: u16,
    /// What went wrong, for operators.
    pub message: String,
    /// Delay before the next attempt asked for by a run's retry options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_delay_ms: Option<u64>,
    /// The entry the failure is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_entry: Option<EntryIndex>,
    /// True: retry the attempt. False: fail the invocation with `code` and `message`.
    pub retryable: bool,
}

/// The SDK has sent everything for this attempt (follows the output entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {}

/// Entry 0: the invocation's input, written by the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// The request body.
    pub value: Payload,
}

/// The handler's result: a value or a terminal failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Returned value or terminal failure.
    pub result: Outcome,
}

/// Read one state key; the SDK fills `result` itself when the eager snapshot answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetState {
    /// State key.
    pub key: String,
    /// `Value`, or `Void` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// Write one state key; applied to the object's state when the entry is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetState {
    /// State key.
    pub key: String,
    /// New value.
    pub value: Payload,
}

/// Remove one state key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearState {
    /// State key.
    pub key: String,
}

/// Remove every state key of the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearAllState {}

/// List the object's state keys; the SDK fills `result` when its snapshot is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateKeys {
    /// `Keys`, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// Request-response call to another handler; completed with the callee's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Target handler.
    pub handler: String,
    /// Headers passed to the callee.
    pub headers: Headers,
    /// Deduplicates the call across the whole system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Target key for objects and workflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Serialized input of the callee.
    pub parameter: Payload,
    /// Callee's output, when replayed completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    /// Target service.
    pub service: String,
}

/// One-way send to another handler, optionally delayed; never completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Delay from the moment the entry is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Target handler.
    pub handler: String,
    /// Headers passed to the callee.
    pub headers: Headers,
    /// Deduplicates the send across the whole system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Target key for objects and workflows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Serialized input of the callee.
    pub parameter: Payload,
    /// Target service.
    pub service: String,
}

/// Durable timer; completed with `Void` when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sleep {
    /// Duration counted from the moment the entry is durable.
    pub duration_ms: u64,
    /// `Void` once fired (or a cancellation failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// A side effect; the SDK proposes its result later with a completion that asks for an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Name given by the handler, for observability and replay checks.
    pub name: String,
    /// Recorded result, when replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// A promise completed from outside through its awakeable id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awakeable {
    /// Resolution or rejection, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// Resolve or reject an awakeable by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteAwakeable {
    /// Awakeable id, as handed out by the SDK that created the awakeable (`docs/protocol.md`,
    /// section 4; parsed and verified by `holdfast_types::AwakeableId`). The kernel ignores an id
    /// that is malformed or whose token was not made with its invocation's awakeable key.
    pub id: String,
    /// `Value` to resolve, `Failure` to reject.
    pub result: Outcome,
}

/// Wait for a workflow durable promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetPromise {
    /// Promise name, scoped to the workflow key.
    pub name: String,
    /// Its resolution or rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// Look at a workflow durable promise without waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeekPromise {
    /// Promise name.
    pub name: String,
    /// `Void` if not completed yet, else its value or failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

/// Resolve or reject a workflow durable promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletePromise {
    /// `Value` to resolve, `Failure` to reject.
    pub completion: Outcome,
    /// Promise name.
    pub name: String,
    /// `Void` if accepted, a 409 failure if the promise was already completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
}

macro_rules! protocol_messages {
    (
        control { $( $(#[$cdoc:meta])* $cv:ident($cb:ty) = $cc:literal, $cn:literal; )* }
        entries { $( $(#[$edoc:meta])* $ev:ident($eb:ty) = $ec:literal, $en:literal; )* }
    ) => {
        /// The 16-bit type code in a frame header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum MessageType {
            $( $(#[$cdoc])* $cv = $cc, )*
            $( $(#[$edoc])* $ev = $ec, )*
        }

        impl MessageType {
            /// All message types, in code order.
            pub const ALL: &'static [MessageType] = &[$(MessageType::$cv,)* $(MessageType::$ev,)*];

            /// The type for a header code, or `None` for a code this version does not define.
            pub fn from_code(code: u16) -> Option<Self> {
                match code {
                    $( $cc => Some(MessageType::$cv), )*
                    $( $ec => Some(MessageType::$ev), )*
                    _ => None,
                }
            }

            /// The code written in frame headers.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The snake_case name used by the SDKs and the shared test vectors.
            pub fn name(self) -> &'static str {
                match self {
                    $( MessageType::$cv => $cn, )*
                    $( MessageType::$ev => $en, )*
                }
            }
        }

        /// A journal entry: a record of one step of the handler, replayed in index order.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Entry {
            $( $(#[$edoc])* $ev($eb), )*
        }

        impl Entry {
            /// The frame type of this entry.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Entry::$ev(_) => MessageType::$ev, )*
                }
            }

            /// Encodes the body in canonical MessagePack, exactly as it travels in a frame.
            pub fn encode_body(&self) -> Result<Vec<u8>, Error> {
                match self {
                    $( Entry::$ev(body) => encode(MessageType::$ev, body), )*
                }
            }

            /// Decodes the body of an entry frame of type `ty`; a control type is refused as
            /// [`Error::UnknownType`], since it names no journal entry.
            pub fn decode_body(ty: MessageType, body: &[u8]) -> Result<Self, Error> {
                match ty {
                    $( MessageType::$ev => Ok(Entry::$ev(decode(ty, body)?)), )*
                    _ => Err(Error::UnknownType(ty.code())),
                }
            }
        }

        /// Any protocol message: a control message or a journal entry.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $( $(#[$cdoc])* $cv($cb), )*
            /// A journal entry (new from the SDK, or replayed by the kernel).
            Entry(Entry),
        }

        impl Message {
            /// The frame type of this message.
            pub fn message_type(&self) -> MessageType {
                match self {
                    $( Message::$cv(_) => MessageType::$cv, )*
                    Message::Entry(entry) => entry.message_type(),
                }
            }

            /// Encodes the body in canonical MessagePack.
            pub fn encode_body(&self) -> Result<Vec<u8>, Error> {
                match self {
                    $( Message::$cv(body) => encode(MessageType::$cv, body), )*
                    $( Message::Entry(Entry::$ev(body)) => encode(MessageType::$ev, body), )*
                }
            }

            /// Decodes the body of a frame of type `ty`.
            pub fn decode_body(ty: MessageType, body: &[u8]) -> Result<Self, Error> {
                Ok(match ty {
                    $( MessageType::$cv => Message::$cv(decode(ty, body)?), )*
                    $( MessageType::$ev => Message::Entry(Entry::$ev(decode(ty, body)?)), )*
                })
            }
        }
    };
}

protocol_messages! {
    control {
        /// Kernel to SDK: opens an attempt.
        Start(Start) = 0x0001, "start";
        /// Both ways: the result of a completable entry.
        Completion(Completion) = 0x0002, "completion";
        /// Kernel to SDK: an entry is durable.
        EntryAck(EntryAck) = 0x0003, "entry_ack";
        /// SDK to kernel: blocked, resume later.
        Suspension(Suspension) = 0x0004, "suspension";
        /// SDK to kernel: the attempt failed.
        Error(AttemptError) = 0x0005, "error";
        /// SDK to kernel: done with this attempt.
        End(End) = 0x0006, "end";
    }
    entries {
        /// The invocation's input.
        Input(Input) = 0x0101, "input";
        /// The handler's result.
        Output(Output) = 0x0102, "output";
        /// Read a state key.
        GetState(GetState) = 0x0103, "get_state";
        /// Write a state key.
        SetState(SetState) = 0x0104, "set_state";
        /// Remove a state key.
        ClearState(ClearState) = 0x0105, "clear_state";
        /// Remove all state.
        ClearAllState(ClearAllState) = 0x0106, "clear_all_state";
        /// List state keys.
        StateKeys(StateKeys) = 0x0107, "state_keys";
        /// Call a handler and wait for its output.
        Call(Call) = 0x0108, "call";
        /// Send to a handler without waiting.
        Send(Send) = 0x0109, "send";
        /// Durable timer.
        Sleep(Sleep) = 0x010a, "sleep";
        /// Side effect.
        Run(Run) = 0x010b, "run";
        /// Create an awakeable.
        Awakeable(Awakeable) = 0x010c, "awakeable";
        /// Complete an awakeable.
        CompleteAwakeable(CompleteAwakeable) = 0x010d, "complete_awakeable";
        /// Wait for a workflow promise.
        GetPromise(GetPromise) = 0x010e, "get_promise";
        /// Peek a workflow promise.
        PeekPromise(PeekPromise) = 0x010f, "peek_promise";
        /// Complete a workflow promise.
        CompletePromise(CompletePromise) = 0x0110, "complete_promise";
    }
}

/// An entry is stored (e.g. in a partition log) as the pair (type code, canonical body bytes): the
/// bytes the SDK sent, kept verbatim, and decoded with the same codec as a frame.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = self.encode_body().map_err(serde::ser::Error::custom)?;
        (self.message_type().code(), Payload(Bytes::from(body))).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (code, body) = <(u16, Payload)>::deserialize(deserializer)?;
        let ty = MessageType::from_code(code)
            .ok_or_else(|| de::Error::custom(format!("unknown journal entry type {code:#06x}")))?;
        Entry::decode_body(ty, &body.0).map_err(de::Error::custom)
    }
}

impl MessageType {
    /// Whether this type is a journal entry (code in the 0x01xx range).
    pub fn is_entry(self) -> bool {
        self.code() & 0xff00 == 0x0100
    }
}

fn encode<T: Serialize>(ty: MessageType, body: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(body).map_err(|e| Error::Encode {
        ty: ty.name(),
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(ty: MessageType, body: &[u8]) -> Result<T, Error> {
    let invalid = |reason: String| Error::InvalidBody {
        ty: ty.name(),
        reason,
    };
    // Only a map is a body: positional arrays are refused even though serde would accept them.
    match body.first() {
        Some(0x80..=0x8f | 0xde | 0xdf) => {}
        _ => return Err(invalid("not a MessagePack map".to_owned())),
    }
    let mut de = rmp_serde::Deserializer::new(Cursor::new(body));
    let value = T::deserialize(&mut de).map_err(|e| invalid(e.to_string()))?;
    let used = de.position();
    if used != body.len() as u64 {
        return Err(invalid(format!(
            "{} trailing bytes",
            body.len() as u64 - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip_through_from_code() {
        for ty in MessageType::ALL {
            assert_eq!(MessageType::from_code(ty.code()), Some(*ty));
        }
        assert_eq!(MessageType::from_code(0x0999), None);
    }

    fn stored(entry: &Entry) -> Vec<u8> {
        rmp_serde::to_vec_named(entry).expect("encode")
    }

    #[test]
    fn entry_serde_keeps_the_canonical_body_verbatim() {
        let entry = Entry::SetState(SetState {
            key: "k".to_owned(),
            value: Payload::from(&b"v"[..]),
        });
        let bytes = stored(&entry);
        let body = entry.encode_body().expect("body");
        // [0x0104, bin(body)]: a two-element array, then the code, then the body as bin 8.
        let mut expected = vec![0x92, 0xcd, 0x01, 0x04, 0xc4, body.len() as u8];
        expected.extend_from_slice(&body);
        assert_eq!(bytes, expected);
        assert_eq!(
            rmp_serde::from_slice::<Entry>(&bytes).expect("decode"),
            entry
        );
    }

    #[test]
    fn entry_serde_refuses_control_types_and_bad_bodies() {
        let control = rmp_serde::to_vec(&(0x0006u16, Payload::from(&[0x80u8][..]))).expect("enc");
        assert!(rmp_serde::from_slice::<Entry>(&control).is_err());
        let unknown = rmp_serde::to_vec(&(0x01ffu16, Payload::from(&[0x80u8][..]))).expect("enc");
        assert!(rmp_serde::from_slice::<Entry>(&unknown).is_err());
        let not_a_map = rmp_serde::to_vec(&(0x0104u16, Payload::from(&[0x90u8][..]))).expect("enc");
        assert!(rmp_serde::from_slice::<Entry>(&not_a_map).is_err());
        assert!(matches!(
            Entry::decode_body(MessageType::End, &[0x80]),
            Err(Error::UnknownType(0x0006))
        ));
    }
}
