//! Who may call an HTTP listener: bearer tokens ([`BearerAuth`], shared with the admin API) and
//! the web origins that get CORS headers ([`Cors`]).
//!
//! Tokens are compared in constant time: each configured token and the presented one are
//! hashed (SHA-256, so lengths do not leak either) and the digests compared byte by byte without
//! an early exit; every configured token is tried, so several are accepted at once while
//! clients rotate from one to the next. A token file is re-read when it changes (checked at most
//! once a second, on requests), so tokens rotate without a restart.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How often, at most, a token file is checked for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// Reads a token file: its tokens, or why it is not usable.
pub type ReadTokens = fn(&Path) -> Result<Vec<String>, String>;

/// The bearer tokens a listener accepts; empty: every request is let in.
#[derive(Clone, Default)]
pub struct BearerAuth {
    /// SHA-256 of each token given inline.
    digests: Vec<[u8; 32]>,
    /// A token file whose current tokens are accepted too.
    file: Option<Arc<TokenFile>>,
}

/// A token file and the digests of the tokens it held when last read.
struct TokenFile {
    path: PathBuf,
    read: ReadTokens,
    state: Mutex<FileState>,
}

struct FileState {
    digests: Arc<Vec<[u8; 32]>>,
    stamp: (Option<SystemTime>, u64),
    checked: Instant,
}

fn stamp(path: &Path) -> (Option<SystemTime>, u64) {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

impl TokenFile {
    /// The file's tokens, re-read first if it changed since the last check; a file that no
    /// longer reads keeps its previous tokens (and says so in the log).
    fn digests(&self) -> Arc<Vec<[u8; 32]>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamp(&self.path);
            if now != state.stamp {
                state.stamp = now;
                match (self.read)(&self.path) {
                    Ok(tokens) => {
                        tracing::info!(file = %self.path.display(), tokens = tokens.len(), "token file reloaded");
                        state.digests =
                            Arc::new(tokens.iter().map(|t| digest(t.as_bytes())).collect());
                    }
                    Err(reason) => tracing::warn!(
                        file = %self.path.display(),
                        %reason,
                        "the changed token file does not read; its previous tokens stay accepted"
                    ),
                }
            }
        }
        state.digests.clone()
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerAuth({} token(s)", self.digests.len())?;
        if let Some(file) = &self.file {
            write!(f, " + {}", file.path.display())?;
        }
        f.write_str(")")
    }
}

impl BearerAuth {
    /// Accepts any of `tokens`; none at all turns authentication off.
    pub fn new<T: AsRef<str>>(tokens: impl IntoIterator<Item = T>) -> BearerAuth {
        BearerAuth {
            digests: tokens
                .into_iter()
                .map(|t| digest(t.as_ref().as_bytes()))
                .collect(),
            file: None,
        }
    }

    /// Also accepts the tokens of `path` (`initial`: what it holds now), re-read with `read`
    /// whenever the file changes.
    pub fn with_token_file<T: AsRef<str>>(
        mut self,
        path: PathBuf,
        initial: impl IntoIterator<Item = T>,
        read: ReadTokens,
    ) -> BearerAuth {
        let digests = initial
            .into_iter()
            .map(|t| digest(t.as_ref().as_bytes()))
            .collect();
        self.file = Some(Arc::new(TokenFile {
            state: Mutex::new(FileState {
                digests: Arc::new(digests),
                stamp: stamp(&path),
                checked: Instant::now(),
            }),
            path,
            read,
        }));
        self
    }

    /// Whether requests need a token.
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty() || self.file.is_some()
    }

    /// Whether `headers` carry `Authorization: Bearer <one of the tokens>` (always true when
    /// authentication is off).
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        let presented = digest(presented.as_bytes());
        let from_file = self
            .file
            .as_ref()
            .map(|file| file.digests())
            .unwrap_or_default();
        // No early exit: every configured token is compared in full.
        self.digests
            .iter()
            .chain(from_file.iter())
            .fold(false, |found, d| found | equal(d, &presented))
    }
}

/// The credentials of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two digests.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// `{"code": "unauthorized", "message": …}`, the 401 body of both listeners.
#[derive(Serialize)]
struct Unauthorized<'a> {
    code: &'static str,
    message: &'a str,
}

