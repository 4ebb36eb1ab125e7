//! TLS for a node's listeners (ingress, admin, SQL, cluster transport) and clients (service
//! endpoints, peers): rustls with the ring provider, certificates and keys read from PEM files.
//!
//! A listener's or client's own certificate is an [`Identity`]: its files are checked for
//! changes at most once a second, at handshake time, and a new pair replaces the old one without
//! a restart (a pair that does not load is logged and the old one kept). Trust roots are read
//! once, at start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

pub mod issue;

pub use rustls::pki_types::ServerName;
pub use rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned};
pub use tokio_rustls::client::TlsStream as ClientStream;
pub use tokio_rustls::server::TlsStream as ServerStream;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN protocol id PostgreSQL clients offer.
pub const ALPN_POSTGRES: &[u8] = b"postgresql";

/// How often, at most, an identity's files are checked for a new certificate.
const RECHECK: Duration = Duration::from_secs(1);

/// Why TLS could not be set up; every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or is not PEM.
    #[error("cannot read the {what} in {}: {message}", path.display())]
    Read {
        /// What the file should hold ("certificate chain", "private key", "CA certificates").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("{} holds no {what} (expected PEM)", path.display())]
    Missing {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the material: a key of an unsupported type, a key not matching the
    /// certificate, a CA certificate that does not parse.
    #[error("the {what} in {} cannot be used: {source}", path.display())]
    Rejected {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A configuration could not be built from otherwise valid parts.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
    /// A certificate could not be issued.
    #[error("cannot issue a certificate: {0}")]
    Issue(String),
    /// A host cannot be a TLS server name.
    #[error("`{0}` cannot be checked against a certificate (not a DNS name or IP address)")]
    ServerName(String),
}

/// The crypto provider every configuration uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key, read from two PEM files and re-read when they
/// change.
pub struct Identity {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// What tells a changed file from an unchanged one: modification time and length of both.
type Stamp = [(Option<SystemTime>, u64); 2];

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the chain of `cert_file` (leaf first) and the key of `key_file` (PKCS#8, PKCS#1 or
    /// SEC1), checking that they belong together.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Identity>, TlsError> {
        let provider = provider();
        let stamp = stamp(cert_file, key_file);
        let key = certified_key(cert_file, key_file, &provider)?;
        Ok(Arc::new(Identity {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: Mutex::new(Loaded {
                key,
                stamp,
                checked: Instant::now(),
            }),
        }))
    }

    /// The current pair, re-read first if its files changed since the last check.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = stamp(&self.cert_file, &self.key_file);
            if now != loaded.stamp {
                loaded.stamp = now;
                match certified_key(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(key) => {
                        info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                        loaded.key = key;
                    }
                    Err(e) => {
                        warn!(error = %e, "the changed TLS certificate does not load; still serving the previous one");
                    }
                }
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn stamp(cert_file: &Path, key_file: &Path) -> Stamp {
    let of =
        |path: &Path| std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [of(cert_file), of(key_file)]
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(cert_file, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            what: "private key",
            path: key_file.to_owned(),
        },
        other => TlsError::Read {
            what: "private key",
            path: key_file.to_owned(),
            message: other.to_string(),
        },
    })?;
    let key =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Rejected {
            what: "private key",
            path: key_file.to_owned(),
            source,
        })?;
    Ok(Arc::new(key))
}

/// Every certificate of a PEM file, in order; at least one.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls_pki_types::pem::Error| TlsError::Read {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The CA certificates of a PEM file as a root store.
fn roots_of(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "CA certificates")? {
        roots.add(cert).map_err(|source| TlsError::Rejected {
            what: "CA certificates",
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// A server configuration presenting `identity`, offering `alpn` (most preferred first); with
/// `client_ca`, every client must present a certificate issued by one of its CAs.
pub fn server_config(
    identity: Arc<Identity>,
    alpn: &[&[u8]],
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let roots = Arc::new(roots_of(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(identity);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The operating system's roots, plus the CAs of a file if given.
    System {
        /// Extra CAs (PEM), e.g. an internal CA for service endpoints.
        extra: Option<&'a Path>,
    },
    /// Only the CAs of this file (the cluster's own CA).
    Only(&'a Path),
}

/// A client configuration trusting `trust`, offering `alpn`, and presenting `identity` when a
/// server asks for a client certificate.
pub fn client_config(
    trust: Trust<'_>,
    identity: Option<Arc<Identity>>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let roots = match trust {
        Trust::Only(path) => roots_of(path)?,
        Trust::System { extra } => {
            let mut roots = match extra {
                Some(path) => roots_of(path)?,
                None => RootCertStore::empty(),
            };
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 && extra.is_none() {
                warn!(
                    errors = ?native.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "no system CA certificates found: https:// endpoints cannot be verified \
                     unless a CA file is configured"
                );
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Whether a failed handshake was the peer's refusal (it sent an alert: it does not trust this
/// side's certificate) rather than this side's.
pub fn refused_by_peer(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

/// The name a server's certificate must match for `host` (a DNS name or an IP address; the
/// brackets of an IPv6 literal are removed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

#[cfg(test)]
mod tests;
