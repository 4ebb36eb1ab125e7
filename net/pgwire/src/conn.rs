//! One connection of the listener, under its limits: a startup timeout, an idle timeout and a
//! maximum frontend message size; and the answer a connection over the connection cap gets.
//!
//! ```text
//!   TcpStream ─► Guarded (reads each message's length word as it arrives: a message over
//!   the limit fails the read before its body is buffered) ─► Framed + pgwire's codec
//!     ─► serve(): an SSLRequest is accepted when the listener has a certificate (the same
//!        guard then reads the decrypted stream) and refused otherwise; GSS refused; startup
//!        within `startup_timeout`, then pgwire's `process_message` for every message; waiting
//!        longer than `idle_timeout` for the next one closes the connection (FATAL 57P05)
//! ```
//!
//! This is pgwire's `process_socket` loop with those limits added. A listener with a
//! certificate speaks TLS only: a startup without an SSLRequest is refused (FATAL 28000).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use holdfast_tls::{ServerStream, TlsAcceptor};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{
    ClientInfo, DefaultClient, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::error::sqlstate;

/// The code of an SSLRequest (in place of a protocol version).
const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The code of a GSSENCRequest.
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Largest message a refused connection may send (PostgreSQL's own startup packet limit).
const REFUSAL_MAX_BYTES: usize = 10_000;
/// How long a FATAL error may take to reach a client before the connection is dropped anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// The limits one connection is served under, and its TLS.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    /// The startup message must arrive (and be answered) within this.
    pub startup_timeout: Duration,
    /// Waiting longer than this for the next message closes the connection.
    pub idle_timeout: Option<Duration>,
    /// Largest frontend message, its length word included.
    pub max_message_bytes: usize,
    /// Accepts SSLRequests, and then is required; `None`: plain TCP only.
    pub tls: Option<TlsAcceptor>,
}

/// The byte stream under the framing: TCP, or TLS over it after an accepted SSLRequest.
enum Wire {
    Plain(TcpStream),
    Tls(Box<ServerStream<TcpStream>>),
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wire::Plain(_) => "Wire::Plain",
            Wire::Tls(_) => "Wire::Tls",
        })
    }
}

/// Forwards a poll to whichever stream the wire is.
macro_rules! on_wire {
    ($wire:expr, $stream:ident => $call:expr) => {
        match $wire {
            Wire::Plain($stream) => $call,
            Wire::Tls($stream) => $call,
        }
    };
}

/// Follows the frontend's message framing over the raw bytes and stops at the first length
/// word above the limit: untyped messages (SSLRequest, GSSENCRequest, then the startup or
/// cancel message) have a 4-byte length and a 4-byte code; every later one a type byte and a
/// 4-byte length.
#[derive(Debug)]
struct FrameGuard {
    max: usize,
    typed: bool,
    header: [u8; 8],
    have: usize,
    skip: usize,
}

impl FrameGuard {
    fn new(max: usize) -> Self {
        Self {
            max,
            typed: false,
            header: [0; 8],
            have: 0,
            skip: 0,
        }
    }

    /// Accounts for `bytes` read from the client; `Err(length)` for a message over the limit.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), usize> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let need = if self.typed { 5 } else { 8 };
            let n = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < need {
                break;
            }
            self.have = 0;
            let word = |at: usize| {
                u32::from_be_bytes([
                    self.header[at],
                    self.header[at + 1],
                    self.header[at + 2],
                    self.header[at + 3],
                ])
            };
            let (length, header) = if self.typed {
                (word(1), 4)
            } else {
                (word(0), 8)
            };
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if length > self.max {
                return Err(length);
            }
            self.skip = length.saturating_sub(header);
            if !self.typed {
                let code = word(4);
                let negotiation =
                    length == 8 && matches!(code, SSL_REQUEST_CODE | GSSENC_REQUEST_CODE);
                self.typed = !negotiation;
            }
        }
        Ok(())
    }
}

/// A client socket whose reads fail at the first message over the size limit.
#[derive(Debug)]
pub(crate) struct Guarded {
    inner: Wire,
    guard: FrameGuard,
    /// The declared length of the message that was refused.
    oversized: Option<usize>,
}

impl Guarded {
    fn is_secure(&self) -> bool {
        matches!(self.inner, Wire::Tls(_))
    }

    fn new(inner: TcpStream, max_message_bytes: usize) -> Self {
        Self {
            inner: Wire::Plain(inner),
            guard: FrameGuard::new(max_message_bytes),
            oversized: None,
        }
    }

