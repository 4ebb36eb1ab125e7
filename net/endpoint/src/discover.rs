//! Discovery (`GET /discover`): fetching an endpoint's manifest with a bounded body and checking
//! that it speaks our protocol version before any invocation is routed to it.

use bytes::BytesMut;
use h2::RecvStream;
use holdfast_protocol::PROTOCOL_VERSION;
use holdfast_protocol::manifest::{CONTENT_TYPE, Manifest};
use http::header::{ACCEPT, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use http::{HeaderMap, Method, Request};

use crate::Error;
use crate::identity::RequestSigner;
use crate::pool::Pool;
use crate::target::Target;

/// How much of an error response body is quoted in [`Error::Status`].
const DETAIL_LEN: usize = 512;

/// Fetches and validates the manifest of `target`.
pub(crate) async fn discover(
    pool: &Pool,
    target: &Target,
    max_manifest_len: usize,
    signer: Option<&RequestSigner>,
) -> Result<Manifest, Error> {
    let endpoint = target.name().to_owned();
    let path = target.path("/discover");
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target.uri(&path)?)
        .header(ACCEPT, CONTENT_TYPE);
    if let Some(signer) = signer {
        for (name, value) in signer.headers(&path) {
            request = request.header(name, value);
        }
    }
    let request = request.body(()).map_err(|e| Error::InvalidUri {
        uri: endpoint.clone(),
        reason: e.to_string(),
    })?;
    let (response, _request_body) = pool.send(target, request, true).await?;
    let transport = |source| Error::Transport {
        endpoint: endpoint.clone(),
        source,
    };
    let response = response.await.map_err(transport)?;
    let (parts, mut body) = response.into_parts();

    if !parts.status.is_success() {
        let (detail, _) = read_bounded(&mut body, DETAIL_LEN)
            .await
            .map_err(transport)?;
        return Err(Error::Status {
            endpoint,
            path,
            status: parts.status,
            detail: String::from_utf8_lossy(&detail).trim().to_owned(),
        });
    }
    let found = media_type(&parts.headers);
    if found.as_deref() != Some(CONTENT_TYPE) {
        return Err(Error::ContentType {
            endpoint,
            path,
            expected: CONTENT_TYPE,
            found,
        });
    }
    let (bytes, complete) = read_bounded(&mut body, max_manifest_len)
        .await
        .map_err(transport)?;
    if !complete {
        return Err(Error::ManifestTooLarge {
            endpoint,
            limit: max_manifest_len,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidManifest {
            endpoint: endpoint.clone(),
            source,
        })?;
    let (min, max) = (manifest.min_protocol_version, manifest.max_protocol_version);
    if !(min..=max).contains(&PROTOCOL_VERSION) {
        return Err(Error::IncompatibleProtocol {
            endpoint,
            min,
            max,
            ours: PROTOCOL_VERSION,
        });
    }
    Ok(manifest)
}

/// Reads at most `limit` bytes of `body`; the flag says whether the body ended within the limit.
async fn read_bounded(body: &mut RecvStream, limit: usize) -> Result<(BytesMut, bool), h2::Error> {
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        // Releasing is only a window update; a failure here surfaces on the next read anyway.
        let _ = body.flow_control().release_capacity(chunk.len());
        if bytes.len() + chunk.len() > limit {
            let room = limit - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

/// The media type of a response (`type/subtype`, lower-cased, parameters dropped), if it has one.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE_HEADER)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}
