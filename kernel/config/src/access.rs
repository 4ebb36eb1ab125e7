//! Who may use the HTTP listeners: bearer tokens for `[admin]` and `[ingress]`, the origins
//! the ingress answers CORS requests from, and the hosts `POST /deployments` may reach.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use config::{Value, ValueKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Origin};
use crate::layer::Sourced;

/// The `[ingress]` listener: where it binds, who may call it, which web origins may.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// Address to bind; port 0 asks the OS for an ephemeral port.
    pub bind_address: SocketAddr,
    /// Bearer tokens accepted from `auth_tokens`; with the file's tokens, empty: no
    /// authentication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_tokens: Vec<Token>,
    /// The file of further tokens (one per line), re-read while the node runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,
    /// The tokens `auth_token_file` held when the configuration was loaded.
    #[serde(skip)]
    pub file_tokens: Vec<Token>,
    /// Origins (`scheme://host[:port]`, exact match, or `*`) that get CORS headers; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,
    /// `tls_cert_file` + `tls_key_file`: the listener speaks HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::TlsFiles>,
}

/// The `[admin]` listener: where it binds, who may call it, which endpoints it may register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to bind; port 0 asks the OS for an ephemeral port.
    pub bind_address: SocketAddr,
    /// Bearer tokens accepted from `auth_tokens`; with the file's tokens, empty: no
    /// authentication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_tokens: Vec<Token>,
    /// The file of further tokens (one per line), re-read while the node runs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,
    /// The tokens `auth_token_file` held when the configuration was loaded.
    #[serde(skip)]
    pub file_tokens: Vec<Token>,
    /// The networks and host names `POST /deployments` may register endpoints on; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_allowlist: Vec<HostPattern>,
    /// `tls_cert_file` + `tls_key_file`: the listener speaks HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::TlsFiles>,
}

/// A bearer token; its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A token from its text (visible ASCII, as an HTTP header carries it).
    pub fn new(text: impl Into<String>) -> Token {
        Token(text.into())
    }

    /// The secret itself, to compare against a request's credentials.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One entry of `admin.deployment_allowlist`: a network in CIDR notation (a bare IP is a
/// single address) or a host name, compared as written (no DNS lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Every IP address whose first `prefix` bits equal `network`'s.
    Network {
        /// The network's address.
        network: IpAddr,
        /// Leading bits that must match (0..=32 for IPv4, 0..=128 for IPv6).
        prefix: u8,
    },
    /// A host name, lower case, matched exactly (ASCII case-insensitively).
    Host(String),
}

impl HostPattern {
    /// Whether the host of a URI (`10.1.2.3`, `[::1]`, `svc.internal`) is covered: an IP
    /// literal by a network, a name by the same name.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match (self, host.parse::<IpAddr>()) {
            (HostPattern::Network { network, prefix }, Ok(ip)) => {
                in_network(canonical(ip), canonical(*network), *prefix)
            }
            (HostPattern::Host(name), Err(_)) => {
                name.eq_ignore_ascii_case(host.trim_end_matches('.'))
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4 address it stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (ip, network, width) = match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(width);
    if prefix == 0 {
        return true;
    }
    let shift = width - prefix;
    (ip >> shift) == (network >> shift)
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPattern, String> {
        let text = text.trim();
        if let Some((ip, prefix)) = text.split_once('/') {
            let network: IpAddr = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IP address"))?;
            let network = canonical(network);
            let width = if network.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`/{prefix}` is not a prefix length 0..={width}"))?;
            return Ok(HostPattern::Network { network, prefix });
        }
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let network = canonical(ip);
            let prefix = if network.is_ipv4() { 32 } else { 128 };
            return Ok(HostPattern::Network { network, prefix });
        }
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "`{text}` is neither a CIDR, an IP address nor a host name"
            ));
        }
        Ok(HostPattern::Host(name))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Network { network, prefix } => write!(f, "{network}/{prefix}"),
            HostPattern::Host(name) => f.write_str(name),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The strings of a list key: a TOML array of strings, or (from the environment only) one
