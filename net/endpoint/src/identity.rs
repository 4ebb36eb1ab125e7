//! Request identity, Restate's `v1` scheme: the kernel signs every request it makes to a service
//! endpoint with its ed25519 key so the endpoint can tell the kernel from anyone else.
//!
//! Every signed request carries two headers:
//!
//! ```text
//! x-restate-signature-scheme: v1
//! x-restate-jwt-v1: <header>.<claims>.<signature>     (base64url, no padding)
//!   header  {"typ":"JWT","alg":"EdDSA","kid":"publickeyv1_<base58 public key>"}
//!   claims  {"aud":"<request path>","exp":now+60,"iat":now,"nbf":now-60}
//! ```
//!
//! An endpoint configured with the public key (`publickeyv1_…`, the 32 raw key bytes in base58)
//! checks the signature, that `aud` is the path it was called on and that the token is within
//! `nbf..exp`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// Header naming the signature scheme of a request.
pub const SIGNATURE_SCHEME_HEADER: &str = "x-restate-signature-scheme";
/// The only scheme the kernel signs with.
pub const SIGNATURE_SCHEME_V1: &str = "v1";
/// Header carrying the scheme `v1` JWT.
pub const JWT_V1_HEADER: &str = "x-restate-jwt-v1";
/// Prefix of a serialized public key.
pub const PUBLIC_KEY_PREFIX: &str = "publickeyv1_";
/// How long a token stays valid after it is issued (and how far before it is already valid, to
/// absorb clock skew between the kernel and the endpoint).
pub const TOKEN_VALIDITY: Duration = Duration::from_secs(60);
/// How long a signed token is reused for further requests to the same path: signing costs tens
/// of microseconds per request, and a reused token still has most of its validity left.
pub const TOKEN_REUSE: Duration = Duration::from_secs(10);
/// Most paths whose tokens are kept for reuse (one per handler in practice); beyond it the cache
/// starts over.
const REUSED_PATHS: usize = 4096;

/// Why a key cannot be made, read, written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random source failed.
    #[error("cannot generate a signing key: {0}")]
    Random(String),
    /// The private key is not an ed25519 key in PKCS#8 PEM.
    #[error("not an ed25519 private key in PKCS#8 PEM: {0}")]
    Pkcs8(String),
    /// A public key does not start with `publickeyv1_`.
    #[error("a public key must start with `{PUBLIC_KEY_PREFIX}`")]
    MissingPrefix,
    /// A public key's body is not base58.
    #[error("a public key's body is not base58: {0}")]
    Base58(#[from] bs58::decode::Error),
    /// A public key does not decode to 32 bytes or is not a curve point.
    #[error("a public key must be 32 bytes of a valid ed25519 point (got {0} bytes)")]
    BadKey(usize),
}

