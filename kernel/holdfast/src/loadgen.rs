//! `holdfast bench http`: a closed-loop HTTP/1.1 load generator with keep-alive connections, one
//! per concurrent client, so Holdfast and other engines are measured by the same client.

use clap::Args;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Options of `holdfast bench http`.
#[derive(Args)]
pub struct HttpArgs {
    /// Target, e.g. `http://127.0.0.1:8080/Greeter/greet`; `{key}` is replaced per request by a
    /// number below `--keys`.
    #[arg(long)]
    url: String,
    /// JSON request body; `{now}` in it is replaced per request by the Unix time in milliseconds.
    #[arg(long, default_value = "")]
    body: String,
    /// Concurrent clients, each with its own connection, each waiting for its answer.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How long to send, in seconds (requests in flight at the end are waited for).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Spread `{key}` over this many keys.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Stop after this many requests in total (successful or not), even before `--seconds`.
    #[arg(long)]
    requests: Option<u64>,
    /// A Unix time in milliseconds: `{until}` in the URL is replaced per request by the
    /// milliseconds left until it, so delayed sends made over a while all come due together.
    #[arg(long, default_value_t = 0)]
    until_ms: u64,
}

/// Why a load run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--url {0}: expected http://host:port/path")]
    Url(String),
    #[error("--concurrency must be at least 1")]
    Concurrency,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct Target {
    address: String,
    path: String,
}

fn parse(url: &str) -> Result<Target, Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::Url(url.into()))?;
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if address.is_empty() {
        return Err(Error::Url(url.into()));
    }
    Ok(Target {
        address: address.into(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

/// Sends one request on `stream` and reads the whole response; returns its status.
async fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
    }
    Ok(status)
}

fn request(target: &Target, key: u64, body: &str, until_ms: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut path = target.path.replace("{key}", &key.to_string());
    if path.contains("{until}") {
        path = path.replace("{until}", &format!("{}ms", until_ms.saturating_sub(now)));
    }
    let body = body.replace("{now}", &now.to_string());
    format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        target.address,
        body.len()
    )
    .into_bytes()
}

/// Runs the load and returns the JSON summary.
pub fn run(args: HttpArgs) -> Result<serde_json::Value, Error> {
    if args.concurrency == 0 {
        return Err(Error::Concurrency);
    }
    let target = std::sync::Arc::new(parse(&args.url)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.seconds);
        let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            args.requests.unwrap_or(u64::MAX),
        ));
        let until_ms = args.until_ms;
        let clients = (0..args.concurrency).map(|client| {
            let target = target.clone();
            let body = args.body.clone();
            let keys = args.keys.max(1);
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                let mut stream = BufReader::new(TcpStream::connect(&target.address).await?);
                let mut n = client as u64;
                let take = || {
                    budget
                        .fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |left| left.checked_sub(1),
                        )
                        .is_ok()
                };
                while Instant::now() < deadline && take() {
                    // A cheap spread of keys that differs per client.
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let payload = request(&target, (n >> 33) % keys, &body, until_ms);
                    let sent = Instant::now();
                    match exchange(&mut stream, &payload).await {
                        Ok(status) if (200..300).contains(&status) => {
                            latencies.push(sent.elapsed())
                        }
                        Ok(_) => failures += 1,
                        Err(_) => {
                            failures += 1;
                            stream = BufReader::new(TcpStream::connect(&target.address).await?);
                        }
                    }
                }
                Ok::<_, std::io::Error>((latencies, failures))
            })
        });
        let mut latencies = Vec::new();
        let mut failures = 0;
        for client in futures::future::join_all(clients).await {
            let (mine, failed) = client.map_err(std::io::Error::other)??;
            latencies.extend(mine);
            failures += failed;
        }
        let mut result = crate::bench::summary(&mut latencies, started.elapsed());
        result["bench"] = "http".into();
        result["url"] = args.url.clone().into();
        result["concurrency"] = args.concurrency.into();
        result["failures"] = failures.into();
        Ok(result)
    })
}
