//! `holdfast bench floor`: the least a durable engine can do per request on this machine, to tell
//! how much of the kernel's time and CPU is its own design and how much is the machine's.
//!
//! One thread serves HTTP/1.1, runs each invocation against the real endpoint over the kernel's own
//! HTTP/2 client and protocol codec, and makes every point the kernel makes durable durable in the
//! same order: the accepted invocation, each acknowledged run result, a sleep before its timer, a
//! call before and after its callee, and the entries with the output before the answer. Durable
//! means one group commit (a redb transaction, or a plain file write) and fdatasync, shared by
//! every record that is waiting. No consensus, no actors, no state machine, no state kept, no
//! retries, one attempt per invocation: not an engine, a floor to measure engines against.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use holdfast_endpoint::{EndpointClient, Event};
use holdfast_protocol::message::{Completion, EntryAck, Input, Start};
use holdfast_protocol::{Entry, EntryIndex, Flags, Message, Outcome, Payload};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Options of `holdfast bench floor`.
#[derive(Args)]
pub struct FloorArgs {
    /// Where to serve HTTP/1.1 (`POST /Service/handler`, `/Service/key/handler`, `…/send`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The endpoint serving the handlers.
    #[arg(long, default_value = "http://127.0.0.1:9080")]
    endpoint: http::Uri,
    /// Directory for the log (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// How records are made durable.
    #[arg(long, value_enum, default_value_t = LogKind::Redb)]
    log: LogKind,
    /// Commit on a thread of its own, as the kernel's log writer does, instead of on the one
    /// thread that serves requests: what handing each commit to another thread costs.
    #[arg(long)]
    log_thread: bool,
}

/// The durable log of the floor.
#[derive(Clone, Copy, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// One redb write transaction per group commit, durability `Immediate`, as the kernel's log.
    Redb,
    /// One `pwrite` of the group's records, then `fdatasync`: the disk's own floor.
    File,
}