/// The kernel's request signer: an ed25519 key and its serialized public key. Cheap to share
/// behind an `Arc`; its `Debug` shows only the public key.
pub struct RequestSigner {
    key: SigningKey,
    public: String,
    /// The newest token per path and the second it was issued at.
    issued: Mutex<HashMap<String, (u64, Arc<str>)>>,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("public_key", &self.public)
            .finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer with a fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_key(SigningKey::from_bytes(&seed)))
    }

    /// A signer from a PKCS#8 PEM private key (as written by [`RequestSigner::to_pkcs8_pem`] or
    /// `openssl genpkey -algorithm ed25519`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        Ok(Self::from_key(key))
    }

    /// The private key as PKCS#8 PEM, for the key file.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let pem = self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        Ok(pem.as_str().to_owned())
    }

    fn from_key(key: SigningKey) -> Self {
        let public = format_public_key(&key.verifying_key());
        RequestSigner {
            key,
            public,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// The public key as endpoints are configured with it: `publickeyv1_<base58>`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// A token for a request to `path` (its audience), issued at `now`.
    pub fn token(&self, path: &str, now: SystemTime) -> String {
        let issued = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let validity = TOKEN_VALIDITY.as_secs();
        let header = serde_json::json!({ "typ": "JWT", "alg": "EdDSA", "kid": self.public });
        let claims = serde_json::json!({
            "aud": path,
            "exp": issued.saturating_add(validity),
            "iat": issued,
            "nbf": issued.saturating_sub(validity),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The headers that sign a request to `path` now: `(name, value)` pairs.
    pub fn headers(&self, path: &str) -> [(&'static str, String); 2] {
        [
            (SIGNATURE_SCHEME_HEADER, SIGNATURE_SCHEME_V1.to_owned()),
            (
                JWT_V1_HEADER,
                self.reused_token(path, SystemTime::now()).to_string(),
            ),
        ]
    }

    /// A token for `path` valid at `now`: the one issued for it within the last
    /// [`TOKEN_REUSE`], or a newly signed one.
    pub fn reused_token(&self, path: &str, now: SystemTime) -> Arc<str> {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let fresh = |issued: u64| second >= issued && second - issued < TOKEN_REUSE.as_secs();
        // A poisoned lock only means another thread panicked mid-insert: the map is still valid.
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, token)) = issued.get(path)
            && fresh(*at)
        {
            return token.clone();
        }
        let token: Arc<str> = self.token(path, now).into();
        if issued.len() >= REUSED_PATHS {
            issued.clear();
        }
        issued.insert(path.to_owned(), (second, token.clone()));
        token
    }
}

/// Serializes a public key as `publickeyv1_<base58 of its 32 bytes>`.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!(
        "{PUBLIC_KEY_PREFIX}{}",
        bs58::encode(key.as_bytes()).into_string()
    )
}

/// Parses a `publickeyv1_…` public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let body = text
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or(KeyError::MissingPrefix)?;
    let bytes = bs58::decode(body).into_vec()?;
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::BadKey(bytes.len()))?;
    VerifyingKey::from_bytes(&array).map_err(|_| KeyError::BadKey(array.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signature;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn json_part(part: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part)?)?)
    }

    #[test]
    fn the_token_has_restates_header_and_claims() -> TestResult {
        let signer = RequestSigner::generate()?;
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = signer.token("/invoke/greeter/greet", now);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = json_part(parts[0])?;
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": "EdDSA", "kid": signer.public_key()})
        );
        let claims = json_part(parts[1])?;
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "/invoke/greeter/greet",
                "iat": 1_700_000_000u64,
                "nbf": 1_700_000_000u64 - 60,
                "exp": 1_700_000_000u64 + 60,
            })
        );
        Ok(())
    }

    #[test]
    fn the_signature_verifies_with_the_published_public_key() -> TestResult {
        let signer = RequestSigner::generate()?;
        let token = signer.token("/discover", SystemTime::now());
        let (input, signature) = token.rsplit_once('.').ok_or("no signature")?;
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature)?)?;
        let public = parse_public_key(signer.public_key())?;
        public.verify_strict(input.as_bytes(), &signature)?;

        // Another key, or a changed claim, does not verify.
        let other = parse_public_key(RequestSigner::generate()?.public_key())?;
        assert!(other.verify_strict(input.as_bytes(), &signature).is_err());
        let forged = token.replace(
            input.split('.').nth(1).ok_or("no claims")?,
            &URL_SAFE_NO_PAD.encode(r#"{"aud":"/invoke/a/b","exp":9999999999}"#),
        );
        let (forged_input, _) = forged.rsplit_once('.').ok_or("no signature")?;
        assert!(
            public
                .verify_strict(forged_input.as_bytes(), &signature)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn a_token_is_reused_per_path_within_the_reuse_window_only() -> TestResult {
        let signer = RequestSigner::generate()?;
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let first = signer.reused_token("/invoke/a/b", t0);
        assert_eq!(
            first,
            signer.reused_token("/invoke/a/b", t0 + Duration::from_secs(9))
        );
        // Another path gets its own audience.
        let other = signer.reused_token("/invoke/a/c", t0);
        assert_ne!(first, other);
        let claims = json_part(other.split('.').nth(1).ok_or("no claims")?)?;
        assert_eq!(claims["aud"], "/invoke/a/c");
        // Past the window (or with a clock that went back) a new token is signed, issued then.
        let later = signer.reused_token("/invoke/a/b", t0 + TOKEN_REUSE);
        assert_ne!(first, later);
        let claims = json_part(later.split('.').nth(1).ok_or("no claims")?)?;
        assert_eq!(claims["iat"], 1_700_000_010u64);
        let earlier = signer.reused_token("/invoke/a/b", t0);
        assert_ne!(later, earlier);
        // What is reused is still valid when handed out: at most TOKEN_REUSE old of 60 s.
        assert!(TOKEN_REUSE < TOKEN_VALIDITY / 2);
        Ok(())
    }

    #[test]
    fn headers_name_the_v1_scheme() -> TestResult {
        let signer = RequestSigner::generate()?;
        let [scheme, jwt] = signer.headers("/discover");
        assert_eq!(scheme, ("x-restate-signature-scheme", "v1".to_owned()));
        assert_eq!(jwt.0, "x-restate-jwt-v1");
        assert_eq!(jwt.1.split('.').count(), 3);
        Ok(())
    }

    #[test]
    fn the_private_key_round_trips_through_pem() -> TestResult {
        let signer = RequestSigner::generate()?;
        let pem = signer.to_pkcs8_pem()?;
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = RequestSigner::from_pkcs8_pem(&pem)?;
        assert_eq!(again.public_key(), signer.public_key());
        assert!(matches!(
            RequestSigner::from_pkcs8_pem("not a key"),
            Err(KeyError::Pkcs8(_))
        ));
        Ok(())
    }

    #[test]
    fn public_keys_parse_only_in_their_format() -> TestResult {
        let signer = RequestSigner::generate()?;
        let key = signer.public_key();
        assert!(key.starts_with("publickeyv1_"));
        assert_eq!(format_public_key(&parse_public_key(key)?), key);
        assert!(matches!(
            parse_public_key(&key["publickeyv1_".len()..]),
            Err(KeyError::MissingPrefix)
        ));
        assert!(matches!(
            parse_public_key("publickeyv1_0OIl"),
            Err(KeyError::Base58(_))
        ));
        assert!(matches!(
            parse_public_key("publickeyv1_abc"),
            Err(KeyError::BadKey(_))
        ));
        Ok(())
    }
}
