//! Property tests: the decoder never panics and never buffers past its limit on arbitrary bytes,
//! and every message survives an encode/decode round trip, whole or split at any point.

use bytes::{Bytes, BytesMut};
use holdfast_protocol::message::*;
use holdfast_protocol::{Decoder, Flags, Frame, HEADER_LEN};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:é-]{0,12}"
}

fn payload() -> impl Strategy<Value = Payload> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(|v| Payload(Bytes::from(v)))
}

/// An awakeable key: always 32 bytes on the wire.
fn awakeable_key() -> impl Strategy<Value = Payload> {
    any::<[u8; AWAKEABLE_KEY_BYTES]>().prop_map(|b| Payload::from(&b[..]))
}

fn index() -> impl Strategy<Value = EntryIndex> {
    any::<u32>().prop_map(EntryIndex)
}

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::vec((text(), text()), 0..3)
}

fn failure() -> impl Strategy<Value = Failure> {
    (any::<u16>(), text()).prop_map(|(code, message)| Failure { code, message })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Void),
        payload().prop_map(Outcome::Value),
        failure().prop_map(Outcome::Failure),
        proptest::collection::vec(text(), 0..4).prop_map(Outcome::Keys),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let o = || proptest::option::of(outcome());
    let key = || proptest::option::of(text());
    prop_oneof![
        payload().prop_map(|value| Entry::Input(Input { value })),
        outcome().prop_map(|result| Entry::Output(Output { result })),
        (text(), o()).prop_map(|(key, result)| Entry::GetState(GetState { key, result })),
        (text(), payload()).prop_map(|(key, value)| Entry::SetState(SetState { key, value })),
        text().prop_map(|key| Entry::ClearState(ClearState { key })),
        Just(Entry::ClearAllState(ClearAllState {})),
        o().prop_map(|result| Entry::StateKeys(StateKeys { result })),
        (text(), text(), key(), headers(), key(), payload(), o()).prop_map(
            |(service, handler, key, headers, idempotency_key, parameter, result)| {
                Entry::Call(Call {
                    handler,
                    headers,
                    idempotency_key,
                    key,
                    parameter,
                    result,
                    service,
                })
            }
        ),
        (
            text(),
            text(),
            key(),
            headers(),
            key(),
            payload(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(
                |(service, handler, key, headers, idempotency_key, parameter, delay_ms)| {
                    Entry::Send(Send {
                        delay_ms,
                        handler,
                        headers,
                        idempotency_key,
                        key,
                        parameter,
                        service,
                    })
                }
            ),
        (any::<u64>(), o()).prop_map(|(duration_ms, result)| Entry::Sleep(Sleep {
            duration_ms,
            result
        })),
        (text(), o()).prop_map(|(name, result)| Entry::Run(Run { name, result })),
        o().prop_map(|result| Entry::Awakeable(Awakeable { result })),
        (text(), outcome())
            .prop_map(|(id, result)| Entry::CompleteAwakeable(CompleteAwakeable { id, result })),
        (text(), o()).prop_map(|(name, result)| Entry::GetPromise(GetPromise { name, result })),
        (text(), o()).prop_map(|(name, result)| Entry::PeekPromise(PeekPromise { name, result })),
        (outcome(), text(), o()).prop_map(|(completion, name, result)| Entry::CompletePromise(
            CompletePromise {
                completion,
                name,
                result
            }
        )),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u32>(),
            awakeable_key(),
            headers(),
            text(),
            proptest::option::of(text()),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            proptest::option::of(index()),
            proptest::collection::vec((text(), payload()), 0..3),
            any::<bool>()
        )
            .prop_map(
                |(
                    attempt,
                    awakeable_key,
                    headers,
                    id,
                    key,
                    known_entries,
                    retry_count,
                    retry_elapsed_ms,
                    retry_entry,
                    state,
                    state_complete,
                )| {
                    Message::Start(Start {
                        attempt,
                        awakeable_key,
                        headers,
                        id,
                        key,
                        known_entries,
                        retry_count,
                        retry_elapsed_ms,
                        retry_entry,
                        state,
                        state_complete,
                    })
                }
            ),
        (index(), outcome())
            .prop_map(|(entry, result)| Message::Completion(Completion { entry, result })),
        index().prop_map(|entry| Message::EntryAck(EntryAck { entry })),
        proptest::collection::vec(index(), 0..4)
            .prop_map(|waiting_on| Message::Suspension(Suspension { waiting_on })),
        (
            any::<u16>(),
            text(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(index()),
            any::<bool>()
        )
            .prop_map(
                |(code, message, next_retry_delay_ms, related_entry, retryable)| {
                    Message::Error(AttemptError {
                        code,
                        message,
                        next_retry_delay_ms,
                        related_entry,
                        retryable,
                    })
                }
            ),
        Just(Message::End(End {})),
        entry().prop_map(Message::Entry),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (message(), any::<bool>()).prop_map(|(message, ack)| Frame {
        flags: if ack { Flags::ACK } else { Flags::NONE },
        message,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Decoder::new(1024).decode_all(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_a_valid_header_with_arbitrary_body(
        code in prop::sample::select(MessageType::ALL),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(&code.code().to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = Decoder::default().decode_all(&bytes);
    }

    #[test]
    fn decoder_buffers_no_more_than_the_announced_frame(len in any::<u32>(), limit in 0u32..4096) {
        let mut src = BytesMut::from(&[0x00, 0x03, 0x00, 0x00][..]);
        src.extend_from_slice(&len.to_be_bytes());
        let result = Decoder::new(limit).decode(&mut src);
        if len > limit {
            prop_assert_eq!(result.expect_err("over the limit").kind(), "frame_too_long");
        }
        prop_assert!(src.capacity() <= HEADER_LEN + limit as usize + 64);
    }

    #[test]
    fn frames_round_trip_whole_and_split(frames in proptest::collection::vec(frame(), 1..4), split in any::<prop::sample::Index>()) {
        let mut bytes = BytesMut::new();
        for f in &frames {
            f.encode(&mut bytes).expect("encodable");
        }
        let decoder = Decoder::default();
        prop_assert_eq!(&decoder.decode_all(&bytes).expect("decodable"), &frames);

        let cut = split.index(bytes.len() + 1);
        let mut src = BytesMut::from(&bytes[..cut]);
        let mut decoded = Vec::new();
        while let Some(f) = decoder.decode(&mut src).expect("valid prefix") {
            decoded.push(f);
        }
        src.extend_from_slice(&bytes[cut..]);
        while let Some(f) = decoder.decode(&mut src).expect("valid rest") {
            decoded.push(f);
        }
        prop_assert_eq!(decoded, frames);
    }
}
