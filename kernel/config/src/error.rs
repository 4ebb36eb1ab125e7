//! Configuration errors that name the offending key and the layer it came from.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from, so an operator knows which place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration embedded in the binary ([`crate::DEFAULT_TOML`]).
    Default,
    /// The TOML file passed with `--config`.
    File(PathBuf),
    /// A process environment variable, by its exact name.
    Env(String),
}

impl Origin {
    /// Precedence of the layer: a higher rank overrides a lower one.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env(_) => 2,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("embedded default configuration"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Why the node configuration could not be loaded; the message names the key and its origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read (missing, unreadable, not UTF-8).
    #[error("config file {}: cannot read: {source}", path.display())]
    Read {
        /// The path as it was given.
        path: PathBuf,
        /// The underlying I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// The layer is not valid TOML (or the environment could not be collected).
    #[error("{origin}: {message}")]
    Parse {
        /// The layer that failed to parse.
        origin: Origin,
        /// The parser's description, including line and column.
        message: String,
    },

    /// A key that is not part of the schema, usually a typo.
    #[error("{origin}: unknown key `{key}`")]
    UnknownKey {
        /// The layer that declared the key.
        origin: Origin,
        /// Dotted path of the key, e.g. `admin.bnd_address`.
        key: String,
    },

    /// A key that must be present is absent (e.g. `address` of a cluster member).
    #[error("{origin}: missing key `{key}`")]
    MissingKey {
        /// The layer that should have declared the key.
        origin: Origin,
        /// Dotted path of the missing key.
        key: String,
    },

    /// The value has the wrong TOML type, e.g. a string where an integer belongs.
    #[error("{origin}: key `{key}`: invalid type: found {found}, expected {expected}")]
    InvalidType {
        /// The layer the value came from.
        origin: Origin,
        /// Dotted path of the key.
        key: String,
        /// Description of the value found.
        found: String,
        /// Description of the expected type.
        expected: &'static str,
    },

    /// The value has the right type but breaks a rule (range, uniqueness, cross-key constraint).
    #[error("{origin}: key `{key}`: invalid value {value}, expected {expected}")]
    InvalidValue {
        /// The layer the blamed value came from.
        origin: Origin,
        /// Dotted path of the blamed key.
        key: String,
        /// The offending value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },

    /// A string that does not parse as `ip:port`.
    #[error("{origin}: key `{key}`: invalid socket address {value:?}")]
    InvalidAddress {
        /// The layer the value came from.
        origin: Origin,
        /// Dotted path of the key.
        key: String,
        /// The string that failed to parse.
        value: String,
    },

    /// The key exists but cannot be set from this layer.
    #[error("{origin}: key `{key}`: {reason}")]
    Unsupported {
        /// The layer that tried to set the key.
        origin: Origin,
        /// Dotted path of the key.
        key: String,
        /// Why the layer cannot set it.
        reason: &'static str,
    },

    /// Two environment variables address the same (or an enclosing) key, so neither can win.
    #[error("environment variables {first} and {second}: both set key `{key}`")]
    Ambiguous {
        /// Dotted path of the shorter of the two keys.
        key: String,
        /// First variable name (in sorted order).
        first: String,
        /// Second variable name.
        second: String,
    },

    /// A relevant environment variable holds bytes that are not UTF-8.
    #[error("environment variable {var}: value is not valid UTF-8")]
    NotUnicode {
        /// The variable name.
        var: String,
    },
}

impl Error {
    /// Dotted path of the offending key, when the error is about one key (used by tests and tools).
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::UnknownKey { key, .. }
            | Error::MissingKey { key, .. }
            | Error::InvalidType { key, .. }
            | Error::InvalidValue { key, .. }
            | Error::InvalidAddress { key, .. }
            | Error::Unsupported { key, .. }
            | Error::Ambiguous { key, .. } => Some(key),
            Error::Read { .. } | Error::Parse { .. } | Error::NotUnicode { .. } => None,
        }
    }

    /// The layer the offending value came from, when it is a single layer.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            Error::Parse { origin, .. }
            | Error::UnknownKey { origin, .. }
            | Error::MissingKey { origin, .. }
            | Error::InvalidType { origin, .. }
            | Error::InvalidValue { origin, .. }
            | Error::InvalidAddress { origin, .. }
            | Error::Unsupported { origin, .. } => Some(origin),
            Error::Read { .. } | Error::Ambiguous { .. } | Error::NotUnicode { .. } => None,
        }
    }
}
