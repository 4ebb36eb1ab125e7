//! [`InvocationActor`]: one attempt, from opening the request to reporting how it ended.
//!
//! Every handler is synchronous. Opening the attempt and writing to its request side run as
//! futures spawned on the actor's context; what the endpoint sends comes back as a stream of
//! [`Event`]s handled one at a time, so reports leave in the order the SDK wrote its frames.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::stream::{self, Stream};
use holdfast_endpoint::{Attempt, AttemptSender, EndpointClient, Event};
use holdfast_protocol::Message as ProtocolMessage;
use holdfast_protocol::message::{Completion, EntryAck, Start};
use holdfast_types::{Ending, Epoch, InvocationId, Target};
use http::Uri;
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::session::{Session, Step, Violation};
use crate::span::AttemptSpan;
use crate::{
    AttemptEvent, AttemptSpec, CREDIT_WINDOW, DeliverAck, DeliverCompletion, DeliverCredit, Stop,
    Timeouts, replay,
};
use holdfast_otlp::SpanSink;

/// Code of a retryable failure caused by the endpoint being unreachable or the stream breaking.
pub const UNAVAILABLE: u16 = 503;
/// Code of a retryable failure the endpoint caused otherwise (bad status, abort after silence).
pub const INTERNAL: u16 = 500;
/// Code of a retryable failure caused by the SDK breaking the protocol.
pub const PROTOCOL_VIOLATION: u16 = 571;

/// How long the actor keeps reading after the SDK's last message so that the exchange ends
/// gracefully instead of being reset; the SDK closes its response right after it.
const DRAIN: Duration = Duration::from_secs(5);
/// Frames (completions, acks) queued for the SDK at most; beyond, the endpoint is not reading.
const OUTBOUND_LIMIT: usize = 1024;

/// What the kernel writes into the attempt's request body, in the order it was decided.
#[derive(Debug)]
enum Outbound {
    Completion(Completion),
    Ack(EntryAck),
    Close,
}

/// Where the attempt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The request side is open: completions and acks are forwarded.
    Running,
    /// The request side was closed for inactivity; the abort timer runs.
    Closed,
    /// Ended was reported (or the attempt was stopped): nothing more is reported.
    Over,
}

/// Drives one attempt of one invocation against its endpoint and reports every new entry, run
/// result and the ending to the partition that started it. The partition starts one per
/// `Effect::RunAttempt` and sends it completions and acks as they become durable.
pub struct InvocationActor {
    id: InvocationId,
    epoch: Epoch,
    target: Target,
    endpoint: Uri,
    /// `start` and the replayed journal, handed to the endpoint client when the actor starts.
    opening: Option<(Start, Vec<ProtocolMessage>)>,
    client: EndpointClient,
    report: Recipient<AttemptEvent>,
    timeouts: Timeouts,
    session: Session,
    /// Completions, acks and the close, queued even before the attempt is open so none is lost.
    /// Frames that may still be read before a reported entry is committed.
    credits: Arc<Semaphore>,
    outbound: mpsc::Sender<Outbound>,
    /// The queue's reading end, until the attempt is open and a writer takes it.
    outbound_queue: Option<mpsc::Receiver<Outbound>>,
    /// The inactivity, abort or drain timer, whichever runs.
    timer: Option<SpawnHandle>,
    phase: Phase,
    /// The attempt's span, and the trace context sent as `traceparent`.
    span: AttemptSpan,
}