/// Why the floor could not serve.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// Reading a request, writing the log file or answering failed.
    #[error("log: {0}")]
    Io(#[from] std::io::Error),
    /// The redb log failed.
    #[error("log: {0}")]
    Redb(#[from] redb::Error),
    /// The log's writer stopped; nothing can be made durable any more.
    #[error("the log stopped")]
    LogStopped,
    /// The exchange with the endpoint failed.
    #[error("{0}")]
    Endpoint(#[from] holdfast_endpoint::Error),
    /// A frame did not encode or decode.
    #[error("protocol: {0}")]
    Protocol(#[from] holdfast_protocol::Error),
    /// A message or entry the floor has no part for (suspension, awakeables, promises, …).
    #[error("the endpoint sent {0}, which the floor does not serve")]
    Unsupported(&'static str),
    /// The endpoint ended without an `output` entry.
    #[error("the attempt ended without an output")]
    NoOutput,
    /// The handler failed terminally with this code.
    #[error("terminal failure {0}")]
    Terminal(u16),
}

/// Records waiting for the next group commit.
struct Append {
    record: Bytes,
    done: oneshot::Sender<()>,
}

/// Where group commits go.
enum Log {
    Redb(redb::Database),
    File { file: std::fs::File, offset: u64 },
}

/// The kernel's default `invocation.max_concurrent_attempts`.
const MAX_ATTEMPTS: usize = 256;

const RECORDS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");

impl Log {
    fn open(kind: LogKind, dir: &std::path::Path) -> Result<Log, FloorError> {
        std::fs::create_dir_all(dir)?;
        Ok(match kind {
            LogKind::Redb => Log::Redb(
                redb::Database::create(dir.join("floor.redb")).map_err(redb::Error::from)?,
            ),
            LogKind::File => Log::File {
                file: std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(dir.join("floor.log"))?,
                offset: 0,
            },
        })
    }

    /// Adds every append already waiting to `batch`, makes them durable in one commit and tells
    /// their senders.
    fn commit_waiting(
        &mut self,
        pending: &mut mpsc::Receiver<Append>,
        batch: &mut Vec<Append>,
        counters: &Counters,
    ) -> Result<(), FloorError> {
        while let Ok(more) = pending.try_recv() {
            batch.push(more);
        }
        let seq = counters
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.commit(seq, batch)?;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        for append in batch.drain(..) {
            let _ = append.done.send(());
        }
        Ok(())
    }

    /// Makes `batch` durable (blocking the thread: the floor has nothing else to do meanwhile).
    fn commit(&mut self, first: u64, batch: &[Append]) -> Result<(), FloorError> {
        match self {
            Log::Redb(db) => {
                let txn = db.begin_write().map_err(redb::Error::from)?;
                {
                    let mut table = txn.open_table(RECORDS).map_err(redb::Error::from)?;
                    for (seq, append) in (first..).zip(batch) {
                        table
                            .insert(seq, &append.record[..])
                            .map_err(redb::Error::from)?;
                    }
                }
                txn.commit().map_err(redb::Error::from)?;
            }
            Log::File { file, offset } => {
                let mut buffer = Vec::new();
                for append in batch {
                    buffer.extend_from_slice(&(append.record.len() as u32).to_le_bytes());
                    buffer.extend_from_slice(&append.record);
                }
                file.write_all_at(&buffer, *offset)?;
                file.sync_data()?;
                *offset += buffer.len() as u64;
            }
        }
        Ok(())
    }
}

/// Counters printed when the floor stops; `in_flight` is also served at `GET /in-flight`.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    /// Invocations started, callees included: numbers their ids.
    invocations: AtomicU64,
    commits: AtomicU64,
    records: AtomicU64,
    in_flight: AtomicU64,
    /// How many invocations failed, by error.
    failures: std::sync::Mutex<HashMap<String, u64>>,
}

/// Held while an invocation of one object key runs.
type KeyTurn = Arc<Mutex<()>>;

/// What every connection shares.
struct Floor {
    client: EndpointClient,
    endpoint: http::Uri,
    log: mpsc::Sender<Append>,
    keys: std::sync::Mutex<HashMap<(String, String), KeyTurn>>,
    /// Bounds the attempts one-way sends run at once.
    attempts: tokio::sync::Semaphore,
    counters: Arc<Counters>,
}

/// A handler to invoke.
struct Target {
    service: String,
    key: Option<String>,
    handler: String,
}

/// Runs the floor until SIGTERM or SIGINT, then prints its counters as one JSON line.
pub fn run(args: FloorArgs) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut log = Log::open(args.log, &args.dir)?;
        let counters = Arc::new(Counters::default());
        let (appends, mut pending) = mpsc::channel::<Append>(4096);
        let written = counters.clone();
        let (stop_writer, mut writer) = oneshot::channel::<Result<(), FloorError>>();
        if args.log_thread {
            std::thread::Builder::new()
                .name("floor-log".into())
                .spawn(move || {
                    let mut batch = Vec::new();
                    let result = loop {
                        let Some(first) = pending.blocking_recv() else {
                            break Ok(());
                        };
                        batch.push(first);
                        if let Err(e) = log.commit_waiting(&mut pending, &mut batch, &written) {
                            break Err(e);
                        }
                    };
                    let _ = stop_writer.send(result);
                })?;
        } else {
            tokio::spawn(async move {
                let mut batch = Vec::new();
                let result = loop {
                    let Some(first) = pending.recv().await else {
                        break Ok(());
                    };
                    batch.push(first);
                    if let Err(e) = log.commit_waiting(&mut pending, &mut batch, &written) {
                        break Err(e);
                    }
                };
                let _ = stop_writer.send(result);
            });
        }
        let floor = Arc::new(Floor {
            client: EndpointClient::default(),
            endpoint: args.endpoint,
            log: appends,
            keys: std::sync::Mutex::new(HashMap::new()),
            attempts: tokio::sync::Semaphore::new(MAX_ATTEMPTS),
            counters: counters.clone(),
        });
        let listener = TcpListener::bind(args.listen).await?;
        let signal = crate::wait_for_signal().await?;
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                stopped = &mut writer => return Err(match stopped {
                    Ok(Err(e)) => e,
                    _ => FloorError::LogStopped,
                }.into()),
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    stream.set_nodelay(true)?;
                    let floor = floor.clone();
                    tokio::spawn(async move { floor.serve(stream).await });
                }
            }
        }
        Ok(serde_json::json!({
            "bench": "floor",
            "log": args.log,
            "log_thread": args.log_thread,
            "requests": counters.requests.load(Ordering::Relaxed),
            "failures": *counters.failures.lock().unwrap_or_else(|poison| poison.into_inner()),
            "records": counters.records.load(Ordering::Relaxed),
            "commits": counters.commits.load(Ordering::Relaxed),
        }))
    })
}