/// string of comma-separated items. Items are trimmed; empty items are refused.
pub(crate) fn strings(
    value: &Value,
    key: &str,
    origin: Origin,
    is_env: bool,
) -> Result<Sourced<Vec<String>>, Error> {
    let expected = "an array of strings";
    let invalid_type = |found: String| Error::InvalidType {
        origin: origin.clone(),
        key: key.to_owned(),
        found,
        expected,
    };
    let items: Vec<String> = match &value.kind {
        ValueKind::Array(items) => items
            .iter()
            .map(|item| match &item.kind {
                ValueKind::String(s) => Ok(s.trim().to_owned()),
                other => Err(invalid_type(format!("an array holding {other}"))),
            })
            .collect::<Result<_, _>>()?,
        ValueKind::String(s) if is_env => {
            if s.trim().is_empty() {
                Vec::new()
            } else {
                s.split(',').map(|item| item.trim().to_owned()).collect()
            }
        }
        other => return Err(invalid_type(other.to_string())),
    };
    if items.iter().any(String::is_empty) {
        return Err(Error::InvalidValue {
            origin,
            key: key.to_owned(),
            value: format!("{items:?}"),
            expected: "non-empty items".to_owned(),
        });
    }
    Ok(Sourced {
        value: items,
        origin,
    })
}

/// Tokens: visible ASCII without spaces, as `Authorization: Bearer …` carries them.
pub(crate) fn tokens(items: Sourced<Vec<String>>, key: &str) -> Result<Sourced<Vec<Token>>, Error> {
    if let Some(position) = items.value.iter().position(|t| !token_ok(t)) {
        return Err(Error::InvalidValue {
            origin: items.origin,
            key: format!("{key}[{position}]"),
            value: "(hidden)".to_owned(),
            expected: "a token of visible ASCII characters without spaces".to_owned(),
        });
    }
    Ok(Sourced {
        value: items.value.into_iter().map(Token).collect(),
        origin: items.origin,
    })
}

fn token_ok(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Allowlist entries parsed into patterns; a bad entry is named by its index.
pub(crate) fn host_patterns(
    items: Sourced<Vec<String>>,
    key: &str,
) -> Result<Sourced<Vec<HostPattern>>, Error> {
    let mut patterns = Vec::with_capacity(items.value.len());
    for (index, item) in items.value.iter().enumerate() {
        let pattern = item.parse().map_err(|reason: String| Error::InvalidValue {
            origin: items.origin.clone(),
            key: format!("{key}[{index}]"),
            value: format!("{item:?}"),
            expected: format!(
                "a CIDR like \"10.0.0.0/8\", an IP address or a host name ({reason})"
            ),
        })?;
        patterns.push(pattern);
    }
    Ok(Sourced {
        value: patterns,
        origin: items.origin,
    })
}

/// CORS origins: `*`, or `scheme://host[:port]` exactly as a browser sends it (no path).
pub(crate) fn origins(
    items: Sourced<Vec<String>>,
    key: &str,
) -> Result<Sourced<Vec<String>>, Error> {
    for (index, item) in items.value.iter().enumerate() {
        let well_formed = item == "*"
            || item.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && !rest.is_empty()
                    && !rest.contains(['/', '?', '#', '@'])
                    && rest.bytes().all(|b| b.is_ascii_graphic())
            });
        if !well_formed {
            return Err(Error::InvalidValue {
                origin: items.origin.clone(),
                key: format!("{key}[{index}]"),
                value: format!("{item:?}"),
                expected: "an origin like \"https://app.example.com\" (scheme, host and port, \
                           no path) or \"*\""
                    .to_owned(),
            });
        }
    }
    Ok(items)
}

/// The tokens of a listener's token file, if it names one. The file must exist, be readable and
/// hold at least one token.
pub(crate) fn file_tokens(file: Option<&Sourced<PathBuf>>, key: &str) -> Result<Vec<Token>, Error> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    read_token_file(&file.value).map_err(|expected| Error::InvalidValue {
        origin: file.origin.clone(),
        key: key.to_owned(),
        value: format!("{:?}", file.value.display().to_string()),
        expected,
    })
}

/// The tokens of a token file: one per line, blank lines and lines starting with `#` skipped; a
/// file without any is refused. `Err` says what the file should be, for an error message.
pub fn read_token_file(path: &Path) -> Result<Vec<Token>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "a readable file of tokens, one per line (reading {} failed: {e})",
            path.display()
        )
    })?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !token_ok(line) {
            return Err(format!(
                "one token of visible ASCII characters per line (line {} of {} is not)",
                number + 1,
                path.display()
            ));
        }
        tokens.push(Token(line.to_owned()));
    }
    if tokens.is_empty() {
        return Err(format!(
            "a file holding at least one token ({} holds none)",
            path.display()
        ));
    }
    Ok(tokens)
}
