//! One invocation attempt in streaming mode: a writer task feeding the open request body under
//! HTTP/2 flow control, and an incremental reader decoding the response body into events.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{Reason, RecvStream, SendStream};
use holdfast_protocol::message::{Completion, EntryAck};
use holdfast_protocol::{Decoder, Frame, INVOCATION_CONTENT_TYPE, Message};
use http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::Error;
use crate::discover::media_type;

/// Something the endpoint said (or failed to say) during an attempt.
#[derive(Debug)]
pub enum Event {
    /// A decoded frame: a new entry, a run result, a suspension, an error, an output or `end`.
    /// The frame keeps its flags, so `flags.contains(Flags::ACK)` tells whether an ack is owed.
    Message(Frame),
    /// The endpoint sent bytes that do not decode; the attempt is over and its stream was reset.
    ProtocolViolation(holdfast_protocol::Error),
    /// The exchange failed: transport error, reset, or a response other than 200 with the
    /// invocation content type. The attempt is over.
    Failed(Error),
}

/// What the writer task is asked to put on the request stream, in order.
enum Outgoing {
    /// Encoded frames.
    Frames(Bytes),
    /// End the request body.
    Close,
}

/// How the attempt stops the writer when the reader side is done.
enum Shutdown {
    /// Abandon the exchange: RST_STREAM with CANCEL.
    Reset,
    /// The endpoint finished its response: end the request body too.
    Finish,
}

/// The kernel's side of an attempt's request body; clones share the stream and keep message order.
#[derive(Clone, Debug)]
pub struct AttemptSender {
    queue: mpsc::Sender<Outgoing>,
    endpoint: Arc<str>,
}

impl AttemptSender {
    /// Sends the result of a completable entry.
    ///
    /// Returns once the frame is queued (waiting while the queue is full, which is how HTTP/2 flow
    /// control pushes back); fails if the request side is already closed or reset.
    pub async fn completion(&self, completion: Completion) -> Result<(), Error> {
        self.send(Message::Completion(completion)).await
    }

    /// Tells the endpoint an entry (and every entry before it) is durable.
    pub async fn ack(&self, ack: EntryAck) -> Result<(), Error> {
        self.send(Message::EntryAck(ack)).await
    }

    /// Ends the request side after the frames already queued: a handler that is blocked only on
    /// the kernel then suspends at once. Closing an attempt already closed or over does nothing.
    pub async fn close(&self) {
        // An error only means the writer is gone, i.e. the request side is already closed.
        let _ = self.queue.send(Outgoing::Close).await;
    }

    async fn send(&self, message: Message) -> Result<(), Error> {
        let bytes = Frame::new(message)
            .to_bytes()
            .map_err(|source| Error::Encode {
                endpoint: self.endpoint.to_string(),
                source,
            })?;
        self.queue
            .send(Outgoing::Frames(bytes.freeze()))
            .await
            .map_err(|_| Error::AttemptClosed {
                endpoint: self.endpoint.to_string(),
            })
    }
}

/// The state of the response side.
enum Response {
    /// Waiting for the response headers.
    Pending(ResponseFuture),
    /// Reading the body.
    Body(RecvStream),
    /// Nothing more will come.
    Over,
}

/// A running attempt: read what the endpoint sends with [`Attempt::next`], send completions and
/// acks through [`Attempt::sender`]. Dropping it resets the stream so the endpoint stops promptly.
pub struct Attempt {
    response: Response,
    buffer: BytesMut,
    decoder: Decoder,
    sender: AttemptSender,
    shutdown: Option<oneshot::Sender<Shutdown>>,
    path: String,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("endpoint", &self.sender.endpoint)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Everything needed to run an attempt once its request is on the wire.
pub(crate) struct Opened {
    pub(crate) response: ResponseFuture,
    pub(crate) body: SendStream<Bytes>,
    /// `start` and the journal, already encoded.
    pub(crate) initial: Bytes,
    pub(crate) endpoint: String,
    pub(crate) path: String,
    pub(crate) max_frame_len: u32,
    pub(crate) queue_len: usize,
}

impl Attempt {
    /// Queues the initial frames, starts the writer task and wraps the response side.
    pub(crate) fn spawn(opened: Opened) -> Self {
        let (queue, outgoing) = mpsc::channel(opened.queue_len.max(1));
        let (shutdown, stop) = oneshot::channel();
        let endpoint: Arc<str> = Arc::from(opened.endpoint);
        let mut body = opened.body;
        // Queued now, before the connection's task next runs, the initial frames leave in the
        // same write as the request's HEADERS (one send and one wake-up of the endpoint, not
        // two). What the windows do not allow yet, h2 holds; `initial` holds those bytes anyway.
        // If the stream cannot take them, the writer tries again and reports why.
        let initial = match body.send_data(opened.initial.clone(), false) {
            Ok(()) => None,
            Err(_) => Some(opened.initial),
        };
        tokio::spawn(write(body, initial, outgoing, stop, endpoint.clone()));
        Attempt {
            response: Response::Pending(opened.response),
            buffer: BytesMut::new(),
            decoder: Decoder::new(opened.max_frame_len),
            sender: AttemptSender { queue, endpoint },
            shutdown: Some(shutdown),
            path: opened.path,
        }
    }

    /// A handle for sending completions and acks and for closing the request side.
    pub fn sender(&self) -> AttemptSender {
        self.sender.clone()
    }

