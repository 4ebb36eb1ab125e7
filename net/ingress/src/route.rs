//! Turning a request path into a [`Route`], in two steps: [`classify`] needs only the path; the
//! registry then decides, from the service's type, which segment is the key
//! ([`invocation_shape`], [`lookup_shape`]).
//!
//! ```text
//!  /restate/health                                        Health
//!  /restate/invocation/{id}/attach|output                 Lookup by id
//!  /restate/invocation/{svc}/[{key}/]{handler}/{ik}/...   Lookup by idempotency key
//!  /restate/workflow/{svc}/{key}/attach|output            Lookup of a workflow run
//!  /restate/awakeables/{id}/resolve|reject                Completion of an awakeable
//!  /restate/call/{svc}/[{key}/]{handler}                  Invoke, call
//!  /restate/send/{svc}/[{key}/]{handler}                  Invoke, send
//!  /{svc}/[{key}/]{handler}[/send]                        Invoke, call or send
//! ```

use crate::error::Rejection;
use holdfast_protocol::manifest::ServiceType;

/// What a lookup route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Wait for the result.
    Attach,
    /// Return the result if there is one, else 470.
    Output,
}

/// How an invoke route chose between call and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explicit {
    /// `/{…}`: a trailing `send` segment makes it a send.
    Suffix,
    /// `/restate/call/{…}`.
    Call,
    /// `/restate/send/{…}`.
    Send,
}

/// How an awakeable is completed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// `resolve`: the body is the value.
    Resolve,
    /// `reject`: the body is the reason; the waiting handler sees a terminal error.
    Reject,
}

/// A request path, classified without the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /restate/health`.
    Health,
    /// Invoke a handler; `segments` start with the service name.
    Invoke {
        /// Decoded path segments from the service name on.
        segments: Vec<String>,
        /// How call or send is chosen.
        explicit: Explicit,
    },
    /// `/restate/invocation/{…}/attach|output`; `segments` are those between.
    Invocation {
        /// Decoded segments between `invocation/` and the action.
        segments: Vec<String>,
        /// Attach or output.
        action: Action,
    },
    /// `/restate/workflow/{svc}/{key}/attach|output`.
    Workflow {
        /// The workflow service.
        service: String,
        /// The workflow key.
        key: String,
        /// Attach or output.
        action: Action,
    },
    /// `/restate/awakeables/{id}/resolve|reject`.
    Awakeable {
        /// The awakeable id as sent (parsed by the handler).
        id: String,
        /// Resolve or reject.
        completion: Completion,
    },
}

/// The shape `/restate/awakeables/` accepts, for error messages.
pub const AWAKEABLE_PATHS: &str = "/restate/awakeables/:id/(resolve|reject)";

/// The shapes `/restate/invocation/` accepts, for error messages.
pub const INVOCATION_PATHS: &str = "/restate/invocation/:id/(attach|output) or /restate/invocation/:service/[:key/]:handler/:idempotency-key/(attach|output)";
/// The shape `/restate/workflow/` accepts, for error messages.
pub const WORKFLOW_PATHS: &str = "/restate/workflow/:service/:key/(attach|output)";

/// Classifies the raw (percent-encoded) request path.
pub fn classify(path: &str) -> Result<Route, Rejection> {
    let raw = path.strip_prefix('/').unwrap_or(path);
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        segments.push(percent_decode(segment).ok_or(Rejection::BadPath)?);
    }
    if segments.first().map(String::as_str) != Some("restate") {
        return Ok(Route::Invoke {
            segments,
            explicit: Explicit::Suffix,
        });
    }
    let rest = &segments[1..];
    let lookup_error = |expected| Rejection::BadLookupPath {
        path: path.to_owned(),
        expected,
    };
    match rest.first().map(String::as_str) {
        Some("health") if rest.len() == 1 => Ok(Route::Health),
        Some("call") => Ok(Route::Invoke {
            segments: rest[1..].to_vec(),
            explicit: Explicit::Call,
        }),
        Some("send") => Ok(Route::Invoke {
            segments: rest[1..].to_vec(),
            explicit: Explicit::Send,
        }),
        Some("invocation") => {
            let (action, between) =
                split_action(&rest[1..]).ok_or_else(|| lookup_error(INVOCATION_PATHS))?;
            Ok(Route::Invocation {
                segments: between.to_vec(),
                action,
            })
        }
        Some("workflow") => match split_action(&rest[1..]) {
            Some((action, [service, key])) if !service.is_empty() => Ok(Route::Workflow {
                service: service.clone(),
                key: key.clone(),
                action,
            }),
            _ => Err(lookup_error(WORKFLOW_PATHS)),
        },
        Some("awakeables") => match &rest[1..] {
            [id, action] if !id.is_empty() => {
                let completion = match action.as_str() {
                    "resolve" => Completion::Resolve,
                    "reject" => Completion::Reject,
                    _ => return Err(lookup_error(AWAKEABLE_PATHS)),
                };
                Ok(Route::Awakeable {
                    id: id.clone(),
                    completion,
                })
            }
            _ => Err(lookup_error(AWAKEABLE_PATHS)),
        },
        _ => Err(Rejection::NoRoute(path.to_owned())),
    }
}

