//! Endpoint addresses: validating a deployment's base URI once, and building the request URIs of
//! the protocol's paths below it.

use std::fmt;

use http::Uri;

use crate::Error;

/// Where connections go: one shared HTTP/2 connection exists per authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Authority {
    /// `https://`: the connection is TLS, the certificate checked against the host.
    secure: bool,
    /// Host as written in the URI, lower-cased (IPv6 literals keep their brackets).
    host: String,
    /// Port, 80 (443 for https) when the URI has none.
    port: u16,
}

impl Authority {
    /// The host to resolve, without the brackets of an IPv6 literal.
    pub(crate) fn connect_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Whether connections are TLS.
    pub(crate) fn is_secure(&self) -> bool {
        self.secure
    }

    fn scheme(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme(), self.host, self.port)
    }
}

/// A validated endpoint base URI (`http[s]://host[:port][/prefix]`).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    authority: Authority,
    /// `scheme://authority` exactly as given, used for request URIs.
    origin: String,
    /// Path prefix without a trailing slash (empty for the root).
    prefix: String,
    /// The base URI as given, for error messages.
    display: String,
}

impl Target {
    /// Checks that `base` is an HTTP or HTTPS URI with a host and no query, fragment or user
    /// info.
    pub(crate) fn parse(base: &Uri) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: base.to_string(),
            reason: reason.to_owned(),
        };
        let secure = match base.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(invalid("the scheme must be http:// or https://")),
            None => return Err(invalid("the URI must be absolute (http://host:port)")),
        };
        let Some(authority) = base.authority() else {
            return Err(invalid("the URI has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(invalid("user info is not supported"));
        }
        if base.query().is_some() {
            return Err(invalid("a query string is not supported"));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("the URI has no host"));
        }
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let key = Authority { secure, host, port };
        Ok(Target {
            origin: format!("{}://{authority}", key.scheme()),
            authority: key,
            prefix: base.path().trim_end_matches('/').to_owned(),
            display: base.to_string().trim_end_matches('/').to_owned(),
        })
    }

    /// The connection key of this endpoint.
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The endpoint as shown in errors and logs.
    pub(crate) fn name(&self) -> &str {
        &self.display
    }

    /// The path of `suffix` (which starts with `/`) below the base.
    pub(crate) fn path(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The absolute URI of `path` (as returned by [`Target::path`]).
    pub(crate) fn uri(&self, path: &str) -> Result<Uri, Error> {
        let full = format!("{}{path}", self.origin);
        full.parse::<Uri>().map_err(|e| Error::InvalidUri {
            uri: full,
            reason: e.to_string(),
        })
    }
}

/// Checks that a service or handler name is one unreserved path segment, so it cannot change the route.
pub(crate) fn check_segment(what: &'static str, name: &str) -> Result<(), Error> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if name.is_empty() || name == "." || name == ".." || !name.chars().all(plain) {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Result<Target, Error> {
        Target::parse(&uri.parse::<Uri>().expect("a URI"))
    }

    #[test]
    fn default_port_and_prefix() {
        let t = target("http://Example.com/base/").expect("valid");
        assert_eq!(t.authority().to_string(), "http://example.com:80");
        assert_eq!(t.path("/discover"), "/base/discover");
        assert_eq!(
            t.uri(&t.path("/discover")).expect("uri").to_string(),
            "http://Example.com/base/discover"
        );
    }

    #[test]
    fn ipv6_hosts_lose_their_brackets_for_connecting() {
        let t = target("http://[::1]:9080").expect("valid");
        assert_eq!(t.authority().connect_host(), "::1");
        assert_eq!(t.authority().port(), 9080);
    }

    #[test]
    fn https_defaults_to_port_443_and_is_its_own_authority() {
        let t = target("https://Svc.example.com/api").expect("valid");
        assert!(t.authority().is_secure());
        assert_eq!(t.authority().to_string(), "https://svc.example.com:443");
        assert_ne!(
            t.authority(),
            target("http://svc.example.com:443")
                .expect("valid")
                .authority()
        );
        assert_eq!(
            t.uri(&t.path("/discover")).expect("uri").to_string(),
            "https://Svc.example.com/api/discover"
        );
    }

    #[test]
    fn only_http_and_https_are_accepted() {
        for bad in ["ftp://h", "/relative", "http://u@h:1", "http://h:1/?q=1"] {
            assert!(
                matches!(target(bad), Err(Error::InvalidUri { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_stay_one_segment() {
        assert!(check_segment("service", "my.pkg.Greeter_v2").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b", "a#b", "é"] {
            assert!(check_segment("service", bad).is_err(), "{bad}");
        }
    }
}
