//! The node's request-signing key: loaded from `node.signing_key_file` or
//! `<data_dir>/signing-key`, and created there (mode 0600) when absent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use holdfast_config::Config;
use holdfast_endpoint::{KeyError, RequestSigner};

use crate::datadir;

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file cannot be read or created.
    #[error("cannot use the signing key {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The key file holds no usable key, or no key could be generated.
    #[error("signing key {}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
}

/// The key file this configuration uses: `node.signing_key_file`, else `<data_dir>/signing-key`.
pub fn key_file(config: &Config) -> PathBuf {
    match &config.node.signing_key_file {
        Some(file) => file.clone(),
        None => datadir::signing_key_path(&config.node.data_dir),
    }
}

/// The node's signer. A configured `node.signing_key_file` must exist; the data dir's default
/// file is created (with a fresh key, readable by the owner only) on first use.
pub fn load(config: &Config) -> Result<RequestSigner, Error> {
    let path = key_file(config);
    if config.node.signing_key_file.is_some() {
        read(&path)
    } else {
        load_or_create(&path)
    }
}

/// Reads the key at `path`, or creates it with a fresh key if there is none.
pub fn load_or_create(path: &Path) -> Result<RequestSigner, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let key = |source| Error::Key {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        return read(path);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let signer = RequestSigner::generate().map_err(key)?;
    let pem = signer.to_pkcs8_pem().map_err(key)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(pem.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), public_key = signer.public_key(), "created the node's request-signing key");
            Ok(signer)
        }
        // Another process created it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io(e)),
    }
}

/// Reads the PKCS#8 PEM key at `path`, warning when others may read it.
fn read(path: &Path) -> Result<RequestSigner, Error> {
    let pem = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the signing key is readable by other users; chmod 600 it");
        }
    }
    RequestSigner::from_pkcs8_pem(&pem).map_err(|source| Error::Key {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A fresh directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> std::io::Result<Self> {
            let dir = std::env::temp_dir().join(format!(
                "holdfast-keys-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(TempDir(dir))
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_missing_key_is_created_owner_only_and_read_back() -> TestResult {
        let dir = TempDir::new("create")?;
        let path = dir.path().join("data").join("signing-key");
        let created = load_or_create(&path)?;
        #[cfg(unix)]
        {
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create(&path)?;
        assert_eq!(again.public_key(), created.public_key());
        Ok(())
    }

    #[test]
    fn a_corrupt_key_is_refused_naming_the_file() -> TestResult {
        let dir = TempDir::new("corrupt")?;
        let path = dir.path().join("signing-key");
        std::fs::write(&path, "garbage")?;
        let err = load_or_create(&path)
            .err()
            .ok_or("a corrupt key was accepted")?;
        assert!(matches!(err, Error::Key { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        Ok(())
    }

    #[test]
    fn a_configured_key_file_must_exist() -> TestResult {
        let dir = TempDir::new("configured")?;
        let mut config = Config::load_from(None, &Default::default())?;
        config.node.data_dir = dir.path().join("data");
        config.node.signing_key_file = Some(dir.path().join("missing.pem"));
        assert!(matches!(load(&config), Err(Error::Io { .. })));
        config.node.signing_key_file = None;
        let signer = load(&config)?;
        assert_eq!(
            load_or_create(&dir.path().join("data").join("signing-key"))?.public_key(),
            signer.public_key()
        );
        Ok(())
    }
}
