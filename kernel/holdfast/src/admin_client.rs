//! The command line's client of a node's admin API: `holdfast sql "…"` (`POST /query`, printed
//! as an aligned table, the way psql does) and `holdfast cluster status` (`GET /cluster`).
//! Both send `Authorization: Bearer <token>` when given a token (`--token` or
//! `HOLDFAST_ADMIN_TOKEN`), for a node with `admin.auth_tokens` set, and speak HTTPS to an admin
//! API with a certificate (trusting `--ca-file` or the system's roots).

use anyhow::{Context as _, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where the admin API is and how to talk to it.
pub struct Admin<'a> {
    /// Its address.
    pub address: SocketAddr,
    /// The bearer token to send, if any.
    pub token: Option<&'a str>,
    /// HTTPS, trusting these CA certificates (`None`: the system's roots); `None` outside:
    /// plain HTTP.
    pub https: Option<Option<&'a Path>>,
}

/// Sends `query` to the admin API and returns the rendered table.
pub fn sql(admin: &Admin<'_>, query: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({ "query": query }).to_string();
    request(admin, "POST", "/query", "text/plain", &body)
}

/// `GET /cluster` of the admin API, rendered as tables (or the JSON itself).
pub fn cluster_status(admin: &Admin<'_>, json: bool) -> anyhow::Result<String> {
    let body = request(admin, "GET", "/cluster", "application/json", "")?;
    if json {
        return Ok(body + "\n");
    }
    let view: serde_json::Value =
        serde_json::from_str(&body).context("the admin API sent malformed JSON")?;
    Ok(render_cluster(&view))
}

/// The cluster view as two aligned tables: members, then partitions with their replicas.
fn render_cluster(view: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let empty = Vec::new();
    let mut out = format!(
        "cluster {} as seen from node {}\n\n",
        text(&view["cluster"]),
        text(&view["node"])
    );
    out.push_str(&format!(
        "{:<6} {:<24} {}\n",
        "NODE", "ADDRESS", "CONNECTED"
    ));
    for node in view["nodes"].as_array().unwrap_or(&empty) {
        let alive = if node["alive"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        out.push_str(&format!(
            "{:<6} {:<24} {alive}\n",
            text(&node["id"]),
            text(&node["address"])
        ));
    }
    out.push_str(&format!(
        "\n{:<10} {:<7} {:<6} {}\n",
        "PARTITION", "LEADER", "TERM", "REPLICAS (node: applied index, lag)"
    ));
    for partition in view["partitions"].as_array().unwrap_or(&empty) {
        let replicas: Vec<String> = partition["replicas"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|r| {
                format!(
                    "{}: {}, {}",
                    text(&r["node"]),
                    text(&r["applied_index"]),
                    text(&r["lag"])
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<10} {:<7} {:<6} {}\n",
            text(&partition["partition"]),
            text(&partition["leader"]),
            text(&partition["term"]),
            replicas.join("; ")
        ));
    }
    out
}

/// One request to the admin API; the body of a 200 answer, or the error's message.
/// A byte stream to the admin API: TCP, or TLS over it.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// Connects to the admin API, with TLS when it speaks HTTPS.
fn connect(admin: &Admin<'_>) -> anyhow::Result<Box<dyn Wire>> {
    let address = admin.address;
    let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin API at {address}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(600)))?;
    let Some(ca) = admin.https else {
        return Ok(Box::new(tcp));
    };
    let trust = match ca {
        Some(ca) => holdfast_tls::Trust::Only(ca),
        None => holdfast_tls::Trust::System { extra: None },
    };
    let config = holdfast_tls::client_config(trust, None, &[holdfast_tls::ALPN_HTTP1])?;
    let name = holdfast_tls::ServerName::from(address.ip());
    let connection = holdfast_tls::ClientConnection::new(Arc::new(config), name)
        .context("cannot start TLS with the admin API")?;
    Ok(Box::new(holdfast_tls::StreamOwned::new(connection, tcp)))
}

fn request(
    admin: &Admin<'_>,
    method: &str,
    path: &str,
    accept: &str,
    body: &str,
) -> anyhow::Result<String> {
    let token = admin.token;
    let authorization = authorization(token)?;
    let address = admin.address;
    let mut stream = connect(admin)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\naccept: {accept}\r\n\
         content-type: application/json\r\n{authorization}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .with_context(|| format!("cannot send to the admin API at {address}"))?;
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        // A TLS peer that closes without close_notify still sent a whole response.
        if e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty() {
            return Err(e).with_context(|| format!("cannot read from the admin API at {address}"));
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("the admin API sent no HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the admin API sent a malformed status line")?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    if status == 401 {
        bail!(
            "the admin API at {address} refused the request (401): {}",
            if token.is_some() {
                "the token is not accepted"
            } else {
                "it needs a token; pass --token or set HOLDFAST_ADMIN_TOKEN"
            }
        );
    }
    if status != 200 {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("{message}");
    }
    Ok(body)
}

/// The `authorization` header line for `token` (empty without one); a token that could not
/// travel in a header is refused before anything is sent.
fn authorization(token: Option<&str>) -> anyhow::Result<String> {
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(String::new());
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the admin token must be visible ASCII characters without spaces");
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
    use super::{authorization, dechunk, render_cluster};

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
    }

    #[test]
    fn the_cluster_view_renders_as_tables() {
        let view = serde_json::json!({
            "cluster": "prod", "node": 2,
            "nodes": [{"id": 1, "address": "10.0.0.1:5122", "alive": true},
                      {"id": 2, "address": "10.0.0.2:5122", "alive": false}],
            "partitions": [{"partition": 0, "leader": 1, "term": 4,
                            "replicas": [{"node": 1, "applied_index": 12, "lag": 0},
                                         {"node": 2, "applied_index": null, "lag": null}]},
                           {"partition": 1, "leader": null, "term": null, "replicas": []}]
        });
        let text = render_cluster(&view);
        assert!(
            text.starts_with("cluster prod as seen from node 2\n"),
            "{text}"
        );
        assert!(
            text.contains("2      10.0.0.2:5122            no\n"),
            "{text}"
        );
        assert!(
            text.contains("0          1       4      1: 12, 0; 2: -, -\n"),
            "{text}"
        );
        assert!(text.contains("1          -       -      \n"), "{text}");
    }
}
