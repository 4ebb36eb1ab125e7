//! A small blocking HTTP/1.1 client of a node's admin API, for the command line: one request per
//! connection, JSON bodies, `Authorization: Bearer <token>` when given a token (`--token` or
//! `HOLDFAST_ADMIN_TOKEN`), HTTPS to an admin API with a certificate (trusting `--ca-file` or the
//! system's roots). Non-2xx answers become [`AdminError`]s whose messages say what went wrong.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting may take before the admin API counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an answer may take (a long query, a slow registration).
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Where an admin API is: `http://host:port[/prefix]` or `https://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    /// Whether it speaks HTTPS.
    pub https: bool,
    /// Its host name or IP address (without brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// A path prefix every request path is appended to (empty, or `/…` without a trailing `/`).
    pub base: String,
}

/// Why a text is not an admin URL.
#[derive(Debug, thiserror::Error)]
#[error("bad admin URL '{text}': {reason}")]
pub struct BadUrl {
    text: String,
    reason: &'static str,
}

impl AdminUrl {
    /// The URL of an admin API listening on `address` (an unspecified address, as a listener
    /// bound to every interface has, is reached on loopback).
    pub fn of(address: SocketAddr, https: bool) -> Self {
        let ip = match address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            https,
            host: ip.to_string(),
            port: address.port(),
            base: String::new(),
        }
    }

    /// `host:port` as a `Host` header and a URL write it (IPv6 in brackets).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for AdminUrl {
    type Err = BadUrl;

    fn from_str(text: &str) -> Result<Self, BadUrl> {
        let bad = |reason| BadUrl {
            text: text.to_owned(),
            reason,
        };
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("expected http:// or https://"));
        };
        if rest.contains(['?', '#', '@']) || rest.chars().any(|c| c.is_whitespace()) {
            return Err(bad("expected scheme://host[:port][/path] only"));
        }
        let (authority, base) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad("bad port"))?,
            None if https => 443,
            None => 80,
        };
        Ok(Self {
            https,
            host: host.to_owned(),
            port,
            base: base.trim_end_matches('/').to_owned(),
        })
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base)
    }
}

/// What went wrong talking to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing answered at the URL.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why, in a few words (`connection refused`).
        reason: String,
    },
    /// The connection broke, or TLS could not be set up.
    #[error("cannot talk to the admin API at {url}: {reason}")]
    Transport {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// 401: a token is missing or refused.
    #[error("the admin API at {url} refused the request (401): {}", if *.had_token {
        "the token is not accepted"
    } else {
        "it needs a token; pass --token or set HOLDFAST_ADMIN_TOKEN"
    })]
    Unauthorized {
        /// The URL tried.
        url: String,
        /// Whether a token was sent.
        had_token: bool,
    },
    /// Any other non-2xx answer; the message is the body's `message`, or the body itself.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The body's stable `code`, if it had one.
        code: Option<String>,
        /// What the admin API said, on one line.
        message: String,
    },
    /// The token could not travel in a header.
    #[error("the admin token must be visible ASCII characters without spaces")]
    BadToken,
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: u16,
    /// Its header lines, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: String,
}

impl Response {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where the admin API is and how to talk to it.
pub struct Admin<'a> {
    /// Its URL.
    pub url: AdminUrl,
    /// The bearer token to send, if any.
    pub token: Option<&'a str>,
    /// For HTTPS: trust only these CA certificates (`None`: the system's roots).
    pub ca_file: Option<&'a Path>,
}

/// A byte stream to the admin API: TCP, or TLS over it.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

impl Admin<'_> {
    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Response, AdminError> {
        self.send("GET", path, None, "application/json")
    }

    /// `method path` with `body` as JSON.
    pub fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Response, AdminError> {
        let text = serde_json::to_string(body).map_err(|e| AdminError::Transport {
            url: self.url.to_string(),
            reason: e.to_string(),
        })?;
        self.send(method, path, Some(&text), "application/json")
    }

    /// `method path` without a body.
    pub fn send_empty(&self, method: &str, path: &str) -> Result<Response, AdminError> {
        self.send(method, path, None, "application/json")
    }

    /// One request: the answer if its status is 2xx, the error otherwise.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        accept: &str,
    ) -> Result<Response, AdminError> {
        let authorization = authorization(self.token)?;
        let url = self.url.to_string();
        let transport = |reason: String| AdminError::Transport {
            url: url.clone(),
            reason,
        };
        let mut stream = self.connect()?;
        let content = match body {
            Some(body) => format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ),
            None => "content-length: 0\r\n".to_owned(),
        };
        write!(
            stream,
            "{method} {}{path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: {accept}\r\n\
             {authorization}{content}\r\n{}",
            self.url.base,
            self.url.authority(),
            body.unwrap_or_default()
        )
        .and_then(|()| stream.flush())
        .map_err(|e| transport(e.to_string()))?;
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            // A TLS peer that closes without close_notify still sent a whole response.
            if e.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty() {
                return Err(transport(e.to_string()));
            }
        }
        let response = parse_response(&raw).ok_or_else(|| transport("no HTTP response".into()))?;
        match response.status {
            200..=299 => Ok(response),
            401 => Err(AdminError::Unauthorized {
                url,
                had_token: !authorization.is_empty(),
            }),
            status => Err(api_error(status, &response.body)),
        }
    }

    /// Connects to the admin API, with TLS when it speaks HTTPS.
    fn connect(&self) -> Result<Box<dyn Wire>, AdminError> {
        let url = &self.url;
        let unreachable = |reason: String| AdminError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let addresses = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", url.host)))?;
        let mut last = "no address".to_owned();
        let mut tcp = None;
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = io_reason(&e),
            }
        }
        let tcp = tcp.ok_or_else(|| unreachable(last))?;
        let transport = |reason: String| AdminError::Transport {
            url: url.to_string(),
            reason,
        };
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| transport(e.to_string()))?;
        if !url.https {
            return Ok(Box::new(tcp));
        }
        let trust = match self.ca_file {
            Some(ca) => holdfast_tls::Trust::Only(ca),
            None => holdfast_tls::Trust::System { extra: None },
        };
        let config = holdfast_tls::client_config(trust, None, &[holdfast_tls::ALPN_HTTP1])
            .map_err(|e| transport(e.to_string()))?;
        let name = match url.host.parse::<IpAddr>() {
            Ok(ip) => holdfast_tls::ServerName::from(ip),
            Err(_) => holdfast_tls::ServerName::try_from(url.host.clone())
                .map_err(|e| transport(format!("bad TLS server name: {e}")))?,
        };
        let connection = holdfast_tls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| transport(format!("cannot start TLS: {e}")))?;
        Ok(Box::new(holdfast_tls::StreamOwned::new(connection, tcp)))
    }
}

/// An I/O error in a few lower-case words (`connection refused`).
fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".to_owned(),
        _ => error.to_string(),
    }
}

/// The error a non-2xx answer stands for: its JSON `{code, message}`, or its body as text.
fn api_error(status: u16, body: &str) -> AdminError {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v[name].as_str())
            .map(str::to_owned)
    };
    let message = field("message")
        .unwrap_or_else(|| format!("the admin API answered {status}: {}", body.trim()));
    AdminError::Api {
        status,
        code: field("code"),
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Status, headers and (de-chunked) body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// The `authorization` header line for `token` (empty without one); a token that could not
/// travel in a header is refused before anything is sent.
fn authorization(token: Option<&str>) -> Result<String, AdminError> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(String::new());
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::BadToken);
    }
    Ok(format!("authorization: Bearer {token}\r\n"))
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{AdminError, AdminUrl, api_error, authorization, dechunk, parse_response};

    #[test]
    fn a_token_becomes_a_bearer_header() {
        assert_eq!(authorization(None).ok(), Some(String::new()));
        assert_eq!(authorization(Some("")).ok(), Some(String::new()));
        assert_eq!(
            authorization(Some("s3cret")).ok(),
            Some("authorization: Bearer s3cret\r\n".to_owned())
        );
        assert!(authorization(Some("two words")).is_err());
        assert!(authorization(Some("a\r\nx-injected: 1")).is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
        let response = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .expect("a response");
        assert_eq!((response.status, response.body.as_str()), (200, "ok"));
        assert_eq!(response.header("x-a"), Some("b"));
    }

    #[test]
    fn admin_urls_parse() {
        let url = |text: &str| text.parse::<AdminUrl>().map(|u| u.to_string()).ok();
        assert_eq!(
            url("http://127.0.0.1:9070"),
            Some("http://127.0.0.1:9070".into())
        );
        assert_eq!(
            url("https://admin.example/holdfast/"),
            Some("https://admin.example:443/holdfast".into())
        );
        assert_eq!(url("http://[::1]:19070"), Some("http://[::1]:19070".into()));
        for bad in [
            "127.0.0.1:9070",
            "ftp://x",
            "http://:9070",
            "http://h:port",
            "http://h/?q",
        ] {
            assert_eq!(url(bad), None, "{bad}");
        }
        let any = AdminUrl::of(([0, 0, 0, 0], 9070).into(), true);
        assert_eq!(any.to_string(), "https://127.0.0.1:9070");
    }

    #[test]
    fn error_bodies_become_one_line_messages() {
        let error = api_error(
            400,
            r#"{"code":"invalid_query","message":"SQL error:\n  bad"}"#,
        );
        assert!(
            matches!(&error, AdminError::Api { status: 400, code: Some(code), .. } if code == "invalid_query")
        );
        assert_eq!(error.to_string(), "SQL error: bad");
        assert_eq!(
            api_error(502, "Bad Gateway\n").to_string(),
            "the admin API answered 502: Bad Gateway"
        );
    }
}
