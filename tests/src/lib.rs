//! Harness for end-to-end tests: runs the real `holdfast` binary on free loopback ports and its
//! own data dir, talks to it over real HTTP, and kills it for real.

pub mod cluster;
pub mod faults;
pub mod history;
pub mod otlp;
pub mod prometheus;

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

/// `N` distinct loopback ports that were free a moment ago.
///
/// They are taken below the OS's ephemeral range, so no outgoing connection (a node dialing a
/// peer, a client calling the ingress) can grab one between this call and the process that binds
/// it; a process-wide counter keeps the tests of one binary from choosing the same port twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| next_listenable_port())
}

fn next_listenable_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_range_start().max(FIRST + 2_000);
    let span = end - FIRST;
    // Test binaries of different runs start at different places so their leftovers (a port in
    // TIME_WAIT, a kernel being torn down) are unlikely to be next in line.
    let seed = std::process::id().wrapping_mul(7_919) % span;
    let _ = NEXT.compare_exchange(0, seed + 1, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{end}");
}

/// The first port the OS hands to outgoing connections (Linux: `ip_local_port_range`).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
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
    /// The PostgreSQL-wire (psql) address.
    pub sql: SocketAddr,
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
        let sql: SocketAddr = format!("127.0.0.1:{sql}").parse().expect("addr");
        let text = format!(
            "[node]\nid = 1\ndata_dir = {data:?}\n\
             [ingress]\nbind_address = \"{ingress}\"\n\
             [admin]\nbind_address = \"{admin}\"\n\
             [sql]\nbind_address = \"{sql}\"\n\
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
            sql,
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
    pub fn serve(&self) -> Served {
        Served(Some(
            Command::new(holdfast_bin())
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("HOLDFAST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn holdfast serve"),
        ))
    }
}

/// A `holdfast serve` process that is killed if the test ends without stopping it (a failed
/// assertion must not leave a kernel running).
pub struct Served(Option<Child>);

impl std::ops::Deref for Served {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("the process is held until dropped")
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("the process is held until dropped")
    }
}

impl From<Served> for Child {
    fn from(mut served: Served) -> Child {
        served.0.take().expect("the process is held until dropped")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// The invocation id the ingress answered with (`x-restate-id`).
    pub fn invocation_id(&self) -> String {
        self.header("x-restate-id")
            .unwrap_or_else(|| panic!("no x-restate-id in {}", self.headers))
    }

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
    try_wait_healthy(admin, child).unwrap_or_else(|why| panic!("{why}"))
}

/// Like [`wait_healthy`], but says why it gave up (early exit, or the last `/health` answer).
pub fn try_wait_healthy(admin: SocketAddr, child: &mut Child) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("holdfast exited early with {status}"));
        }
        match http_get(admin, "/health") {
            Ok(response) if response.status == 200 => {
                let health = response.json();
                if health["status"] == "ok" {
                    return Ok(health);
                }
                last = response.body;
            }
            Ok(response) => last = format!("{} {}", response.status, response.body),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "holdfast did not become healthy; last /health: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the process, returning its exit status and stderr.
pub fn terminate(child: impl Into<Child>) -> (std::process::ExitStatus, String) {
    let mut child: Child = child.into();
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
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
        ],
        &body.to_string(),
    )
}

/// Lines a child process printed, shared with the thread that reads them; waiters are woken on
/// every new line and when the output ends.
#[derive(Clone, Default)]
pub struct ProcessLog {
    inner: std::sync::Arc<(std::sync::Mutex<Vec<String>>, std::sync::Condvar)>,
}

impl ProcessLog {
    /// Reads `source` line by line into this output until it ends, on a thread of its own.
    pub fn collect(&self, source: impl Read + Send + 'static) {
        let output = self.clone();
        std::thread::spawn(move || {
            let reader = std::io::BufReader::new(source);
            for line in std::io::BufRead::lines(reader) {
                let Ok(line) = line else { break };
                let (lines, changed) = &*output.inner;
                lines.lock().expect("output lock").push(line);
                changed.notify_all();
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.inner.0.lock().expect("output lock").clone()
    }

    /// Every line so far, joined with newlines.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits until `done` holds for the lines printed so far, or panics after `timeout` naming
    /// `what` and showing the last lines.
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.inner;
        let mut guard = lines.lock().expect("output lock");
        while !done(&guard) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out after {timeout:?} waiting for {what}; last lines:\n{}",
                guard[guard.len().saturating_sub(30)..].join("\n")
            );
            // Bounded waits: a condition may also depend on state outside the lines.
            let wait = (deadline - now).min(Duration::from_millis(100));
            guard = changed.wait_timeout(guard, wait).expect("output lock").0;
        }
    }

    /// Number of lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (e.g. "STOP", "CONT", "KILL") to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
    assert!(
        sent.map(|s| s.success()).unwrap_or(false),
        "kill -{signal} {pid}"
    );
}

