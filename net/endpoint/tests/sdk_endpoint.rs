//! The client against real endpoints: a Node process serving services written with the TypeScript
//! SDK (`tests/fixtures/services.mjs`), on a port the OS picks.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use holdfast_endpoint::{EndpointClient, Event};
use holdfast_protocol::manifest::ProtocolMode;
use holdfast_protocol::message::{Completion, EntryAck, Output, Suspension};
use holdfast_protocol::{Entry, EntryIndex, Flags, Message, Outcome};
use http::Uri;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use common::{expect_end_of_stream, input, next_frame, start};

fn sdk_dir() -> PathBuf {
    manifest_dir().join("../../sdk-ts")
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program} {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {status}", args.join(" ")))
    }
}

/// Builds the SDK into `sdk-ts/dist` if it is not built yet: once per test binary, and under a
/// file lock so that concurrent test binaries do not build it at the same time.
fn ensure_sdk_built() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = sdk_dir();
            let entry = dir.join("dist/src/index.js");
            if entry.exists() {
                return Ok(());
            }
            let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("holdfast-sdk-build.lock");
            let lock =
                File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
            lock.lock()
                .map_err(|e| format!("{}: {e}", lock_path.display()))?;
            if entry.exists() {
                return Ok(());
            }
            if !dir.join("node_modules/typescript").exists() {
                run(&dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
            }
            run(&dir, "npm", &["run", "build"])?;
            if entry.exists() {
                Ok(())
            } else {
                Err(format!(
                    "{} is still missing after the build",
                    entry.display()
                ))
            }
        })
        .clone()
}

/// A running Node endpoint; the process is killed when the guard is dropped.
struct NodeEndpoint {
    child: Child,
    base: Uri,
}

impl NodeEndpoint {
    async fn start() -> NodeEndpoint {
        tokio::task::spawn_blocking(ensure_sdk_built)
            .await
            .expect("the build task finishes")
            .unwrap_or_else(|e| panic!("the TypeScript SDK in sdk-ts/ could not be built: {e}"));
        let fixture = manifest_dir().join("tests/fixtures/services.mjs");
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(&node)
            .arg(&fixture)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {node} {}: {e}", fixture.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("readable stdout") {
                if let Some(port) = line.strip_prefix("listening on ") {
                    return port.trim().parse::<u16>().expect("a port number");
                }
            }
            panic!("the endpoint process exited before listening");
        })
        .await
        .expect("the endpoint process starts within 30 s");
        NodeEndpoint {
            child,
            base: format!("http://127.0.0.1:{port}").parse().expect("a URI"),
        }
    }

    fn port(&self) -> u16 {
        self.base.port_u16().expect("a port")
    }
}

impl Drop for NodeEndpoint {
    fn drop(&mut self) {
        if let Err(e) = self.child.start_kill() {
            eprintln!("cannot kill the endpoint process: {e}");
        }
    }
}

fn value(v: serde_json::Value) -> Outcome {
    Outcome::Value(common::json(v))
}