impl Floor {
    /// Serves one keep-alive connection until the client closes it.
    async fn serve(self: Arc<Self>, stream: TcpStream) -> Result<(), FloorError> {
        let mut stream = BufReader::new(stream);
        while let Some(Request { path, body, close }) = read_request(&mut stream).await? {
            let (status, body) = if path == "/in-flight" {
                let n = self.counters.in_flight.load(Ordering::Relaxed);
                ("200 OK", Bytes::from(n.to_string()))
            } else {
                self.clone().answer(&path, body).await
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let stream = stream.get_mut();
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            if close {
                break;
            }
        }
        Ok(())
    }

    /// Answers one request: the handler's output, 202 once a one-way send is durable, or an error.
    async fn answer(self: Arc<Self>, path: &str, body: Bytes) -> (&'static str, Bytes) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let one_way = segments.len() > 2 && segments.last() == Some(&"send");
        if one_way {
            segments.pop();
        }
        let target = match segments[..] {
            [service, handler] => Target {
                service: service.to_owned(),
                key: None,
                handler: handler.to_owned(),
            },
            [service, key, handler] => Target {
                service: service.to_owned(),
                key: Some(key.to_owned()),
                handler: handler.to_owned(),
            },
            _ => {
                return error(
                    "404 Not Found",
                    "not_found",
                    "expected /Service/[key/]handler",
                );
            }
        };
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = if one_way {
            match self.durable(body.clone()).await {
                Ok(()) => {
                    tokio::spawn(async move {
                        // As many attempts at once as the kernel allows by default; the rest of
                        // a backlog waits here.
                        let Ok(_permit) = self.attempts.acquire().await else {
                            return;
                        };
                        let outcome = self.clone().invoke(target, body, false).await;
                        self.finish(&outcome);
                    });
                    return ("202 Accepted", Bytes::from_static(b"{}"));
                }
                Err(e) => Err(e),
            }
        } else {
            self.clone().invoke(target, body, true).await
        };
        self.finish(&result);
        match result {
            Ok(output) => ("200 OK", output),
            Err(e) => error("500 Internal Server Error", "floor", &e.to_string()),
        }
    }

    fn finish(&self, result: &Result<Bytes, FloorError>) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = result {
            let mut failures = self
                .counters
                .failures
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            *failures.entry(e.to_string()).or_default() += 1;
        }
    }

    /// Waits until `record` is on disk, sharing the group commit with every record waiting.
    async fn durable(&self, record: Bytes) -> Result<(), FloorError> {
        let (done, durable) = oneshot::channel();
        self.log
            .send(Append { record, done })
            .await
            .map_err(|_| FloorError::LogStopped)?;
        durable.await.map_err(|_| FloorError::LogStopped)
    }

    /// Runs one invocation to its output; invocations of one key run one after another, as the
    /// kernel runs them, and a key's turn is forgotten once nobody holds or waits for it.
    async fn invoke(
        self: Arc<Self>,
        target: Target,
        input: Bytes,
        accept: bool,
    ) -> Result<Bytes, FloorError> {
        let Some(key) = target.key.clone().map(|key| (target.service.clone(), key)) else {
            return self.attempt(target, input, accept).await;
        };
        let turn = self.key_turns().entry(key.clone()).or_default().clone();
        let result = {
            let _held = turn.lock().await;
            self.clone().attempt(target, input, accept).await
        };
        let mut turns = self.key_turns();
        // The map's reference and this one: nobody else holds or waits for the key.
        if Arc::strong_count(&turn) == 2 {
            turns.remove(&key);
        }
        result
    }

