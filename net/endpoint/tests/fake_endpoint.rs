//! The client against endpoints that misbehave, written here as small HTTP/2 servers on tokio.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use holdfast_endpoint::{ClientConfig, ConnectionHome, EndpointClient, Error, Event};
use holdfast_protocol::manifest::CONTENT_TYPE as MANIFEST_CONTENT_TYPE;
use holdfast_protocol::message::{Completion, End};
use holdfast_protocol::{Decoder, EntryIndex, Frame, INVOCATION_CONTENT_TYPE, Message, Outcome};
use http::{Request, Response, StatusCode, Uri};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use common::{PATIENCE, expect_end_of_stream, input, next_event, next_frame, start};

/// Serves HTTP/2 on `listener`, handing every request to `handle`; counts accepted connections.
fn serve<F, Fut>(listener: TcpListener, handle: F) -> Arc<AtomicU64>
where
    F: Fn(Request<RecvStream>, SendResponse<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let handle = handle.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(handle.clone()(request, respond));
                }
            });
        }
    });
    accepted
}

async fn bind_local() -> (TcpListener, Uri) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    (
        listener,
        format!("http://127.0.0.1:{port}").parse().expect("a URI"),
    )
}

fn respond(respond: &mut SendResponse<Bytes>, status: StatusCode, content_type: &str, body: Bytes) {
    let response = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(())
        .expect("a response");
    let mut stream = respond
        .send_response(response, body.is_empty())
        .expect("headers sent");
    if !body.is_empty() {
        stream.send_data(body, true).expect("body sent");
    }
}

fn manifest(min: u32, max: u32) -> Bytes {
    let doc = json!({
        "min_protocol_version": min,
        "max_protocol_version": max,
        "protocol_modes": ["stream"],
        "services": [{ "name": "Fake", "type": "service", "handlers": [
            { "name": "go", "kind": "shared", "input": "application/json", "output": "application/json" }
        ]}]
    });
    Bytes::from(doc.to_string())
}

/// A discovery endpoint answering every request with `body` as the manifest.
fn discovery(listener: TcpListener, content_type: &'static str, body: Bytes) -> Arc<AtomicU64> {
    serve(listener, move |_request, mut send| {
        let body = body.clone();
        async move { respond(&mut send, StatusCode::OK, content_type, body) }
    })
}

fn frames(messages: &[Message]) -> Bytes {
    let mut out = bytes::BytesMut::new();
    for message in messages {
        Frame::new(message.clone())
            .encode(&mut out)
            .expect("encodable");
    }
    out.freeze()
}

async fn start_fake_attempt(client: &EndpointClient, base: &Uri) -> holdfast_endpoint::Attempt {
    client
        .start_attempt(base, "Fake", "go", start(1), vec![input(json!(1))])
        .await
        .expect("the attempt starts")
}

#[tokio::test]
async fn garbage_bytes_are_a_protocol_violation() {
    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        let garbage = Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        respond(&mut send, StatusCode::OK, INVOCATION_CONTENT_TYPE, garbage);
    });
    let client = EndpointClient::default();
    let mut attempt = start_fake_attempt(&client, &base).await;
    match next_event(&mut attempt).await {
        Some(Event::ProtocolViolation(e)) => assert_eq!(e.kind(), "unknown_type"),
        other => panic!("expected a protocol violation, got {other:?}"),
    }
    assert!(attempt.next().await.is_none(), "the attempt is over");
}

#[tokio::test]
async fn a_response_ending_inside_a_frame_is_truncated() {
    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        let whole = frames(&[Message::End(End {})]);
        let mut body = frames(&[Message::End(End {})]).to_vec();
        body.extend_from_slice(&whole[..5]);
        respond(
            &mut send,
            StatusCode::OK,
            INVOCATION_CONTENT_TYPE,
            Bytes::from(body),
        );
    });
    let client = EndpointClient::default();
    let mut attempt = start_fake_attempt(&client, &base).await;
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    match next_event(&mut attempt).await {
        Some(Event::ProtocolViolation(e)) => assert_eq!(e.kind(), "truncated"),
        other => panic!("expected a truncation, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_split_across_data_frames_are_reassembled() {
    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        let body = frames(&[
            Message::Completion(Completion {
                entry: EntryIndex(3),
                result: Outcome::Void,
            }),
            Message::End(End {}),
        ]);
        let response = Response::builder()
            .header("content-type", INVOCATION_CONTENT_TYPE)
            .body(())
            .expect("a response");
        let mut stream = send.send_response(response, false).expect("headers sent");
        for (i, byte) in body.iter().enumerate() {
            stream
                .send_data(Bytes::copy_from_slice(&[*byte]), i + 1 == body.len())
                .expect("byte sent");
            tokio::task::yield_now().await;
        }
    });
    let client = EndpointClient::default();
    let mut attempt = start_fake_attempt(&client, &base).await;
    assert_eq!(
        next_frame(&mut attempt).await.message,
        Message::Completion(Completion {
            entry: EntryIndex(3),
            result: Outcome::Void
        })
    );
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    expect_end_of_stream(&mut attempt).await;
}

