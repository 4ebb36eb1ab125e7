//! Harness for end-to-end tests: runs the real `holdfast` binary on free loopback ports and its
//! own data dir, talks to it over real HTTP, and kills it for real.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `holdfast` binary under test: `$HOLDFAST_BIN`, or the one built next to this test.
pub fn holdfast_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HOLDFAST_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/holdfast
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("holdfast"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p holdfast`, done by `make test`)",
        bin.display()
    );
    bin
}

/// The repository root, read when the test runs (cargo sets `CARGO_MANIFEST_DIR`) so that a test
/// binary reused from a build in another checkout still uses the checkout it runs in.
pub fn repo_root() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct loopback ports that were free a moment ago (all held open while chosen, so the
/// OS cannot hand out the same one twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| {
        listeners[i]
            .local_addr()
            .map(|a| a.port())
            .expect("local address")
    })
}

/// A node's configuration file and data dir in a private temporary directory.
pub struct NodeFiles {
    /// Keeps the directory alive for the test's duration.
    pub dir: tempfile::TempDir,
    /// The TOML file passed with `--config`.
    pub config: PathBuf,
    /// The admin API address.
    pub admin: SocketAddr,
    /// The ingress address.
    pub ingress: SocketAddr,
    /// The node's data dir.
    pub data_dir: PathBuf,
}

impl NodeFiles {
    /// Writes a single-node config on free ports with `partitions` partitions and `extra` TOML.
    pub fn new(partitions: u32, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let [admin, ingress, sql, raft] = free_ports::<4>();
        let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
        let ingress: SocketAddr = format!("127.0.0.1:{ingress}").parse().expect("addr");
        let text = format!(
            "[node]\nid = 1\ndata_dir = {data:?}\n\
             [ingress]\nbind_address = \"{ingress}\"\n\
             [admin]\nbind_address = \"{admin}\"\n\
             [sql]\nbind_address = \"127.0.0.1:{sql}\"\n\
             [cluster]\npartitions = {partitions}\nreplication_factor = 1\n\
             [[cluster.nodes]]\nid = 1\naddress = \"127.0.0.1:{raft}\"\n{extra}",
            data = data_dir.display().to_string(),
        );
        let config = dir.path().join("node.toml");
        std::fs::write(&config, text).expect("write config");
        Self {
            dir,
            config,
            admin,
            ingress,
            data_dir,
        }
    }

    /// Runs `holdfast <args…> --config <file>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(holdfast_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("HOLDFAST_LOG", "warn")
            .output()
            .expect("run holdfast")
    }

    /// Starts `holdfast serve` in the background.
    pub fn serve(&self) -> Child {
        Command::new(holdfast_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOLDFAST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn holdfast serve")
    }
}

/// A minimal HTTP/1.1 response.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The raw header block.
    pub headers: String,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends `GET path` over a fresh connection and reads the whole response.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<Response> {
    http_request(address, "GET", path)
}

/// Sends `method path` without a body over a fresh connection.
pub fn http_request(address: SocketAddr, method: &str, path: &str) -> std::io::Result<Response> {
    http(address, method, path, &[], "")
}

/// Sends one HTTP/1.1 request with `headers` and `body` over a fresh connection and reads the
/// whole response.
pub fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    read_response(stream)
}

fn read_response(mut stream: TcpStream) -> std::io::Result<Response> {
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers: head.to_string(),
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `/health` until every partition reports a leader, returning the last health document.
pub fn wait_healthy(admin: SocketAddr, child: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("holdfast exited early with {status}");
        }
        if let Ok(response) = http_get(admin, "/health")
            && response.status == 200
        {
            let health = response.json();
            if health["status"] == "ok" {
                return health;
            }
        }
        assert!(Instant::now() < deadline, "holdfast did not become healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the process, returning its exit status and stderr.
pub fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        sent.map(|s| s.success()).unwrap_or(false),
        "kill -TERM {pid}"
    );
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let status = child.wait().expect("wait for holdfast");
    (status, stderr)
}

/// A Node service endpoint built with the SDK, killed when dropped.
pub struct Endpoint {
    child: Child,
    /// The endpoint's base uri, e.g. `http://127.0.0.1:40123/`.
    pub uri: String,
}

impl Endpoint {
    /// Starts `script` (a path relative to the repository root) with `PORT` set to a free port and
    /// waits for its "listening" line. The SDK must be built (`make test` builds it first).
    pub fn start(script: &str) -> Self {
        let root = repo_root();
        let sdk = root.join("sdk-ts/dist/src/index.js");
        assert!(
            sdk.exists(),
            "{} missing: build the SDK first (`cd sdk-ts && npm ci && npm run build`, done by `make test`)",
            sdk.display()
        );
        let port = free_port();
        let mut child = Command::new("node")
            .arg(root.join(script))
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        while !line.contains("listening") {
            line.clear();
            let read =
                std::io::BufRead::read_line(&mut reader, &mut line).expect("read endpoint output");
            assert!(read > 0, "{script} exited before listening");
        }
        Self {
            child,
            uri: format!("http://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `method path` with a JSON body over a fresh connection and reads the whole response.
pub fn http_json(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<Response> {
    http(
        address,
        method,
        path,
        &[("content-type", "application/json")],
        &body.to_string(),
    )
}
