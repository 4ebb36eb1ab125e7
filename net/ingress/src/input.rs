//! Checking what a request carries before it may become an invocation: the body (bounded read,
//! content type, JSON syntax) and the headers passed on to the handler.

use crate::error::Rejection;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reads the whole body, refusing it as soon as it is known to exceed `limit`: from
/// `content-length` before reading anything, otherwise once the bytes read pass the limit.
pub async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
    budget: &Budget,
) -> Result<(Bytes, Held), Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared
        && length > u64::try_from(limit).unwrap_or(u64::MAX)
    {
        return Err(Rejection::TooLarge(limit));
    }
    let capacity = declared
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(0)
        .min(limit);
    // The declared length is reserved up front, a chunked body as it arrives.
    let mut held = budget.hold(capacity)?;
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Rejection::Body(e.to_string()))?;
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(Rejection::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
        held.grow_to(body.len())?;
    }
    Ok((body.freeze(), held))
}

/// A node-wide budget of request body bytes held by requests in flight.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: usize,
    used: Arc<AtomicUsize>,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reserves `bytes`, or refuses with 503 when that would exceed the budget and something
    /// else holds part of it (a lone request is always admitted, however large).
    fn hold(&self, bytes: usize) -> Result<Held, Rejection> {
        let mut held = Held {
            bytes: 0,
            used: self.used.clone(),
            limit: self.limit,
        };
        held.grow_to(bytes)?;
        Ok(held)
    }

    /// Bytes held now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Bytes reserved from a [`Budget`] by one request; released when dropped.
#[derive(Debug)]
pub struct Held {
    bytes: usize,
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl Held {
    /// Extends the reservation to `bytes` in total.
    fn grow_to(&mut self, bytes: usize) -> Result<(), Rejection> {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let others = used.saturating_sub(self.bytes);
            if others > 0 && used.saturating_add(more) > self.limit {
                return Err(Rejection::Busy(self.limit));
            }
            match self.used.compare_exchange_weak(
                used,
                used.saturating_add(more),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(current) => used = current,
            }
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The media type without parameters, lower case: `Application/JSON; charset=utf-8` →
/// `application/json`.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `got` satisfies the handler's declared input type `expected` (which may be empty or a
/// `*/*` / `type/*` wildcard).
fn matches(expected: &str, got: &str) -> bool {
    match expected {
        "" | "*/*" => true,
        _ => match expected.strip_suffix("/*") {
            Some(kind) => got.split('/').next() == Some(kind),
            None => expected == got,
        },
    }
}

/// Whether the handler's input type is JSON (`application/json` or a `+json` type).
fn is_json(expected: &str) -> bool {
    expected == "application/json" || expected.ends_with("+json")
}

/// Checks the body against the handler's input content type: an empty body is no input and always
/// accepted; otherwise the content type must match and a JSON body must be well-formed JSON.
pub fn validate_body(
    declared_input: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), Rejection> {
    if body.is_empty() {
        return Ok(());
    }
    let expected = essence(declared_input);
    let Some(content_type) = content_type else {
        if matches(&expected, "") {
            return Ok(());
        }
        return Err(Rejection::MissingContentType(declared_input.to_owned()));
    };
    if !matches(&expected, &essence(content_type)) {
        return Err(Rejection::ContentType {
            got: content_type.to_owned(),
            expected: declared_input.to_owned(),
        });
    }
    if is_json(&expected) {
        // Checks syntax only; `IgnoredAny` builds no value.
        serde_json::from_slice::<serde::de::IgnoredAny>(body)
            .map_err(|e| Rejection::InvalidJson(e.to_string()))?;
    }
    Ok(())
}

/// Headers a proxy must not forward (RFC 9110 §7.6.1) plus the obsolete `proxy-connection`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers ingress consumes itself: framing, and what travels in its own request field.
const INGRESS_INTERNAL: [&str; 5] = [
    "host",
    "content-length",
    "content-type",
    "expect",
    "idempotency-key",
];

/// Headers the handler sees: everything but hop-by-hop headers (including those the `connection`
/// header names), ingress-internal ones and `x-restate-*`. Values that are not UTF-8 are left out.
pub fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let mut forwarded: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !HOP_BY_HOP.contains(&name)
                && !INGRESS_INTERNAL.contains(&name)
                && !name.starts_with("x-restate-")
                && !named_by_connection.iter().any(|n| n == name)
        })
        .filter_map(|(name, value)| {
            let value = String::from_utf8(value.as_bytes().to_vec()).ok()?;
            Some((name.as_str().to_owned(), value))
        })
        .collect();
    // The header map's order is not the wire order; sorting makes the journaled headers stable.
    forwarded.sort();
    forwarded
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn empty_bodies_are_always_accepted() {
        assert_eq!(validate_body("application/json", None, b""), Ok(()));
        assert_eq!(
            validate_body("application/json", Some("text/plain"), b""),
            Ok(())
        );
    }

