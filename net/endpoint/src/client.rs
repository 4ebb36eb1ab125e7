//! The client the invoker holds: configuration, discovery and starting attempts, all over the
//! pool's shared connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use holdfast_protocol::manifest::Manifest;
use holdfast_protocol::message::Start;
use holdfast_protocol::{
    DEFAULT_MAX_FRAME_LEN, Entry, Frame, INVOCATION_CONTENT_TYPE, MODE_HEADER, Message,
};
use http::header::CONTENT_TYPE;
use http::{Method, Request, Uri};

use crate::attempt::{Attempt, Opened};
use crate::identity::RequestSigner;
use crate::pool::{ConnectionHome, Pool};
use crate::target::{Target, check_segment};
use crate::{Error, discover};

/// Limits and timeouts of an [`EndpointClient`]; the defaults suit a kernel on a LAN.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long establishing a connection (TCP and HTTP/2 preface) may take.
    pub connect_timeout: Duration,
    /// How long a whole discovery (request and manifest) may take.
    pub discover_timeout: Duration,
    /// Largest frame body accepted from an endpoint; a longer one is a protocol violation.
    pub max_frame_len: u32,
    /// Largest manifest accepted at discovery.
    pub max_manifest_len: usize,
    /// Frames an attempt's sender may queue before `completion`/`ack` wait for the stream.
    pub send_queue_len: usize,
    /// Signs every request (discovery and attempts) with the kernel's key, Restate's identity
    /// scheme `v1`; `None` sends requests unsigned.
    pub signer: Option<Arc<RequestSigner>>,
    /// Verifies `https://` endpoints (ALPN must offer `h2`); `None`: the system's trust roots.
    pub tls: Option<Arc<holdfast_tls::ClientConfig>>,
    /// Where connections to endpoints are made and driven: the thread the attempts run on, so a
    /// frame crosses no thread between attempt and socket; `None`: wherever first used.
    pub home: Option<ConnectionHome>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            discover_timeout: Duration::from_secs(30),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_manifest_len: 1024 * 1024,
            send_queue_len: 64,
            signer: None,
            tls: None,
            home: None,
        }
    }
}

/// The kernel's client for service endpoints: cheap to clone, every clone shares one HTTP/2
/// connection per endpoint authority.
#[derive(Clone)]
pub struct EndpointClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    pool: Pool,
}

impl std::fmt::Debug for EndpointClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointClient")
            .field("config", &self.inner.config)
            .field("connections_opened", &self.connections_opened())
            .finish()
    }
}

impl Default for EndpointClient {
    fn default() -> Self {
        EndpointClient::new(ClientConfig::default())
    }
}

impl EndpointClient {
    /// A client with no connection yet; connections are made on first use.
    pub fn new(config: ClientConfig) -> Self {
        EndpointClient {
            inner: Arc::new(Inner {
                pool: Pool::new(
                    config.connect_timeout,
                    config.tls.clone(),
                    config.home.clone(),
                ),
                config,
            }),
        }
    }

    /// How many HTTP/2 connections this client (and its clones) has established so far; shows
    /// that attempts multiplex over one connection and when reconnects happen.
    pub fn connections_opened(&self) -> u64 {
        self.inner.pool.opened()
    }

    /// Fetches `GET {base}/discover` and checks the manifest is one we can serve.
    pub async fn discover(&self, base: &Uri) -> Result<Manifest, Error> {
        let target = Target::parse(base)?;
        let timeout = self.inner.config.discover_timeout;
        let work = discover::discover(
            &self.inner.pool,
            &target,
            self.inner.config.max_manifest_len,
            self.inner.config.signer.as_deref(),
        );
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::DiscoveryTimeout {
                endpoint: target.name().to_owned(),
                timeout,
            })?
    }

    /// Opens `POST {base}/invoke/{service}/{handler}` in streaming mode and sends `start` followed
    /// by the `journal` (exactly `start.known_entries` entries, the input first), keeping the
    /// request open for completions and acks.
    pub async fn start_attempt(
        &self,
        base: &Uri,
        service: &str,
        handler: &str,
        start: Start,
        journal: Vec<Message>,
    ) -> Result<Attempt, Error> {
        self.start_attempt_traced(base, service, handler, start, journal, None)
            .await
    }

    /// Like [`EndpointClient::start_attempt`], with a W3C `traceparent` request header naming the
    /// attempt's span, so spans the handler records join the invocation's trace.
    pub async fn start_attempt_traced(
        &self,
        base: &Uri,
        service: &str,
        handler: &str,
        start: Start,
        journal: Vec<Message>,
        traceparent: Option<String>,
    ) -> Result<Attempt, Error> {
        let target = Target::parse(base)?;
        check_segment("service", service)?;
        check_segment("handler", handler)?;
        check_journal(&start, &journal)?;

        let encode = |source| Error::Encode {
            endpoint: target.name().to_owned(),
            source,
        };
        let mut initial = BytesMut::new();
        Frame::new(Message::Start(start))
            .encode(&mut initial)
            .map_err(encode)?;
        for entry in journal {
            Frame::new(entry).encode(&mut initial).map_err(encode)?;
        }

        let path = target.path(&format!("/invoke/{service}/{handler}"));
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.uri(&path)?)
            .header(CONTENT_TYPE, INVOCATION_CONTENT_TYPE)
            .header(MODE_HEADER, "stream");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(signer) = &self.inner.config.signer {
            for (name, value) in signer.headers(&path) {
                request = request.header(name, value);
            }
        }
        let request = request.body(()).map_err(|e| Error::InvalidUri {
            uri: target.name().to_owned(),
            reason: e.to_string(),
        })?;
        let (response, body) = self.inner.pool.send(&target, request, false).await?;
        Ok(Attempt::spawn(Opened {
            response,
            body,
            initial: initial.freeze(),
            endpoint: target.name().to_owned(),
            path,
            max_frame_len: self.inner.config.max_frame_len,
            queue_len: self.inner.config.send_queue_len,
        }))
    }
}

/// Checks the journal is what `start` announces: `known_entries` entries, the input first.
fn check_journal(start: &Start, journal: &[Message]) -> Result<(), Error> {
    if usize::try_from(start.known_entries).ok() != Some(journal.len()) {
        return Err(Error::InvalidJournal(format!(
            "start announces {} entries but {} were given",
            start.known_entries,
            journal.len()
        )));
    }
    match journal.first() {
        Some(Message::Entry(Entry::Input(_))) => {}
        Some(other) => {
            return Err(Error::InvalidJournal(format!(
                "entry 0 must be input, not {}",
                other.message_type().name()
            )));
        }
        None => {
            return Err(Error::InvalidJournal(
                "the input entry is missing".to_owned(),
            ));
        }
    }
    if let Some((index, other)) = journal
        .iter()
        .enumerate()
        .find(|(_, m)| !matches!(m, Message::Entry(_)))
    {
        return Err(Error::InvalidJournal(format!(
            "entry {index} is a {} control message, not a journal entry",
            other.message_type().name()
        )));
    }
    Ok(())
}
