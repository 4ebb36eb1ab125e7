//! Helpers shared by the test binaries (each uses a subset of them).
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use holdfast_endpoint::{Attempt, Event};
use holdfast_protocol::message::{Input, Start};
use holdfast_protocol::{Entry, Frame, Message, Payload};

/// How long a test waits for something an endpoint should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A `start` for a fresh attempt with `known` journal entries and no state.
pub fn start(known: u32) -> Start {
    Start {
        attempt: 1,
        awakeable_key: Payload::from(&[7u8; 32][..]),
        headers: Vec::new(),
        id: "inv_endpoint_test".to_owned(),
        key: None,
        known_entries: known,
        retry_count: 0,
        retry_elapsed_ms: 0,
        retry_entry: None,
        state: Vec::new(),
        state_complete: true,
    }
}

/// JSON bytes of a value, the SDK's default serde.
pub fn json(value: serde_json::Value) -> Payload {
    Payload(Bytes::from(value.to_string()))
}

/// The input entry carrying a JSON value.
pub fn input(value: serde_json::Value) -> Message {
    Message::Entry(Entry::Input(Input { value: json(value) }))
}

/// The next event, failing the test if none comes in time.
pub async fn next_event(attempt: &mut Attempt) -> Option<Event> {
    tokio::time::timeout(PATIENCE, attempt.next())
        .await
        .expect("the endpoint answers in time")
}

/// The next frame, failing the test on anything else.
pub async fn next_frame(attempt: &mut Attempt) -> Frame {
    match next_event(attempt).await {
        Some(Event::Message(frame)) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Checks the attempt's response ended cleanly.
pub async fn expect_end_of_stream(attempt: &mut Attempt) {
    let event = next_event(attempt).await;
    assert!(
        event.is_none(),
        "expected the end of the response, got {event:?}"
    );
}