#[tokio::test]
async fn a_500_answer_fails_the_attempt_with_its_status() {
    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        respond(
            &mut send,
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from_static(b"boom"),
        );
    });
    let client = EndpointClient::default();
    let mut attempt = start_fake_attempt(&client, &base).await;
    match next_event(&mut attempt).await {
        Some(Event::Failed(Error::Status { status, path, .. })) => {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(path, "/invoke/Fake/go");
        }
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    assert!(attempt.next().await.is_none(), "the attempt is over");
}

#[tokio::test]
async fn the_request_carries_start_journal_completions_and_the_close() {
    let (listener, base) = bind_local().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    serve(listener, move |request, mut send| {
        let seen = seen.clone();
        async move {
            let headers = request.headers().clone();
            let mut body = request.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("request body");
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let _ = seen.send((
                headers,
                Decoder::default().decode_all(&bytes).expect("frames"),
            ));
            respond(
                &mut send,
                StatusCode::OK,
                INVOCATION_CONTENT_TYPE,
                frames(&[Message::End(End {})]),
            );
        }
    });
    let client = EndpointClient::default();
    let mut attempt = start_fake_attempt(&client, &base).await;
    let sender = attempt.sender();
    let done = Completion {
        entry: EntryIndex(1),
        result: Outcome::Void,
    };
    sender.completion(done.clone()).await.expect("queued");
    sender.close().await;
    let (headers, frames) = tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("in time")
        .expect("the server saw the request");
    assert_eq!(headers["content-type"], INVOCATION_CONTENT_TYPE);
    assert_eq!(headers["x-holdfast-mode"], "stream");
    let messages: Vec<_> = frames.into_iter().map(|f| f.message).collect();
    assert_eq!(
        messages,
        [
            Message::Start(start(1)),
            input(json!(1)),
            Message::Completion(done)
        ]
    );
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    expect_end_of_stream(&mut attempt).await;
}