    fn too_large(length: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frontend message of {length} bytes is over the limit"),
        )
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(length) = this.oversized {
            return Poll::Ready(Err(Self::too_large(length)));
        }
        let before = buf.filled().len();
        ready!(on_wire!(&mut this.inner, s => Pin::new(s).poll_read(cx, buf)))?;
        if let Err(length) = this.guard.feed(&buf.filled()[before..]) {
            // The connection ends here: nothing of this read is handed on.
            buf.set_filled(before);
            this.oversized = Some(length);
            return Poll::Ready(Err(Self::too_large(length)));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_wire!(&mut self.get_mut().inner, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_wire!(&mut self.get_mut().inner, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_wire!(&mut self.get_mut().inner, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_wire!(&mut self.get_mut().inner, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_wire!(&self.inner, s => s.is_write_vectored())
    }
}

/// A framed client connection; `S` is the prepared-statement type of its portal store.
type Socket<S> = Framed<Guarded, PgWireMessageServerCodec<S>>;

fn framed<S>(socket: TcpStream, max_message_bytes: usize) -> io::Result<Socket<S>> {
    let addr = socket.peer_addr()?;
    socket.set_nodelay(true)?;
    let client = DefaultClient::new(addr, false);
    let mut framed = Framed::new(
        Guarded::new(socket, max_message_bytes),
        PgWireMessageServerCodec::new(client),
    );
    framed.set_state(PgWireConnectionState::AwaitingSslRequest);
    Ok(framed)
}

/// Sends a FATAL error (best effort, briefly): the connection closes after it.
async fn farewell<S>(socket: &mut Socket<S>, code: &str, message: String) {
    let info = ErrorInfo::new("FATAL".to_owned(), code.to_owned(), message);
    let sent = tokio::time::timeout(
        FAREWELL_TIMEOUT,
        socket.send(PgWireBackendMessage::ErrorResponse(info.into())),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!("a pgwire client did not take its closing error");
    }
}

/// What a negotiation message asked for.
enum Negotiated {
    /// Not a negotiation message: process it.
    No,
    /// Answered (refused, or the plaintext path chosen): read on.
    Answered,
    /// An SSLRequest was accepted: the TLS handshake comes next.
    Tls(TlsAcceptor),
}

/// Answers an SSL or GSS negotiation request: SSL is accepted when `tls` is set, GSS never.
async fn negotiate<S>(
    socket: &mut Socket<S>,
    message: &PgWireFrontendMessage,
    tls: Option<&TlsAcceptor>,
) -> io::Result<Negotiated> {
    let PgWireFrontendMessage::SslNegotiation(negotiation) = message else {
        return Ok(Negotiated::No);
    };
    match negotiation {
        SslNegotiationMetaMessage::PostgresSsl(_) => {
            if socket.get_ref().is_secure() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "an SSLRequest inside TLS",
                ));
            }
            let answer = match tls {
                Some(_) => SslResponse::Accept,
                None => SslResponse::Refuse,
            };
            socket
                .send(PgWireBackendMessage::SslResponse(answer))
                .await?;
            if let Some(acceptor) = tls {
                return Ok(Negotiated::Tls(acceptor.clone()));
            }
        }
        SslNegotiationMetaMessage::PostgresGss(_) => {
            socket
                .send(PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse))
                .await?;
        }
        SslNegotiationMetaMessage::None => socket.set_state(PgWireConnectionState::AwaitingStartup),
    }
    Ok(Negotiated::Answered)
}

/// Runs the TLS handshake after an accepted SSLRequest and continues the same framing (and the
/// same size guard) over the decrypted stream. Bytes the client sent before the handshake would
/// be plaintext smuggled into the session: the connection is dropped instead.
async fn upgrade<S>(
    socket: Socket<S>,
    acceptor: TlsAcceptor,
    timeout: Duration,
) -> io::Result<Socket<S>> {
    let parts = socket.into_parts();
    if !parts.read_buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "data after an SSLRequest before the TLS handshake",
        ));
    }
    let Guarded {
        inner,
        guard,
        oversized,
    } = parts.io;
    let Wire::Plain(tcp) = inner else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS inside TLS"));
    };
    let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let mut codec = parts.codec;
    codec.client_info.is_secure = true;
    let io = Guarded {
        inner: Wire::Tls(Box::new(tls)),
        guard,
        oversized,
    };
    let mut socket = Framed::from_parts(FramedParts::new(io, codec));
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    Ok(socket)
}

fn too_large_message(length: usize, limit: usize) -> String {
    format!(
        "message of {length} bytes exceeds the endpoint's limit of {limit} bytes \
         ([sql] max_message_bytes)"
    )
}

