//! Query and listener limits end to end, on the real kernel: the memory-bomb query fails with
//! 53200 over psql and with a JSON error over `POST /query` while the kernel's memory stays
//! bounded by its pool, 500 idle pgwire connections do not take the node down (those over the
//! cap get a clear 53300), `SET` outside the allowlist is refused, and `[sql] password` makes
//! psql authenticate (SCRAM-SHA-256) while `POST /query` is unaffected.

use holdfast_e2e::{Kernel, NodeFiles, Response, http};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const JSON: (&str, &str) = ("content-type", "application/json");
const BOMB: &str = "SELECT array_agg(value) FROM generate_series(1, 2000000000)";
/// The node pool of these tests: 64 MiB (a statement may hold 32 MiB of it).
const POOL_BYTES: u64 = 64 << 20;

fn query(admin: SocketAddr, sql: &str) -> Response {
    http(
        admin,
        "POST",
        "/query",
        &[JSON, ("accept", "application/json")],
        &json!({ "query": sql }).to_string(),
    )
    .unwrap_or_else(|e| panic!("POST /query {sql}: {e}"))
}

/// Runs psql (verbose errors, so SQLSTATEs are printed) with one `-c` per command in one
/// session; returns stdout and stderr.
fn psql(sql: SocketAddr, commands: &[&str]) -> (String, String) {
    let (_, out, err) = holdfast_e2e::psql(sql, commands, &["-v", "VERBOSITY=verbose"]);
    (out, err)
}

/// `VmHWM` (peak resident memory) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// A single node whose `[sql]` section also holds `sql_keys`.
fn node(sql_keys: &str) -> (NodeFiles, Kernel) {
    let files = NodeFiles::new(2, "");
    let text = std::fs::read_to_string(&files.config).expect("read config");
    let bind = format!("bind_address = \"{}\"\n", files.sql);
    assert!(text.contains(&bind), "{text}");
    let text = text.replacen(&bind, &format!("{bind}{sql_keys}"), 1);
    std::fs::write(&files.config, text).expect("write config");
    let kernel = Kernel::start(&files, "warn");
    (files, kernel)
}

#[test]
fn the_memory_bomb_fails_with_53200_and_the_node_keeps_serving() {
    let (files, kernel) = node(&format!(
        "memory_limit_bytes = {POOL_BYTES}\nstatement_timeout_ms = 120000\n"
    ));
    let pid = kernel.pid();
    let ok = query(files.admin, "SELECT count(*) AS n FROM sys_invocation");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let before = peak_rss_kib(pid);

    let (out, err) = psql(files.sql, &[BOMB]);
    assert!(err.contains("53200"), "stdout: {out}\nstderr: {err}");
    let after_psql = peak_rss_kib(pid);

    let refused = query(files.admin, BOMB);
    assert!(refused.status >= 400, "{} {}", refused.status, refused.body);
    let body: Value = serde_json::from_str(&refused.body).expect("a JSON error");
    assert_eq!(body["code"], "resources_exhausted", "{body}");
    let after_http = peak_rss_kib(pid);

    eprintln!(
        "VmHWM: {before} KiB before, {after_psql} KiB after psql, {after_http} KiB after \
         POST /query (pool {} KiB)",
        POOL_BYTES / 1024
    );
    // The peak grows by at most the pool and a margin for batches in flight and allocator
    // slack; without the pool the query runs until the node is out of memory.
    let margin_kib = 64 * 1024;
    assert!(
        after_http <= before + POOL_BYTES / 1024 + margin_kib,
        "VmHWM went from {before} KiB to {after_http} KiB"
    );

    // The node still answers, on both paths.
    let ok = query(files.admin, "SELECT count(*) AS n FROM sys_invocation");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let (out, err) = psql(files.sql, &["SELECT 40 + 2 AS answer"]);
    assert!(out.contains("42"), "stdout: {out}\nstderr: {err}");
}

/// Sends a startup message on a fresh connection and reads the answer up to ReadyForQuery or
/// the first ErrorResponse: `Ok(stream)` when admitted, `Err(sqlstate)` when refused (empty
/// when the connection closed without a word).
fn connect(sql: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&sql, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut body = 196_608_i32.to_be_bytes().to_vec();
    for s in ["user", "idle", "database", "holdfast"] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = i32::try_from(body.len() + 4)
        .expect("len")
        .to_be_bytes()
        .to_vec();
    message.extend_from_slice(&body);
    stream.write_all(&message).expect("startup");
    loop {
        let mut header = [0u8; 5];
        if stream.read_exact(&mut header).is_err() {
            return Err(String::new());
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0u8; usize::try_from(len).expect("len").saturating_sub(4)];
        if stream.read_exact(&mut body).is_err() {
            return Err(String::new());
        }
        match header[0] {
            b'Z' => return Ok(stream),
            b'E' => {
                let code = body
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                    .unwrap_or_default();
                let message = body
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&b'M'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                    .unwrap_or_default();
                assert!(message.contains("too many connections"), "{message}");
                return Err(code);
            }
            _ => {}
        }
    }
}

