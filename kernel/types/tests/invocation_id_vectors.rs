//! The shared invocation id vectors (`tests/protocol-vectors/invocation-ids.json`), also read by
//! the TypeScript SDK's tests: `start.id` carries the wire text, and what handlers and APIs show is
//! the public text; both sides must turn one into the other alike.
//!
//! The file is `[{ "wire": "inv_<48 hex>", "public": "inv_1<33 base62>" }]`, read by picking the
//! quoted values in order (this crate has no JSON dependency).

use holdfast_types::InvocationId;

fn pairs() -> Vec<(String, String)> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/protocol-vectors/invocation-ids.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let values: Vec<String> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let pairs: Vec<(String, String)> = values
        .chunks(4)
        .map(|chunk| match chunk {
            [wire_key, wire, public_key, public]
                if wire_key == "wire" && public_key == "public" =>
            {
                (wire.clone(), public.clone())
            }
            other => panic!("unexpected vector {other:?}"),
        })
        .collect();
    assert!(!pairs.is_empty());
    pairs
}

#[test]
fn wire_and_public_texts_name_the_same_id() {
    for (wire, public) in pairs() {
        let from_wire: InvocationId = wire.parse().expect("wire text parses");
        let from_public: InvocationId = public.parse().expect("public text parses");
        assert_eq!(from_wire, from_public);
        assert_eq!(from_wire.hex(), wire);
        assert_eq!(from_wire.to_string(), public);
    }
}
