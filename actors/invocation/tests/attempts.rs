//! The invocation actor against a real endpoint: a Node process serving services written with the
//! TypeScript SDK (`tests/fixtures/services.mjs`) on a port the OS picks, and one that breaks the
//! protocol on purpose (`tests/fixtures/misbehaving.mjs`). A collector actor stands
//! in for the partition and records every report it receives.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use holdfast_endpoint::EndpointClient;
use holdfast_fsm::state::JournalItem;
use holdfast_invocation::{
    AttemptEvent, AttemptSpec, CREDIT_WINDOW, DeliverAck, DeliverCompletion, DeliverCredit,
    InvocationActor, Stop, Timeouts,
};
use holdfast_protocol::message::{Call, GetState, Input, Output, Run, SetState, Sleep, Start};
use holdfast_protocol::{Entry, EntryIndex, Failure, Outcome, Payload};
use holdfast_types::{Ending, Epoch, InvocationId, Target};
use http::Uri;
use serde_json::json;
use tokio::sync::mpsc;

/// How long a test waits for something the endpoint should do promptly.
const PATIENCE: Duration = Duration::from_secs(10);

/// Timeouts long enough never to fire during a test that does not exercise them.
const PATIENT: Timeouts = Timeouts {
    inactivity: Duration::from_secs(60),
    abort: Duration::from_secs(600),
};

// ---- the Node endpoint ----------------------------------------------------------------------

/// This crate's directory, read when the test runs so that a test binary reused from another
/// checkout still finds the files of the checkout it runs in.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

fn sdk_dir() -> PathBuf {
    manifest_dir().join("../../sdk-ts")
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
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

/// Builds `sdk-ts/dist` unless it exists (`make test` builds it first): once per test binary,
/// under a file lock so that concurrent test binaries do not build it together.
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
                run_in(&dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
            }
            run_in(&dir, "npm", &["run", "build"])?;
            if entry.exists() {
                Ok(())
            } else {
                Err(format!("{} is missing after the build", entry.display()))
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
    /// The services written with the SDK.
    fn start() -> NodeEndpoint {
        NodeEndpoint::start_fixture("services.mjs")
    }

    /// Runs `tests/fixtures/{name}` and waits until it listens.
    fn start_fixture(name: &str) -> NodeEndpoint {
        ensure_sdk_built()
            .unwrap_or_else(|e| panic!("the TypeScript SDK in sdk-ts/ could not be built: {e}"));
        let fixture = manifest_dir().join("tests/fixtures").join(name);
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(&node)
            .arg(&fixture)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {node} {}: {e}", fixture.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(port) = line.strip_prefix("listening on ") {
                    let _ = port_tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the endpoint process listens within 30 s")
            .expect("a port number");
        NodeEndpoint {
            child,
            base: format!("http://127.0.0.1:{port}").parse().expect("a URI"),
        }
    }
}

impl Drop for NodeEndpoint {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("cannot kill the endpoint process: {e}");
        }
        let _ = self.child.wait();
    }
}

// ---- the collector standing in for the partition ------------------------------------------------

