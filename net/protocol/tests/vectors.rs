//! The shared protocol vectors (`tests/protocol-vectors/`), also read by the TypeScript SDK's tests:
//! each valid vector must decode to its type and flags, re-encode to the same bytes, and its JSON
//! body must describe exactly those bytes; each invalid vector must be refused with its error kind.

use std::fs;
use std::path::PathBuf;

use holdfast_protocol::manifest::Manifest;
use holdfast_protocol::{Decoder, HEADER_LEN};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    manifest_dir().join("../../tests/protocol-vectors")
}

fn read_dir(sub: &str) -> Vec<(String, Value)> {
    let mut files: Vec<_> = fs::read_dir(vectors_dir().join(sub))
        .expect("vector directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {sub}");
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("readable vector");
            (
                p.display().to_string(),
                serde_json::from_str(&text).expect("vector is JSON"),
            )
        })
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A JSON vector body as canonical MessagePack: `{"$bin": "<hex>"}` stands for binary.
struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => match n.as_u64() {
                Some(u) => s.serialize_u64(u),
                None => s.serialize_i64(n.as_i64().expect("integer")),
            },
            Value::String(text) => s.serialize_str(text),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Canonical(item))?;
                }
                seq.end()
            }
            Value::Object(map) => match map.get("$bin") {
                Some(Value::String(h)) if map.len() == 1 => s.serialize_bytes(&hex(h)),
                _ => {
                    let mut out = s.serialize_map(Some(map.len()))?;
                    for (k, v) in map {
                        out.serialize_entry(k, &Canonical(v))?;
                    }
                    out.end()
                }
            },
        }
    }
}