fn output(v: serde_json::Value) -> Message {
    Message::Entry(Entry::Output(Output { result: value(v) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_the_services_of_the_endpoint() {
    let node = NodeEndpoint::start().await;
    let client = EndpointClient::default();
    let manifest = client
        .discover(&node.base)
        .await
        .expect("discovery succeeds");
    let names: Vec<_> = manifest.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Greeter", "Steps", "Chain", "Sleeper"]);
    assert!(manifest.protocol_modes.contains(&ProtocolMode::Stream));
    let greeter = &manifest.services[0];
    assert_eq!(greeter.handlers[0].name, "greet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeter_answers_with_output_and_end() {
    let node = NodeEndpoint::start().await;
    let client = EndpointClient::default();
    let mut attempt = client
        .start_attempt(
            &node.base,
            "Greeter",
            "greet",
            start(1),
            vec![input(json!("Alice"))],
        )
        .await
        .expect("the attempt starts");
    let out = next_frame(&mut attempt).await;
    assert_eq!(out.message, output(json!("Hello Alice")));
    assert_eq!(out.flags, Flags::NONE);
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    expect_end_of_stream(&mut attempt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_results_are_released_only_by_the_ack() {
    let node = NodeEndpoint::start().await;
    let client = EndpointClient::default();
    let mut attempt = client
        .start_attempt(
            &node.base,
            "Steps",
            "twice",
            start(1),
            vec![input(json!(20))],
        )
        .await
        .expect("the attempt starts");
    let sender = attempt.sender();
    for (entry, name, result) in [(1, "first", 21), (2, "second", 42)] {
        match next_frame(&mut attempt).await.message {
            Message::Entry(Entry::Run(run)) => assert_eq!(run.name, name),
            other => panic!("expected run {name}, got {other:?}"),
        }
        let proposed = next_frame(&mut attempt).await;
        assert!(
            proposed.flags.contains(Flags::ACK),
            "a run result asks for an ack"
        );
        assert_eq!(
            proposed.message,
            Message::Completion(Completion {
                entry: EntryIndex(entry),
                result: value(json!(result))
            })
        );
        // Without the ack the handler must not go on.
        let quiet = tokio::time::timeout(Duration::from_millis(300), attempt.next()).await;
        assert!(
            quiet.is_err(),
            "the handler continued without the ack: {quiet:?}"
        );
        sender
            .ack(EntryAck {
                entry: EntryIndex(entry),
            })
            .await
            .expect("ack sent");
    }
    assert_eq!(next_frame(&mut attempt).await.message, output(json!(42)));
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    expect_end_of_stream(&mut attempt).await;
    sender.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_finishes_after_the_kernel_completes_it() {
    let node = NodeEndpoint::start().await;
    let client = EndpointClient::default();
    let mut attempt = client
        .start_attempt(
            &node.base,
            "Chain",
            "call",
            start(1),
            vec![input(json!("Bob"))],
        )
        .await
        .expect("the attempt starts");
    match next_frame(&mut attempt).await.message {
        Message::Entry(Entry::Call(call)) => {
            assert_eq!(
                (call.service.as_str(), call.handler.as_str()),
                ("Greeter", "greet")
            );
            assert_eq!(call.parameter, common::json(json!("Bob")));
            assert_eq!(call.result, None);
        }
        other => panic!("expected a call entry, got {other:?}"),
    }
    attempt
        .sender()
        .completion(Completion {
            entry: EntryIndex(1),
            result: value(json!("Hello Bob")),
        })
        .await
        .expect("completion sent");
    assert_eq!(
        next_frame(&mut attempt).await.message,
        output(json!("Hello Bob"))
    );
    assert!(matches!(
        next_frame(&mut attempt).await.message,
        Message::End(_)
    ));
    expect_end_of_stream(&mut attempt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_request_makes_a_blocked_handler_suspend() {
    let node = NodeEndpoint::start().await;
    let client = EndpointClient::default();
    let mut attempt = client
        .start_attempt(
            &node.base,
            "Sleeper",
            "nap",
            start(1),
            // Shorter than the SDK's suspension delay (30 s): it stays blocked on the stream.
            vec![input(json!(20_000))],
        )
        .await
        .expect("the attempt starts");
    match next_frame(&mut attempt).await.message {
        Message::Entry(Entry::Sleep(sleep)) => assert_eq!(sleep.duration_ms, 20_000),
        other => panic!("expected a sleep entry, got {other:?}"),
    }
    let sender = attempt.sender();
    sender.close().await;
    assert_eq!(
        next_frame(&mut attempt).await.message,
        Message::Suspension(Suspension {
            waiting_on: vec![EntryIndex(1)]
        })
    );
    expect_end_of_stream(&mut attempt).await;
    let late = sender
        .ack(EntryAck {
            entry: EntryIndex(1),
        })
        .await;
    assert!(
        late.is_err(),
        "a closed request side refuses further messages"
    );
}

/// Forwards every accepted connection to `upstream`, counting them.
async fn counting_proxy(upstream: u16) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_attempts_share_one_connection() {
    let node = NodeEndpoint::start().await;
    let (proxy, accepted) = counting_proxy(node.port()).await;
    let base: Uri = format!("http://127.0.0.1:{proxy}").parse().expect("a URI");
    let client = EndpointClient::default();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let name = format!("caller {i}");
                let mut attempt = client
                    .start_attempt(
                        &base,
                        "Greeter",
                        "greet",
                        start(1),
                        vec![input(json!(name))],
                    )
                    .await
                    .expect("the attempt starts");
                let mut messages = Vec::new();
                while let Some(event) = common::next_event(&mut attempt).await {
                    match event {
                        Event::Message(frame) => messages.push(frame.message),
                        other => panic!("attempt {i} failed: {other:?}"),
                    }
                }
                (name, messages)
            })
        })
        .collect();
    for task in tasks {
        let (name, messages) = task.await.expect("the attempt task finishes");
        assert_eq!(messages.len(), 2, "{name}: {messages:?}");
        assert_eq!(messages[0], output(json!(format!("Hello {name}"))));
        assert!(matches!(messages[1], Message::End(_)));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "TCP connections accepted by the proxy"
    );
    assert_eq!(client.connections_opened(), 1);
}

/// This crate's directory, read when the test runs (cargo sets it) so that a test binary reused
/// from a build in another checkout still finds the files of the checkout it runs in.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}