/// Records every report it receives by passing it to the test.
struct Collector {
    seen: mpsc::UnboundedSender<AttemptEvent>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<AttemptEvent> for Collector {
    type Result = ();

    fn handle(&mut self, event: AttemptEvent, _ctx: &mut Context<Self>) {
        let _ = self.seen.send(event);
    }
}

/// One attempt under test: the actor and the reports it sends.
struct Probe {
    actor: Addr<InvocationActor>,
    reports: mpsc::UnboundedReceiver<AttemptEvent>,
    id: InvocationId,
}

const EPOCH: Epoch = Epoch(3);

fn start_message(id: InvocationId, key: Option<&str>, known: usize) -> Start {
    Start {
        attempt: EPOCH.0,
        awakeable_key: holdfast_protocol::Payload::from(&[7u8; 32][..]),
        headers: Vec::new(),
        id: id.to_string(),
        key: key.map(str::to_owned),
        known_entries: u32::try_from(known).expect("a small journal"),
        retry_count: 0,
        retry_elapsed_ms: 0,
        retry_entry: None,
        state: Vec::new(),
        state_complete: true,
    }
}

fn launch(base: &Uri, target: Target, journal: Vec<JournalItem>, timeouts: Timeouts) -> Probe {
    launch_with(base, target, journal, timeouts, |_| {})
}

fn launch_with(
    base: &Uri,
    target: Target,
    journal: Vec<JournalItem>,
    timeouts: Timeouts,
    edit: impl FnOnce(&mut Start),
) -> Probe {
    let id = InvocationId::new(&target, 0x5eed);
    let mut start = start_message(id, target.key.as_deref(), journal.len());
    edit(&mut start);
    let (seen, reports) = mpsc::unbounded_channel();
    let collector = Collector { seen }.start();
    let spec = AttemptSpec {
        id,
        epoch: EPOCH,
        target,
        endpoint: base.clone(),
        start,
        journal,
        trace: None,
    };
    let actor = InvocationActor::new(
        spec,
        EndpointClient::default(),
        collector.recipient(),
        timeouts,
    )
    .start();
    Probe { actor, reports, id }
}

impl Probe {
    async fn next(&mut self) -> AttemptEvent {
        tokio::time::timeout(PATIENCE, self.reports.recv())
            .await
            .expect("the actor reports in time")
            .expect("the collector is alive")
    }

    /// The next report, which must be a new entry at `index`; returns the entry and its ack flag.
    async fn entry(&mut self, index: u32) -> (Entry, bool) {
        match self.next().await {
            AttemptEvent::Entry {
                id,
                epoch,
                index: at,
                entry,
                ack,
            } => {
                assert_eq!((id, epoch), (self.id, EPOCH));
                assert_eq!(at, EntryIndex(index), "index of {entry:?}");
                (entry, ack)
            }
            other => panic!("expected entry {index}, got {other:?}"),
        }
    }

    /// The next report, which must be the ending.
    async fn ended(&mut self) -> Ending {
        match self.next().await {
            AttemptEvent::Ended { id, epoch, ending } => {
                assert_eq!((id, epoch), (self.id, EPOCH));
                ending
            }
            other => panic!("expected the ending, got {other:?}"),
        }
    }

    /// Checks nothing is reported for `wait`.
    async fn quiet(&mut self, wait: Duration) {
        // `None`: the collector stopped once the actor that held its address was gone.
        if let Ok(Some(report)) = tokio::time::timeout(wait, self.reports.recv()).await {
            panic!("expected no report, got {report:?}");
        }
    }