    #[test]
    fn content_types_match_by_essence() {
        let json = "application/json";
        assert_eq!(
            validate_body(json, Some("Application/JSON; charset=utf-8"), b"1"),
            Ok(())
        );
        assert_eq!(
            validate_body(json, Some("application/x-www-form-urlencoded"), b"1"),
            Err(Rejection::ContentType {
                got: "application/x-www-form-urlencoded".into(),
                expected: json.into()
            })
        );
        assert_eq!(
            validate_body(json, None, b"1"),
            Err(Rejection::MissingContentType(json.into()))
        );
        assert_eq!(validate_body("*/*", None, b"x"), Ok(()));
        assert_eq!(validate_body("text/*", Some("text/csv"), b"x"), Ok(()));
        assert!(validate_body("text/*", Some("image/png"), b"x").is_err());
        assert_eq!(
            validate_body(
                "application/octet-stream",
                Some("application/octet-stream"),
                b"\xff"
            ),
            Ok(())
        );
    }

    #[test]
    fn json_syntax_is_checked_for_json_handlers_only() {
        let json = Some("application/json");
        assert_eq!(
            validate_body("application/json", json, br#" {"a":[1,2,{"b":null}]} "#),
            Ok(())
        );
        for bad in [&b"not json"[..], b"{", b"1 2", b"\"open"] {
            assert!(matches!(
                validate_body("application/json", json, bad),
                Err(Rejection::InvalidJson(_))
            ));
        }
        assert!(matches!(
            validate_body(
                "application/vnd.x+json",
                Some("application/vnd.x+json"),
                b"nope"
            ),
            Err(Rejection::InvalidJson(_))
        ));
        assert_eq!(
            validate_body("text/plain", Some("text/plain"), b"not json"),
            Ok(())
        );
    }

    #[test]
    fn hop_by_hop_and_internal_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        let pairs = [
            ("connection", "keep-alive, x-private"),
            ("x-private", "dropped"),
            ("keep-alive", "timeout=5"),
            ("host", "h"),
            ("content-type", "application/json"),
            ("idempotency-key", "k"),
            ("x-restate-id", "inv"),
            ("authorization", "Bearer t"),
            ("x-trace", "abc"),
        ];
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers.append(
            HeaderName::from_static("x-binary"),
            HeaderValue::from_bytes(b"\xff").expect("opaque bytes are a valid header value"),
        );
        assert_eq!(
            forwarded_headers(&headers),
            vec![
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("x-trace".to_owned(), "abc".to_owned()),
            ]
        );
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_lone_request_is_admitted_whatever_its_size() {
        let budget = Budget::new(10);
        let held = budget.hold(100).expect("alone");
        assert_eq!(budget.used(), 100);
        drop(held);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn requests_beyond_the_budget_are_refused_while_others_hold_it() {
        let budget = Budget::new(10);
        let first = budget.hold(6).expect("first");
        let mut second = budget.hold(4).expect("fits");
        assert!(matches!(budget.hold(1), Err(Rejection::Busy(10))));
        // A chunked body growing past the budget is refused as it grows.
        assert!(matches!(second.grow_to(5), Err(Rejection::Busy(10))));
        assert_eq!(budget.used(), 10);
        drop(first);
        second.grow_to(9).expect("room again");
        assert_eq!(budget.used(), 9);
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