/// Splits `[…, "attach"|"output"]` into the action and the segments before it.
fn split_action(segments: &[String]) -> Option<(Action, &[String])> {
    let (last, before) = segments.split_last()?;
    let action = match last.as_str() {
        "attach" => Action::Attach,
        "output" => Action::Output,
        _ => return None,
    };
    Some((action, before))
}

/// An invoke path resolved against the service's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationShape {
    /// Object or workflow key.
    pub key: Option<String>,
    /// The handler.
    pub handler: String,
    /// Whether it is a one-way send.
    pub send: bool,
}

/// Reads key, handler and `send` from the segments after the service name; objects and
/// workflows need a key, services must not have one. Handler names are never empty (the registry
/// refuses them); keys may be.
pub fn invocation_shape(
    ty: ServiceType,
    after_service: &[String],
    explicit: Explicit,
) -> Result<InvocationShape, Rejection> {
    let (body, send) = match (explicit, after_service.split_last()) {
        (Explicit::Suffix, Some((last, before))) if last == "send" && !before.is_empty() => {
            (before, true)
        }
        (Explicit::Send, _) => (after_service, true),
        _ => (after_service, false),
    };
    let (key, handler) = match (ty, body) {
        (ServiceType::Service, [handler]) => (None, handler),
        (ServiceType::Object | ServiceType::Workflow, [key, handler]) => {
            (Some(key.clone()), handler)
        }
        _ => return Err(Rejection::BadPath),
    };
    if handler.is_empty() {
        return Err(Rejection::BadPath);
    }
    Ok(InvocationShape {
        key,
        handler: handler.clone(),
        send,
    })
}

/// A `/restate/invocation/{svc}/[{key}/]{handler}/{ik}/…` path resolved against the service type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyLookup {
    /// Object or workflow key.
    pub key: Option<String>,
    /// The handler.
    pub handler: String,
    /// The idempotency key.
    pub idempotency_key: String,
}

/// Reads key, handler and idempotency key from a `/restate/invocation/` path that is not an id;
/// `ty` is the type of the service named by the first segment.
pub fn lookup_shape(ty: ServiceType, segments: &[String]) -> Option<IdempotencyLookup> {
    let (key, handler, idempotency_key) = match (ty, segments) {
        (ServiceType::Service, [_, handler, ik]) => (None, handler, ik),
        (ServiceType::Object | ServiceType::Workflow, [_, key, handler, ik]) => {
            (Some(key.clone()), handler, ik)
        }
        _ => return None,
    };
    if handler.is_empty() || idempotency_key.is_empty() {
        return None;
    }
    Some(IdempotencyLookup {
        key,
        handler: handler.clone(),
        idempotency_key: idempotency_key.clone(),
    })
}

/// Decodes `%XX` escapes; `None` for a broken escape or a result that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let high = hex(*bytes.get(at + 1)?)?;
            let low = hex(*bytes.get(at + 2)?)?;
            out.push((high << 4) | low);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The value of `name` in a raw query string (`+` is a space), if present.