impl std::fmt::Debug for InvocationActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationActor")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("target", &self.target)
            .field("endpoint", &self.endpoint)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl InvocationActor {
    /// An actor for the attempt `spec`; nothing happens until it is started.
    pub fn new(
        spec: AttemptSpec,
        client: EndpointClient,
        report: Recipient<AttemptEvent>,
        timeouts: Timeouts,
    ) -> Self {
        let session = Session::new(&spec.journal);
        let journal = spec.journal.iter().map(replay).collect();
        let (outbound, queue) = mpsc::channel(OUTBOUND_LIMIT);
        InvocationActor {
            id: spec.id,
            epoch: spec.epoch,
            target: spec.target,
            endpoint: spec.endpoint,
            opening: Some((spec.start, journal)),
            client,
            report,
            timeouts,
            session,
            outbound,
            credits: Arc::new(Semaphore::new(CREDIT_WINDOW)),
            outbound_queue: Some(queue),
            timer: None,
            phase: Phase::Running,
            span: AttemptSpan::start(SpanSink::disabled(), spec.trace),
        }
    }

    /// Exports the attempt's span to `sink` when the invocation's trace is sampled.
    pub fn with_spans(mut self, sink: SpanSink) -> Self {
        self.span.export_to(sink);
        self
    }

    /// The attempt is open (or could not be opened).
    fn opened(
        &mut self,
        result: Result<Attempt, holdfast_endpoint::Error>,
        ctx: &mut Context<Self>,
    ) {
        let attempt = match result {
            Ok(attempt) => attempt,
            Err(error) => return self.fail(endpoint_failure(&error), ctx),
        };
        if let Some(queue) = self.outbound_queue.take() {
            ctx.spawn(forward(queue, attempt.sender()).into_actor(self));
        }
        ctx.add_stream(events(attempt, self.credits.clone()));
    }

    /// Queues a frame for the SDK. An endpoint that leaves [`OUTBOUND_LIMIT`] frames unread is
    /// not keeping up: the attempt fails retryably rather than buffering without bound.
    fn send(&mut self, item: Outbound, ctx: &mut Context<Self>) {
        match self.outbound.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(id = %self.id, "the attempt's request side is gone; message dropped");
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let ending = Ending::Failed {
                    code: UNAVAILABLE,
                    message: format!(
                        "endpoint {} left {OUTBOUND_LIMIT} frames unread; the attempt is retried",
                        self.endpoint
                    ),
                    retryable: true,
                    retry_after_ms: None,
                };
                self.fail(ending, ctx);
            }
        }
    }

    fn emit(&self, event: AttemptEvent) {
        self.report.do_send(event);
    }

    /// Restarts the inactivity timer: the SDK just said something.
    fn arm_inactivity(&mut self, ctx: &mut Context<Self>) {
        self.set_timer(ctx, self.timeouts.inactivity, Self::inactive);
    }

    fn set_timer(
        &mut self,
        ctx: &mut Context<Self>,
        after: Duration,
        then: fn(&mut Self, &mut Context<Self>),
    ) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        self.timer = Some(ctx.run_later(after, move |act, ctx| {
            act.timer = None;
            then(act, ctx);
        }));
    }

    /// The SDK was silent for the inactivity timeout: close the request side so that a handler
    /// blocked on the kernel suspends, and give it until the abort timeout to end.
    fn inactive(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            return;
        }
        debug!(id = %self.id, epoch = %self.epoch, "attempt inactive; closing its request side");
        self.phase = Phase::Closed;
        self.send(Outbound::Close, ctx);
        self.set_timer(ctx, self.timeouts.abort, Self::aborted);
    }

    fn aborted(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Closed {
            return;
        }
        let message = format!(
            "attempt aborted after {:?}: endpoint {} did not end it after its request side was \
             closed for {:?} of inactivity",
            self.timeouts.abort, self.endpoint, self.timeouts.inactivity
        );
        self.fail(
            Ending::Failed {
                code: INTERNAL,
                message,
                retryable: true,
                retry_after_ms: None,
            },
            ctx,
        );
    }

    /// The SDK said how the attempt ends: report it, then let the exchange finish gracefully.
    fn finish(&mut self, ending: Ending, ctx: &mut Context<Self>) {
        self.report_ended(ending);
        self.set_timer(ctx, DRAIN, |_, ctx| ctx.stop());
    }

    /// The attempt cannot go on: report why and stop, which resets the stream if still open.
    fn fail(&mut self, ending: Ending, ctx: &mut Context<Self>) {
        self.report_ended(ending);
        ctx.stop();
    }

    fn report_ended(&mut self, ending: Ending) {
        if self.phase == Phase::Over {
            return;
        }
        self.phase = Phase::Over;
        self.span.ended(&ending);
        self.emit(AttemptEvent::Ended {
            id: self.id,
            epoch: self.epoch,
            ending,
        });
    }

    fn violation(&self, violation: &Violation) -> Ending {
        Ending::Failed {
            code: PROTOCOL_VIOLATION,
            message: format!(
                "protocol violation by endpoint {}: {violation}",
                self.endpoint
            ),
            retryable: true,
            retry_after_ms: None,
        }
    }
}

impl Actor for InvocationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some((start, journal)) = self.opening.take() else {
            return;
        };
        let client = self.client.clone();
        let base = self.endpoint.clone();
        let service = self.target.service.clone();
        let handler = self.target.handler.clone();
        let traceparent = self.span.traceparent(self.id, self.epoch);
        let open = async move {
            client
                .start_attempt_traced(&base, &service, &handler, start, journal, traceparent)
                .await
        };
        ctx.spawn(
            open.into_actor(self)
                .map(|result, act, ctx| act.opened(result, ctx)),
        );
        self.arm_inactivity(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let endpoint = self.endpoint.to_string();
        self.span
            .finish(self.id, self.epoch, &self.target, &endpoint);
    }
}