#[tokio::test]
async fn dropping_an_attempt_cancels_its_stream() {
    let (listener, base) = bind_local().await;
    let (seen, mut reset) = mpsc::unbounded_channel();
    serve(listener, move |request, mut send| {
        let seen = seen.clone();
        async move {
            let response = Response::builder()
                .header("content-type", INVOCATION_CONTENT_TYPE)
                .body(())
                .expect("a response");
            let _stream = send.send_response(response, false).expect("headers sent");
            let mut body = request.into_body();
            let outcome = loop {
                match body.data().await {
                    Some(Ok(chunk)) => {
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    Some(Err(e)) => break e.reason(),
                    None => break None,
                }
            };
            let _ = seen.send(outcome);
        }
    });
    let client = EndpointClient::default();
    let attempt = start_fake_attempt(&client, &base).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(attempt);
    let reason = tokio::time::timeout(PATIENCE, reset.recv())
        .await
        .expect("the endpoint sees the reset promptly")
        .expect("the handler reported");
    assert_eq!(reason, Some(Reason::CANCEL));
}

#[tokio::test]
async fn an_incompatible_protocol_version_is_refused_at_discovery() {
    let (listener, base) = bind_local().await;
    discovery(listener, MANIFEST_CONTENT_TYPE, manifest(2, 3));
    let err = EndpointClient::default()
        .discover(&base)
        .await
        .expect_err("incompatible");
    match &err {
        Error::IncompatibleProtocol {
            endpoint,
            min: 2,
            max: 3,
            ours: 1,
        } => {
            assert_eq!(endpoint, &base.to_string().trim_end_matches('/'));
        }
        other => panic!("expected an incompatible protocol, got {other:?}"),
    }
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn discovery_refuses_wrong_content_type_bad_json_errors_and_huge_bodies() {
    let (listener, base) = bind_local().await;
    discovery(listener, "application/json", manifest(1, 1));
    let err = EndpointClient::default()
        .discover(&base)
        .await
        .expect_err("wrong type");
    assert!(
        matches!(err, Error::ContentType { found: Some(ref t), .. } if t == "application/json"),
        "{err:?}"
    );

    let (listener, base) = bind_local().await;
    discovery(
        listener,
        MANIFEST_CONTENT_TYPE,
        Bytes::from_static(b"{\"services\": ["),
    );
    let err = EndpointClient::default()
        .discover(&base)
        .await
        .expect_err("bad json");
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");

    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        respond(
            &mut send,
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"no such route"),
        );
    });
    let err = EndpointClient::default()
        .discover(&base)
        .await
        .expect_err("404");
    match err {
        Error::Status { status, detail, .. } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(detail, "no such route");
        }
        other => panic!("expected a status error, got {other:?}"),
    }

    let (listener, base) = bind_local().await;
    discovery(listener, MANIFEST_CONTENT_TYPE, manifest(1, 1));
    let small = EndpointClient::new(ClientConfig {
        max_manifest_len: 64,
        ..ClientConfig::default()
    });
    let err = small.discover(&base).await.expect_err("too large");
    assert!(
        matches!(err, Error::ManifestTooLarge { limit: 64, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn only_http_and_https_uris_are_accepted() {
    let client = EndpointClient::default();
    let base: Uri = "ftp://127.0.0.1:1".parse().expect("a URI");
    let err = client.discover(&base).await.expect_err("ftp refused");
    assert!(matches!(err, Error::InvalidUri { .. }), "{err:?}");
    let err = client
        .start_attempt(&base, "Fake", "go", start(1), vec![input(json!(1))])
        .await
        .expect_err("ftp refused");
    assert!(matches!(err, Error::InvalidUri { .. }), "{err:?}");
    // An https:// endpoint is tried (over TLS): nothing listens on port 1.
    let base: Uri = "https://127.0.0.1:1".parse().expect("a URI");
    let err = client.discover(&base).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_down_endpoint_is_a_connect_error_until_it_comes_up() {
    let (listener, base) = bind_local().await;
    let address = listener.local_addr().expect("address");
    drop(listener);
    let client = EndpointClient::default();
    let err = client.discover(&base).await.expect_err("nobody listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(client.connections_opened(), 0);

    let listener = TcpListener::bind(address)
        .await
        .expect("the port is free again");
    discovery(listener, MANIFEST_CONTENT_TYPE, manifest(1, 1));
    let manifest = client.discover(&base).await.expect("the endpoint is up");
    assert_eq!(manifest.services[0].name, "Fake");
    assert_eq!(client.connections_opened(), 1);
}

#[tokio::test]
async fn a_closed_connection_is_replaced_on_next_use() {
    let (listener, base) = bind_local().await;
    // Each connection serves one discovery, then the server closes it.
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(socket).await.expect("handshake");
                if let Some(Ok((_request, mut send))) = connection.accept().await {
                    respond(
                        &mut send,
                        StatusCode::OK,
                        MANIFEST_CONTENT_TYPE,
                        manifest(1, 1),
                    );
                }
                connection.graceful_shutdown();
                let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
            });
        }
    });
    let client = EndpointClient::default();
    client.discover(&base).await.expect("first discovery");
    // Give the client's connection task time to notice the close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .discover(&base)
        .await
        .expect("second discovery on a new connection");
    assert_eq!(client.connections_opened(), 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_frame_over_the_configured_limit_is_refused_from_its_header() {
    let (listener, base) = bind_local().await;
    serve(listener, |_request, mut send| async move {
        let call = Message::Completion(Completion {
            entry: EntryIndex(1),
            result: Outcome::Value(common::json(json!("x".repeat(200)))),
        });
        respond(
            &mut send,
            StatusCode::OK,
            INVOCATION_CONTENT_TYPE,
            frames(&[call]),
        );
    });
    let client = EndpointClient::new(ClientConfig {
        max_frame_len: 64,
        ..ClientConfig::default()
    });
    let mut attempt = start_fake_attempt(&client, &base).await;
    match next_event(&mut attempt).await {
        Some(Event::ProtocolViolation(e)) => assert_eq!(e.kind(), "frame_too_long"),
        other => panic!("expected frame_too_long, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_gives_up_after_the_connect_timeout() {
    // A listener with a full accept queue drops further SYNs, so the next connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let address = listener.local_addr().expect("address");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let pending = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        );
        match pending.await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let client = EndpointClient::new(ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    let base: Uri = format!("http://{address}").parse().expect("a URI");
    let started = std::time::Instant::now();
    let err = client
        .discover(&base)
        .await
        .expect_err("the accept queue is full");
    assert!(matches!(err, Error::ConnectTimeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

/// Checks `request` carries a scheme `v1` JWT for its own path, signed by `public`.
fn assert_signed(request: &Request<RecvStream>, public: &str) {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let headers = request.headers();
    assert_eq!(
        headers
            .get("x-restate-signature-scheme")
            .map(|v| v.as_bytes()),
        Some(&b"v1"[..])
    );
    let jwt = headers
        .get("x-restate-jwt-v1")
        .and_then(|v| v.to_str().ok())
        .expect("a JWT header");
    let (input, signature) = jwt.rsplit_once('.').expect("a signed JWT");
    let signature = base64.decode(signature).expect("base64url signature");
    let signature = ed25519_dalek::Signature::from_slice(&signature).expect("64 bytes");
    holdfast_endpoint::identity::parse_public_key(public)
        .expect("the signer's public key")
        .verify_strict(input.as_bytes(), &signature)
        .expect("signed by the configured key");
    let claims = input.split('.').nth(1).expect("claims");
    let claims: serde_json::Value =
        serde_json::from_slice(&base64.decode(claims).expect("base64url claims")).expect("JSON");
    assert_eq!(claims["aud"], request.uri().path());
}

#[tokio::test]
async fn a_client_with_a_signer_signs_discovery_and_attempts() {
    let signer = Arc::new(holdfast_endpoint::RequestSigner::generate().expect("a key"));
    let public = signer.public_key().to_owned();
    let (listener, base) = bind_local().await;
    let (seen, mut paths) = mpsc::unbounded_channel();
    serve(listener, move |request, mut send| {
        let public = public.clone();
        let seen = seen.clone();
        async move {
            assert_signed(&request, &public);
            let _ = seen.send(request.uri().path().to_owned());
            if request.uri().path() == "/discover" {
                respond(
                    &mut send,
                    StatusCode::OK,
                    MANIFEST_CONTENT_TYPE,
                    manifest(1, 1),
                );
            } else {
                let end = frames(&[Message::End(End {})]);
                respond(&mut send, StatusCode::OK, INVOCATION_CONTENT_TYPE, end);
            }
        }
    });
    let client = EndpointClient::new(ClientConfig {
        signer: Some(signer),
        ..ClientConfig::default()
    });
    client.discover(&base).await.expect("signed discovery");
    let mut attempt = start_fake_attempt(&client, &base).await;
    while next_event(&mut attempt).await.is_some() {}
    assert_eq!(paths.recv().await.as_deref(), Some("/discover"));
    assert_eq!(paths.recv().await.as_deref(), Some("/invoke/Fake/go"));
}

#[tokio::test]
async fn connections_are_made_on_the_clients_home_and_a_stopped_home_is_a_connect_error() {
    let (listener, base) = bind_local().await;
    discovery(listener, MANIFEST_CONTENT_TYPE, manifest(1, 1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let home_thread = std::thread::Builder::new()
        .name("endpoint-home".to_owned())
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .expect("a thread");
    let ran_on = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = ran_on.clone();
    let home = ConnectionHome::new(move |task| {
        let seen = seen.clone();
        handle.spawn(async move {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            seen.lock().expect("not poisoned").push(name);
            task.await;
        });
        true
    });
    let client = EndpointClient::new(ClientConfig {
        home: Some(home),
        ..ClientConfig::default()
    });
    client
        .discover(&base)
        .await
        .expect("discovery through the home");
    client
        .discover(&base)
        .await
        .expect("the same connection again");
    assert_eq!(
        *ran_on.lock().expect("not poisoned"),
        ["endpoint-home"],
        "one connection, made on the home thread"
    );
    assert_eq!(client.connections_opened(), 1);

    // The home stops: its connections end with it, and a new one cannot be made.
    stop.send(()).expect("the home runs");
    home_thread.join().expect("the home thread ends");
    let err = client
        .discover(&base)
        .await
        .expect_err("no home to connect on");
    assert!(
        matches!(&err, Error::Connect { .. }) && err.to_string().contains("stopped"),
        "{err}"
    );
    let refused = EndpointClient::new(ClientConfig {
        home: Some(ConnectionHome::new(|_| false)),
        ..ClientConfig::default()
    });
    let err = refused
        .discover(&base)
        .await
        .expect_err("the home refuses tasks");
    assert!(matches!(&err, Error::Connect { .. }), "{err}");
}
