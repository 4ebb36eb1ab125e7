//! Fixed-width base62, in two alphabets: the public text of ids (`inv_1…`, `dp_1…`) uses
//! Restate's — digits, then lower-case, then upper-case letters — so its tools read our ids; the
//! stored text of deployment ids (`dp_…`, in logs and snapshots) keeps the alphabet it was
//! written in — digits, upper-case, lower-case.

/// Which alphabet a text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alphabet {
    /// `0-9a-zA-Z`: the public text of ids.
    Public,
    /// `0-9A-Za-z`: the stored text of deployment ids.
    Stored,
}

impl Alphabet {
    fn digits(self) -> &'static [u8; 62] {
        match self {
            Alphabet::Public => b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
            Alphabet::Stored => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        }
    }

    /// The value of a digit, if `c` is one.
    pub(crate) fn digit(self, c: char) -> Option<u8> {
        let (first, second) = match self {
            Alphabet::Public => (b'a', b'A'),
            Alphabet::Stored => (b'A', b'a'),
        };
        let c = u8::try_from(c).ok()?;
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            _ if (first..first + 26).contains(&c) => Some(c - first + 10),
            _ if (second..second + 26).contains(&c) => Some(c - second + 36),
            _ => None,
        }
    }

    /// Appends `value` as exactly `width` digits (leading zeros); `width` must be large enough.
    pub(crate) fn push(self, out: &mut String, value: u128, width: usize) {
        let alphabet = self.digits();
        let mut digits = vec![b'0'; width];
        let mut rest = value;
        for slot in digits.iter_mut().rev() {
            // `rest % 62` is below 62, so the index is always inside the alphabet.
            *slot = alphabet[(rest % 62) as usize];
            rest /= 62;
        }
        out.extend(digits.iter().map(|d| char::from(*d)));
    }

    /// The value of `text` (every character a digit), or `None` if it is not base62 or
    /// overflows.
    pub(crate) fn parse(self, text: &str) -> Option<u128> {
        text.chars().try_fold(0u128, |value, c| {
            value
                .checked_mul(62)?
                .checked_add(u128::from(self.digit(c)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_at_fixed_width() {
        for alphabet in [Alphabet::Public, Alphabet::Stored] {
            for (value, width) in [
                (0u128, 3),
                (61, 1),
                (62, 2),
                (u128::from(u64::MAX), 11),
                (u128::MAX, 22),
            ] {
                let mut text = String::new();
                alphabet.push(&mut text, value, width);
                assert_eq!(text.len(), width);
                assert_eq!(alphabet.parse(&text), Some(value), "{text}");
            }
            let mut text = String::new();
            alphabet.push(&mut text, 62, 3);
            assert_eq!(text, "010");
            assert_eq!(alphabet.parse("0-1"), None);
            assert_eq!(alphabet.parse(&"z".repeat(23)), None);
        }
    }

    #[test]
    fn the_alphabets_order_the_letters_differently() {
        let mut public = String::new();
        Alphabet::Public.push(&mut public, 10, 1);
        Alphabet::Public.push(&mut public, 36, 1);
        assert_eq!(public, "aA");
        let mut stored = String::new();
        Alphabet::Stored.push(&mut stored, 10, 1);
        Alphabet::Stored.push(&mut stored, 36, 1);
        assert_eq!(stored, "Aa");
        assert_eq!(
            Alphabet::Public.parse("lYGhA16ahyf"),
            Some(u128::from(u64::MAX))
        );
    }
}