#[test]
fn five_hundred_idle_connections_do_not_take_the_node_down() {
    let cap = 50;
    let (files, _kernel) = node(&format!("max_connections = {cap}\n"));
    let mut admitted = Vec::new();
    let mut refused = 0;
    let mut silent = 0;
    for _ in 0..500 {
        match connect(files.sql) {
            Ok(stream) => admitted.push(stream),
            Err(code) if code == "53300" => refused += 1,
            Err(code) if code.is_empty() => silent += 1,
            Err(code) => panic!("unexpected SQLSTATE {code}"),
        }
    }
    eprintln!(
        "{} admitted, {refused} refused with 53300, {silent} closed",
        admitted.len()
    );
    assert_eq!(admitted.len(), cap);
    assert_eq!(refused + silent, 500 - cap);
    assert!(refused >= 400, "{refused} refused with 53300");

    // Over the cap psql is told why; the node answers HTTP meanwhile.
    let (_, err) = psql(files.sql, &["SELECT 1"]);
    assert!(err.contains("too many connections"), "{err}");
    let ok = query(files.admin, "SELECT count(*) AS n FROM sys_invocation");
    assert_eq!(ok.status, 200, "{}", ok.body);
    // The admitted connections still run statements.
    let mut first = admitted.swap_remove(0);
    let mut q = b"Q".to_vec();
    q.extend_from_slice(&13_i32.to_be_bytes());
    q.extend_from_slice(b"SELECT 1\0");
    first.write_all(&q).expect("query");
    let mut answer = [0u8; 64];
    assert!(first.read(&mut answer).expect("answer") > 0);

    // Once they leave, psql gets in again.
    drop(first);
    drop(admitted);
    let mut last = String::new();
    for _ in 0..100 {
        let (out, err) = psql(files.sql, &["SELECT 7 * 6 AS answer"]);
        if out.contains("42") {
            return;
        }
        last = err;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("psql never got back in: {last}");
}

#[test]
fn set_outside_the_allowlist_is_refused() {
    let (files, _kernel) = node("");
    let (out, err) = psql(
        files.sql,
        &[
            "SET application_name = 'limits'",
            "SET datafusion.execution.batch_size = 100000000",
            "SHOW application_name",
        ],
    );
    assert!(err.contains("42501"), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("cannot be set on this endpoint"),
        "stdout: {out}\nstderr: {err}"
    );
    assert!(out.contains("limits"), "stdout: {out}\nstderr: {err}");
}

/// Runs psql with `password` in `PGPASSWORD` (none: the variable is cleared) and never
/// prompting (`-w`); returns whether it exited 0, its stdout and stderr.
fn psql_as(sql: SocketAddr, password: Option<&str>, command: &str) -> (bool, String, String) {
    let env = [("PGPASSWORD", password.unwrap_or(""))];
    holdfast_e2e::psql_with_env(sql, &[command], &["-w", "-v", "ON_ERROR_STOP=1"], &env)
}

#[test]
fn a_psql_password_is_required_once_set_and_post_query_is_unaffected() {
    const PASSWORD: &str = "e2e psql password 7f3a";
    let (files, kernel) = node(&format!("password = \"{PASSWORD}\"\n"));

    let (ok, out, err) = psql_as(
        files.sql,
        Some("not the password"),
        "SELECT 41 + 1 AS answer",
    );
    assert!(
        !ok,
        "a wrong password must fail\nstdout: {out}\nstderr: {err}"
    );
    assert!(
        err.to_lowercase()
            .contains("password authentication failed"),
        "stdout: {out}\nstderr: {err}"
    );

    let (ok, out, err) = psql_as(files.sql, None, "SELECT 41 + 1 AS answer");
    assert!(!ok, "no password must fail\nstdout: {out}\nstderr: {err}");

    let (ok, out, err) = psql_as(files.sql, Some(PASSWORD), "SELECT 41 + 1 AS answer");
    assert!(
        ok,
        "the right password must work\nstdout: {out}\nstderr: {err}"
    );
    assert!(out.contains("42"), "stdout: {out}\nstderr: {err}");

    let response = query(files.admin, "SELECT 41 + 1 AS answer");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.body.contains("42"), "{}", response.body);

    let log = kernel.log.text();
    assert!(
        !log.contains(PASSWORD),
        "the password leaked into the log:\n{log}"
    );
}

#[test]
fn without_a_psql_password_everyone_is_admitted() {
    let (files, _kernel) = node("");
    let (ok, out, err) = psql_as(files.sql, None, "SELECT 41 + 1 AS answer");
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("42"), "stdout: {out}\nstderr: {err}");
}