    /// Checks the actor stops within the test's patience.
    async fn stopped(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.actor.connected() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the actor is still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- journal helpers ------------------------------------------------------------------------

fn json(value: serde_json::Value) -> Payload {
    Payload(Bytes::from(value.to_string()))
}

fn value(v: serde_json::Value) -> Outcome {
    Outcome::Value(json(v))
}

fn input(v: serde_json::Value) -> JournalItem {
    JournalItem::new(Entry::Input(Input { value: json(v) }))
}

fn output(v: serde_json::Value) -> Entry {
    Entry::Output(Output { result: value(v) })
}

fn hello_call(name: &str) -> Call {
    Call {
        handler: "say".to_owned(),
        headers: Vec::new(),
        idempotency_key: None,
        key: None,
        parameter: json(json!(name)),
        result: None,
        service: "Hello".to_owned(),
    }
}

// ---- the tests ------------------------------------------------------------------------------

#[actix_rt::test]
async fn greeter_reports_its_entries_then_completed() {
    let node = NodeEndpoint::start();
    let target = Target::new("Greeter", "greet", Some("alice".to_owned()));
    let mut run = launch_with(
        &node.base,
        target,
        vec![input(json!("Alice"))],
        PATIENT,
        |start| start.state = vec![("seen".to_owned(), json(json!(2)))],
    );
    assert_eq!(
        run.entry(1).await,
        (
            Entry::GetState(GetState {
                key: "seen".to_owned(),
                result: Some(value(json!(2))),
            }),
            false
        )
    );
    assert_eq!(
        run.entry(2).await,
        (
            Entry::SetState(SetState {
                key: "seen".to_owned(),
                value: json(json!(3)),
            }),
            false
        )
    );
    assert_eq!(
        run.entry(3).await,
        (output(json!("Hello Alice for the 3rd time")), false)
    );
    assert_eq!(run.ended().await, Ending::Completed);
    run.stopped().await;
    run.quiet(Duration::from_millis(100)).await;
}

#[actix_rt::test]
async fn an_attempt_reads_no_more_than_its_credit_window_ahead_of_the_log() {
    let node = NodeEndpoint::start();
    let target = Target::new("Writer", "write", Some("w".to_owned()));
    let writes = CREDIT_WINDOW as u32 + 40;
    let mut run = launch(&node.base, target, vec![input(json!(writes))], PATIENT);
    for index in 1..=CREDIT_WINDOW as u32 {
        run.entry(index).await;
    }
    // Nothing was committed: the SDK's frames wait in the stream, not in the kernel.
    run.quiet(Duration::from_millis(300)).await;
    for _ in 0..10 {
        run.actor.do_send(DeliverCredit);
    }
    for index in CREDIT_WINDOW as u32 + 1..=CREDIT_WINDOW as u32 + 10 {
        run.entry(index).await;
    }
    run.quiet(Duration::from_millis(300)).await;
    for _ in 0..writes {
        run.actor.do_send(DeliverCredit);
    }
    for index in CREDIT_WINDOW as u32 + 11..=writes {
        run.entry(index).await;
    }
    assert_eq!(run.entry(writes + 1).await, (output(json!(writes)), false));
    assert_eq!(run.ended().await, Ending::Completed);
}

#[actix_rt::test]
async fn a_run_result_is_reported_and_the_handler_waits_for_the_ack() {
    let node = NodeEndpoint::start();
    let target = Target::new("Steps", "twice", None);
    let mut run = launch(&node.base, target, vec![input(json!(20))], PATIENT);
    for (index, name, result) in [(1, "first", 21), (2, "second", 42)] {
        let (entry, _) = run.entry(index).await;
        assert_eq!(
            entry,
            Entry::Run(Run {
                name: name.to_owned(),
                result: None,
            })
        );
        match run.next().await {
            AttemptEvent::RunResult {
                index: at,
                outcome,
                ack,
                ..
            } => {
                assert_eq!(at, EntryIndex(index));
                assert_eq!(outcome, value(json!(result)));
                assert!(ack, "a run result asks for an ack");
            }
            other => panic!("expected the result of run {name}, got {other:?}"),
        }
        // Without the ack the handler must not go on.
        run.quiet(Duration::from_millis(300)).await;
        run.actor.do_send(DeliverAck {
            index: EntryIndex(index),
        });
    }
    assert_eq!(run.entry(3).await, (output(json!(42)), false));
    assert_eq!(run.ended().await, Ending::Completed);
    run.stopped().await;
}

#[actix_rt::test]
async fn a_call_completes_after_the_kernel_delivers_its_result() {
    let node = NodeEndpoint::start();
    let target = Target::new("Chain", "call", None);
    let mut run = launch(&node.base, target, vec![input(json!("Bob"))], PATIENT);
    assert_eq!(run.entry(1).await, (Entry::Call(hello_call("Bob")), false));
    run.quiet(Duration::from_millis(200)).await;
    let result = DeliverCompletion {
        index: EntryIndex(1),
        outcome: value(json!("Hello Bob")),
    };
    run.actor.do_send(result.clone());
    // A duplicate is dropped by the actor; the SDK would otherwise see two results.
    run.actor.do_send(result);
    assert_eq!(run.entry(2).await, (output(json!("Hello Bob!")), false));
    assert_eq!(run.ended().await, Ending::Completed);
    run.stopped().await;
}

#[actix_rt::test]
async fn a_replayed_completed_call_is_skipped() {
    let node = NodeEndpoint::start();
    let target = Target::new("Chain", "call", None);
    let call = JournalItem {
        completion: Some(value(json!("Hello Bob"))),
        ..JournalItem::new(Entry::Call(hello_call("Bob")))
    };
    let mut run = launch(&node.base, target, vec![input(json!("Bob")), call], PATIENT);
    // No second call entry: the first new entry is the output, at index 2.
    assert_eq!(run.entry(2).await, (output(json!("Hello Bob!")), false));
    assert_eq!(run.ended().await, Ending::Completed);
    // The replayed result already reached the SDK: a late delivery changes nothing.
    run.actor.do_send(DeliverCompletion {
        index: EntryIndex(1),
        outcome: value(json!("other")),
    });
    run.stopped().await;
    run.quiet(Duration::from_millis(100)).await;
}

#[actix_rt::test]
async fn a_replayed_pending_call_waits_for_its_completion() {
    let node = NodeEndpoint::start();
    let target = Target::new("Chain", "call", None);
    let call = JournalItem::new(Entry::Call(hello_call("Eve")));
    let mut run = launch(&node.base, target, vec![input(json!("Eve")), call], PATIENT);
    run.quiet(Duration::from_millis(300)).await;
    run.actor.do_send(DeliverCompletion {
        index: EntryIndex(1),
        outcome: value(json!("Hi Eve")),
    });
    assert_eq!(run.entry(2).await, (output(json!("Hi Eve!")), false));
    assert_eq!(run.ended().await, Ending::Completed);
}

#[actix_rt::test]
async fn a_blocked_handler_suspends_after_the_inactivity_timeout() {
    let node = NodeEndpoint::start();
    let target = Target::new("Sleeper", "nap", None);
    let timeouts = Timeouts {
        inactivity: Duration::from_millis(300),
        abort: Duration::from_secs(30),
    };
    // Shorter than the SDK's own suspension delay (30 s): only the kernel's close suspends it.
    let mut run = launch(&node.base, target, vec![input(json!(20_000))], timeouts);
    assert_eq!(
        run.entry(1).await,
        (
            Entry::Sleep(Sleep {
                duration_ms: 20_000,
                result: None,
            }),
            false
        )
    );
    assert_eq!(
        run.ended().await,
        Ending::Suspended {
            waiting: vec![EntryIndex(1)]
        }
    );
    run.stopped().await;
}

#[actix_rt::test]
async fn an_attempt_that_does_not_end_after_the_close_is_aborted() {
    let node = NodeEndpoint::start();
    let target = Target::new("Steps", "slow", None);
    let timeouts = Timeouts {
        inactivity: Duration::from_millis(200),
        abort: Duration::from_millis(300),
    };
    let mut run = launch(&node.base, target, vec![input(json!(30_000))], timeouts);
    let (entry, _) = run.entry(1).await;
    assert!(matches!(entry, Entry::Run(_)), "{entry:?}");
    match run.ended().await {
        Ending::Failed {
            code,
            message,
            retryable,
            ..
        } => {
            assert!(retryable);
            assert_eq!(code, 500);
            assert!(
                message.starts_with("attempt aborted after 300ms"),
                "{message}"
            );
        }
        other => panic!("expected an abort, got {other:?}"),
    }
    run.stopped().await;
}

#[actix_rt::test]
async fn stop_drops_the_attempt_without_an_ending() {
    let node = NodeEndpoint::start();
    let target = Target::new("Sleeper", "nap", None);
    // Shorter than the SDK's suspension delay (30 s), so the handler keeps its stream open.
    let mut run = launch(&node.base, target, vec![input(json!(20_000))], PATIENT);
    let (entry, _) = run.entry(1).await;
    assert!(matches!(entry, Entry::Sleep(_)), "{entry:?}");
    run.actor.do_send(Stop);
    run.stopped().await;
    run.quiet(Duration::from_millis(300)).await;
}

#[actix_rt::test]
async fn an_endpoint_that_is_down_fails_the_attempt_retryably() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let base: Uri = format!("http://127.0.0.1:{port}").parse().expect("a URI");
    let target = Target::new("Hello", "say", None);
    let mut run = launch(&base, target, vec![input(json!("nobody"))], PATIENT);
    match run.ended().await {
        Ending::Failed {
            code,
            message,
            retryable,
            retry_after_ms,
        } => {
            assert!(retryable);
            assert_eq!(code, 503);
            assert_eq!(retry_after_ms, None);
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    run.stopped().await;
}

#[actix_rt::test]
async fn an_unknown_handler_fails_the_attempt_retryably() {
    let node = NodeEndpoint::start();
    let target = Target::new("Hello", "missing", None);
    let mut run = launch(&node.base, target, vec![input(json!("x"))], PATIENT);
    match run.ended().await {
        Ending::Failed {
            code,
            message,
            retryable,
            ..
        } => {
            assert!(retryable);
            assert_eq!(code, 500);
            assert!(message.contains("404"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_terminal_error_is_the_failed_output_then_completed() {
    // The SDK turns a TerminalError into an output entry holding the failure, then `end`
    // (docs/protocol.md, section 5): the state machine completes the invocation with it.
    let node = NodeEndpoint::start();
    let target = Target::new("Failing", "terminal", None);
    let mut run = launch(&node.base, target, vec![input(json!(null))], PATIENT);
    assert_eq!(
        run.entry(1).await,
        (
            Entry::Output(Output {
                result: Outcome::Failure(Failure {
                    code: 418,
                    message: "no coffee here".to_owned(),
                }),
            }),
            false
        )
    );
    assert_eq!(run.ended().await, Ending::Completed);
}

#[actix_rt::test]
async fn a_thrown_error_fails_the_attempt_retryably() {
    let node = NodeEndpoint::start();
    let target = Target::new("Failing", "transient", None);
    let mut run = launch(&node.base, target, vec![input(json!(null))], PATIENT);
    assert_eq!(
        run.ended().await,
        Ending::Failed {
            code: 500,
            message: "try again later".to_owned(),
            retryable: true,
            retry_after_ms: None,
        }
    );
}

#[actix_rt::test]
async fn a_journal_that_does_not_match_the_code_fails_with_570() {
    let node = NodeEndpoint::start();
    let target = Target::new("Chain", "call", None);
    let mut wrong = hello_call("Bob");
    wrong.service = "Elsewhere".to_owned();
    let mut run = launch(
        &node.base,
        target,
        vec![input(json!("Bob")), JournalItem::new(Entry::Call(wrong))],
        PATIENT,
    );
    match run.ended().await {
        Ending::Failed {
            code, retryable, ..
        } => assert_eq!((code, retryable), (570, true)),
        other => panic!("expected a journal mismatch, got {other:?}"),
    }
}

/// Runs `Bad/{handler}` of the misbehaving endpoint and returns the failure it ends with.
async fn violation_of(handler: &str) -> (u16, String, bool) {
    let node = NodeEndpoint::start_fixture("misbehaving.mjs");
    let target = Target::new("Bad", handler, None);
    let mut run = launch(&node.base, target, vec![input(json!(null))], PATIENT);
    let ending = run.ended().await;
    run.stopped().await;
    match ending {
        Ending::Failed {
            code,
            message,
            retryable,
            ..
        } => (code, message, retryable),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[actix_rt::test]
async fn undecodable_bytes_fail_the_attempt_as_a_protocol_violation() {
    let (code, message, retryable) = violation_of("garbage").await;
    assert_eq!((code, retryable), (571, true));
    assert!(
        message.starts_with("protocol violation by endpoint"),
        "{message}"
    );
}

#[actix_rt::test]
async fn a_start_message_from_the_endpoint_is_a_protocol_violation() {
    let (code, message, retryable) = violation_of("start").await;
    assert_eq!((code, retryable), (571, true));
    assert!(message.contains("start message"), "{message}");
}

#[actix_rt::test]
async fn a_response_without_an_ending_fails_the_attempt_retryably() {
    let (code, message, retryable) = violation_of("silent").await;
    assert_eq!((code, retryable), (571, true));
    assert!(
        message.contains("without end, suspension or error"),
        "{message}"
    );
}