    fn key_turns(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), KeyTurn>> {
        self.keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// One attempt of an invocation, every durable point committed in order.
    async fn attempt(
        self: Arc<Self>,
        target: Target,
        input: Bytes,
        accept: bool,
    ) -> Result<Bytes, FloorError> {
        if accept {
            self.durable(input.clone()).await?;
        }
        let id = self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let start = Start {
            attempt: 1,
            awakeable_key: Payload::from(&[0u8; 32][..]),
            headers: Vec::new(),
            id: format!("inv_{id:048x}"),
            key: target.key.clone(),
            known_entries: 1,
            retry_count: 0,
            retry_elapsed_ms: 0,
            retry_entry: None,
            state: Vec::new(),
            state_complete: true,
        };
        let journal = vec![Message::Entry(Entry::Input(Input {
            value: Payload(input),
        }))];
        let mut attempt = self
            .client
            .start_attempt(
                &self.endpoint,
                &target.service,
                &target.handler,
                start,
                journal,
            )
            .await?;
        let sender = attempt.sender();
        let mut next = 1u32;
        let mut unsaved = Vec::new();
        let mut output = None;
        while let Some(event) = attempt.next().await {
            let frame = match event {
                Event::Message(frame) => frame,
                Event::ProtocolViolation(e) => return Err(e.into()),
                Event::Failed(e) => return Err(e.into()),
            };
            unsaved.extend_from_slice(&frame.to_bytes()?);
            let owes_ack = frame.flags.contains(Flags::ACK);
            let acked = match frame.message {
                Message::Entry(entry) => {
                    let index = EntryIndex(next);
                    next += 1;
                    match entry {
                        Entry::Output(out) => output = Some(out.result),
                        Entry::Sleep(sleep) => {
                            self.durable(Bytes::from(std::mem::take(&mut unsaved)))
                                .await?;
                            tokio::time::sleep(Duration::from_millis(sleep.duration_ms)).await;
                            self.durable(Bytes::from_static(b"fired")).await?;
                            sender.completion(void(index)).await?;
                        }
                        Entry::Call(call) => {
                            self.durable(Bytes::from(std::mem::take(&mut unsaved)))
                                .await?;
                            let callee = Target {
                                service: call.service,
                                key: call.key,
                                handler: call.handler,
                            };
                            let result =
                                Box::pin(self.clone().invoke(callee, call.parameter.0, false))
                                    .await?;
                            self.durable(result.clone()).await?;
                            sender
                                .completion(Completion {
                                    entry: index,
                                    result: Outcome::Value(Payload(result)),
                                })
                                .await?;
                        }
                        Entry::Run(_)
                        | Entry::GetState(_)
                        | Entry::SetState(_)
                        | Entry::ClearState(_)
                        | Entry::ClearAllState(_) => {}
                        _ => return Err(FloorError::Unsupported("an entry type")),
                    }
                    index
                }
                Message::Completion(completion) => completion.entry,
                Message::End(_) => {
                    // Read on to the end of the response: dropping the attempt before it would
                    // reset the stream, and endpoints refuse peers that reset streams often.
                    self.durable(Bytes::from(std::mem::take(&mut unsaved)))
                        .await?;
                    continue;
                }
                Message::Suspension(_) => return Err(FloorError::Unsupported("suspension")),
                Message::Error(_) => return Err(FloorError::Unsupported("error")),
                Message::Start(_) | Message::EntryAck(_) => {
                    return Err(FloorError::Unsupported("a kernel message"));
                }
            };
            if owes_ack {
                self.durable(Bytes::from(std::mem::take(&mut unsaved)))
                    .await?;
                sender.ack(EntryAck { entry: acked }).await?;
            }
        }
        match output {
            Some(Outcome::Value(value)) => Ok(value.0),
            Some(Outcome::Failure(failure)) => Err(FloorError::Terminal(failure.code)),
            _ => Err(FloorError::NoOutput),
        }
    }
}

fn void(entry: EntryIndex) -> Completion {
    Completion {
        entry,
        result: Outcome::Void,
    }
}

fn error(status: &'static str, code: &str, message: &str) -> (&'static str, Bytes) {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    (status, Bytes::from(body))
}

/// One HTTP/1.1 request, as much of it as the floor needs.
struct Request {
    path: String,
    body: Bytes,
    /// The client sent `connection: close`.
    close: bool,
}

/// Reads one request; `None` when the client closed the connection.
async fn read_request(stream: &mut BufReader<TcpStream>) -> Result<Option<Request>, FloorError> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(Some(Request {
        path,
        body: Bytes::from(body),
        close,
    }))
}
