//! The node's TLS, built once at start from the configuration: a certificate for each listener
//! that names one, mutual TLS for the node transport, and the trust roots for `https://`
//! endpoints. A file that does not load fails the start (and `--check`), naming its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use holdfast_cluster::PeerTls;
use holdfast_config::{Config, TlsFiles};
use holdfast_tls::{ALPN_H2, ALPN_POSTGRES, ClientConfig, Identity, ServerConfig, TlsError, Trust};

/// Why the node's TLS cannot be set up: the keys concerned and rustls's or the file's reason.
#[derive(Debug, thiserror::Error)]
#[error("{keys}: {source}")]
pub struct Error {
    /// The configuration keys whose files failed, e.g. `ingress.tls_cert_file`/`tls_key_file`.
    keys: String,
    source: Box<TlsError>,
}

/// Every TLS configuration the node uses; `None` where the configuration asks for none.
#[derive(Default)]
pub struct NodeTls {
    /// The ingress listener's (actix adds the ALPN protocols it serves).
    pub ingress: Option<ServerConfig>,
    /// The admin listener's.
    pub admin: Option<ServerConfig>,
    /// The PostgreSQL-wire listener's.
    pub sql: Option<Arc<ServerConfig>>,
    /// The node transport's mutual TLS.
    pub peers: Option<PeerTls>,
    /// Trust for `https://` endpoints when `invocation.endpoint_tls_ca_file` adds a CA; `None`:
    /// the system's roots, loaded on first use.
    pub endpoints: Option<Arc<ClientConfig>>,
}

impl NodeTls {
    /// Loads every certificate, key and CA file the configuration names.
    pub fn load(config: &Config) -> Result<NodeTls, Error> {
        let listener = |section: &str, files: Option<&TlsFiles>, alpn: &[&[u8]]| {
            files
                .map(|files| {
                    let keys = || format!("`{section}.tls_cert_file`/`tls_key_file`");
                    identity(files, keys)
                        .and_then(|id| fail(keys, holdfast_tls::server_config(id, alpn, None)))
                })
                .transpose()
        };
        let peers = match &config.cluster.tls {
            None => None,
            Some(cluster) => {
                let keys = || "`cluster.tls_ca_file`/`tls_cert_file`/`tls_key_file`".to_owned();
                let own = identity(&cluster.identity, keys)?;
                let ca = cluster.ca_file.as_path();
                let server = fail(
                    keys,
                    holdfast_tls::server_config(own.clone(), &[ALPN_H2], Some(ca)),
                )?;
                let client = fail(
                    keys,
                    holdfast_tls::client_config(Trust::Only(ca), Some(own), &[ALPN_H2]),
                )?;
                Some(PeerTls {
                    server: Arc::new(server),
                    client: Arc::new(client),
                })
            }
        };
        let endpoints = config
            .invocation
            .endpoint_tls_ca_file
            .as_deref()
            .map(|ca: &Path| {
                let keys = || "`invocation.endpoint_tls_ca_file`".to_owned();
                let trust = Trust::System { extra: Some(ca) };
                fail(keys, holdfast_tls::client_config(trust, None, &[ALPN_H2])).map(Arc::new)
            })
            .transpose()?;
        Ok(NodeTls {
            ingress: listener("ingress", config.ingress.tls.as_ref(), &[])?,
            admin: listener("admin", config.admin.tls.as_ref(), &[])?,
            sql: listener("sql", config.sql.tls.as_ref(), &[ALPN_POSTGRES])?.map(Arc::new),
            peers,
            endpoints,
        })
    }
}

fn identity(files: &TlsFiles, keys: impl Fn() -> String) -> Result<Arc<Identity>, Error> {
    fail(keys, Identity::load(&files.cert_file, &files.key_file))
}

fn fail<T>(keys: impl Fn() -> String, result: Result<T, TlsError>) -> Result<T, Error> {
    result.map_err(|source| Error {
        keys: keys(),
        source: Box::new(source),
    })
}

/// Why `holdfast tls issue` failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The name would leave the directory.
    #[error("`{0}` is not a plain file name stem")]
    Name(String),
    /// The CA's key does not load, or a certificate cannot be made.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The common name of the authority `holdfast tls issue` creates.
const AUTHORITY_NAME: &str = "Holdfast cluster CA";

/// Issues `<dir>/<name>.pem` and `<dir>/<name>-key.pem` for `hosts`, signed by the authority of
/// `dir` (created on first use); keys are written 0600. Prints what it wrote.
pub fn issue(dir: &Path, name: &str, hosts: &[String]) -> Result<(), IssueError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(plain) || name == "ca" {
        return Err(IssueError::Name(name.to_owned()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IssueError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let authority = if ca_key.exists() {
        let key = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        holdfast_tls::issue::Authority::from_key_pem(AUTHORITY_NAME, &key)?
    } else {
        let authority = holdfast_tls::issue::Authority::generate(AUTHORITY_NAME)?;
        let key = authority.key_pem();
        holdfast_types::files::write_private_atomically(&ca_key, key.as_bytes())
            .map_err(io(&ca_key))?;
        std::fs::write(&ca_cert, authority.cert_pem()).map_err(io(&ca_cert))?;
        println!("created certificate authority {}", ca_cert.display());
        authority
    };
    let issued = authority.issue(hosts)?;
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    holdfast_types::files::write_private_atomically(&key, issued.key_pem.as_bytes())
        .map_err(io(&key))?;
    std::fs::write(&cert, issued.cert_pem).map_err(io(&cert))?;
    println!(
        "issued {} and {} for {}",
        cert.display(),
        key.display(),
        hosts.join(", ")
    );
    Ok(())
}
