//! TLS on every listener of a node, with certificates made by `holdfast tls issue`: curl reaches
//! the admin API and the ingress over HTTPS only, psql connects with `sslmode=verify-full` and is
//! refused in plaintext, `holdfast sql` verifies the admin API with `--ca-file`, the kernel calls an `https://` endpoint it trusts through
//! `invocation.endpoint_tls_ca_file` (and refuses one it does not trust), a certificate replaced
//! on disk is served without a restart, and a key that does not load stops the start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use holdfast_e2e::{NodeFiles, ServiceProcess, free_port, holdfast_bin, poll, psql};

/// `holdfast tls issue --dir <dir> --name <name> --host 127.0.0.1`: the certificate and key.
fn issue(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let output = Command::new(holdfast_bin())
        .args(["tls", "issue", "--dir"])
        .arg(dir)
        .args(["--name", name, "--host", "127.0.0.1", "--host", "localhost"])
        .output()
        .expect("run holdfast tls issue");
    assert!(
        output.status.success(),
        "holdfast tls issue: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    )
}

/// A node whose ingress, admin and sql listeners present `cert`, with `invocation` lines added.
fn tls_node(cert: &Path, key: &Path, invocation: &str) -> NodeFiles {
    let files = NodeFiles::new(2, &format!("[invocation]\n{invocation}\n"));
    let tls = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let mut text = std::fs::read_to_string(&files.config).expect("read config");
    for section in ["[ingress]\n", "[admin]\n", "[sql]\n"] {
        text = text.replacen(section, &format!("{section}{tls}"), 1);
    }
    std::fs::write(&files.config, text).expect("write config");
    files
}

/// curl over HTTPS trusting only `ca`: its exit status, HTTP status and body.
fn curl(ca: &Path, method: &str, url: &str, body: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args(["-H", "content-type: application/json", "--data", body]);
    }
    let output: Output = command.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let body = format!("{body}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), status.to_owned(), body)
}

fn https(address: SocketAddr, path: &str) -> String {
    format!("https://{address}{path}")
}

/// Waits until the admin API answers `/health` over HTTPS.
fn wait_healthy_tls(ca: &Path, admin: SocketAddr) {
    poll("the admin API over HTTPS", Duration::from_secs(30), || {
        let (ok, status, _) = curl(ca, "GET", &https(admin, "/health"), None);
        (ok && status == "200").then_some(())
    });
}

#[test]
fn every_listener_speaks_tls_and_https_endpoints_are_verified() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = issue(certs.path(), "node");
    let (endpoint_cert, endpoint_key) = issue(certs.path(), "endpoint");
    let ca = certs.path().join("ca.pem");
    let trust = format!("endpoint_tls_ca_file = {:?}", ca.display().to_string());
    let files = tls_node(&cert, &key, &trust);
    let check = files.run(&["serve", "--check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let node = files.serve();
    wait_healthy_tls(&ca, files.admin);

    // Plain HTTP to a TLS listener gets no answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{}/health", files.admin))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");

    // An endpoint behind HTTPS, its certificate issued by the CA the kernel was told to trust.
    let endpoint = ServiceProcess::start(
        "tests/e2e/fixtures/greeter-https.mjs",
        free_port(),
        &[
            ("TLS_CERT", endpoint_cert.to_str().expect("utf-8")),
            ("TLS_KEY", endpoint_key.to_str().expect("utf-8")),
        ],
    );
    let uri = format!("https://127.0.0.1:{}", endpoint.port);
    let body = serde_json::json!({ "uri": uri }).to_string();
    let (_, status, answer) = curl(
        &ca,
        "POST",
        &https(files.admin, "/deployments"),
        Some(&body),
    );
    assert_eq!(status, "201", "{answer}");
    let (_, status, answer) = curl(
        &ca,
        "POST",
        &https(files.ingress, "/greeter/greet"),
        Some("\"Ada\""),
    );
    assert_eq!(status, "200", "{answer}");
    assert_eq!(answer, "\"Hello Ada\"");

    // psql verifies the listener's certificate against the CA; plaintext is refused.
    let secure = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let (ok, out, err) = psql(
        files.sql,
        &["SELECT count(*) AS done FROM sys_invocation WHERE status = 'completed'"],
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!("dbname=holdfast {secure}"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains(" 1\n"), "{out}");
    // So does the command line, given the CA (it reads the admin address and TLS from the file).
    let ca_arg = ca.to_str().expect("utf-8");
    let query = "SELECT count(*) AS greeted FROM sys_invocation";
    let output = files.run(&["sql", query, "--ca-file", ca_arg]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        table.contains("greeted") && table.contains(" 1\n"),
        "{table}"
    );
    let (ok, _, err) = psql(
        files.sql,
        &["SELECT 1"],
        &["-d", "dbname=holdfast sslmode=disable"],
    );
    assert!(!ok);
    assert!(err.contains("accepts TLS connections only"), "{err}");

    // A certificate replaced on disk is served from the next connection on, without a restart.
    let renewed = tempfile::tempdir().expect("tempdir");
    let (new_cert, new_key) = issue(renewed.path(), "node");
    std::fs::copy(&new_key, &key).expect("replace key");
    std::fs::copy(&new_cert, &cert).expect("replace certificate");
    let new_ca = renewed.path().join("ca.pem");
    poll("the renewed certificate", Duration::from_secs(10), || {
        let (ok, status, _) = curl(
            &new_ca,
            "GET",
            &https(files.ingress, "/restate/health"),
            None,
        );
        (ok && status == "200").then_some(())
    });
    let (ok, _, err) = curl(&ca, "GET", &https(files.ingress, "/restate/health"), None);
    assert!(!ok, "the old CA still verifies the renewed listener: {err}");
    drop(node);

    // A kernel that does not trust the endpoint's CA refuses to register it, saying why.
    let (other_cert, other_key) = issue(renewed.path(), "other");
    let distrustful = tls_node(&other_cert, &other_key, "");
    let _node = distrustful.serve();
    wait_healthy_tls(&new_ca, distrustful.admin);
    let (_, status, answer) = curl(
        &new_ca,
        "POST",
        &https(distrustful.admin, "/deployments"),
        Some(&body),
    );
    assert!(
        status.starts_with('4') || status.starts_with('5'),
        "{status} {answer}"
    );
    assert!(
        answer.contains("TLS") && answer.contains("UnknownIssuer"),
        "{answer}"
    );
}

#[test]
fn a_key_that_does_not_load_stops_the_start_naming_the_keys() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, _) = issue(certs.path(), "node");
    let (_, other_key) = issue(certs.path(), "other");
    let files = tls_node(&cert, &other_key, "");
    for args in [&["serve", "--check"][..], &["serve"][..]] {
        let output = files.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("tls_cert_file"), "{stderr}");
        assert!(stderr.contains("other-key.pem"), "{stderr}");
    }
}