/// Registers the endpoint at `uri` through the admin API (asserting 201) and returns the new
/// deployment's id.
pub fn register(admin: SocketAddr, uri: &str) -> String {
    let body = serde_json::json!({ "uri": uri }).to_string();
    let registered = http(
        admin,
        "POST",
        "/deployments",
        &[("content-type", "application/json")],
        &body,
    )
    .expect("register");
    assert_eq!(
        registered.status, 201,
        "register {uri}: {}",
        registered.body
    );
    registered.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no deployment id in {}", registered.body))
        .to_string()
}

/// The kernel's resident memory in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// A `holdfast serve` process that can be killed with SIGKILL and restarted on the same config
/// and data dir; its stderr (the kernel's log) is collected across restarts.
pub struct Kernel {
    config: PathBuf,
    admin: SocketAddr,
    log_filter: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Everything every incarnation wrote to stderr.
    pub log: ProcessLog,
}

impl Kernel {
    /// Starts `holdfast serve` on `files` with `HOLDFAST_LOG=log_filter` and waits until healthy.
    pub fn start(files: &NodeFiles, log_filter: &str) -> Self {
        Kernel::start_with(files, log_filter, &[])
    }

    /// Starts `holdfast serve` on `files` with `HOLDFAST_LOG=log_filter` and `env` (config
    /// overrides such as `HOLDFAST__NODE__PARTITION_THREADS`) and waits until healthy.
    pub fn start_with(files: &NodeFiles, log_filter: &str, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut kernel = Kernel::stopped(&files.config, files.admin, log_filter, &env);
        kernel.restart();
        kernel
    }

    /// Starts `holdfast serve --config <config>` with `HOLDFAST_LOG=log_filter` and `env` without
    /// waiting for it: a cluster node cannot elect leaders until its peers run too.
    pub fn launch(
        config: &Path,
        admin: SocketAddr,
        log_filter: &str,
        env: &[(String, String)],
    ) -> Self {
        let mut kernel = Kernel::stopped(config, admin, log_filter, env);
        kernel.spawn();
        kernel
    }

    fn stopped(
        config: &Path,
        admin: SocketAddr,
        log_filter: &str,
        env: &[(String, String)],
    ) -> Self {
        Kernel {
            config: config.to_path_buf(),
            admin,
            log_filter: log_filter.to_string(),
            env: env.to_vec(),
            child: None,
            log: ProcessLog::default(),
        }
    }

    /// Starts a new incarnation without waiting for it to answer.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the kernel is still running");
        let mut child = Command::new(holdfast_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("HOLDFAST_LOG", &self.log_filter)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn holdfast serve");
        self.log.collect(child.stderr.take().expect("stderr"));
        self.child = Some(child);
    }

    /// Whether an incarnation is held (started and not yet killed or terminated by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status of the held incarnation if it has exited on its own.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Starts a new incarnation (after [`Kernel::kill9`]) and waits until every partition has
    /// a leader.
    pub fn restart(&mut self) {
        self.spawn();
        let mut child = self.child.take().expect("just spawned");
        if let Err(why) = try_wait_healthy(self.admin, &mut child) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{why}\nkernel log:\n{}", self.log.text());
        }
        self.child = Some(child);
    }

    /// The running incarnation's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the kernel is running").id()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the kernel is running");
        child.kill().expect("kill -9 holdfast");
        child.wait().expect("reap holdfast");
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    /// SIGTERM and wait, keeping the kernel restartable; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the kernel is running");
        signal(child.id(), "TERM");
        child.wait().expect("wait for holdfast")
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Node service endpoint on a fixed port that can be killed (SIGKILL), paused (SIGSTOP) and
/// restarted on the same port; the stdout of every incarnation is collected, so a fixture can
/// report what its handlers did.
pub struct ServiceProcess {
    script: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Its base uri, e.g. `http://127.0.0.1:40123/`.
    pub uri: String,
    /// Everything every incarnation printed.
    pub log: ProcessLog,
}

impl ServiceProcess {
    /// Starts `script` (relative to the repository root) with `PORT=port` and `env`, and waits
    /// for its "listening" line.
    pub fn start(script: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let sdk = repo_root().join("sdk-ts/dist/src/index.js");
        assert!(
            sdk.exists(),
            "{} missing: build the SDK first (`cd sdk-ts && npm ci && npm run build`, done by `make test`)",
            sdk.display()
        );
        let mut service = ServiceProcess {
            script: repo_root().join(script),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            port,
            uri: format!("http://127.0.0.1:{port}/"),
            log: ProcessLog::default(),
        };
        service.restart();
        service
    }

    /// Starts a new incarnation on the same port and waits for its "listening" line.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the endpoint is still running");
        let before = self.log.count("listening");
        let mut child = Command::new("node")
            .arg(&self.script)
            .env("PORT", self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        self.log.collect(child.stdout.take().expect("stdout"));
        let what = format!("{} to listen on port {}", self.script.display(), self.port);
        poll(&what, Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited with {status} before listening",
                    self.script.display()
                );
            }
            (self.log.count("listening") > before).then_some(())
        });
        self.child = Some(child);
    }

    /// The running incarnation's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the endpoint is running").id()
    }

    /// SIGKILL the running incarnation and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the endpoint is running");
        child.kill().expect("kill -9 node");
        child.wait().expect("reap node");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP relay between the kernel and a service endpoint, so the endpoint behind a registered