/// Serves one client with `handlers` until it leaves or a limit ends the connection.
pub(crate) async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    handlers: H,
    limits: ConnLimits,
) -> io::Result<()> {
    let mut socket = framed(socket, limits.max_message_bytes)?;
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    let deadline = tokio::time::sleep(limits.startup_timeout);
    tokio::pin!(deadline);
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingSslRequest
                | PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if starting {
            tokio::select! {
                () = &mut deadline => {
                    tracing::debug!("a pgwire client did not finish its startup in time");
                    break;
                }
                next = socket.next() => next,
            }
        } else if let Some(idle) = limits.idle_timeout {
            match tokio::time::timeout(idle, socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let message = "terminating connection due to idle-session timeout";
                    farewell(
                        &mut socket,
                        sqlstate::IDLE_SESSION_TIMEOUT,
                        message.to_owned(),
                    )
                    .await;
                    break;
                }
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                if let Some(length) = socket.get_ref().oversized {
                    let text = too_large_message(length, limits.max_message_bytes);
                    farewell(&mut socket, sqlstate::PROGRAM_LIMIT_EXCEEDED, text).await;
                } else {
                    tracing::debug!(error = %e, "reading from a pgwire client failed");
                }
                break;
            }
            None => break,
        };
        match negotiate(&mut socket, &message, limits.tls.as_ref()).await? {
            Negotiated::No => {}
            Negotiated::Answered => continue,
            Negotiated::Tls(acceptor) => {
                socket = upgrade(socket, acceptor, limits.startup_timeout).await?;
                continue;
            }
        }
        if limits.tls.is_some()
            && !socket.get_ref().is_secure()
            && matches!(message, PgWireFrontendMessage::Startup(_))
        {
            let text = "this endpoint accepts TLS connections only: connect with sslmode=require \
                        ([sql] tls_cert_file)";
            farewell(
                &mut socket,
                sqlstate::INVALID_AUTHORIZATION,
                text.to_owned(),
            )
            .await;
            break;
        }
        // A Terminate ends the session; the client waits for the socket to close.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let processed = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = processed {
            errors.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended_query).await?;
            if fatal {
                break;
            }
        }
        if cancel_request {
            break;
        }
    }
    Ok(())
}

/// Answers a connection over the cap: GSS requests are refused (SSL is accepted on a TLS
/// listener, so the client can read the answer), a cancel request is still
/// honoured (so a full server can stop a statement), and the startup message gets FATAL 53300
/// "too many connections"; then the connection closes. Bounded by `timeout` in all.
pub(crate) async fn refuse(
    socket: TcpStream,
    max_connections: usize,
    cancel: Arc<impl CancelHandler>,
    timeout: Duration,
    tls: Option<TlsAcceptor>,
) {
    let refusal = async {
        let mut socket = framed::<()>(socket, REFUSAL_MAX_BYTES)?;
        while let Some(next) = socket.next().await {
            let message = match next {
                Ok(message) => message,
                Err(_) => break,
            };
            match negotiate(&mut socket, &message, tls.as_ref()).await? {
                Negotiated::No => {}
                Negotiated::Answered => continue,
                Negotiated::Tls(acceptor) => {
                    socket = upgrade(socket, acceptor, timeout).await?;
                    continue;
                }
            }
            match message {
                PgWireFrontendMessage::CancelRequest(request) => {
                    cancel.on_cancel_request(request).await;
                }
                PgWireFrontendMessage::Startup(_) => {
                    let text = format!(
                        "too many connections: this endpoint serves at most {max_connections} \
                         at once ([sql] max_connections)"
                    );
                    farewell(&mut socket, sqlstate::TOO_MANY_CONNECTIONS, text).await;
                }
                _ => {}
            }
            break;
        }
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(timeout, refusal).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "refusing a pgwire connection failed"),
        Err(_) => tracing::debug!("a refused pgwire client did not send its startup in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untyped(length: u32, code: u32) -> Vec<u8> {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend(code.to_be_bytes());
        bytes.resize(usize::try_from(length).unwrap_or(8).max(8), 0);
        bytes
    }

    fn typed(kind: u8, length: u32) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend(length.to_be_bytes());
        bytes.resize(usize::try_from(length).unwrap_or(4) + 1, b'x');
        bytes
    }

    #[test]
    fn the_guard_follows_the_framing_byte_by_byte() {
        let mut stream = untyped(8, SSL_REQUEST_CODE);
        stream.extend(untyped(40, 196_608));
        stream.extend(typed(b'Q', 100));
        stream.extend(typed(b'P', 1000));
        let mut guard = FrameGuard::new(1000);
        for byte in &stream {
            assert_eq!(guard.feed(std::slice::from_ref(byte)), Ok(()));
        }
        let mut guard = FrameGuard::new(1000);
        assert_eq!(guard.feed(&stream), Ok(()));
        // The next message declares more than the limit: refused at its header.
        assert_eq!(guard.feed(&[b'Q', 0, 0, 0x03]), Ok(()));
        assert_eq!(guard.feed(&[0xe9]), Err(1001));
    }

    #[test]
    fn an_oversized_startup_message_is_refused() {
        let mut guard = FrameGuard::new(1024);
        assert_eq!(guard.feed(&untyped(8, GSSENC_REQUEST_CODE)), Ok(()));
        assert_eq!(guard.feed(&(1_u32 << 30).to_be_bytes()), Ok(()));
        assert_eq!(guard.feed(&196_608_u32.to_be_bytes()), Err(1 << 30));
    }
}
