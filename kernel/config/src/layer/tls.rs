//! The TLS keys of every section: a listener's certificate and key (`[ingress]`, `[admin]`,
//! `[sql]`), the cluster transport's CA, certificate and key (`[cluster]`), and the extra CA
//! service endpoints are verified with (`[invocation] endpoint_tls_ca_file`). Kept apart so the
//! layer reader only hands them over and the pairing rules live in one place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::Value;

use super::{Layer, Sourced, path};
use crate::error::Error;
use crate::{ClusterTls, TlsFiles};

/// The keys each section may hold.
const KEYS: &[(&str, &[&str])] = &[
    ("ingress", &["tls_cert_file", "tls_key_file"]),
    ("admin", &["tls_cert_file", "tls_key_file"]),
    ("sql", &["tls_cert_file", "tls_key_file"]),
    ("cluster", &["tls_ca_file", "tls_cert_file", "tls_key_file"]),
    ("invocation", &["endpoint_tls_ca_file"]),
];

/// The TLS keys one layer sets, by dotted key.
#[derive(Debug, Default)]
pub(crate) struct TlsKeys(BTreeMap<String, Sourced<PathBuf>>);

/// The merged TLS settings of every section.
#[derive(Debug, Default)]
pub(crate) struct TlsValues {
    pub ingress: Option<TlsFiles>,
    pub admin: Option<TlsFiles>,
    pub sql: Option<TlsFiles>,
    pub cluster: Option<ClusterTls>,
    pub endpoint_ca_file: Option<PathBuf>,
}

impl TlsKeys {
    /// Lays `upper` over `self`, key by key.
    pub(crate) fn overlay(mut self, upper: TlsKeys) -> TlsKeys {
        self.0.extend(upper.0);
        self
    }

    /// Reads `<section>.<name>` if it is one of the TLS keys (`false` otherwise).
    pub(crate) fn read(
        &mut self,
        section: &str,
        name: &str,
        value: &Value,
        layer: &Layer<'_>,
    ) -> Result<bool, Error> {
        let known = KEYS
            .iter()
            .any(|(s, names)| *s == section && names.contains(&name));
        if !known {
            return Ok(false);
        }
        let key = format!("{section}.{name}");
        let file = path(value, &key, layer)?;
        self.0.insert(key, file);
        Ok(true)
    }

    /// The merged settings: a certificate needs its key (and the cluster's both need the CA),
    /// and every named file must be readable now, so a config that passes `--check` starts.
    pub(crate) fn finish(mut self) -> Result<TlsValues, Error> {
        for (key, file) in &self.0 {
            readable(file, key)?;
        }
        Ok(TlsValues {
            ingress: self.listener("ingress")?,
            admin: self.listener("admin")?,
            sql: self.listener("sql")?,
            cluster: self.cluster()?,
            endpoint_ca_file: self.take("invocation.endpoint_tls_ca_file"),
        })
    }

    fn take(&mut self, key: &str) -> Option<PathBuf> {
        self.0.remove(key).map(|f| f.value)
    }

    fn listener(&mut self, section: &str) -> Result<Option<TlsFiles>, Error> {
        let cert_key = format!("{section}.tls_cert_file");
        let key_key = format!("{section}.tls_key_file");
        let pair = together(&self.0, &[&cert_key, &key_key])?;
        if !pair {
            return Ok(None);
        }
        Ok(Some(TlsFiles {
            cert_file: self.take(&cert_key).unwrap_or_default(),
            key_file: self.take(&key_key).unwrap_or_default(),
        }))
    }

    fn cluster(&mut self) -> Result<Option<ClusterTls>, Error> {
        let keys = [
            "cluster.tls_ca_file",
            "cluster.tls_cert_file",
            "cluster.tls_key_file",
        ];
        if !together(&self.0, &keys)? {
            return Ok(None);
        }
        Ok(Some(ClusterTls {
            ca_file: self.take(keys[0]).unwrap_or_default(),
            identity: TlsFiles {
                cert_file: self.take(keys[1]).unwrap_or_default(),
                key_file: self.take(keys[2]).unwrap_or_default(),
            },
        }))
    }
}

/// Whether all of `keys` are set (`false` if none is); some but not all is an error on a key
/// that is set, naming the ones missing.
fn together(set: &BTreeMap<String, Sourced<PathBuf>>, keys: &[&str]) -> Result<bool, Error> {
    let Some((key, file)) = keys.iter().find_map(|k| set.get(*k).map(|f| (*k, f))) else {
        return Ok(false);
    };
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !set.contains_key(*k))
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    Err(Error::InvalidValue {
        origin: file.origin.clone(),
        key: key.to_owned(),
        value: format!("{:?}", file.value.display().to_string()),
        expected: format!("to be set together with `{}`", missing.join("` and `")),
    })
}

/// A file named by a TLS key must be a readable file.
fn readable(file: &Sourced<PathBuf>, key: &str) -> Result<(), Error> {
    let result = std::fs::File::open(&file.value).and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(())
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    });
    result.map_err(|e| Error::InvalidValue {
        origin: file.origin.clone(),
        key: key.to_owned(),
        value: format!("{:?}", file.value.display().to_string()),
        expected: format!("a readable PEM file ({e})"),
    })
}