#[test]
fn valid_vectors_decode_and_reencode_byte_for_byte() {
    for (path, v) in read_dir("messages") {
        let bytes = hex(v["hex"].as_str().expect("hex"));
        let frames = Decoder::default()
            .decode_all(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(frames.len(), 1, "{path}");
        let frame = &frames[0];
        let ty = frame.message.message_type();
        assert_eq!(ty.name(), v["type"], "{path}");
        assert_eq!(u64::from(ty.code()), v["code"], "{path}");
        assert_eq!(u64::from(frame.flags.bits()), v["flags"], "{path}");
        assert_eq!(
            frame.to_bytes().expect("encodable")[..],
            bytes[..],
            "{path}: re-encoding differs"
        );
        let from_json = rmp_serde::to_vec(&Canonical(&v["body"])).expect("canonical body");
        assert_eq!(
            from_json[..],
            bytes[HEADER_LEN..],
            "{path}: JSON body does not describe the bytes"
        );
    }
}

#[test]
fn every_message_type_has_a_vector() {
    let covered: Vec<_> = read_dir("messages")
        .into_iter()
        .map(|(_, v)| v["type"].as_str().expect("type").to_owned())
        .collect();
    for ty in holdfast_protocol::MessageType::ALL {
        assert!(
            covered.iter().any(|c| c == ty.name()),
            "no vector for {}",
            ty.name()
        );
    }
}

#[test]
fn invalid_vectors_are_refused_with_their_error_kind() {
    for (path, v) in read_dir("invalid") {
        let bytes = hex(v["hex"].as_str().expect("hex"));
        let decoder = match v.get("max_frame_len") {
            Some(max) => {
                Decoder::new(u32::try_from(max.as_u64().expect("limit")).expect("u32 limit"))
            }
            None => Decoder::default(),
        };
        let err = decoder.decode_all(&bytes).expect_err(&path);
        assert_eq!(err.kind(), v["error"], "{path}: {err}");
    }
}

#[test]
fn manifest_vector_parses() {
    let text = fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest vector");
    let manifest: Manifest = serde_json::from_str(&text).expect("valid manifest");
    assert!(manifest.min_protocol_version <= holdfast_protocol::PROTOCOL_VERSION);
    assert!(holdfast_protocol::PROTOCOL_VERSION <= manifest.max_protocol_version);
    assert!(
        manifest
            .sdk_version
            .as_deref()
            .is_some_and(|v| v.starts_with("holdfast-sdk-typescript/")),
        "{:?}",
        manifest.sdk_version
    );
    let back: Value = serde_json::to_value(&manifest).expect("serializable");
    assert_eq!(back, serde_json::from_str::<Value>(&text).expect("JSON"));
}

#[test]
fn manifest_overrides_vector_round_trips() {
    use holdfast_protocol::manifest::{OnMaxAttempts, RetryPolicy};
    let text = fs::read_to_string(vectors_dir().join("manifest-overrides.json"))
        .expect("manifest-overrides vector");
    let manifest: Manifest = serde_json::from_str(&text).expect("valid manifest");
    let back: Value = serde_json::to_value(&manifest).expect("serializable");
    assert_eq!(back, serde_json::from_str::<Value>(&text).expect("JSON"));
    let payments = &manifest.services[0];
    assert_eq!(
        payments.retry_policy,
        Some(RetryPolicy {
            initial_interval_ms: Some(100),
            factor: Some(1.5),
            max_interval_ms: Some(30_000),
            max_attempts: Some(3),
            on_max_attempts: Some(OnMaxAttempts::Pause),
        })
    );
    assert_eq!(payments.inactivity_timeout_ms, Some(5_000));
    let charge = &payments.handlers[0];
    assert_eq!(
        charge.retry_policy.and_then(|r| r.on_max_attempts),
        Some(OnMaxAttempts::Kill)
    );
    assert_eq!(charge.abort_timeout_ms, Some(90_000));
    assert_eq!(payments.handlers[1].retry_policy, None);
    // Every override is optional: the plain vector has none.
    let plain: Manifest = serde_json::from_str(
        &fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest vector"),
    )
    .expect("valid manifest");
    // So is the SDK version: a manifest without it reads and writes back without it.
    let mut bare = serde_json::from_str::<Value>(&text).expect("JSON");
    bare.as_object_mut().expect("object").remove("sdk_version");
    let read: Manifest = serde_json::from_value(bare.clone()).expect("valid manifest");
    assert_eq!(read.sdk_version, None);
    assert_eq!(serde_json::to_value(&read).expect("serializable"), bare);
    assert!(plain.services.iter().all(|s| s.retry_policy.is_none()
        && s.inactivity_timeout_ms.is_none()
        && s.handlers.iter().all(|h| h.retry_policy.is_none())));
}

#[test]
fn manifest_schedules_vector_round_trips() {
    let text = fs::read_to_string(vectors_dir().join("manifest-schedules.json"))
        .expect("manifest-schedules vector");
    let manifest: Manifest = serde_json::from_str(&text).expect("valid manifest");
    let back: Value = serde_json::to_value(&manifest).expect("serializable");
    assert_eq!(back, serde_json::from_str::<Value>(&text).expect("JSON"));
    let nightly = &manifest.services[0].handlers[0].schedules;
    assert_eq!(nightly.len(), 2);
    assert_eq!(nightly[0].cron.as_deref(), Some("0 3 * * *"));
    assert_eq!(nightly[0].timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(
        nightly[0].input,
        Some(serde_json::json!({ "scope": "all" }))
    );
    assert_eq!(nightly[0].name, None);
    assert_eq!(nightly[1].name.as_deref(), Some("reports-quarterly"));
    let refresh = &manifest.services[1].handlers[0].schedules[0];
    assert_eq!(refresh.every_ms, Some(300_000));
    assert_eq!(refresh.key.as_deref(), Some("eu"));
    assert_eq!(refresh.catch_up_max, Some(3));
    // A handler without schedules writes none.
    let plain: Value = serde_json::from_str(
        &fs::read_to_string(vectors_dir().join("manifest.json")).expect("manifest vector"),
    )
    .expect("JSON");
    let read: Manifest = serde_json::from_value(plain.clone()).expect("valid manifest");
    assert_eq!(serde_json::to_value(&read).expect("serializable"), plain);
}

/// This crate's directory, read when the test runs (cargo sets it) so that a test binary reused
/// from a build in another checkout still finds the files of the checkout it runs in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}