impl StreamHandler<Event> for InvocationActor {
    fn handle(&mut self, event: Event, ctx: &mut Context<Self>) {
        if self.phase == Phase::Over {
            // Draining after the ending: whatever comes now changes nothing.
            return;
        }
        let frame = match event {
            Event::Message(frame) => frame,
            // A message above the limit fails the same way on every retry: fail terminally.
            Event::ProtocolViolation(holdfast_protocol::Error::FrameTooLong { len, max }) => {
                let ending = Ending::Failed {
                    code: 413,
                    message: format!(
                        "the handler sent a message of {len} bytes; the limit is {max} bytes \
                         (invocation.max_message_bytes and framing)"
                    ),
                    retryable: false,
                    retry_after_ms: None,
                };
                return self.fail(ending, ctx);
            }
            Event::ProtocolViolation(error) => {
                let ending = self.violation(&Violation::Undecodable(error));
                return self.fail(ending, ctx);
            }
            Event::Failed(error) => return self.fail(endpoint_failure(&error), ctx),
        };
        if self.phase == Phase::Running {
            self.arm_inactivity(ctx);
        }
        let (id, epoch) = (self.id, self.epoch);
        let step = self.session.receive(frame);
        // Entries and run results give their credit back once committed (`DeliverCredit`);
        // every other frame at once.
        if !matches!(step, Ok(Step::Entry { .. } | Step::RunResult { .. })) {
            self.credits.add_permits(1);
        }
        match step {
            Ok(Step::Entry { index, entry, ack }) => self.emit(AttemptEvent::Entry {
                id,
                epoch,
                index,
                entry,
                ack,
            }),
            Ok(Step::RunResult {
                index,
                outcome,
                ack,
            }) => self.emit(AttemptEvent::RunResult {
                id,
                epoch,
                index,
                outcome,
                ack,
            }),
            Ok(Step::Ended(ending)) => self.finish(ending, ctx),
            Err(violation) => {
                let ending = self.violation(&violation);
                self.fail(ending, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.phase == Phase::Over {
            ctx.stop();
        } else {
            let ending = self.violation(&Violation::NoEnding);
            self.fail(ending, ctx);
        }
    }
}

impl Handler<DeliverCompletion> for InvocationActor {
    type Result = ();

    fn handle(&mut self, msg: DeliverCompletion, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            debug!(id = %self.id, index = msg.index.0, "completion for a closed attempt dropped");
            return;
        }
        if !self.session.admit_completion(msg.index) {
            debug!(id = %self.id, index = msg.index.0, "duplicate completion dropped");
            return;
        }
        self.send(
            Outbound::Completion(Completion {
                entry: msg.index,
                result: msg.outcome,
            }),
            ctx,
        );
    }
}

impl Handler<DeliverCredit> for InvocationActor {
    type Result = ();

    fn handle(&mut self, _: DeliverCredit, _ctx: &mut Context<Self>) {
        self.credits.add_permits(1);
    }
}

impl Handler<DeliverAck> for InvocationActor {
    type Result = ();

    fn handle(&mut self, msg: DeliverAck, ctx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            debug!(id = %self.id, index = msg.index.0, "ack for a closed attempt dropped");
            return;
        }
        self.send(Outbound::Ack(EntryAck { entry: msg.index }), ctx);
    }
}

impl Handler<Stop> for InvocationActor {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        // Fenced or killed: the partition already decided how this attempt ends.
        self.phase = Phase::Over;
        self.span.stopped();
        ctx.stop();
    }
}

/// The attempt's events as a stream; the attempt lives inside it, so dropping the stream (when
/// the actor stops) resets the HTTP/2 stream.
/// The attempt's events, each read only once a credit is free.
fn events(attempt: Attempt, credits: Arc<Semaphore>) -> impl Stream<Item = Event> + 'static {
    stream::unfold(attempt, move |mut attempt| {
        let credits = credits.clone();
        async move {
            credits.acquire().await.ok()?.forget();
            attempt.next().await.map(|event| (event, attempt))
        }
    })
}

/// Writes queued completions and acks into the request side, one at a time and in order, until
/// the close or until the request side is gone (the event stream then reports why).
async fn forward(mut queue: mpsc::Receiver<Outbound>, sender: AttemptSender) {
    while let Some(item) = queue.recv().await {
        let sent = match item {
            Outbound::Completion(completion) => sender.completion(completion).await,
            Outbound::Ack(ack) => sender.ack(ack).await,
            Outbound::Close => {
                sender.close().await;
                return;
            }
        };
        if let Err(error) = sent {
            debug!(%error, "cannot write to the attempt's request side");
            return;
        }
    }
}

/// The retryable failure for an attempt the endpoint could not carry.
fn endpoint_failure(error: &holdfast_endpoint::Error) -> Ending {
    use holdfast_endpoint::Error;
    let code = match error {
        Error::Connect { .. }
        | Error::Tls { .. }
        | Error::ConnectTimeout { .. }
        | Error::Transport { .. }
        | Error::AttemptClosed { .. } => UNAVAILABLE,
        _ => INTERNAL,
    };
    Ending::Failed {
        code,
        message: error.to_string(),
        retryable: true,
        retry_after_ms: None,
    }
}