pub fn query_param(query: &str, name: &str) -> Option<Result<String, ()>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(&value.replace('+', " ")).ok_or(()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plain_paths_are_invocations() {
        assert_eq!(
            classify("/Greeter/greet"),
            Ok(Route::Invoke {
                segments: strings(&["Greeter", "greet"]),
                explicit: Explicit::Suffix
            })
        );
        assert_eq!(
            classify("/Counter/a%2Fb%20c/add/send"),
            Ok(Route::Invoke {
                segments: strings(&["Counter", "a/b c", "add", "send"]),
                explicit: Explicit::Suffix
            })
        );
        assert_eq!(classify("/Counter/%zz/add"), Err(Rejection::BadPath));
        assert_eq!(classify("/Counter/%ff/add"), Err(Rejection::BadPath));
    }

    #[test]
    fn restate_paths_are_classified() {
        assert_eq!(classify("/restate/health"), Ok(Route::Health));
        assert_eq!(
            classify("/restate/send/Greeter/greet"),
            Ok(Route::Invoke {
                segments: strings(&["Greeter", "greet"]),
                explicit: Explicit::Send
            })
        );
        assert_eq!(
            classify("/restate/invocation/inv_1/attach"),
            Ok(Route::Invocation {
                segments: strings(&["inv_1"]),
                action: Action::Attach
            })
        );
        assert_eq!(
            classify("/restate/awakeables/awk_1/resolve"),
            Ok(Route::Awakeable {
                id: "awk_1".into(),
                completion: Completion::Resolve
            })
        );
        assert_eq!(
            classify("/restate/awakeables/awk_1/reject"),
            Ok(Route::Awakeable {
                id: "awk_1".into(),
                completion: Completion::Reject
            })
        );
        for bad in [
            "/restate/awakeables/awk_1",
            "/restate/awakeables//resolve",
            "/restate/awakeables/awk_1/complete",
        ] {
            assert!(
                matches!(classify(bad), Err(Rejection::BadLookupPath { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            classify("/restate/workflow/Signup/w1/output"),
            Ok(Route::Workflow {
                service: "Signup".into(),
                key: "w1".into(),
                action: Action::Output
            })
        );
        assert!(matches!(
            classify("/restate/workflow/Signup/output"),
            Err(Rejection::BadLookupPath { .. })
        ));
        assert!(matches!(
            classify("/restate/invocation/inv_1/peek"),
            Err(Rejection::BadLookupPath { .. })
        ));
        assert!(matches!(
            classify("/restate/nothing"),
            Err(Rejection::NoRoute(_))
        ));
    }

    #[test]
    fn shapes_follow_the_service_type() {
        let service = ServiceType::Service;
        let object = ServiceType::Object;
        let shape = |ty, segs: &[&str], explicit| invocation_shape(ty, &strings(segs), explicit);
        assert_eq!(
            shape(service, &["greet"], Explicit::Suffix),
            Ok(InvocationShape {
                key: None,
                handler: "greet".into(),
                send: false
            })
        );
        assert_eq!(
            shape(service, &["greet", "send"], Explicit::Suffix),
            Ok(InvocationShape {
                key: None,
                handler: "greet".into(),
                send: true
            })
        );
        // A handler called "send" is still callable.
        assert_eq!(
            shape(service, &["send"], Explicit::Suffix).map(|s| (s.handler, s.send)),
            Ok(("send".to_owned(), false))
        );
        assert_eq!(
            shape(object, &["k", "add", "send"], Explicit::Suffix).map(|s| (s.key, s.send)),
            Ok((Some("k".to_owned()), true))
        );
        assert_eq!(
            shape(object, &["add"], Explicit::Suffix),
            Err(Rejection::BadPath)
        );
        assert_eq!(
            shape(service, &["x", "greet"], Explicit::Suffix),
            Err(Rejection::BadPath)
        );
        assert_eq!(
            shape(service, &["greet", "send"], Explicit::Call),
            Err(Rejection::BadPath)
        );
        assert_eq!(
            shape(service, &[""], Explicit::Call),
            Err(Rejection::BadPath)
        );
        assert_eq!(
            shape(object, &["", "add"], Explicit::Send).map(|s| (s.key, s.send)),
            Ok((Some(String::new()), true))
        );
    }

    #[test]
    fn lookups_follow_the_service_type() {
        assert_eq!(
            lookup_shape(ServiceType::Service, &strings(&["G", "greet", "k1"])),
            Some(IdempotencyLookup {
                key: None,
                handler: "greet".into(),
                idempotency_key: "k1".into()
            })
        );
        assert_eq!(
            lookup_shape(ServiceType::Object, &strings(&["C", "o", "add", "k1"])),
            Some(IdempotencyLookup {
                key: Some("o".into()),
                handler: "add".into(),
                idempotency_key: "k1".into()
            })
        );
        assert_eq!(
            lookup_shape(ServiceType::Object, &strings(&["C", "add", "k1"])),
            None
        );
        assert_eq!(
            lookup_shape(ServiceType::Service, &strings(&["G", "greet", ""])),
            None
        );
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param("a=1&delay=1h+30m", "delay"),
            Some(Ok("1h 30m".into()))
        );
        assert_eq!(query_param("delay=PT1S", "delay"), Some(Ok("PT1S".into())));
        assert_eq!(query_param("x=1", "delay"), None);
        assert_eq!(query_param("delay=%zz", "delay"), Some(Err(())));
    }
}