/// uri can change and the kernel's connections can be cut while the endpoint keeps its side.
pub struct TcpProxy {
    /// The port the kernel connects to.
    pub port: u16,
    backend: std::sync::Arc<std::sync::Mutex<u16>>,
    links: std::sync::Arc<std::sync::Mutex<Vec<Link>>>,
    late_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One relayed connection: the kernel's side and whether it was cut.
struct Link {
    front: TcpStream,
    severed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    /// Relays connections on a free loopback port to `backend` (a loopback port).
    pub fn start(backend: u16) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = TcpProxy {
            port,
            backend: Arc::new(Mutex::new(backend)),
            links: Arc::new(Mutex::new(Vec::new())),
            late_bytes: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (backend, links, late, stop) = (
            proxy.backend.clone(),
            proxy.links.clone(),
            proxy.late_bytes.clone(),
            proxy.stop.clone(),
        );
        std::thread::spawn(move || {
            for front in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(front) = front else { continue };
                let target = *backend.lock().expect("backend lock");
                // An unreachable backend closes the kernel's connection at once.
                let Ok(back) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let severed = Arc::new(AtomicBool::new(false));
                let (Ok(front_read), Ok(front_write), Ok(back_read), Ok(back_write)) = (
                    front.try_clone(),
                    front.try_clone(),
                    back.try_clone(),
                    back.try_clone(),
                ) else {
                    continue;
                };
                links.lock().expect("links lock").push(Link {
                    front,
                    severed: severed.clone(),
                });
                let cut = severed.clone();
                std::thread::spawn(move || pump_forward(front_read, back_write, &cut));
                let late = late.clone();
                std::thread::spawn(move || pump_back(back_read, front_write, &severed, &late));
            }
        });
        proxy
    }

    /// The proxy's uri, to register as the deployment.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// New connections go to `backend` from now on.
    pub fn set_backend(&self, backend: u16) {
        *self.backend.lock().expect("backend lock") = backend;
    }

    /// Cuts every current connection on the kernel's side only: the endpoint behind it keeps its
    /// connection open, and whatever it writes later is counted and dropped.
    pub fn sever(&self) {
        use std::sync::atomic::Ordering;
        for link in self.links.lock().expect("links lock").drain(..) {
            link.severed.store(true, Ordering::SeqCst);
            let _ = link.front.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Bytes endpoints wrote on connections after they were severed.
    pub fn late_bytes(&self) -> u64 {
        self.late_bytes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.sever();
    }
}

/// Kernel → endpoint. After a cut the endpoint's side stays open, as a paused process would see it.
fn pump_forward(mut from: TcpStream, mut to: TcpStream, severed: &std::sync::atomic::AtomicBool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if severed.load(std::sync::atomic::Ordering::SeqCst)
                    || to.write_all(&buffer[..n]).is_err()
                {
                    break;
                }
            }
        }
    }
    if !severed.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
}

/// Endpoint → kernel; after a cut, the endpoint's bytes are counted and dropped.
fn pump_back(
    mut from: TcpStream,
    mut to: TcpStream,
    severed: &std::sync::atomic::AtomicBool,
    late: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering;
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) if severed.load(Ordering::SeqCst) => {
                late.fetch_add(n as u64, Ordering::SeqCst);
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() && !severed.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
    if !severed.load(Ordering::SeqCst) {
        let _ = to.shutdown(std::net::Shutdown::Both);
    }
}

/// Runs psql (Debian's postgresql-client) against the PostgreSQL-wire listener `sql` as the
/// `operator` user, with one `-c` per command in one session and errors not stopping it unless
/// `extra` says so (`-v ON_ERROR_STOP=1`); returns whether it exited 0, its stdout and stderr.
pub fn psql(sql: SocketAddr, commands: &[&str], extra: &[&str]) -> (bool, String, String) {
    psql_with_env(sql, commands, extra, &[])
}

/// [`psql`] with extra environment variables for psql (e.g. `PGPASSWORD`).
pub fn psql_with_env(
    sql: SocketAddr,
    commands: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut command = std::process::Command::new("psql");
    command.envs(env.iter().copied());
    command
        .args(["-h", &sql.ip().to_string(), "-p", &sql.port().to_string()])
        .args([
            "-U",
            "operator",
            "-d",
            "holdfast",
            "-X",
            "-v",
            "ON_ERROR_STOP=0",
        ])
        .args(extra)
        .env("PGCONNECT_TIMEOUT", "10");
    for c in commands {
        command.args(["-c", c]);
    }
    let output = command
        .output()
        .expect("run psql (install postgresql-client)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