/// The answer to a request without a valid token: 401, `WWW-Authenticate: Bearer`, JSON body.
pub fn unauthorized(headers: &HeaderMap) -> HttpResponse {
    let message = if headers.contains_key(header::AUTHORIZATION) {
        "the bearer token is not accepted"
    } else {
        "this API needs `Authorization: Bearer <token>`"
    };
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(Unauthorized {
            code: "unauthorized",
            message,
        })
}

/// The web origins allowed to call the ingress from a browser; empty: none.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// Origins matched exactly (`https://app.example.com`).
    origins: Vec<String>,
    /// `*` was configured: any origin, answered with `Access-Control-Allow-Origin: *`.
    any: bool,
}

impl Cors {
    /// Allows exactly `origins` (`*` allows every origin).
    pub fn new<T: Into<String>>(origins: impl IntoIterator<Item = T>) -> Cors {
        let mut cors = Cors::default();
        for origin in origins {
            let origin = origin.into();
            if origin == "*" {
                cors.any = true;
            } else {
                cors.origins.push(origin);
            }
        }
        cors
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    pub fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|allowed| allowed == text)
            .then(|| origin.clone())
    }

    /// Adds the CORS headers of an allowed origin to a response.
    pub fn decorate(&self, headers: &mut HeaderMap, allowed: HeaderValue) {
        if !self.any {
            headers.insert(header::VARY, HeaderValue::from_static("origin"));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-restate-id, idempotency-expires, x-restate-error-source"),
        );
    }

    /// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// from an allowed origin; `None` for anything else, which is then served as usual.
    pub fn preflight(
        &self,
        method: &actix_web::http::Method,
        headers: &HeaderMap,
    ) -> Option<HttpResponse> {
        if method != actix_web::http::Method::OPTIONS {
            return None;
        }
        let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let allowed = self.allow_origin(headers.get(header::ORIGIN))?;
        let mut response = HttpResponse::NoContent();
        response.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, requested.clone()));
        if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
        }
        response.insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        let mut response = response.finish();
        self.decorate(response.headers_mut(), allowed);
        response.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn any_configured_token_is_accepted() {
        let auth = BearerAuth::new(["old", "new"]);
        assert!(auth.permits(&with_authorization("Bearer old")));
        assert!(auth.permits(&with_authorization("bearer new")));
        assert!(!auth.permits(&with_authorization("Bearer other")));
        assert!(!auth.permits(&with_authorization("Bearer ol")));
        assert!(!auth.permits(&with_authorization("Basic b2xk")));
        assert!(!auth.permits(&with_authorization("Bearer ")));
        assert!(!auth.permits(&HeaderMap::new()));
        assert!(BearerAuth::new(Vec::<String>::new()).permits(&HeaderMap::new()));
        assert!(!format!("{auth:?}").contains("old"));
    }

    #[test]
    fn a_changed_token_file_replaces_its_tokens_and_a_broken_one_keeps_them() {
        fn read(path: &Path) -> Result<Vec<String>, String> {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            let tokens: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            if tokens.is_empty() {
                return Err("no tokens".to_owned());
            }
            Ok(tokens)
        }
        let dir = std::env::temp_dir().join(format!("holdfast-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tokens");
        std::fs::write(&path, "first").expect("write");
        let auth = BearerAuth::new(["inline"]).with_token_file(path.clone(), ["first"], read);
        assert!(auth.permits(&with_authorization("Bearer first")));
        std::fs::write(&path, "second third").expect("write");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(auth.permits(&with_authorization("Bearer second")));
        assert!(!auth.permits(&with_authorization("Bearer first")));
        assert!(auth.permits(&with_authorization("Bearer inline")));
        std::fs::write(&path, "").expect("write");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(auth.permits(&with_authorization("Bearer third")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let cors = Cors::new(["https://app.example"]);
        let origin = |o: &'static str| HeaderValue::from_static(o);
        assert_eq!(
            cors.allow_origin(Some(&origin("https://app.example"))),
            Some(origin("https://app.example"))
        );
        assert_eq!(
            cors.allow_origin(Some(&origin("https://evil.example"))),
            None
        );
        assert_eq!(cors.allow_origin(None), None);
        assert_eq!(
            Cors::default().allow_origin(Some(&origin("http://x"))),
            None
        );
        assert_eq!(
            Cors::new(["*"]).allow_origin(Some(&origin("http://x"))),
            Some(origin("*"))
        );
    }
}
