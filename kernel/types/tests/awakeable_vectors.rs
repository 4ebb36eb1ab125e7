//! The shared awakeable id vectors (`tests/protocol-vectors/awakeable-ids.json`), also read by the
//! TypeScript SDK's tests: the SDK makes the ids, the kernel parses and verifies them, so both must
//! agree on every byte.
//!
//! The file is `[{ "invocation_id": "inv_…", "entry": n, "secret": "<32 hex>", "awakeable_key":
//! "<64 hex>", "id": "awk_…" }]`: the kernel derives `awakeable_key` from `secret` (and sends only
//! the key to the SDK); the SDK makes `id` from the key;
//! it is read with the small parser below, which accepts exactly that shape (this crate has no JSON
//! dependency).

use std::collections::BTreeMap;
use std::path::PathBuf;

use holdfast_types::awakeable::{AwakeableKey, KEY_BYTES, awakeable_key, token};
use holdfast_types::{AwakeableId, EntryIndex, InvocationId};

#[derive(Debug)]
struct Case {
    invocation_id: String,
    entry: u32,
    secret: u128,
    awakeable_key: AwakeableKey,
    id: String,
}

fn vectors_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/protocol-vectors/awakeable-ids.json")
}

fn cases() -> Vec<Case> {
    let path = vectors_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let cases: Vec<Case> = parse(&text)
        .into_iter()
        .map(|mut fields| {
            let mut take = |name: &str| {
                fields
                    .remove(name)
                    .unwrap_or_else(|| panic!("a case without {name}"))
            };
            let invocation_id = take("invocation_id").string();
            let entry = u32::try_from(take("entry").number()).expect("entry is a u32");
            let secret_hex = take("secret").string();
            assert_eq!(secret_hex.len(), 32, "secret {secret_hex} is not 16 bytes");
            let secret = u128::from_str_radix(&secret_hex, 16).expect("secret is hex");
            let key_hex = take("awakeable_key").string();
            assert_eq!(
                key_hex.len(),
                2 * KEY_BYTES,
                "key {key_hex} is not 32 bytes"
            );
            let mut awakeable_key = [0u8; KEY_BYTES];
            for (i, byte) in awakeable_key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).expect("key is hex");
            }
            let id = take("id").string();
            assert!(fields.is_empty(), "unexpected fields {:?}", fields.keys());
            Case {
                invocation_id,
                entry,
                secret,
                awakeable_key,
                id,
            }
        })
        .collect();
    assert!(cases.len() >= 3, "too few awakeable id vectors");
    cases
}

#[test]
fn awakeable_keys_are_derived_from_the_secret() {
    for case in cases() {
        assert_eq!(awakeable_key(case.secret), case.awakeable_key, "{case:?}");
    }
}

#[test]
fn ids_are_made_from_invocation_entry_and_key() {
    for case in cases() {
        let invocation: InvocationId = case.invocation_id.parse().expect("valid invocation id");
        let entry = EntryIndex(case.entry);
        let id = AwakeableId::with_key(invocation, entry, &case.awakeable_key);
        assert_eq!(id.to_string(), case.id, "{case:?}");
        assert_eq!(
            AwakeableId::new(invocation, entry, case.secret),
            id,
            "{case:?}"
        );
        assert_eq!(case.id.len(), 92, "{case:?}");
    }
}

#[test]
fn ids_parse_back_and_are_signed_by_their_secret_only() {
    for case in cases() {
        let parsed: AwakeableId = case.id.parse().expect("valid awakeable id");
        assert_eq!(parsed.invocation.hex(), case.invocation_id);
        assert_eq!(parsed.index, EntryIndex(case.entry));
        assert_eq!(
            parsed.token,
            token(&case.awakeable_key, EntryIndex(case.entry))
        );
        assert_eq!(parsed.to_string(), case.id);
        assert!(parsed.is_signed_by(case.secret), "{case:?}");
        assert!(!parsed.is_signed_by(case.secret ^ 1), "{case:?}");
    }
}

#[test]
fn a_forged_id_is_not_signed() {
    for case in cases() {
        // Right invocation and entry, any other token: what someone knowing only the invocation id
        // could write.
        let mut forged: AwakeableId = case.id.parse().expect("valid awakeable id");
        forged.token[0] ^= 0x80;
        assert!(!forged.is_signed_by(case.secret), "{case:?}");
        // A token moved to another entry of the same invocation.
        let moved = AwakeableId {
            index: EntryIndex(case.entry.wrapping_add(1)),
            ..case.id.parse().expect("valid awakeable id")
        };
        assert!(!moved.is_signed_by(case.secret), "{case:?}");
    }
}

/// A value of the vector file: a string or an unsigned integer.
#[derive(Debug)]
enum Value {
    String(String),
    Number(u64),
}

impl Value {
    fn string(self) -> String {
        match self {
            Value::String(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn number(self) -> u64 {
        match self {
            Value::Number(n) => n,
            other => panic!("expected a number, got {other:?}"),
        }
    }
}

/// Parses a JSON array of flat objects whose values are strings without escapes or unsigned
/// integers; panics on anything else.
fn parse(text: &str) -> Vec<BTreeMap<String, Value>> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut out = Vec::new();
    p.expect(b'[');
    if !p.eat(b']') {
        loop {
            out.push(p.object());
            if p.eat(b']') {
                break;
            }
            p.expect(b',');
        }
    }
    p.skip_whitespace();
    assert_eq!(p.at, p.bytes.len(), "trailing characters after the array");
    out
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) {
        assert!(
            self.eat(byte),
            "expected '{}' at byte {}",
            byte as char,
            self.at
        );
    }

    fn object(&mut self) -> BTreeMap<String, Value> {
        let mut fields = BTreeMap::new();
        self.expect(b'{');
        if self.eat(b'}') {
            return fields;
        }
        loop {
            let name = self.string();
            self.expect(b':');
            let value = self.value();
            assert!(
                fields.insert(name.clone(), value).is_none(),
                "duplicate {name}"
            );
            if self.eat(b'}') {
                return fields;
            }
            self.expect(b',');
        }
    }

    fn value(&mut self) -> Value {
        self.skip_whitespace();
        match self.bytes.get(self.at) {
            Some(b'"') => Value::String(self.string()),
            Some(b) if b.is_ascii_digit() => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let digits = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII");
                Value::Number(digits.parse().expect("an integer"))
            }
            other => panic!(
                "unexpected {:?} at byte {}",
                other.map(|b| *b as char),
                self.at
            ),
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let start = self.at;
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'"' => {
                    let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("UTF-8");
                    self.at += 1;
                    return text.to_owned();
                }
                b'\\' => panic!("escapes are not expected in awakeable vectors"),
                _ => self.at += 1,
            }
        }
        panic!("unterminated string")
    }
}
