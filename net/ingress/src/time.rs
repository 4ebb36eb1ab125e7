//! Rendering [`Timestamp`]s the way Restate's ingress writes them, so clients that parse
//! `idempotency-expires` and `executionTime` keep working.

use holdfast_schema::Timestamp;

/// `2026-11-27T17:39:03.196+00:00`, the `idempotency-expires` header's form.
pub fn header_form(at: Timestamp) -> String {
    let c = at.civil();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `2026-11-26T17:39:05.860000000Z`, the `executionTime` field's form.
pub fn body_form(at: Timestamp) -> String {
    let c = at.civil();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}000000Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render() {
        assert_eq!(header_form(Timestamp(0)), "1970-01-01T00:00:00.000+00:00");
        // 2026-11-27T17:39:03.196Z
        assert_eq!(
            header_form(Timestamp(1_795_801_143_196)),
            "2026-11-27T17:39:03.196+00:00"
        );
        assert_eq!(
            body_form(Timestamp(1_795_714_745_860)),
            "2026-11-26T17:39:05.860000000Z"
        );
        // Leap day and the turn of a century that is a leap year.
        assert_eq!(
            header_form(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000+00:00"
        );
        assert_eq!(
            header_form(Timestamp(978_307_199_999)),
            "2000-12-31T23:59:59.999+00:00"
        );
    }
}
