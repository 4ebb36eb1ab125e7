//! Fixed-width base62 — digits, then upper-case, then lower-case letters — the alphabet of the
//! public text of ids (`dp_…`, `inv_…`).

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends `value` as exactly `width` digits (leading zeros); `width` must be large enough.
pub(crate) fn push(out: &mut String, value: u128, width: usize) {
    let mut digits = vec![b'0'; width];
    let mut rest = value;
    for slot in digits.iter_mut().rev() {
        // `rest % 62` is below 62, so the index is always inside the alphabet.
        *slot = ALPHABET[(rest % 62) as usize];
        rest /= 62;
    }
    out.extend(digits.iter().map(|d| char::from(*d)));
}

/// The value of a digit, if `c` is one.
pub(crate) fn digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        'A'..='Z' => Some(c as u8 - b'A' + 10),
        'a'..='z' => Some(c as u8 - b'a' + 36),
        _ => None,
    }
}

/// The value of `text` (every character a digit), or `None` if it is not base62 or overflows.
pub(crate) fn parse(text: &str) -> Option<u128> {
    text.chars().try_fold(0u128, |value, c| {
        value.checked_mul(62)?.checked_add(u128::from(digit(c)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_at_fixed_width() {
        for (value, width) in [
            (0u128, 3),
            (61, 1),
            (62, 2),
            (u128::from(u64::MAX), 11),
            (u128::MAX, 22),
        ] {
            let mut text = String::new();
            push(&mut text, value, width);
            assert_eq!(text.len(), width);
            assert_eq!(parse(&text), Some(value), "{text}");
        }
        let mut text = String::new();
        push(&mut text, 62, 3);
        assert_eq!(text, "010");
        assert_eq!(parse("0-1"), None);
        assert_eq!(parse(&"z".repeat(23)), None);
    }
}