    /// The next event from the endpoint, or `None` once its response has ended (or the attempt
    /// failed). Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match &mut self.response {
                Response::Over => return None,
                Response::Pending(future) => match future.await {
                    Ok(response) => {
                        if let Some(error) = self.refuse(&response) {
                            self.stop(Shutdown::Reset);
                            return Some(Event::Failed(error));
                        }
                        self.response = Response::Body(response.into_body());
                    }
                    Err(source) => {
                        self.stop(Shutdown::Reset);
                        return Some(Event::Failed(self.transport(source)));
                    }
                },
                Response::Body(body) => {
                    match self.decoder.decode(&mut self.buffer) {
                        Ok(Some(frame)) => return Some(Event::Message(frame)),
                        Ok(None) => {}
                        Err(violation) => {
                            self.stop(Shutdown::Reset);
                            return Some(Event::ProtocolViolation(violation));
                        }
                    }
                    match body.data().await {
                        Some(Ok(chunk)) => {
                            // Only a buffered partial frame is ever waiting, so releasing the
                            // window at once keeps memory bounded by the frame limit.
                            if let Err(e) = body.flow_control().release_capacity(chunk.len()) {
                                debug!(error = %e, "cannot release HTTP/2 receive capacity");
                            }
                            self.buffer.extend_from_slice(&chunk);
                        }
                        Some(Err(source)) => {
                            self.stop(Shutdown::Reset);
                            return Some(Event::Failed(self.transport(source)));
                        }
                        None => {
                            let finished = self.decoder.finish(&self.buffer);
                            self.stop(Shutdown::Finish);
                            return finished.err().map(Event::ProtocolViolation);
                        }
                    }
                }
            }
        }
    }

    /// Why a response cannot carry the attempt, if it cannot.
    fn refuse(&self, response: &http::Response<RecvStream>) -> Option<Error> {
        let endpoint = self.sender.endpoint.to_string();
        if response.status() != StatusCode::OK {
            return Some(Error::Status {
                endpoint,
                path: self.path.clone(),
                status: response.status(),
                detail: String::new(),
            });
        }
        let found = media_type(response.headers());
        if found.as_deref() != Some(INVOCATION_CONTENT_TYPE) {
            return Some(Error::ContentType {
                endpoint,
                path: self.path.clone(),
                expected: INVOCATION_CONTENT_TYPE,
                found,
            });
        }
        None
    }

    fn transport(&self, source: h2::Error) -> Error {
        Error::Transport {
            endpoint: self.sender.endpoint.to_string(),
            source,
        }
    }

    /// Ends the response side and tells the writer how to end the request side.
    fn stop(&mut self, how: Shutdown) {
        self.response = Response::Over;
        self.buffer = BytesMut::new();
        if let Some(shutdown) = self.shutdown.take() {
            // The writer may already be gone (request side closed): nothing left to do then.
            let _ = shutdown.send(how);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(Shutdown::Reset);
        }
    }
}

/// What woke the writer up.
enum Wake {
    Stop(Shutdown),
    Next(Option<Outgoing>),
}

/// The writer task: owns the request body, writes queued frames in order, ends or resets it.
async fn write(
    mut body: SendStream<Bytes>,
    initial: Option<Bytes>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut stop: oneshot::Receiver<Shutdown>,
    endpoint: Arc<str>,
) {
    let mut next = initial.map(Outgoing::Frames);
    loop {
        let item = match next.take() {
            Some(item) => Wake::Next(Some(item)),
            None => tokio::select! {
                biased;
                how = &mut stop => Wake::Stop(how.unwrap_or(Shutdown::Reset)),
                item = queue.recv() => Wake::Next(item),
            },
        };
        let frames = match item {
            Wake::Stop(how) => return end(&mut body, how, &endpoint),
            // Every sender is gone, the attempt's included: the attempt was dropped.
            Wake::Next(None) => return end(&mut body, Shutdown::Reset, &endpoint),
            Wake::Next(Some(Outgoing::Close)) => {
                return end(&mut body, Shutdown::Finish, &endpoint);
            }
            Wake::Next(Some(Outgoing::Frames(frames))) => frames,
        };
        let written = tokio::select! {
            biased;
            how = &mut stop => Err(Some(how.unwrap_or(Shutdown::Reset))),
            result = write_all(&mut body, frames) => result.map_err(|e| {
                debug!(%endpoint, error = %e, "request stream failed");
                None
            }),
        };
        match written {
            Ok(()) => {}
            Err(Some(how)) => return end(&mut body, how, &endpoint),
            // The stream is broken; the reader reports why.
            Err(None) => return,
        }
    }
}

/// Writes `data` as DATA frames, never more than the capacity HTTP/2 flow control grants.
async fn write_all(body: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        body.reserve_capacity(data.len());
        let mut granted = body.capacity();
        while granted == 0 {
            granted = match poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(result) => result?,
                None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
            };
        }
        let chunk = data.split_to(granted.min(data.len()));
        body.send_data(chunk, false)?;
    }
    Ok(())
}

/// Ends the request body gracefully or resets the stream.
fn end(body: &mut SendStream<Bytes>, how: Shutdown, endpoint: &str) {
    match how {
        Shutdown::Reset => body.send_reset(Reason::CANCEL),
        Shutdown::Finish => {
            if let Err(e) = body.send_data(Bytes::new(), true) {
                debug!(%endpoint, error = %e, "cannot end the request stream");
            }
        }
    }
}
