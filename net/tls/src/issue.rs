//! Issuing certificates for a cluster or a test: a certificate authority and certificates signed
//! by it, each usable both as a server and as a client (mutual TLS between nodes).
//!
//! The authority is identified by its name and key alone, so it can be rebuilt from its key file
//! to issue more certificates later. Its common name ends in a fingerprint of its key, so two
//! authorities never share a name and a certificate of the wrong one is reported as an unknown
//! issuer, not as a bad signature.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use sha2::{Digest, Sha256};

use crate::TlsError;

/// A certificate authority that can issue certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (leaf only: the CA's certificate is distributed separately).
    pub cert_pem: String,
    /// Its private key, PKCS#8.
    pub key_pem: String,
}

fn authority_params(name: &str, key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    let digest = Sha256::digest(key.public_key_raw());
    let fingerprint: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    subject.push(DnType::CommonName, format!("{name} {fingerprint}"));
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn issue_error(e: rcgen::Error) -> TlsError {
    TlsError::Issue(e.to_string())
}

impl Authority {
    /// A new authority named `name` with a fresh key.
    pub fn generate(name: &str) -> Result<Authority, TlsError> {
        Self::with_key(name, KeyPair::generate().map_err(issue_error)?)
    }

    /// The authority named `name` whose key is `key_pem` (as written by [`Authority::key_pem`]).
    pub fn from_key_pem(name: &str, key_pem: &str) -> Result<Authority, TlsError> {
        Self::with_key(name, KeyPair::from_pem(key_pem).map_err(issue_error)?)
    }

    fn with_key(name: &str, key: KeyPair) -> Result<Authority, TlsError> {
        let params = authority_params(name, &key);
        let cert_pem = params.self_signed(&key).map_err(issue_error)?.pem();
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem,
        })
    }

    /// The authority's own certificate: what peers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The authority's private key (PKCS#8 PEM): keep it secret.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate for `hosts` (DNS names or IP addresses, the first also its common name),
    /// valid for both server and client authentication.
    pub fn issue(&self, hosts: &[String]) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(issue_error)?;
        if let Some(first) = hosts.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(issue_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
