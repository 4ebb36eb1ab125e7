use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::issue::Authority;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A scratch directory unique to one test.
fn scratch(name: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("holdfast-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes a certificate for 127.0.0.1 issued by `ca` as `<name>.pem` and `<name>-key.pem`.
fn issue_files(ca: &Authority, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let issued = ca.issue(&["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| TlsError::Read {
            what: "test file",
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    write(&cert, &issued.cert_pem)?;
    write(&key, &issued.key_pem)?;
    Ok((cert, key))
}

fn write_ca(ca: &Authority, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, ca.cert_pem())?;
    Ok(path)
}

/// Accepts one connection with `config` and echoes one line; the handshake's result is returned.
async fn serve_once(listener: TcpListener, config: ServerConfig) -> Result<(), String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut tls = TlsAcceptor::from(Arc::new(config))
        .accept(tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    tls.write_all(&buf).await.map_err(|e| e.to_string())?;
    tls.shutdown().await.map_err(|e| e.to_string())
}

/// Connects with `config`, sends `ping` and expects it back; `Err` carries the failure.
async fn exchange(server: ServerConfig, client: ClientConfig) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let served = tokio::spawn(serve_once(listener, server));
    let client_side = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let name = server_name("127.0.0.1").map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"ping" {
            return Err("echo differs".to_owned());
        }
        Ok(())
    };
    let client_result = client_side.await;
    let server_result = served.await.map_err(|e| e.to_string())?;
    client_result.and(server_result)
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_one_trusting_another_does_not() -> TestResult {
    let dir = scratch("server")?;
    let ca = Authority::generate("Test CA")?;
    let other = Authority::generate("Other CA")?;
    let (cert, key) = issue_files(&ca, &dir, "server")?;
    let ca_file = write_ca(&ca, &dir, "ca")?;
    let other_file = write_ca(&other, &dir, "other-ca")?;
    let identity = Identity::load(&cert, &key)?;

    let trusted = client_config(Trust::Only(&ca_file), None, &[])?;
    exchange(server_config(identity.clone(), &[], None)?, trusted).await?;

    let untrusted = client_config(Trust::Only(&other_file), None, &[])?;
    let refused = exchange(server_config(identity, &[], None)?, untrusted).await;
    let message = refused
        .err()
        .ok_or("a server from another CA was trusted")?;
    assert!(message.contains("UnknownIssuer"), "{message}");
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_ca() -> TestResult {
    let dir = scratch("mutual")?;
    let ca = Authority::generate("Cluster CA")?;
    let rogue = Authority::generate("Rogue CA")?;
    let ca_file = write_ca(&ca, &dir, "ca")?;
    let (cert, key) = issue_files(&ca, &dir, "node-1")?;
    let (peer_cert, peer_key) = issue_files(&ca, &dir, "node-2")?;
    let (rogue_cert, rogue_key) = issue_files(&rogue, &dir, "rogue")?;
    let server = || server_config(Identity::load(&cert, &key)?, &[ALPN_H2], Some(&ca_file));

    let peer = Identity::load(&peer_cert, &peer_key)?;
    let member = client_config(Trust::Only(&ca_file), Some(peer), &[ALPN_H2])?;
    exchange(server()?, member).await?;

    let anonymous = client_config(Trust::Only(&ca_file), None, &[ALPN_H2])?;
    assert!(exchange(server()?, anonymous).await.is_err());

    let stranger = Identity::load(&rogue_cert, &rogue_key)?;
    let stranger = client_config(Trust::Only(&ca_file), Some(stranger), &[ALPN_H2])?;
    let refused = exchange(server()?, stranger)
        .await
        .err()
        .ok_or("a rogue client was accepted")?;
    // Each authority has a name of its own: the rogue certificate's issuer is unknown, not forged.
    assert!(refused.contains("UnknownCA"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_a_restart() -> TestResult {
    let dir = scratch("reload")?;
    let old_ca = Authority::generate("Old CA")?;
    let new_ca = Authority::generate("New CA")?;
    let new_ca_file = write_ca(&new_ca, &dir, "new-ca")?;
    let (cert, key) = issue_files(&old_ca, &dir, "server")?;
    let identity = Identity::load(&cert, &key)?;
    let trusts_new = || client_config(Trust::Only(&new_ca_file), None, &[]);
    assert!(
        exchange(server_config(identity.clone(), &[], None)?, trusts_new()?)
            .await
            .is_err()
    );

    // A broken pair is ignored: the old certificate stays in service.
    std::fs::write(&key, "not a key")?;
    std::thread::sleep(RECHECK + Duration::from_millis(50));
    let kept = identity.current();
    issue_files(&new_ca, &dir, "server")?;
    std::thread::sleep(RECHECK + Duration::from_millis(50));
    let renewed = identity.current();
    assert!(!Arc::ptr_eq(&kept, &renewed), "the new pair was not loaded");
    exchange(server_config(identity, &[], None)?, trusts_new()?).await?;
    Ok(())
}

#[test]
fn unusable_files_are_named_in_the_error() -> TestResult {
    let dir = scratch("errors")?;
    let ca = Authority::generate("Test CA")?;
    let (cert, key) = issue_files(&ca, &dir, "a")?;
    let (_, other_key) = issue_files(&ca, &dir, "b")?;

    let missing = dir.join("missing.pem");
    let err = Identity::load(&missing, &key)
        .err()
        .ok_or("loaded a missing file")?;
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "")?;
    let err = Identity::load(&cert, &empty)
        .err()
        .ok_or("loaded an empty key")?;
    assert!(
        matches!(
            err,
            TlsError::Missing {
                what: "private key",
                ..
            }
        ),
        "{err}"
    );

    let err = Identity::load(&cert, &other_key)
        .err()
        .ok_or("loaded a key of another certificate")?;
    assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("b-key.pem"), "{err}");

    let err = client_config(Trust::Only(&empty), None, &[])
        .err()
        .ok_or("an empty CA file was accepted")?;
    assert!(err.to_string().contains("empty.pem"), "{err}");
    Ok(())
}

#[test]
fn an_authority_rebuilt_from_its_key_issues_certificates_the_original_verifies() -> TestResult {
    let dir = scratch("rebuild")?;
    let ca = Authority::generate("Test CA")?;
    let ca_file = write_ca(&ca, &dir, "ca")?;
    let again = Authority::from_key_pem("Test CA", &ca.key_pem())?;
    let (cert, key) = issue_files(&again, &dir, "server")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = server_config(Identity::load(&cert, &key)?, &[], None)?;
    let client = client_config(Trust::Only(&ca_file), None, &[])?;
    runtime.block_on(exchange(server, client))?;
    Ok(())
}

#[test]
fn server_names_accept_ip_literals_and_host_names() {
    assert!(server_name("127.0.0.1").is_ok());
    assert!(server_name("[::1]").is_ok());
    assert!(server_name("svc.internal").is_ok());
    assert!(server_name("bad name").is_err());
}
